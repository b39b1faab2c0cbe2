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

/// How often free memory inside the arenas is handed back to the kernel.
pub const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies the settings above and starts a thread that trims the arenas every
/// [`TRIM_INTERVAL`]. Call it first thing in `main`, before any other thread starts (glibc
/// reads arena settings when a thread first allocates). Returns whether glibc accepted them;
/// elsewhere (musl, other systems) it does nothing and returns false.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        let arenas = mallopt(libc::M_ARENA_MAX, ARENAS);
        let trimming = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_INTERVAL);
                    trim();
                }
            })
            .is_ok();
        threshold && arenas && trimming
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives free pages inside the arenas back to the kernel. glibc returns memory on its own only
/// from the top of a heap; pages freed in the middle (TLS records and messages freed out of
/// order) stay resident. A heap profile of the riders benchmark at 10 offers/s showed the
/// edge's live heap growing 3.3 MB from 5 to 20 minutes while its RSS grew 13 MB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
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
