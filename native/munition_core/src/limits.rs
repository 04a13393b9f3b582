//! Bounds on what a module may cost to compile, checked by a cheap pre-scan
//! before anything expensive runs on it.
//!
//! Compiling is the one step of a call whose cost the guest's author chooses
//! before any fuel or deadline applies: 200,000 empty functions (800 KB) took
//! 13-27 s and about 1 GiB to compile, and 1,000 functions each declaring
//! 50,000 locals (8 KB) took 7 s. The pre-scan reads section headers, body
//! sizes and local declarations only (no instruction is decoded, nothing is
//! validated), so it costs microseconds per kilobyte; a module over a limit
//! is refused before it is validated or compiled.

use wasmparser::Payload;

/// What the pre-scan measures: one figure per limit, plus the counts the
/// engine bounds on its own (memories, tables).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Bytes of the binary module.
    pub module_size: u64,
    /// Functions defined (imports excluded).
    pub functions: u64,
    /// Bytes of the largest function body.
    pub function_size: u64,
    /// Locals declared by all function bodies together (parameters excluded).
    pub locals: u64,
    /// Globals defined.
    pub globals: u64,
    /// Data segments, active and passive.
    pub data_segments: u64,
    /// Bytes of all data segments together.
    pub data_size: u64,
    /// Initial elements of the largest defined table.
    pub table_elements: u64,
    /// Imports of any kind.
    pub imports: u64,
    /// Exports of any kind.
    pub exports: u64,
    /// Memories, imported and defined.
    pub memories: u64,
    /// Tables, imported and defined.
    pub tables: u64,
}

/// The most a module may have of each figure of `Facts`. Every field is a
/// limit that `Munition.Runtime.Config` documents, with its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct Limits {
    pub module_size: u64,
    pub functions: u64,
    pub function_size: u64,
    pub locals: u64,
    pub globals: u64,
    pub data_segments: u64,
    pub data_size: u64,
    pub table_elements: u64,
    pub imports: u64,
    pub exports: u64,
}

/// A limit a module is over: which one, by its option name, the module's
/// value and the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: &'static str,
    pub value: u64,
    pub max: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.value;
        let what = match self.limit {
            "module_size" => format!("the module is {value} bytes"),
            "functions" => format!("the module defines {value} functions"),
            "function_size" => format!("a function body is {value} bytes"),
            "locals" => format!("the module's functions declare {value} locals"),
            "globals" => format!("the module defines {value} globals"),
            "data_segments" => format!("the module has {value} data segments"),
            "data_size" => format!("the module's data segments hold {value} bytes"),
            "table_elements" => format!("a table starts with {value} elements"),
            "imports" => format!("the module has {value} imports"),
            "exports" => format!("the module has {value} exports"),
            other => format!("{other} is {value}"),
        };
        write!(
            f,
            "{}: {what}, over the limit of {} (raise it with limits: [{}: n])",
            self.limit, self.max, self.limit
        )
    }
}

impl Limits {
    /// Every limit `facts` is over, in the order of the fields; the first one
    /// is the one to report.
    pub fn exceeded(&self, facts: &Facts) -> Vec<Exceeded> {
        [
            ("module_size", facts.module_size, self.module_size),
            ("functions", facts.functions, self.functions),
            ("function_size", facts.function_size, self.function_size),
            ("locals", facts.locals, self.locals),
            ("globals", facts.globals, self.globals),
            ("data_segments", facts.data_segments, self.data_segments),
            ("data_size", facts.data_size, self.data_size),
            ("table_elements", facts.table_elements, self.table_elements),
            ("imports", facts.imports, self.imports),
            ("exports", facts.exports, self.exports),
        ]
        .into_iter()
        .filter(|(_, value, max)| value > max)
        .map(|(limit, value, max)| Exceeded { limit, value, max })
        .collect()
    }

    /// `Ok` when `facts` is within every limit, else the first limit it is over.
    pub fn check(&self, facts: &Facts) -> Result<(), Exceeded> {
        match self.exceeded(facts).into_iter().next() {
            Some(exceeded) => Err(exceeded),
            None => Ok(()),
        }
    }

    /// Checks the size of the input alone (wasm or WAT), before reading it.
    pub fn check_size(&self, size: usize) -> Result<(), Exceeded> {
        let size = size as u64;
        if size > self.module_size {
            return Err(Exceeded {
                limit: "module_size",
                value: size,
                max: self.module_size,
            });
        }
        Ok(())
    }
}

/// Measures `wasm` for the limits: one pass over its sections that decodes no
/// instruction. Fails on malformed sections only; a module that passes may
/// still be invalid (it is validated next).
pub fn prescan(wasm: &[u8]) -> wasmparser::Result<Facts> {
    let mut facts = Facts {
        module_size: wasm.len() as u64,
        ..Facts::default()
    };
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ImportSection(reader) => {
                for imports in reader {
                    for import in imports? {
                        let (_, import) = import?;
                        facts.imports += 1;
                        match import.ty {
                            wasmparser::TypeRef::Memory(_) => facts.memories += 1,
                            wasmparser::TypeRef::Table(_) => facts.tables += 1,
                            _ => {}
                        }
                    }
                }
            }
            Payload::FunctionSection(reader) => facts.functions += u64::from(reader.count()),
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table?;
                    facts.tables += 1;
                    facts.table_elements = facts.table_elements.max(table.ty.initial);
                }
            }
            Payload::MemorySection(reader) => facts.memories += u64::from(reader.count()),
            Payload::GlobalSection(reader) => facts.globals += u64::from(reader.count()),
            Payload::ExportSection(reader) => facts.exports += u64::from(reader.count()),
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data?;
                    facts.data_segments += 1;
                    facts.data_size += data.data.len() as u64;
                }
            }
            Payload::CodeSectionEntry(body) => {
                facts.function_size = facts.function_size.max(body.range().len() as u64);
                let mut locals = body.get_locals_reader()?;
                for _ in 0..locals.get_count() {
                    let (count, _) = locals.read()?;
                    facts.locals += u64::from(count);
                }
            }
            _ => {}
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generous() -> Limits {
        Limits {
            module_size: u64::MAX,
            functions: u64::MAX,
            function_size: u64::MAX,
            locals: u64::MAX,
            globals: u64::MAX,
            data_segments: u64::MAX,
            data_size: u64::MAX,
            table_elements: u64::MAX,
            imports: u64::MAX,
            exports: u64::MAX,
        }
    }

    fn facts(wat: &str) -> Facts {
        prescan(&wat::parse_str(wat).unwrap()).unwrap()
    }

    #[test]
    fn prescan_measures_every_figure() {
        let wasm = wat::parse_str(
            r#"(module
                 (import "env" "f" (func))
                 (import "env" "m" (memory 1))
                 (memory 1)
                 (table 7 funcref)
                 (table 3 funcref)
                 (global i32 (i32.const 0))
                 (global (mut i64) (i64.const 0))
                 (data (i32.const 0) "hello")
                 (data "abc")
                 (func (local i32 i32 i64))
                 (func (export "run") (local f32) nop nop nop)
                 (export "memory" (memory 1)))"#,
        )
        .unwrap();
        let facts = prescan(&wasm).unwrap();
        assert_eq!(
            facts,
            Facts {
                module_size: wasm.len() as u64,
                functions: 2,
                function_size: 7,
                locals: 4,
                globals: 2,
                data_segments: 2,
                data_size: 8,
                table_elements: 7,
                imports: 2,
                exports: 2,
                memories: 2,
                tables: 2,
            }
        );
        assert_eq!(generous().check(&facts), Ok(()));
    }

    #[test]
    fn every_limit_is_checked_and_named() {
        let facts = facts(
            r#"(module (import "a" "b" (func)) (memory 1) (table 5 funcref)
                 (global i32 (i32.const 0)) (data (i32.const 0) "xyz")
                 (func (export "f") (local i32 i32) nop))"#,
        );
        type Lower = fn(&mut Limits);
        let cases: [(&str, Lower); 10] = [
            ("module_size", |l| l.module_size = 10),
            ("functions", |l| l.functions = 0),
            ("function_size", |l| l.function_size = 2),
            ("locals", |l| l.locals = 1),
            ("globals", |l| l.globals = 0),
            ("data_segments", |l| l.data_segments = 0),
            ("data_size", |l| l.data_size = 2),
            ("table_elements", |l| l.table_elements = 4),
            ("imports", |l| l.imports = 0),
            ("exports", |l| l.exports = 0),
        ];
        for (name, lower) in cases {
            let mut limits = generous();
            lower(&mut limits);
            let exceeded = limits.check(&facts).unwrap_err();
            assert_eq!(exceeded.limit, name);
            let message = exceeded.to_string();
            assert!(message.starts_with(&format!("{name}: ")), "{message}");
            assert!(message.contains(&exceeded.value.to_string()), "{message}");
            assert!(
                message.contains(&format!("limit of {}", exceeded.max)),
                "{message}"
            );
        }
    }

    #[test]
    fn the_first_limit_exceeded_is_reported() {
        let facts = facts("(module (func) (func) (global i32 (i32.const 0)))");
        let mut limits = generous();
        limits.globals = 0;
        limits.functions = 1;
        assert_eq!(limits.exceeded(&facts).len(), 2);
        assert_eq!(limits.check(&facts).unwrap_err().limit, "functions");
    }

    #[test]
    fn locals_are_counted_from_declarations_without_decoding_code() {
        // One declaration of 50,000 locals takes a handful of bytes.
        let facts =
            facts("(module (func (local i32 i32) (local i64)) (func (param i32) (local f64)))");
        assert_eq!(facts.locals, 4);
    }

    #[test]
    fn input_size_is_checked_before_reading() {
        let mut limits = generous();
        limits.module_size = 100;
        assert_eq!(limits.check_size(100), Ok(()));
        assert_eq!(limits.check_size(101).unwrap_err().value, 101);
    }

    #[test]
    fn malformed_sections_fail_the_prescan() {
        assert!(prescan(b"\0asm\x01\0\0\0\x0a\xff").is_err());
        assert!(prescan(b"not wasm").is_err());
    }

    #[test]
    fn the_prescan_does_not_validate() {
        // A body whose instructions do not type-check passes the pre-scan.
        let wasm = wat::parse_str("(module (func (result i32) i64.const 1))").unwrap();
        assert_eq!(prescan(&wasm).unwrap().functions, 1);
    }
}
