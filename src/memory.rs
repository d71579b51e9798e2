//! How the process's memory is backed: transparent huge pages are turned off.
//!
//! mimalloc asks for transparent huge pages on its arenas (`MADV_HUGEPAGE`), so every first
//! touch of a 2 MiB region, and every touch again after mimalloc returned freed memory to the
//! kernel, has the kernel zero a whole 2 MiB page. Volley's heap churns (rows read ahead and
//! released, messages rendered and dropped, a cluster node's chunk campaigns started and
//! ended): on this project's benchmark a plain `volley send` spent 15 % of its CPU in the
//! kernel's `clear_page_erms`, and sends with huge pages off used 10-15 % less CPU (see
//! `benches/RESULTS.md`). `VOLLEY_TRANSPARENT_HUGE_PAGES=1` leaves them on.

/// The environment variable that leaves transparent huge pages on when set to `1`.
pub const KEEP_VAR: &str = "VOLLEY_TRANSPARENT_HUGE_PAGES";

/// What became of transparent huge pages for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// Turned off (`PR_SET_THP_DISABLE`): the kernel backs no mapping of the process with them.
    Off,
    /// Left on by the operator ([`KEEP_VAR`]).
    Kept,
    /// Could not be turned off (an old kernel, a seccomp filter, not Linux); the error.
    Unchanged(&'static str),
}

/// Turns transparent huge pages off for the whole process (mappings made before included),
/// unless [`KEEP_VAR`] is `1`.
pub fn transparent_huge_pages_off() -> HugePages {
    if std::env::var(KEEP_VAR).is_ok_and(|v| v == "1") {
        return HugePages::Kept;
    }
    disable()
}

#[cfg(target_os = "linux")]
fn disable() -> HugePages {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) takes integers only and sets a flag on this
    // process's memory map; it reads and writes no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        HugePages::Off
    } else {
        HugePages::Unchanged("prctl(PR_SET_THP_DISABLE) failed")
    }
}

#[cfg(not(target_os = "linux"))]
fn disable() -> HugePages {
    HugePages::Unchanged("not Linux")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_off_for_the_process_afterwards() {
        assert_eq!(disable(), HugePages::Off);
        // SAFETY: as above; PR_GET_THP_DISABLE returns the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1, "the kernel reports huge pages off for this process");
    }
}
