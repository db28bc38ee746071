//! Deliberate kills at named points of an epoch commit, so the crash tests can hit the narrow
//! windows between a trial's files and its database rows every time instead of by luck.
//!
//! `SWEEP_KILL_AT=POINT:EPOCH` makes the process SIGKILL itself when any trial reaches `POINT`
//! of epoch `EPOCH`. The points: `before-state` (epoch files staged, resume state not yet
//! replaced), `after-state` (resume state replaced, files not yet moved into place),
//! `before-event` (files in place, the epoch not yet sent to the database writer).

use std::sync::OnceLock;

/// The environment variable that arms a kill point.
pub const KILL_AT_ENV: &str = "SWEEP_KILL_AT";

fn armed() -> Option<&'static (String, usize)> {
    static ARMED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(KILL_AT_ENV).ok()?;
            let (point, epoch) = value.rsplit_once(':')?;
            Some((point.to_owned(), epoch.parse().ok()?))
        })
        .as_ref()
}

/// Kills this process with SIGKILL (no unwinding, no flushing: as `kill -9` would) when the
/// armed point is `point` at `epoch`.
pub fn kill_point(point: &str, epoch: usize) {
    if let Some((armed_point, armed_epoch)) = armed()
        && armed_point == point
        && *armed_epoch == epoch
    {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
