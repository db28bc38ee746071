//! Deliberate kills and stops at named points, so the crash and takeover tests can hit the narrow
//! windows between a trial's files and its database rows every time instead of by luck.
//!
//! `SWEEP_KILL_AT=POINT:EPOCH` makes the process SIGKILL itself when any trial reaches `POINT`
//! of epoch `EPOCH`. The points: `before-state` (epoch files staged, resume state not yet
//! replaced), `after-state` (resume state replaced, files not yet moved into place),
//! `before-event` (files in place, the epoch not yet sent to the database writer); and for
//! population-based training's copy into a member after epoch `EPOCH`: `copy-before-state`
//! (the donor's files staged), `copy-after-state` (the member's resume state records the copy,
//! files not yet moved into place), `copy-before-record` (files in place, the copy not yet in
//! the database).
//!
//! `SWEEP_STOP_AT=POINT:TRIAL` makes the process SIGSTOP itself (once) at `POINT` for trial `TRIAL`
//! (database id; `*` for whichever trial gets there first): `after-claim`, right after it claimed
//! the trial and before it touches its files; `in-epoch-write`, inside the transaction that writes
//! the trial's first epoch row, holding its row lock; `epoch-written-EPOCH`, mid-trial, once the
//! database writer has committed the trial's epoch `EPOCH` (so the stop holds no database lock,
//! while training may be anywhere in the next epoch). Those are the windows in which another
//! process may take the trial over while this one stands still. Whoever started the process
//! continues it with SIGCONT.

use std::sync::OnceLock;

/// The environment variable that arms a kill point.
pub const KILL_AT_ENV: &str = "SWEEP_KILL_AT";
/// The environment variable that arms a stop point.
pub const STOP_AT_ENV: &str = "SWEEP_STOP_AT";

/// What an environment variable arms: a point, and the number (epoch or trial) it fires at,
/// `None` for `*`, any number.
type Armed = Option<(String, Option<i64>)>;

/// The point and number that the environment variable `var` arms.
fn armed(var: &'static str) -> Armed {
    let value = std::env::var(var).ok()?;
    let (point, number) = value.rsplit_once(':')?;
    let number = match number {
        "*" => None,
        number => Some(number.parse().ok()?),
    };
    Some((point.to_owned(), number))
}

fn fires(armed: &Armed, point: &str, number: i64) -> bool {
    armed
        .as_ref()
        .is_some_and(|(p, n)| p == point && n.is_none_or(|n| n == number))
}

fn signal_self(signal: i32) {
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
}

/// Kills this process with SIGKILL (no unwinding, no flushing: as `kill -9` would) when the
/// armed point is `point` at `epoch`.
pub fn kill_point(point: &str, epoch: usize) {
    static ARMED: OnceLock<Armed> = OnceLock::new();
    let armed = ARMED.get_or_init(|| armed(KILL_AT_ENV));
    if fires(armed, point, epoch as i64) {
        signal_self(libc::SIGKILL);
    }
}

fn armed_stop() -> &'static Armed {
    static ARMED: OnceLock<Armed> = OnceLock::new();
    ARMED.get_or_init(|| armed(STOP_AT_ENV))
}

/// [`stop_point`] `epoch-written-EPOCH` for `trial`; names the point only when a stop is
/// armed, as it runs after every epoch.
pub fn stop_at_epoch_written(trial: i64, epoch: usize) {
    if armed_stop().is_some() {
        stop_point(&format!("epoch-written-{epoch}"), trial);
    }
}

/// Stops this process with SIGSTOP when the armed stop point is `point` for `trial`, the first
/// time only (continued, the process retries what it was doing and would stop again).
pub fn stop_point(point: &str, trial: i64) {
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if fires(armed_stop(), point, trial) && !FIRED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        signal_self(libc::SIGSTOP);
    }
}
