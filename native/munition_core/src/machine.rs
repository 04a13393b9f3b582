//! Whether the machine has more runnable threads than online CPUs, read
//! from `/proc/loadavg`, and whether the VM's normal schedulers busy-wait,
//! read from its command line (see `munition_native`'s `engine::give_way`
//! for why a dirty scheduler thread asks).

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

thread_local! {
    /// Each thread that asks keeps `/proc/loadavg` open: a `pread` at its
    /// start costs about 1 µs, a sixth of an open, a read and a close.
    /// `Some(None)` where it cannot be opened (not Linux).
    static LOADAVG: RefCell<Option<Option<File>>> = const { RefCell::new(None) };
}

/// Whether more threads are runnable on the machine (this one among them)
/// than it has online CPUs: some thread waits for a core. The whole
/// machine's count, not a container's. `false` when it cannot be read.
pub fn oversubscribed() -> bool {
    runnable_now().is_some_and(|threads| threads > online_cpus())
}

/// The threads runnable on the machine now, read again at each call.
fn runnable_now() -> Option<usize> {
    LOADAVG.with(|cell| {
        let mut cell = cell.borrow_mut();
        let file = cell
            .get_or_insert_with(|| File::open("/proc/loadavg").ok())
            .as_ref()?;
        let mut text = [0u8; 128];
        let read = file.read_at(&mut text, 0).ok()?;
        runnable(&text[..read])
    })
}

/// Whether the VM's normal schedulers busy-wait before they sleep: unless
/// it was started with `+sbwt none` (which `erlexec` hands the emulator as
/// `-sbwt none`, from `erl` flags, `ERL_FLAGS` or a release's `vm.args`
/// alike). Read once, from `/proc/self/cmdline`; `true` when it cannot be
/// read (the BEAM's default).
pub fn schedulers_busy_wait() -> bool {
    static BUSY_WAIT: OnceLock<bool> = OnceLock::new();
    *BUSY_WAIT.get_or_init(|| {
        std::fs::read("/proc/self/cmdline").map_or(true, |cmdline| busy_waits(&cmdline))
    })
}

/// Whether a NUL-separated command line leaves the normal schedulers'
/// busy wait on: the last `-sbwt` wins, as it does in the emulator.
fn busy_waits(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|&byte| byte == 0);
    let mut busy = true;
    while let Some(arg) = args.next() {
        if arg == b"-sbwt" {
            busy = args.next() != Some(b"none".as_slice());
        }
    }
    busy
}

/// The number of runnable threads in `/proc/loadavg`'s text: its fourth
/// field, `runnable/total`.
fn runnable(loadavg: &[u8]) -> Option<usize> {
    let field = loadavg.split(u8::is_ascii_whitespace).nth(3)?;
    let count = field.split(|&byte| byte == b'/').next()?;
    std::str::from_utf8(count).ok()?.parse().ok()
}

fn online_cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| {
        // SAFETY: sysconf reads a system constant.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        usize::try_from(online).ok().filter(|&n| n > 0).unwrap_or(1)
    })
}

#[cfg(test)]
mod tests {
    use super::{busy_waits, oversubscribed, runnable, runnable_now};

    #[test]
    fn reads_the_runnable_threads_of_loadavg() {
        assert_eq!(runnable(b"1.48 1.39 1.48 3/109 7087\n"), Some(3));
        assert_eq!(runnable(b"0.00 0.01 0.05 12/1040 1\n"), Some(12));
    }

    #[test]
    fn malformed_text_is_no_count() {
        assert_eq!(runnable(b""), None);
        assert_eq!(runnable(b"1.48 1.39 1.48"), None);
        assert_eq!(runnable(b"1.48 1.39 1.48 x/109 7087"), None);
    }

    #[test]
    fn the_schedulers_busy_wait_unless_told_none() {
        assert!(busy_waits(b"beam.smp\0--\0-root\0/usr/lib/erlang\0"));
        assert!(!busy_waits(b"beam.smp\0-sbwt\0none\0--\0-root\0/usr\0"));
        assert!(busy_waits(b"beam.smp\0-sbwt\0short\0--\0"));
        // The last flag wins; a `none` that is not the flag's value is not it.
        assert!(busy_waits(b"beam.smp\0-sbwt\0none\0-sbwt\0long\0"));
        assert!(!busy_waits(b"beam.smp\0-sbwt\0long\0-sbwt\0none\0"));
        assert!(busy_waits(b"beam.smp\0-sbwtdcpu\0none\0none\0"));
    }

    #[test]
    fn reads_the_machine_again_at_each_call() {
        if !std::path::Path::new("/proc/loadavg").exists() {
            assert!(!oversubscribed());
            return;
        }
        // The kept handle is read from its start each time; this thread,
        // running, is always counted.
        for _ in 0..3 {
            assert!(runnable_now().is_some_and(|threads| threads >= 1));
        }
    }
}
