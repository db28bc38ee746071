//! What training reports while it runs. Storage and progress output listen to these; training
//! itself never touches the database.

use super::metrics::{EpochMetrics, Evaluation};
use crate::trial::TrialStatus;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which checkpoint of a trial a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// The model after the latest epoch.
    Last,
    /// The model after the epoch with the best validation metric.
    Best,
}

impl CheckpointKind {
    /// The name stored in the database and used as the file stem.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Last => "last",
            CheckpointKind::Best => "best",
        }
    }
}

/// A checkpoint file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// Last or best.
    pub kind: CheckpointKind,
    /// The epoch whose weights it holds.
    pub epoch: usize,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Hex sha256 of its contents.
    pub sha256: String,
}

/// Where a training trial stands within its epochs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchPosition {
    /// 1-based epoch.
    pub epoch: usize,
    /// Epochs the trial trains.
    pub epochs: usize,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Mean training loss of this epoch so far.
    pub loss: f64,
    /// Training images per second in this epoch so far.
    pub images_per_s: f64,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialEnd {
    /// Trained every epoch (and was tested, unless `test_limit` is 0).
    Done {
        /// Test-set evaluation of the final model (boxed: it carries every prediction); `None`
        /// when the test pass was skipped.
        test: Option<Box<Evaluation>>,
        /// Epoch with the best validation metric.
        best_epoch: usize,
    },
    /// The loss became NaN or infinite.
    Diverged {
        /// Where it happened.
        message: String,
    },
    /// Stopped for good by early stopping, after its files for that epoch were committed.
    Pruned {
        /// Epoch with the best validation metric so far.
        best_epoch: usize,
    },
    /// Stopped at a rung by early stopping, its files kept so it can be promoted and continued.
    Paused {
        /// Epoch with the best validation metric so far.
        best_epoch: usize,
    },
    /// Stopped on request before it finished.
    Interrupted,
    /// Stopped because another process took the trial over (this one's heartbeat had gone
    /// stale); nothing of it is recorded.
    Lost,
    /// An error or panic ended it.
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl TrialEnd {
    /// The status recorded for this ending; `None` for a lost trial, whose row is its new
    /// holder's to write.
    pub fn status(&self) -> Option<TrialStatus> {
        Some(match self {
            TrialEnd::Done { .. } => TrialStatus::Done,
            TrialEnd::Diverged { .. } => TrialStatus::Diverged,
            TrialEnd::Pruned { .. } => TrialStatus::Pruned,
            TrialEnd::Paused { .. } => TrialStatus::Paused,
            TrialEnd::Interrupted => TrialStatus::Interrupted,
            TrialEnd::Lost => return None,
            TrialEnd::Failed { .. } => TrialStatus::Failed,
        })
    }

    /// How the ending reads in logs and progress lines.
    pub fn describe(&self) -> &'static str {
        self.status()
            .map_or("lost to another process", TrialStatus::as_str)
    }
}

/// Something that happened to a trial.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Training began on a device.
    Started {
        /// Database id of the trial.
        trial: i64,
        /// The device, as the user names it (`cpu`).
        device: String,
        /// Compute threads given to the trial.
        threads: usize,
        /// The trials it trains fused with (empty when it trains alone).
        fused_with: Vec<i64>,
    },
    /// An epoch finished and its files are committed.
    Epoch {
        /// Database id of the trial.
        trial: i64,
        /// Its figures.
        metrics: EpochMetrics,
        /// The checkpoint files this epoch wrote (none when it diverged).
        checkpoints: Vec<CheckpointInfo>,
    },
    /// The trial's model was built: its size, and its speed when asked for.
    Measured {
        /// Database id of the trial.
        trial: i64,
        /// Trainable parameters.
        params: u64,
        /// Milliseconds per image evaluated at batch 1, when the sweep optimises latency.
        latency_ms: Option<f64>,
    },
    /// Training is under way within an epoch (sent a few times a second at most).
    Progress {
        /// Database id of the trial.
        trial: i64,
        /// Where it stands.
        position: BatchPosition,
    },
    /// The trial ended.
    Finished {
        /// Database id of the trial.
        trial: i64,
        /// How.
        end: TrialEnd,
        /// Wall seconds from start to end.
        seconds: f64,
    },
}
