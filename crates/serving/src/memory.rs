//! Memory a service gives back once load stops. glibc's allocator keeps one arena per
//! thread that ever allocated (up to 8 per core) and returns freed pages to the system only
//! from the top of each heap, so a burst of calls leaves a busy process holding hundreds of
//! MiB it no longer uses. Two arenas bound the fragmentation, and a periodic trim returns
//! free pages of every arena.
use std::sync::Once;
use std::time::Duration;

/// How often freed memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Limits the allocator's arenas; call before any thread starts.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Starts (once per process) the task that returns freed memory to the system.
pub fn spawn_trimmer() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        tokio::spawn(async {
            let mut every = tokio::time::interval(TRIM_EVERY);
            loop {
                every.tick().await;
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        });
    });
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
