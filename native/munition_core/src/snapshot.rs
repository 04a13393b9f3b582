//! The byte surgery a snapshot (`Munition.snapshot/4`) gets after
//! `wasmtime-wizer` wrote it: its provenance section put first, and its
//! data segments merged down to a count any engine and Munition's compile
//! limits take (in each core module of a component too).
//!
//! Wizer writes one active segment per run of non-zero bytes of memory,
//! merging only runs a few bytes apart, up to 10,000 segments: an
//! interpreter's heap after a real initialisation reaches that, over the
//! default `data_segments` compile limit (10,000) once the module's own
//! segments (left as empty passive ones) are counted. `coalesce` merges the
//! segments separated by the smallest gaps, zeros filling the gaps (memory
//! there is zero: Wizer left out only zero runs), until `max` remain.

use wasmparser::{DataKind, Operator, Parser, Payload};

const CUSTOM_SECTION: u8 = 0;
const DATA_SECTION: u8 = 11;
const DATA_COUNT_SECTION: u8 = 12;

/// The name of the custom section a snapshot starts with.
pub const PROVENANCE_SECTION: &str = "munition.snapshot";

/// At most this many active data segments in a snapshot.
pub const MAX_SEGMENTS: usize = 1_000;

/// `module` with a custom section named `PROVENANCE_SECTION` holding
/// `provenance` first, right after the header, where Munition finds it
/// with a match on the first bytes (`Munition.Snapshot.mark/2`) and where a
/// custom section may stand.
pub fn with_provenance(module: &[u8], provenance: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    write_u64(&mut payload, PROVENANCE_SECTION.len() as u64);
    payload.extend_from_slice(PROVENANCE_SECTION.as_bytes());
    payload.extend_from_slice(provenance);
    let (header, sections) = module.split_at(module.len().min(8));
    let mut out = Vec::with_capacity(module.len() + payload.len() + 8);
    out.extend_from_slice(header);
    push_section(&mut out, CUSTOM_SECTION, &payload);
    out.extend_from_slice(sections);
    out
}

/// An active segment as Wizer writes it: a constant offset.
struct Active<'a> {
    memory: u32,
    offset: u64,
    is64: bool,
    data: Vec<&'a [u8]>,
    len: u64,
}

impl Active<'_> {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// `module` with at most `max` active data segments, the nearest merged
/// first, and without its empty passive segments when no code names a
/// segment; unchanged when there is nothing to do, or when its data section is not
/// as Wizer writes it (passive segments first, then active ones at
/// constant, ordered, disjoint offsets). `Err` for bytes that do not parse.
pub fn coalesce(module: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut passive: Vec<&[u8]> = Vec::new();
    let mut active: Vec<Active> = Vec::new();
    // Whether any code names a segment by its index (`memory.init`,
    // `data.drop`): if none does, the empty passive segments Wizer left in
    // place of the module's own active ones (applied, then dropped, at
    // instantiation) can go, as nothing can tell them from absent ones.
    let mut indexed = false;
    for payload in Parser::new(0).parse_all(module) {
        let reader = match payload.map_err(|e| e.to_string())? {
            Payload::DataSection(reader) => reader,
            Payload::CodeSectionEntry(body) if !indexed => {
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    if let Operator::MemoryInit { .. } | Operator::DataDrop { .. } =
                        ops.read().map_err(|e| e.to_string())?
                    {
                        indexed = true;
                        break;
                    }
                }
                continue;
            }
            _ => continue,
        };
        for data in reader {
            let data = data.map_err(|e| e.to_string())?;
            match data.kind {
                DataKind::Passive if active.is_empty() => passive.push(data.data),
                DataKind::Passive => return Ok(module.to_vec()),
                DataKind::Active {
                    memory_index,
                    offset_expr,
                } => {
                    let mut ops = offset_expr.get_operators_reader();
                    let (offset, is64) = match ops.read().map_err(|e| e.to_string())? {
                        Operator::I32Const { value } => (u64::from(value as u32), false),
                        Operator::I64Const { value } => (value as u64, true),
                        _ => return Ok(module.to_vec()),
                    };
                    let segment = Active {
                        memory: memory_index,
                        offset,
                        is64,
                        data: vec![data.data],
                        len: data.data.len() as u64,
                    };
                    if let Some(last) = active.last() {
                        if (last.memory, last.end()) > (segment.memory, segment.offset) {
                            return Ok(module.to_vec());
                        }
                    }
                    active.push(segment);
                }
            }
        }
    }
    let prune = !indexed && passive.iter().any(|bytes| bytes.is_empty());
    if active.len() <= max && !prune {
        return Ok(module.to_vec());
    }
    if prune {
        passive.retain(|bytes| !bytes.is_empty());
    }

    // Merge across the smallest gaps between neighbours of one memory.
    let mut gaps: Vec<(u64, usize)> = active
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0].memory == pair[1].memory)
        .map(|(i, pair)| (pair[1].offset - pair[0].end(), i))
        .collect();
    gaps.sort_unstable();
    let mut merge_next = vec![false; active.len()];
    for (_, i) in gaps.iter().take(active.len().saturating_sub(max)) {
        merge_next[*i] = true;
    }
    let widest = gaps.iter().map(|(gap, _)| *gap).max().unwrap_or(0);
    let zeros = vec![0u8; usize::try_from(widest).map_err(|e| e.to_string())?];
    let mut merged: Vec<Active> = Vec::new();
    let mut joining = false;
    for (i, segment) in active.into_iter().enumerate() {
        match merged.last_mut() {
            Some(last) if joining => {
                let gap = (segment.offset - last.end()) as usize;
                last.data.push(&zeros[..gap]);
                last.data.extend(segment.data);
                last.len = segment.offset + segment.len - last.offset;
            }
            _ => merged.push(segment),
        }
        joining = merge_next[i];
    }

    let mut data = Vec::new();
    write_u64(&mut data, (passive.len() + merged.len()) as u64);
    for bytes in &passive {
        data.push(0x01);
        write_u64(&mut data, bytes.len() as u64);
        data.extend_from_slice(bytes);
    }
    for segment in &merged {
        data.push(0x02);
        write_u64(&mut data, u64::from(segment.memory));
        if segment.is64 {
            data.push(0x42);
            write_i64(&mut data, segment.offset as i64);
        } else {
            data.push(0x41);
            write_i64(&mut data, i64::from(segment.offset as u32 as i32));
        }
        data.push(0x0b);
        write_u64(&mut data, segment.len);
        for part in &segment.data {
            data.extend_from_slice(part);
        }
    }

    let mut out = module[..8.min(module.len())].to_vec();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| e.to_string())?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        match id {
            DATA_SECTION => push_section(&mut out, id, &data),
            DATA_COUNT_SECTION => {
                let mut count = Vec::new();
                write_u64(&mut count, (passive.len() + merged.len()) as u64);
                push_section(&mut out, id, &count);
            }
            _ => push_section(&mut out, id, &module[range]),
        }
    }
    Ok(out)
}

/// The section of a component that holds a core module.
const COMPONENT_CORE_MODULE_SECTION: u8 = 1;

/// `component` with each core module at its top level `coalesce`d to `max`
/// active segments: Wizer writes a component's modules as it writes a
/// module, up to 10,000 segments each (20,000 for the JavaScript plugin's
/// two, over the `data_segments` limit). Modules nested in components are
/// left as they are (Wizer snapshots none: it refuses nested components
/// with modules).
pub fn coalesce_component(component: &[u8], max: usize) -> Result<Vec<u8>, String> {
    if component.len() < 8 {
        return Err("not a component: no header".into());
    }
    let mut out = Vec::with_capacity(component.len());
    out.extend_from_slice(&component[..8]);
    let mut rest = &component[8..];
    while let Some((&id, after)) = rest.split_first() {
        let (size, after) = read_u32(after).ok_or("a section's size is not a LEB128 u32")?;
        let payload = after
            .get(..size as usize)
            .ok_or("a section runs past the end of the component")?;
        if id == COMPONENT_CORE_MODULE_SECTION {
            push_section(&mut out, id, &coalesce(payload, max)?);
        } else {
            push_section(&mut out, id, payload);
        }
        rest = &after[size as usize..];
    }
    Ok(out)
}

fn read_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(5) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, &bytes[i + 1..]));
        }
    }
    None
}

fn push_section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    write_u64(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn write_u64(out: &mut Vec<u8>, mut value: u64) {
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

fn write_i64(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(wasm: &[u8]) {
        wasmparser::Validator::new()
            .validate_all(wasm)
            .expect("a valid module");
    }

    /// Active segments and their bytes, as (memory, offset, data).
    fn segments(wasm: &[u8]) -> (usize, Vec<(u32, u64, Vec<u8>)>) {
        let mut passive = 0;
        let mut active = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let Payload::DataSection(reader) = payload.unwrap() {
                for data in reader {
                    let data = data.unwrap();
                    match data.kind {
                        DataKind::Passive => passive += 1,
                        DataKind::Active {
                            memory_index,
                            offset_expr,
                        } => {
                            let offset = match offset_expr.get_operators_reader().read().unwrap() {
                                Operator::I32Const { value } => value as u32 as u64,
                                Operator::I64Const { value } => value as u64,
                                other => panic!("{other:?}"),
                            };
                            active.push((memory_index, offset, data.data.to_vec()));
                        }
                    }
                }
            }
        }
        (passive, active)
    }

    /// Memory `memory` as the active segments fill it.
    fn image(active: &[(u32, u64, Vec<u8>)], memory: u32, size: usize) -> Vec<u8> {
        let mut bytes = vec![0; size];
        for (m, offset, data) in active {
            if *m == memory {
                bytes[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
            }
        }
        bytes
    }

    fn module(segments: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module (memory 2) (memory i64 1) (data "p0") (data "p1")
                 (func (export "f") (memory.init 1 (i32.const 0) (i32.const 0) (i32.const 1)))
                 {segments})"#
        ))
        .unwrap()
    }

    #[test]
    fn merges_the_nearest_segments_first_keeping_every_byte_and_the_passive_ones() {
        let wasm = module(
            r#"(data (memory 0) (i32.const 10) "a") (data (memory 0) (i32.const 13) "b")
               (data (memory 0) (i32.const 100) "c") (data (memory 0) (i32.const 70000) "d")
               (data (memory 1) (i64.const 5) "e") (data (memory 1) (i64.const 7) "f")"#,
        );
        let (_, before) = segments(&wasm);
        let out = coalesce(&wasm, 4).unwrap();
        validate(&out);
        let (passive, after) = segments(&out);
        assert_eq!(passive, 2);
        assert_eq!(after.len(), 4);
        // 10..14 and 5..8 joined (gaps 2 and 1); 100 and 70000 kept apart.
        assert_eq!(after[0], (0, 10, b"a\0\0b".to_vec()));
        assert_eq!(after[1].1, 100);
        assert_eq!(after[3], (1, 5, b"e\0f".to_vec()));
        for memory in 0..2 {
            assert_eq!(
                image(&before, memory, 131_072),
                image(&after, memory, 131_072)
            );
        }
    }

    #[test]
    fn leaves_a_module_within_the_count_or_not_as_wizer_writes_it_unchanged() {
        let wasm =
            module(r#"(data (memory 0) (i32.const 10) "a") (data (memory 0) (i32.const 13) "b")"#);
        assert_eq!(coalesce(&wasm, 2).unwrap(), wasm);
        let unordered =
            module(r#"(data (memory 0) (i32.const 13) "b") (data (memory 0) (i32.const 10) "a")"#);
        assert_eq!(coalesce(&unordered, 1).unwrap(), unordered);
        assert!(coalesce(b"\0asm\x01\0\0\0\x0b\x05", 1).is_err());
    }

    #[test]
    fn updates_the_data_count() {
        let wasm = module(
            r#"(data (memory 0) (i32.const 1) "a") (data (memory 0) (i32.const 3) "b") (data (memory 0) (i32.const 5) "c")"#,
        );
        let out = coalesce(&wasm, 1).unwrap();
        validate(&out);
        let (passive, after) = segments(&out);
        assert_eq!((passive, after.len()), (2, 1));
        assert_eq!(after[0], (0, 1, b"a\0b\0c".to_vec()));
    }

    #[test]
    fn drops_empty_passive_segments_only_when_no_code_names_a_segment() {
        let segments_of = |code: &str| {
            let wasm = wat::parse_str(format!(
                r#"(module (memory 1) (data "") (data "") (data "kept")
                     (data (i32.const 1) "a") (func (export "f") {code}))"#
            ))
            .unwrap();
            let out = coalesce(&wasm, 10).unwrap();
            validate(&out);
            segments(&out)
        };
        assert_eq!(segments_of("").0, 1);
        assert_eq!(segments_of("(data.drop 2)").0, 3);
        assert_eq!(segments_of("").1, vec![(0, 1, b"a".to_vec())]);
    }

    #[test]
    fn merges_each_core_module_of_a_component() {
        let component = wat::parse_str(
            r#"(component
                 (core module $a (memory 1)
                   (data (i32.const 1) "a") (data (i32.const 3) "b") (data (i32.const 5) "c"))
                 (core module $b (memory 1) (data (i32.const 9) "x") (data (i32.const 11) "y"))
                 (core instance (instantiate $a))
                 (core instance (instantiate $b)))"#,
        )
        .unwrap();
        let out = coalesce_component(&component, 1).unwrap();
        // The core modules, by the component's sections (wasmparser is
        // built here without the component model).
        let mut modules = Vec::new();
        let mut rest = &out[8..];
        while let Some((&id, after)) = rest.split_first() {
            let (size, after) = read_u32(after).unwrap();
            let payload = &after[..size as usize];
            if id == COMPONENT_CORE_MODULE_SECTION {
                validate(payload);
                modules.push(segments(payload).1);
            }
            rest = &after[size as usize..];
        }
        assert_eq!(
            modules,
            vec![
                vec![(0, 1, b"a\0b\0c".to_vec())],
                vec![(0, 9, b"x\0y".to_vec())]
            ]
        );
        assert!(coalesce_component(&component[..20], 1).is_err());
    }

    #[test]
    fn provenance_comes_first_and_the_module_stays_valid() {
        let wasm = module("");
        let out = with_provenance(&wasm, b"1\nabc\ninit");
        validate(&out);
        let mut expected = b"\0asm\x01\0\0\0\0\x1c\x11munition.snapshot1\nabc\ninit".to_vec();
        expected.extend_from_slice(&wasm[8..]);
        assert_eq!(out, expected);
    }
}
