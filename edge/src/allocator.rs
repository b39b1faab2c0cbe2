//! Keeps the daemon's memory from creeping under glibc's allocator defaults.
//!
//! glibc serves a large block (128 KiB and up) with a mapping of its own at first, but after
//! the first such block is freed it raises its mmap threshold and carves later ones from its
//! heaps, where a freed block's pages stay resident and the next one lands elsewhere. A fixed
//! threshold keeps every large block in its own mapping, returned to the kernel when freed.
//! Two arenas instead of up to eight per core: the edge's threads are mostly idle, and every
//! arena keeps free memory of its own.
//!
//! It mattered most with rumqttd, whose commit-log segments (232 KiB each, replaced as they
//! filled) made the edge's RSS jump by megabytes; with the edge's own broker the difference is
//! smaller: 22.3 against 23.1 MiB after 300 s of the riders benchmark (500 TLS riders, 10
//! offers/s), `cargo bench -p flashkart-edge --bench riders` with and without
//! `ALLOCATOR=default` (docs/benchmarks.md, Riders).

/// Large blocks get their own mapping from this size on (glibc's initial default, kept fixed).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Malloc arenas for the whole process.
pub const ARENAS: usize = 2;

/// Applies the settings above. Call it first thing in `main`, before any thread starts (glibc
/// reads arena settings when a thread first allocates). Returns whether glibc accepted them;
/// elsewhere (musl, other systems) it does nothing and returns false.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        let arenas = mallopt(libc::M_ARENA_MAX, ARENAS);
        threshold && arenas
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mallopt(parameter: libc::c_int, value: usize) -> bool {
    let Ok(value) = libc::c_int::try_from(value) else {
        return false;
    };
    // SAFETY: mallopt only changes allocator parameters: no pointers, callable at any time.
    unsafe { libc::mallopt(parameter, value) == 1 }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::tune());
    }
}
