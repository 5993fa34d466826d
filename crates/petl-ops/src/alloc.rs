//! Process-wide allocator settings for training-sized tensors.

/// Tells glibc's allocator to reuse freed tensor buffers instead of returning them to the OS.
///
/// A training step allocates and frees hundreds of activation-sized buffers (MBs each). By
/// default glibc serves each from a fresh `mmap` and unmaps it on free, so every step
/// page-faults and zero-fills all of them again: a quarter of a MiniLM LoRA step's CPU time
/// went to the kernel's `clear_page`. Raising the mmap threshold to its maximum (32 MiB) and the
/// trim threshold keeps those buffers in the heap for reuse. Call once at start-up, before
/// threads allocate; a no-op on other platforms.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; it is called with valid
    // parameter numbers and values and does not touch any allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
