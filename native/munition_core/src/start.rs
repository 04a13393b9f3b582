//! A module's start function, made callable like an export.
//!
//! Wasmi runs a start function inside instantiation, as one call that
//! cannot be suspended: a runaway start function would hold its thread
//! until its fuel ran out, past any deadline. So before compiling, the
//! start section is taken out and the same function exported under
//! `START_EXPORT`, a name no guest can ask for (it starts with a NUL);
//! Munition calls it right after instantiation, resumably, in slices, as
//! it calls any export. Function indices, and so names and offsets, do not
//! change.
//!
//! Plain byte surgery on the module's sections, so it lives here, where
//! `cargo test` checks it.

/// The export under which the start function is called.
pub const START_EXPORT: &str = "\u{0}munition:start";

const EXPORT_SECTION: u8 = 7;
const START_SECTION: u8 = 8;
const FUNC_EXTERN: u8 = 0;

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

/// `wasm` with its start section removed and the start function exported
/// as `START_EXPORT`; `None` when it has no start section or its sections
/// cannot be read (the validation of the original bytes says why).
pub fn exported_start(wasm: &[u8]) -> Option<Vec<u8>> {
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
    let (_, start) = sections.iter().find(|(id, _)| *id == START_SECTION)?;
    let func = read_u32(wasm, &mut start.start.clone())?;
    let mut entry = Vec::new();
    write_u32(&mut entry, START_EXPORT.len() as u32);
    entry.extend_from_slice(START_EXPORT.as_bytes());
    entry.push(FUNC_EXTERN);
    write_u32(&mut entry, func);

    let has_exports = sections.iter().any(|(id, _)| *id == EXPORT_SECTION);
    let mut out = header.to_vec();
    for (id, range) in &sections {
        match *id {
            EXPORT_SECTION => {
                let mut pos = range.start;
                let count = read_u32(wasm, &mut pos)?;
                let mut payload = Vec::new();
                write_u32(&mut payload, count.checked_add(1)?);
                payload.extend_from_slice(&wasm[pos..range.end]);
                payload.extend_from_slice(&entry);
                push_section(&mut out, EXPORT_SECTION, &payload);
            }
            // The export section comes just before the start section in a
            // module's order: a new one takes the start section's place.
            START_SECTION if !has_exports => {
                let mut payload = Vec::new();
                write_u32(&mut payload, 1);
                payload.extend_from_slice(&entry);
                push_section(&mut out, EXPORT_SECTION, &payload);
            }
            START_SECTION => {}
            _ => push_section(&mut out, *id, &wasm[range.clone()]),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{Parser, Payload};

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

    #[test]
    fn the_start_function_becomes_an_export() {
        let wasm = wat::parse_str(
            r#"(module (func $a) (func $init) (start $init) (export "a" (func $a)))"#,
        )
        .unwrap();
        let moved = exported_start(&wasm).unwrap();
        let (start, exports) = read(&moved);
        assert_eq!(start, None);
        assert_eq!(
            exports,
            vec![("a".to_string(), 0), (START_EXPORT.to_string(), 1)]
        );
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section() {
        let wasm = wat::parse_str(r#"(module (func $init) (start $init))"#).unwrap();
        let (start, exports) = read(&exported_start(&wasm).unwrap());
        assert_eq!(start, None);
        assert_eq!(exports, vec![(START_EXPORT.to_string(), 0)]);
    }

    #[test]
    fn nothing_to_move_or_unreadable_is_none() {
        let wasm = wat::parse_str(r#"(module (func $a))"#).unwrap();
        assert_eq!(exported_start(&wasm), None);
        assert_eq!(exported_start(b"\0asm\x01\0\0\0\x08\xff"), None);
        assert_eq!(exported_start(b"\0as"), None);
    }
}
