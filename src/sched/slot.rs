//! Where a worker thread trains: a device and its own pool of compute threads, and how many
//! such slots each device gets.

use super::device;
use super::group;
use crate::data::Dataset;
use crate::experiment::{DeviceName, Experiment, Objective};
use crate::search::Verdict;
use crate::train::{self, TrainEvent, TrialEnd, TrialRun};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The worker slots: `(device, threads)` per trial that may run at once. CPU backends get
/// `jobs` slots of `threads` threads; each GPU gets `trials_per_gpu` slots.
pub(super) fn slots(
    devices: &[DeviceName],
    jobs: usize,
    threads: usize,
    trials_per_gpu: usize,
) -> Vec<(DeviceName, usize)> {
    let mut slots = Vec::new();
    for &device in devices {
        let count = if device.is_cpu() {
            jobs
        } else {
            trials_per_gpu
        };
        slots.extend(std::iter::repeat_n((device, threads), count));
    }
    slots
}

/// Asked after each epoch whether the trial goes on (early stopping).
pub(super) type Judge<'a> = &'a (dyn Fn(&[f64]) -> Verdict + Sync);

/// Asked before each epoch's files are written whether this process still holds the trial.
pub(super) type StillHeld<'a> = &'a (dyn Fn() -> bool + Sync);

/// Where a worker runs its trials: a device, and a compute pool of `threads` threads.
pub(super) struct Slot<'a> {
    pub(super) device: DeviceName,
    pub(super) compute: &'a std::result::Result<rayon::ThreadPool, String>,
    pub(super) threads: usize,
    pub(super) runs_dir: &'a std::path::Path,
    pub(super) stop: &'a AtomicBool,
}

impl Slot<'_> {
    /// Trains `members` (one trial, or several fused) on this slot; their ends in order.
    pub(super) fn run(
        &self,
        members: Vec<group::Member>,
        dataset: &Dataset,
        experiment: &Experiment,
        emit: &(dyn Fn(TrainEvent) + Sync),
    ) -> Vec<TrialEnd> {
        let started = Instant::now();
        let fail = |message: String| {
            let end = TrialEnd::Failed { message };
            members
                .iter()
                .map(|member| {
                    emit(TrainEvent::Finished {
                        trial: member.id,
                        end: end.clone(),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    end.clone()
                })
                .collect()
        };
        let compute = match self.compute {
            Ok(pool) => pool,
            Err(message) => return fail(message.clone()),
        };
        let runs: Vec<TrialRun> = members
            .iter()
            .map(|member| TrialRun {
                id: member.id,
                spec: &member.trial,
                data: dataset,
                device: device::open(self.device),
                device_name: self.device.to_string(),
                threads: self.threads,
                dir: self.runs_dir.join(member.id.to_string()),
                metric: experiment.spec.sweep.metric,
                measure_latency: experiment
                    .spec
                    .sweep
                    .objectives()
                    .contains(&Objective::LatencyMs),
                snapshot_every: experiment.spec.pbt_settings().map(|pbt| pbt.interval),
                stop: self.stop,
                lost: member.lost,
                holds: member.holds,
                resume: member.resume.clone(),
                judge: member.judge,
            })
            .collect();
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            compute.install(|| train::run_group(&runs, emit))
        })) {
            Ok(end) => end,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                fail(format!("panicked: {message}"))
            }
        }
    }
}
