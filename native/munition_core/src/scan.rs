//! Static facts about a module's binary that Wasmtime's `Module` does not
//! give: its content hash, its memories, the export names of its globals, and
//! the complexity figures the fuel policy reads. Free of the VM, so it is
//! unit-tested with `cargo test`.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use wasmparser::{Operator, Payload};

#[derive(Clone, Debug)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct MemoryInfo {
    pub min_pages: u64,
    pub max_pages: Option<u64>,
    pub page_size: u64,
    pub memory64: bool,
    pub imported: bool,
}

/// Static complexity figures, read by `Munition.Fuel.Policy` for `fuel: :auto`.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct ModuleStats {
    pub code_size: u64,
    pub function_count: u64,
    pub instruction_count: u64,
    pub loop_count: u64,
    pub max_loop_depth: u64,
    pub call_count: u64,
    pub data_size: u64,
    pub memory_pages: u64,
    pub has_start: bool,
}

/// Content hash of a module's bytes, as lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Whether `bytes` is a WebAssembly component (the component model's binary:
/// the `\0asm` magic, then version 0x0d and layer 1), not a core module
/// (version 1, layer 0). Read from the header alone, so a component is named
/// for what it is before any limit or parser calls it anything else.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [1, 0] && bytes[4..6] != [1, 0]
}

pub struct Scan {
    pub stats: ModuleStats,
    pub memories: Vec<MemoryInfo>,
    /// Export name of each global, by global index (None when not exported).
    pub global_export_names: Vec<Option<String>>,
    /// Export name of each memory, by memory index (None when not exported).
    pub memory_export_names: Vec<Option<String>>,
    /// Number of imported globals: defined global `i` has index `imported + i`.
    pub imported_globals: u32,
}

/// One pass over the binary for what Wasmtime's `Module` does not tell us.
pub fn scan(wasm: &[u8]) -> wasmparser::Result<Scan> {
    let mut stats = ModuleStats::default();
    let mut memories = Vec::new();
    let mut global_count = 0u32;
    let mut imported_globals = 0u32;
    let mut global_exports: HashMap<u32, String> = HashMap::new();
    let mut memory_exports: HashMap<u32, String> = HashMap::new();

    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ImportSection(reader) => {
                for imports in reader {
                    for import in imports? {
                        let (_, import) = import?;
                        match import.ty {
                            wasmparser::TypeRef::Global(_) => {
                                imported_globals += 1;
                                global_count += 1;
                            }
                            wasmparser::TypeRef::Memory(m) => {
                                memories.push(memory_info(&m, true));
                            }
                            _ => {}
                        }
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    memories.push(memory_info(&memory?, false));
                }
            }
            // Counted as read, not as the section's header declares: the
            // count sizes the names below, before the module is validated.
            Payload::GlobalSection(reader) => {
                for global in reader {
                    global?;
                    global_count += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    let names = match export.kind {
                        wasmparser::ExternalKind::Global => &mut global_exports,
                        wasmparser::ExternalKind::Memory => &mut memory_exports,
                        _ => continue,
                    };
                    // The first name of an item exported twice.
                    names
                        .entry(export.index)
                        .or_insert_with(|| export.name.to_string());
                }
            }
            Payload::StartSection { .. } => stats.has_start = true,
            Payload::DataSection(reader) => {
                for data in reader {
                    stats.data_size += data?.data.len() as u64;
                }
            }
            Payload::CodeSectionEntry(body) => {
                stats.function_count += 1;
                stats.code_size += body.range().len() as u64;
                scan_body(&body, &mut stats)?;
            }
            _ => {}
        }
    }

    stats.memory_pages = memories.iter().map(|m| m.min_pages).sum();
    let global_export_names = (0..global_count)
        .map(|index| global_exports.remove(&index))
        .collect();
    let memory_export_names = (0..memories.len() as u32)
        .map(|index| memory_exports.remove(&index))
        .collect();
    Ok(Scan {
        stats,
        memories,
        global_export_names,
        memory_export_names,
        imported_globals,
    })
}

fn memory_info(ty: &wasmparser::MemoryType, imported: bool) -> MemoryInfo {
    MemoryInfo {
        min_pages: ty.initial,
        max_pages: ty.maximum,
        page_size: ty.page_size_log2.map_or(65536, |log2| 1u64 << log2),
        memory64: ty.memory64,
        imported,
    }
}

/// Counts instructions, calls and loops (with their deepest nesting) in one body.
fn scan_body(body: &wasmparser::FunctionBody, stats: &mut ModuleStats) -> wasmparser::Result<()> {
    // One entry per open block: whether it is a loop.
    let mut open: Vec<bool> = Vec::new();
    let mut loop_depth = 0u64;
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let op = reader.read()?;
        stats.instruction_count += 1;
        match op {
            Operator::Loop { .. } => {
                open.push(true);
                loop_depth += 1;
                stats.loop_count += 1;
                stats.max_loop_depth = stats.max_loop_depth.max(loop_depth);
            }
            Operator::Block { .. } | Operator::If { .. } | Operator::TryTable { .. } => {
                open.push(false)
            }
            // Every `End` closes a block (the guard pops it); only a loop's lowers the depth.
            Operator::End if open.pop() == Some(true) => loop_depth -= 1,
            Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. } => stats.call_count += 1,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scan_counts_nested_loops_and_calls() {
        let wasm = wat::parse_str(
            r#"(module
                 (global $g (mut i32) (i32.const 0))
                 (global (export "counter") (mut i32) (i32.const 0))
                 (memory 2)
                 (data (i32.const 0) "hello")
                 (func $f)
                 (func (export "run")
                   (loop (block (loop (call $f) (br 1))))
                   (loop)))"#,
        )
        .unwrap();
        let scan = scan(&wasm).unwrap();
        assert_eq!(scan.stats.function_count, 2);
        assert_eq!(scan.stats.loop_count, 3);
        assert_eq!(scan.stats.max_loop_depth, 2);
        assert_eq!(scan.stats.call_count, 1);
        assert_eq!(scan.stats.data_size, 5);
        assert_eq!(scan.stats.memory_pages, 2);
        assert_eq!(
            scan.global_export_names,
            vec![None, Some("counter".to_string())]
        );
    }

    #[test]
    fn scan_names_exported_memories_by_index() {
        let wasm = wat::parse_str(
            r#"(module (memory 1) (memory (export "second") 1) (memory 1)
                 (export "again" (memory 1)) (export "first" (memory 0)))"#,
        )
        .unwrap();
        let scan = scan(&wasm).unwrap();
        assert_eq!(scan.memories.len(), 3);
        assert_eq!(
            scan.memory_export_names,
            vec![Some("first".to_string()), Some("second".to_string()), None]
        );
    }

    #[test]
    fn components_are_told_from_core_modules_by_their_header() {
        assert!(is_component(b"\0asm\x0d\x00\x01\x00rest"));
        assert!(!is_component(b"\0asm\x01\x00\x00\x00rest"));
        assert!(!is_component(b"\0asm\x0d\x00"));
        assert!(!is_component(b"(module)"));
    }

    #[test]
    fn a_global_count_larger_than_the_globals_is_an_error_not_an_allocation() {
        // A global section declaring 2^32 - 1 globals and holding none.
        let wasm = b"\0asm\x01\x00\x00\x00\x06\x05\xff\xff\xff\xff\x0f";
        assert!(scan(wasm).is_err());
    }

    #[test]
    fn scan_rejects_garbage() {
        assert!(scan(b"\0asm\x01\0\0\0\x0a\xff").is_err());
    }
}
