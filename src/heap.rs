//! The agent's heap: one malloc arena, and free pages handed back to the kernel after a
//! burst of work and now and then.

use std::time::Duration;

use tokio::sync::Notify;

static SOON: Notify = Notify::const_new();

/// How long the agent waits after a burst of work before it trims, so 100 container
/// starts cost one pass over the heap, not 100.
const SETTLE: Duration = Duration::from_secs(1);

/// glibc gives every thread that allocates an arena of its own (up to 8 per core) and an
/// arena keeps its peak; tokio's blocking threads made them ~12 MiB of the agent's RSS
/// at 100 pods (BENCHMARKS.md row 4a). One is enough: the async work runs on one thread,
/// and the blocking threads mostly wait on the kernel, not on malloc.
/// Call before any thread exists.
pub fn one_arena() {
    // SAFETY: only sets a malloc parameter.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Work that freed a lot just ended (a container started, a pod went away): trim soon.
pub fn release_soon() {
    SOON.notify_one();
}

/// Hands the heap's free pages back to the kernel after each burst and every 10 s. A
/// burst of pod changes (manifests parsed, specs built, workers started) leaves freed
/// memory between live allocations, which `free` never returns; at 100 pods that was
/// ~2 MiB of the agent's RSS (BENCHMARKS.md row 4a). A pass over a heap this size takes
/// well under a millisecond.
pub async fn trim_loop() {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = SOON.notified() => tokio::time::sleep(SETTLE).await,
        }
        // SAFETY: malloc_trim only releases free memory; any thread may call it.
        unsafe { libc::malloc_trim(0) };
    }
}
