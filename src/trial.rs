//! What names a trial and where it stands: its database id, its status, and the lease a process
//! holds it under. Every room speaks of trials with these types; only the store turns them into
//! SQL values.

use crate::experiment::{Change, Hyper};
use std::fmt;

/// A trial's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TrialId(pub i64);

impl fmt::Display for TrialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TrialId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(TrialId).map_err(|_| {
            format!("{text:?} is not a trial id: give a whole number (`sweep ls` lists them)")
        })
    }
}

/// The lease under which a process holds a running trial: one more than the previous holder's,
/// so a write that carries an older lease comes from a process that lost the trial.
/// `Lease::default()`, 0, is the lease of a trial never claimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lease(pub i64);

/// Where a trial stands. The text forms are what the database's `status` column holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Not started (what a new row holds).
    #[default]
    Pending,
    /// Held by a process that trains it.
    Running,
    /// Trained to its last epoch.
    Done,
    /// Stopped with an error.
    Failed,
    /// Its loss stopped being a number.
    Diverged,
    /// Stopped from outside (Ctrl-C, a lost database); continues from its last epoch.
    Interrupted,
    /// Stopped early by the pruner for good.
    Pruned,
    /// Stopped at an ASHA rung; continues only when promoted.
    Paused,
}

impl TrialStatus {
    /// Every status, in the order reports count them.
    pub const ALL: [TrialStatus; 8] = [
        TrialStatus::Pending,
        TrialStatus::Running,
        TrialStatus::Done,
        TrialStatus::Diverged,
        TrialStatus::Failed,
        TrialStatus::Pruned,
        TrialStatus::Paused,
        TrialStatus::Interrupted,
    ];

    /// The text form, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Done => "done",
            TrialStatus::Failed => "failed",
            TrialStatus::Diverged => "diverged",
            TrialStatus::Interrupted => "interrupted",
            TrialStatus::Pruned => "pruned",
            TrialStatus::Paused => "paused",
        }
    }

    /// Whether the trial will never run again: nothing claims it, and only its kept checkpoints
    /// matter. A paused trial is not final (a promotion continues it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TrialStatus::Done | TrialStatus::Diverged | TrialStatus::Pruned
        )
    }

    /// Whether an earlier run left the trial where it stands for good or until a promotion:
    /// a new run does not start it again.
    pub fn is_settled(self) -> bool {
        self.is_final() || self == TrialStatus::Paused
    }
}

/// One exploit step of population-based training: after epoch `epoch`, the member continued
/// from member `donor`'s weights, optimizer state and generators, with new hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberCopy {
    /// The epoch after which the copy was made (the member trains `epoch + 1` next).
    pub epoch: usize,
    /// The member copied (database id).
    pub donor: i64,
    /// The donor's metric at that epoch.
    pub donor_value: f64,
    /// The member's own metric at that epoch.
    pub value: f64,
    /// The explored hyperparameters before the copy (the member's own).
    pub before: Vec<(Hyper, f64)>,
    /// The explored hyperparameters from `epoch + 1` on.
    pub after: Vec<(Hyper, f64)>,
}

impl MemberCopy {
    /// The hyperparameter changes a member carries after `copies`, in order.
    pub fn changes(copies: &[MemberCopy]) -> Vec<Change> {
        let mut changes: Vec<Change> = Vec::new();
        for copy in copies {
            changes.retain(|c| c.epoch <= copy.epoch);
            changes.extend(copy.after.iter().map(|&(hyper, value)| Change {
                epoch: copy.epoch + 1,
                hyper,
                value,
            }));
        }
        changes
    }
}

impl fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for TrialStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TrialStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = TrialStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown trial status {text:?}; known: {}", known.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_read_back_and_only_finished_statuses_are_final() {
        for status in TrialStatus::ALL {
            assert_eq!(status.as_str().parse::<TrialStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{status}\"")
            );
        }
        let finals: Vec<_> = TrialStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                TrialStatus::Done,
                TrialStatus::Diverged,
                TrialStatus::Pruned
            ]
        );
        assert!(!TrialStatus::Paused.is_final() && TrialStatus::Paused.is_settled());
        assert!(
            "lost"
                .parse::<TrialStatus>()
                .unwrap_err()
                .contains("known: pending")
        );
    }
}
