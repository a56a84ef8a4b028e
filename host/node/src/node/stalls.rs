//! A watch on the node's async runtime: a task that should wake every
//! [`TICK`] says when it woke far later. Everything a member says to the
//! others (heartbeats, Raft, QUIC's keep-alives) runs on that runtime, so
//! a held-up runtime is a member the others hear nothing from: work that
//! waits (for the disk, for a lock) belongs on the blocking threads. The
//! warning names how long, so that a member declared lost while its
//! process lived can be told from a dead one in its log.

use std::time::{Duration, Instant};

/// How often the watch wakes.
const TICK: Duration = Duration::from_millis(50);
/// A wake this much later than due is worth a warning.
const WARN_AFTER: Duration = Duration::from_millis(250);

/// Watches the runtime it runs on until the task is dropped.
pub(super) async fn watch() {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let late = now.duration_since(last).saturating_sub(TICK);
        if late >= WARN_AFTER {
            tracing::warn!(
                late_ms = late.as_millis() as u64,
                "the node's runtime was held up: a task ran late by {} ms (heartbeats and connections waited as long)",
                late.as_millis()
            );
        }
        last = now;
    }
}
