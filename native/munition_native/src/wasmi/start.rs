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
