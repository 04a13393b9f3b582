//! The replay log of a call (`Munition.replay/3`): what came from outside
//! the guest at each of its host calls, in order, so that a replay can
//! answer every host call from it instead of calling anything.
//!
//! A host call is recorded whole, whatever the function: its import, the
//! fuel left when it began and when it ended (a host function pays fuel for
//! the bytes it moves), the values it returned, the bytes it wrote into the
//! guest's memory, what it added to the call's log and output, and how it
//! ended (returned, failed the call, exited, ran out of fuel). A replay
//! applies the same, so it needs no host function, no WASI state, no file
//! and no Elixir process to reach the same end.
//!
//! The format (integers little-endian), repeated once per host call:
//!
//! ```text
//! u32 import index          u64 fuel before       u64 fuel after
//! u8  how it ended: 0 returned, 1 failed (u32 length, message), 2 out of fuel
//! u8  result count, each: u8 type (0 i32, 1 i64, 2 f32, 3 f64), u64 bits
//! u32 write count, each: u32 address, u32 length, bytes
//! u8  effects: bit 0 log lines, 1 stdout, 2 stderr, 3 exit code, 4 failure,
//!     5 timed out, 6 stdout truncated, 7 stderr truncated; then, in that
//!     order, for each bit set that has one:
//!     log: u32 count, each i32 level, u32 length, bytes; then u64 dropped
//!     stdout, stderr: u32 length, bytes
//!     exit code: u32
//!     failure: u8 reason, u8 trap (indexes in the native side's `ALL`
//!     lists), u32 length, message
//! ```

use crate::value::Value;

/// How a host call ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Ending {
    #[default]
    Returned,
    /// It failed the call; the message the guest was unwound with.
    Failed(String),
    OutOfFuel,
}

/// A failure a host call recorded on the store: reason and trap as indexes
/// into the native side's vocabulary, and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: u8,
    pub trap: u8,
    pub message: String,
}

/// One host call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub import: u32,
    pub fuel_before: u64,
    pub fuel_after: u64,
    pub ending: Ending,
    pub results: Vec<Value>,
    /// `(address, bytes)` written into memory 0.
    pub writes: Vec<(u32, Vec<u8>)>,
    pub log: Vec<(i32, Vec<u8>)>,
    pub log_dropped: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub exit_code: Option<u32>,
    pub failure: Option<Failure>,
    pub timed_out: bool,
}

const LOG: u8 = 1;
const STDOUT: u8 = 1 << 1;
const STDERR: u8 = 1 << 2;
const EXIT: u8 = 1 << 3;
const FAILURE: u8 = 1 << 4;
const TIMED_OUT: u8 = 1 << 5;
const STDOUT_TRUNCATED: u8 = 1 << 6;
const STDERR_TRUNCATED: u8 = 1 << 7;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Entry {
    /// Appends the entry to `out` in the format above.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.import.to_le_bytes());
        out.extend_from_slice(&self.fuel_before.to_le_bytes());
        out.extend_from_slice(&self.fuel_after.to_le_bytes());
        match &self.ending {
            Ending::Returned => out.push(0),
            Ending::Failed(message) => {
                out.push(1);
                put_bytes(out, message.as_bytes());
            }
            Ending::OutOfFuel => out.push(2),
        }
        out.push(self.results.len() as u8);
        for value in &self.results {
            let (tag, bits) = match *value {
                Value::I32(v) => (0, v as u32 as u64),
                Value::I64(v) => (1, v as u64),
                Value::F32(v) => (2, u64::from(v)),
                Value::F64(v) => (3, v),
                // Host functions never return these (their signatures are
                // numbers only); recorded as a zero i32 should one appear.
                Value::V128(_) | Value::Ref => (0, 0),
            };
            out.push(tag);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        out.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for (address, bytes) in &self.writes {
            out.extend_from_slice(&address.to_le_bytes());
            put_bytes(out, bytes);
        }
        let mut effects = 0;
        for (set, bit) in [
            (!self.log.is_empty() || self.log_dropped > 0, LOG),
            (!self.stdout.is_empty(), STDOUT),
            (!self.stderr.is_empty(), STDERR),
            (self.exit_code.is_some(), EXIT),
            (self.failure.is_some(), FAILURE),
            (self.timed_out, TIMED_OUT),
            (self.stdout_truncated, STDOUT_TRUNCATED),
            (self.stderr_truncated, STDERR_TRUNCATED),
        ] {
            if set {
                effects |= bit;
            }
        }
        out.push(effects);
        if effects & LOG != 0 {
            out.extend_from_slice(&(self.log.len() as u32).to_le_bytes());
            for (level, line) in &self.log {
                out.extend_from_slice(&level.to_le_bytes());
                put_bytes(out, line);
            }
            out.extend_from_slice(&self.log_dropped.to_le_bytes());
        }
        if effects & STDOUT != 0 {
            put_bytes(out, &self.stdout);
        }
        if effects & STDERR != 0 {
            put_bytes(out, &self.stderr);
        }
        if let Some(code) = self.exit_code {
            out.extend_from_slice(&code.to_le_bytes());
        }
        if let Some(failure) = &self.failure {
            out.push(failure.reason);
            out.push(failure.trap);
            put_bytes(out, failure.message.as_bytes());
        }
    }
}

/// Reads entries from a log, one at a time, never panicking on bytes that
/// do not follow the format (a log comes from a file).
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// How many bytes the entries read so far took.
    pub fn position(&self) -> usize {
        self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the log ends at byte {} inside an entry",
                self.bytes.len()
            ));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    fn text(&mut self) -> Result<String, String> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }

    /// The next entry, `None` at the end of the log, or why the bytes are
    /// not a log.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, String> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        let mut entry = Entry {
            import: self.u32()?,
            fuel_before: self.u64()?,
            fuel_after: self.u64()?,
            ..Entry::default()
        };
        entry.ending = match self.u8()? {
            0 => Ending::Returned,
            1 => Ending::Failed(self.text()?),
            2 => Ending::OutOfFuel,
            other => return Err(format!("unknown ending {other}")),
        };
        for _ in 0..self.u8()? {
            let tag = self.u8()?;
            let bits = self.u64()?;
            entry.results.push(match tag {
                0 => Value::I32(bits as u32 as i32),
                1 => Value::I64(bits as i64),
                2 => Value::F32(bits as u32),
                3 => Value::F64(bits),
                other => return Err(format!("unknown value type {other}")),
            });
        }
        for _ in 0..self.u32()? {
            let address = self.u32()?;
            entry.writes.push((address, self.bytes()?));
        }
        let effects = self.u8()?;
        if effects & LOG != 0 {
            for _ in 0..self.u32()? {
                let level = self.u32()? as i32;
                entry.log.push((level, self.bytes()?));
            }
            entry.log_dropped = self.u64()?;
        }
        if effects & STDOUT != 0 {
            entry.stdout = self.bytes()?;
        }
        if effects & STDERR != 0 {
            entry.stderr = self.bytes()?;
        }
        if effects & EXIT != 0 {
            entry.exit_code = Some(self.u32()?);
        }
        if effects & FAILURE != 0 {
            entry.failure = Some(Failure {
                reason: self.u8()?,
                trap: self.u8()?,
                message: self.text()?,
            });
        }
        entry.timed_out = effects & TIMED_OUT != 0;
        entry.stdout_truncated = effects & STDOUT_TRUNCATED != 0;
        entry.stderr_truncated = effects & STDERR_TRUNCATED != 0;
        Ok(Some(entry))
    }
}

/// Every entry of `log`, or why it is not a log.
pub fn decode(log: &[u8]) -> Result<Vec<Entry>, String> {
    let mut reader = Reader::new(log);
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Entry {
        Entry {
            import: 7,
            fuel_before: 1_000,
            fuel_after: 990,
            ending: Ending::Failed("proc_exit(3)".into()),
            results: vec![Value::I32(-1), Value::I64(-2), Value::F32(3), Value::F64(4)],
            writes: vec![(16, vec![1, 2, 3]), (0, vec![])],
            log: vec![(2, b"line".to_vec())],
            log_dropped: 5,
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            stdout_truncated: true,
            stderr_truncated: false,
            exit_code: Some(3),
            failure: Some(Failure {
                reason: 1,
                trap: 9,
                message: "why".into(),
            }),
            timed_out: true,
        }
    }

    #[test]
    fn entries_read_back_as_written() {
        let entries = vec![
            full(),
            Entry::default(),
            Entry {
                ending: Ending::OutOfFuel,
                ..Entry::default()
            },
        ];
        let mut log = Vec::new();
        for entry in &entries {
            entry.encode(&mut log);
        }
        assert_eq!(decode(&log), Ok(entries));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let mut log = Vec::new();
        full().encode(&mut log);
        for len in 1..log.len() {
            assert!(
                decode(&log[..len]).is_err(),
                "a log cut at {len} read as whole"
            );
        }
    }
}
