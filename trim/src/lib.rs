//! farm-trim: gives the memory allocator's free pages back to the system.
//!
//! glibc's malloc keeps the pages of memory a program frees inside its arenas, to reuse them.
//! In a long-running multi-threaded process (the controller and the gateway) that memory is
//! freed in many places at different times, and the arenas hold on to more and more free
//! pages: resident memory creeps up over hours while the memory the program holds stays flat.
//! `malloc_trim` hands every whole free page of every arena back to the system. It walks the
//! arenas' free lists under their locks, which takes up to milliseconds on a large heap, so
//! callers run it off their async workers; it is safe to call at any time from any thread.
//!
//! This is the workspace's only `unsafe` code: one call into the C library, which takes a
//! plain integer and touches nothing of ours. On other C libraries it does nothing.

/// Returns the allocator's whole free pages to the system. Returns whether glibc gave any
/// memory back (always false where the C library is not glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back_free_memory() -> bool {
    // SAFETY: malloc_trim takes the padding to keep at the top of the main heap (0: none),
    // reads and changes only the allocator's own state under its own locks, and is
    // documented as safe to call from any thread at any time.
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// Returns the allocator's whole free pages to the system. Returns whether glibc gave any
/// memory back (always false where the C library is not glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_to_the_system() {
        // Many blocks below the mmap threshold, each followed by a small one that stays: the
        // freed blocks cannot merge into the top of the heap (which free gives back itself),
        // so their pages stay in the arena until it is trimmed.
        let mut kept = Vec::new();
        let mut freed = Vec::new();
        for i in 0..2048u32 {
            freed.push(vec![i as u8; 32 * 1024]);
            kept.push(vec![i as u8; 64]);
        }
        drop(freed);
        let gave_back = give_back_free_memory();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(gave_back, "64 MiB freed, and nothing given back");
        }
        assert_eq!(kept.len(), 2048);
    }
}
