//! A module's internals made reachable by name, for an engine that reaches
//! an instance's items only through its exports (Wasmi).
//!
//! Two things need it. A start function: Wasmi runs one inside
//! instantiation, as one call that cannot be suspended, so a runaway start
//! function would hold its thread until its fuel ran out, past any
//! deadline; so the start section is taken out and the same function
//! exported, and Munition calls it right after instantiation, resumably, in
//! slices, as it calls any export. And a dump: it holds every memory and
//! every global, as Wasmtime's coredump gives them, including those the
//! module keeps to itself (a stack pointer); so each memory and each global
//! is exported too.
//!
//! The added exports have reserved names, `Reserved`: a prefix that starts
//! with a NUL and that no export of the module starts with (a module may
//! export any UTF-8 name, NULs included, so the prefix grows by one NUL
//! until none does). Whoever lists the module's exports or looks one up
//! for a caller leaves out the names with that prefix, so a caller can
//! neither see nor call them. Indices of functions, memories and globals,
//! and so names and offsets, do not change.
//!
//! Plain byte surgery on the module's sections, so it lives here, where
//! `cargo test` checks it.

use wasmparser::{Parser, Payload};

/// The prefix tried first; a module that already exports a name starting
/// with it gets one more NUL in front, until no export does.
const BASE_PREFIX: &str = "\u{0}munition:";

const EXPORT_SECTION: u8 = 7;
const START_SECTION: u8 = 8;
const FUNC_EXTERN: u8 = 0;
const MEMORY_EXTERN: u8 = 2;
const GLOBAL_EXTERN: u8 = 3;

/// The reserved export names of one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    prefix: String,
}

impl Reserved {
    /// Names with a prefix that none of `exports` starts with.
    pub fn avoiding<'a>(exports: impl IntoIterator<Item = &'a str> + Clone) -> Reserved {
        let mut prefix = BASE_PREFIX.to_string();
        while exports
            .clone()
            .into_iter()
            .any(|name| name.starts_with(&prefix))
        {
            prefix.insert(0, '\u{0}');
        }
        Reserved { prefix }
    }

    /// Whether `name` is one of these reserved names (and so not the
    /// module's own export).
    pub fn is_reserved(&self, name: &str) -> bool {
        name.starts_with(&self.prefix)
    }

    /// The start function's name.
    pub fn start(&self) -> String {
        format!("{}start", self.prefix)
    }

    /// The name of memory `index`.
    pub fn memory(&self, index: u32) -> String {
        format!("{}memory:{index}", self.prefix)
    }

    /// The name of global `index`.
    pub fn global(&self, index: u32) -> String {
        format!("{}global:{index}", self.prefix)
    }
}

/// `wasm` rewritten for an engine that reaches items by export only.
pub struct Exposed {
    pub wasm: Vec<u8>,
    pub names: Reserved,
    /// The module had a start section, now exported as `names.start()`.
    pub start: bool,
}

fn read_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut result = 0u32;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        result |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(result);
        }
        shift += 7;
        if shift >= 35 {
            return None;
        }
    }
}

fn write_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn push_section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    write_u32(out, payload.len() as u32);
    out.extend_from_slice(payload);
}

fn push_entry(out: &mut Vec<u8>, name: &str, kind: u8, index: u32) {
    write_u32(out, name.len() as u32);
    out.extend_from_slice(name.as_bytes());
    out.push(kind);
    write_u32(out, index);
}

/// The names the module exports; `None` when its sections cannot be read.
fn export_names(wasm: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(reader) = payload.ok()? {
            for export in reader {
                names.push(export.ok()?.name.to_string());
            }
        }
    }
    Some(names)
}

/// `wasm` with its start section removed and the start function, each of
/// its `memories` memories and each of its `globals` globals (counted in
/// their index spaces, imports included) exported under reserved names.
/// `None` when its sections cannot be read (the validation of the original
/// bytes says why).
pub fn expose(wasm: &[u8], memories: u32, globals: u32) -> Option<Exposed> {
    let header = wasm.get(..8)?;
    let mut sections = Vec::new();
    let mut pos = 8;
    while pos < wasm.len() {
        let id = wasm[pos];
        pos += 1;
        let size = read_u32(wasm, &mut pos)? as usize;
        let end = pos.checked_add(size).filter(|end| *end <= wasm.len())?;
        sections.push((id, pos..end));
        pos = end;
    }
    let existing = export_names(wasm)?;
    let names = Reserved::avoiding(existing.iter().map(String::as_str));

    let mut entries = Vec::new();
    let mut added = 0u32;
    // Two start sections make the module invalid; left as it is, the
    // validation of the original bytes says so.
    if sections
        .iter()
        .filter(|(id, _)| *id == START_SECTION)
        .count()
        > 1
    {
        return None;
    }
    let start = sections.iter().find(|(id, _)| *id == START_SECTION);
    if let Some((_, range)) = start {
        let func = read_u32(wasm, &mut range.start.clone())?;
        push_entry(&mut entries, &names.start(), FUNC_EXTERN, func);
        added += 1;
    }
    for index in 0..memories {
        push_entry(&mut entries, &names.memory(index), MEMORY_EXTERN, index);
    }
    for index in 0..globals {
        push_entry(&mut entries, &names.global(index), GLOBAL_EXTERN, index);
    }
    added = added.checked_add(memories)?.checked_add(globals)?;
    let exposed = |wasm: Vec<u8>| Exposed {
        wasm,
        names: names.clone(),
        start: start.is_some(),
    };
    if added == 0 {
        return Some(exposed(wasm.to_vec()));
    }

    let has_exports = sections.iter().any(|(id, _)| *id == EXPORT_SECTION);
    // The sections that come after the export section in a module's order
    // (start, element, data count, code, data): a new one goes before the
    // first of them.
    let after_exports = |id: u8| matches!(id, 8..=12);
    let mut placed = has_exports;
    let mut out = header.to_vec();
    for (id, range) in &sections {
        if !placed && after_exports(*id) {
            let mut payload = Vec::new();
            write_u32(&mut payload, added);
            payload.extend_from_slice(&entries);
            push_section(&mut out, EXPORT_SECTION, &payload);
            placed = true;
        }
        match *id {
            EXPORT_SECTION => {
                let mut pos = range.start;
                let count = read_u32(wasm, &mut pos)?;
                let mut payload = Vec::new();
                write_u32(&mut payload, count.checked_add(added)?);
                payload.extend_from_slice(&wasm[pos..range.end]);
                payload.extend_from_slice(&entries);
                push_section(&mut out, EXPORT_SECTION, &payload);
            }
            START_SECTION => {}
            _ => push_section(&mut out, *id, &wasm[range.clone()]),
        }
    }
    if !placed {
        let mut payload = Vec::new();
        write_u32(&mut payload, added);
        payload.extend_from_slice(&entries);
        push_section(&mut out, EXPORT_SECTION, &payload);
    }
    Some(exposed(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start function and the exports of `wasm`, read back.
    fn read(wasm: &[u8]) -> (Option<u32>, Vec<(String, u32)>) {
        let mut start = None;
        let mut exports = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.unwrap() {
                Payload::StartSection { func, .. } => start = Some(func),
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.unwrap();
                        exports.push((export.name.to_string(), export.index));
                    }
                }
                _ => {}
            }
        }
        (start, exports)
    }

    fn valid(wasm: &[u8]) {
        wasmparser::Validator::new().validate_all(wasm).unwrap();
    }

    fn reserved(name: &str) -> String {
        format!("{BASE_PREFIX}{name}")
    }

    #[test]
    fn the_start_function_becomes_an_export() {
        let wasm = wat::parse_str(
            r#"(module (func $a) (func $init) (start $init) (export "a" (func $a)))"#,
        )
        .unwrap();
        let exposed = expose(&wasm, 0, 0).unwrap();
        valid(&exposed.wasm);
        assert!(exposed.start);
        let (start, exports) = read(&exposed.wasm);
        assert_eq!(start, None);
        assert_eq!(exports, vec![("a".to_string(), 0), (reserved("start"), 1)]);
    }

    #[test]
    fn two_start_sections_are_left_to_the_validation_of_the_original() {
        let wasm = wat::parse_str(r#"(module (func $init) (start $init))"#).unwrap();
        // The start section (id, size 1, function 0), then it again.
        let at = wasm
            .windows(3)
            .position(|bytes| bytes == [START_SECTION, 1, 0])
            .unwrap();
        let twice = [&wasm[..at + 3], &wasm[at..]].concat();
        assert!(expose(&twice, 0, 0).is_none());
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section() {
        let wasm = wat::parse_str(r#"(module (func $init) (start $init))"#).unwrap();
        let exposed = expose(&wasm, 0, 0).unwrap();
        valid(&exposed.wasm);
        let (start, exports) = read(&exposed.wasm);
        assert_eq!(start, None);
        assert_eq!(exports, vec![(reserved("start"), 0)]);
    }

    #[test]
    fn every_memory_and_global_is_exported_in_index_order() {
        let wasm = wat::parse_str(
            r#"(module (memory 1) (global $sp (mut i32) (i32.const 7))
                 (global $k i64 (i64.const 1)) (export "k" (global $k))
                 (func $f) (data (i32.const 0) "hi"))"#,
        )
        .unwrap();
        let exposed = expose(&wasm, 1, 2).unwrap();
        valid(&exposed.wasm);
        assert!(!exposed.start);
        assert_eq!(
            read(&exposed.wasm).1,
            vec![
                ("k".to_string(), 1),
                (reserved("memory:0"), 0),
                (reserved("global:0"), 0),
                (reserved("global:1"), 1),
            ]
        );
        let no_exports =
            wat::parse_str(r#"(module (memory 1) (func $f) (data (i32.const 0) "hi"))"#).unwrap();
        let exposed = expose(&no_exports, 1, 0).unwrap();
        valid(&exposed.wasm);
        assert_eq!(read(&exposed.wasm).1, vec![(reserved("memory:0"), 0)]);
    }

    #[test]
    fn a_name_the_module_exports_is_never_taken() {
        let wasm = wat::parse_str(
            "(module (global $g i32 (i32.const 1)) (func $f)
               (export \"\\00munition:global:0\" (func $f))
               (export \"\\00munition:start\" (global $g)))",
        )
        .unwrap();
        let exposed = expose(&wasm, 0, 1).unwrap();
        valid(&exposed.wasm);
        let names = &exposed.names;
        assert_eq!(names.global(0), "\u{0}\u{0}munition:global:0");
        assert!(!names.is_reserved("\u{0}munition:global:0"));
        assert!(names.is_reserved(&names.global(0)));
        let exports = read(&exposed.wasm).1;
        assert_eq!(exports[2], (names.global(0), 0));
        assert_eq!(Reserved::avoiding(["a", "b"]).start(), reserved("start"));
    }

    #[test]
    fn nothing_to_move_is_the_same_bytes_and_unreadable_is_none() {
        let wasm = wat::parse_str(r#"(module (func $a))"#).unwrap();
        let exposed = expose(&wasm, 0, 0).unwrap();
        assert_eq!(exposed.wasm, wasm);
        assert!(!exposed.start);
        assert!(expose(b"\0asm\x01\0\0\0\x08\xff", 0, 0).is_none());
        assert!(expose(b"\0as", 0, 0).is_none());
    }
}
