//! Keeps the daemon's memory from creeping under glibc's allocator defaults.
//!
//! rumqttd gives every subscription filter a commit log whose segments each reserve room for
//! 1024 entries up front (about 232 KiB), of which a rider's few messages touch a page or two,
//! and it replaces segments as they fill: a rider's every few minutes, the location filter's
//! a few times a second. glibc serves such blocks with their own mapping at first, but after
//! the first one is freed it raises its mmap threshold and carves them from its heaps
//! instead, where a freed segment's pages stay resident and the next one lands elsewhere: the
//! edge's RSS jumped by megabytes whenever the riders' logs rolled over. A fixed threshold
//! keeps every large block in its own mapping, returned to the kernel when freed, so what stays
//! resident is what is in use. Two arenas instead of up to eight per core: the edge's threads are mostly idle,
//! and every arena keeps free memory of its own.
//!
//! Measured by `cargo bench -p flashkart-edge --bench riders` (docs/benchmarks.md, Riders).

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
