//! Process setup that makes encodes repeatable.
//!
//! libx264 (Debian's core 164, and so the layer built from the same source) reads heap memory it
//! has not written: the x264 command-line tool alone gives different bytes for the same raw input
//! under `MALLOC_PERTURB_=1` than under `MALLOC_PERTURB_=0`. A fresh process gets zeroed pages
//! from the kernel, so its first encodes are repeatable; a long-lived process (the local runner,
//! the worker, a warm Lambda container) reuses freed memory, and about one segment encode in a
//! hundred came out different. A retried segment must decode to the same frames as the first
//! attempt, so every treemux process runs with glibc's `malloc.perturb` tunable at 255: glibc then
//! fills each allocation with `255 ^ 0xff = 0`, the same bytes a fresh process sees.
//!
//! Tunables are read only at process start, hence the re-exec. It costs one `exec` at start-up and
//! a memset per allocation (measured in docs/performance.md; well under 1% of an encode).

use std::ffi::OsString;

/// The environment variable glibc reads its tunables from.
pub const TUNABLES_VARIABLE: &str = "GLIBC_TUNABLES";

/// The tunable that makes every allocation start zeroed.
pub const ZEROED_HEAP_TUNABLE: &str = "glibc.malloc.perturb=255";

/// `GLIBC_TUNABLES` with the zeroed-heap tunable added, or `None` when `current` already sets the
/// perturb byte (to anything: an explicit choice is respected).
pub fn tunables_with_zeroed_heap(current: Option<&str>) -> Option<String> {
    match current {
        Some(current) if current.contains("glibc.malloc.perturb=") => None,
        Some(current) if !current.is_empty() => Some(format!("{current}:{ZEROED_HEAP_TUNABLE}")),
        _ => Some(ZEROED_HEAP_TUNABLE.to_owned()),
    }
}

/// Re-executes the current program with zeroed heap allocations unless it already runs with them.
///
/// Call first thing in `main`, before any thread starts. Returns normally when nothing needs doing
/// or when the re-exec is impossible (then encodes are merely less repeatable, so the caller may
/// log the error and go on); on success it does not return.
pub fn ensure_zeroed_heap() -> std::io::Result<()> {
    let current = std::env::var(TUNABLES_VARIABLE).ok();
    let Some(tunables) = tunables_with_zeroed_heap(current.as_deref()) else {
        return Ok(());
    };
    let exe = std::env::current_exe()?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    use std::os::unix::process::CommandExt as _;
    // `exec` only returns on failure.
    Err(std::process::Command::new(exe)
        .args(args)
        .env(TUNABLES_VARIABLE, tunables)
        .exec())
}

/// Logs the outcome of [`ensure_zeroed_heap`] once the program's log output is installed: a
/// warning when the re-exec failed (the program goes on), nothing otherwise.
pub fn warn_unless_zeroed(restart: &std::io::Result<()>) {
    if let Err(error) = restart {
        tracing::warn!(%error, "could not restart with zeroed allocations; retried encodes may differ in bits");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_tunable_once_and_respects_an_explicit_choice() {
        assert_eq!(
            tunables_with_zeroed_heap(None).as_deref(),
            Some(ZEROED_HEAP_TUNABLE)
        );
        assert_eq!(
            tunables_with_zeroed_heap(Some("")).as_deref(),
            Some(ZEROED_HEAP_TUNABLE)
        );
        assert_eq!(
            tunables_with_zeroed_heap(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.perturb=255")
        );
        assert_eq!(tunables_with_zeroed_heap(Some(ZEROED_HEAP_TUNABLE)), None);
        assert_eq!(
            tunables_with_zeroed_heap(Some("glibc.malloc.perturb=0")),
            None
        );
    }
}
