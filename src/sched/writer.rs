//! The single writer: training events reach the database in order through one thread, which
//! also keeps this process's heartbeat, retries while the database is out of reach, and tidies
//! final trials' files.

use super::holdings::Holdings;
use super::policy::RECONNECT_PATIENCE;
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::experiment::Keep;
use crate::store::Store;
use crate::train::{self, TrainEvent, TrialEnd};
use crate::trial::{TrialId, TrialStatus};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `op` until it succeeds, fails for another reason than an unreachable database, or the
/// database stays unreachable for [`RECONNECT_PATIENCE`]; the waits between attempts double
/// from 0.5 s to 10 s.
pub(super) fn retrying<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        match op() {
            Err(e @ Error::Unreachable { .. }) if started.elapsed() < RECONNECT_PATIENCE => {
                tracing::warn!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// The trial an event is about.
pub(super) fn event_trial(event: &TrainEvent) -> i64 {
    match event {
        TrainEvent::Started { trial, .. }
        | TrainEvent::Epoch { trial, .. }
        | TrainEvent::Measured { trial, .. }
        | TrainEvent::Progress { trial, .. }
        | TrainEvent::Finished { trial, .. } => *trial,
    }
}

/// What the writer thread receives.
pub(super) enum Message {
    /// A training event to persist and show.
    Event(TrainEvent),
    /// The label of a trial drawn after the run started, for the progress display.
    Label(i64, String),
}

/// The single writer: persists events in arrival order, feeds the progress display and keeps
/// the heartbeat of this process's trials fresh. After a write error it keeps draining (so
/// workers never block) and reports the first error at the end. `in_flight` counts events
/// sent and not yet written.
/// What a final trial keeps of its files.
pub(super) struct Tidy {
    pub(super) runs_dir: PathBuf,
    pub(super) keep: Keep,
    /// Population-based training: a final member's snapshots may still be copied by members
    /// behind it, so members are tidied together once the whole population is final.
    pub(super) together: bool,
}

impl Tidy {
    /// Gives up the files a final trial no longer needs: rows first, so that no row ever
    /// points at a deleted file. A file that will not go is left for `sweep gc`.
    pub(super) fn trial(&self, store: &Store, trial: TrialId) -> Result<()> {
        let dropped: Vec<&str> = train::dropped_kinds(self.keep)
            .into_iter()
            .map(|k| k.as_str())
            .collect();
        store.forget_checkpoints(trial, &dropped)?;
        let dir = self.runs_dir.join(trial.to_string());
        match train::tidy_final(&dir, self.keep) {
            Ok(freed) => {
                tracing::debug!(trial = trial.0, freed, "final trial's spare files removed")
            }
            Err(e) => tracing::warn!("{e} (`sweep gc` removes what is left)"),
        }
        Ok(())
    }
}

/// This process as the holder of its trials: its name, its leases, how often it beats.
pub(super) struct Holder {
    pub(super) owner: String,
    pub(super) holdings: Holdings,
    pub(super) beat_every: Duration,
}

pub(super) fn write_events(
    store: Store,
    receiver: mpsc::Receiver<Message>,
    mut progress: Progress,
    (holder, tidy): (&Holder, &Tidy),
    in_flight: &AtomicUsize,
) -> (Store, Option<Error>, Duration) {
    let mut writing = Duration::ZERO;
    let mut first_error = None;
    let remember = |result: Result<()>, first_error: &mut Option<Error>| {
        if let Err(e) = result
            && first_error.is_none()
        {
            tracing::error!("{e}");
            *first_error = Some(e);
        }
    };
    let mut last_beat = Instant::now();
    loop {
        match receiver.recv_timeout(holder.beat_every.min(Duration::from_secs(1))) {
            Ok(Message::Event(event)) => {
                if first_error.is_none() {
                    let started = Instant::now();
                    let trial = event_trial(&event);
                    let lease = holder.holdings.lease(trial).unwrap_or_default();
                    let lost = holder.holdings.lost_flag(trial);
                    let mut written = if lost.load(Ordering::SeqCst) {
                        // Nothing more of a lost trial goes to the database.
                        Ok(())
                    } else {
                        // Events wait in the channel meanwhile, and training goes on.
                        retrying(|| store.apply(&event, lease))
                    };
                    if let Err(Error::LeaseLost { .. }) = &written {
                        tracing::warn!("{}; going on with other trials", written.unwrap_err());
                        lost.store(true, Ordering::SeqCst);
                        written = Ok(());
                    }
                    if let (Ok(()), TrainEvent::Finished { trial, end, .. }) = (&written, &event)
                        && !lost.load(Ordering::SeqCst)
                        && !tidy.together
                        && end.status().is_some_and(TrialStatus::is_final)
                    {
                        written = retrying(|| tidy.trial(&store, TrialId(*trial)));
                    }
                    remember(written, &mut first_error);
                    writing += started.elapsed();
                }
                // A lost trial's end is the lost one, whatever its training ran into after the
                // takeover (files removed by the new holder, say).
                let event = match event {
                    TrainEvent::Finished { trial, seconds, .. }
                        if holder.holdings.lost_flag(trial).load(Ordering::SeqCst) =>
                    {
                        TrainEvent::Finished {
                            trial,
                            end: TrialEnd::Lost,
                            seconds,
                        }
                    }
                    event => event,
                };
                progress.on_event(&event);
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if let TrainEvent::Epoch { trial, metrics, .. } = &event {
                    crate::fault::stop_at_epoch_written(*trial, metrics.epoch);
                }
            }
            Ok(Message::Label(trial, label)) => progress.name(trial, label),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        progress.tick();
        if last_beat.elapsed() >= holder.beat_every {
            last_beat = Instant::now();
            let started = Instant::now();
            match store.heartbeat(&holder.owner) {
                // Beats resume with the connection; a long outage may cost the trials.
                Err(e @ Error::Unreachable { .. }) => tracing::debug!("heartbeat: {e}"),
                other => remember(other, &mut first_error),
            }
            writing += started.elapsed();
        }
    }
    progress.finish();
    (store, first_error, writing)
}
