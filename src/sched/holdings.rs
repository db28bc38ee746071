//! The trials this process holds: the lease each claim got, which every write for the trial
//! names, and the flag that stops a trial another process took over.

use crate::trial::Lease;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// The trials this process holds: the lease each was claimed under, and a flag raised when
/// another process took it over.
#[derive(Debug, Clone, Default)]
pub(super) struct Holdings(Arc<Mutex<HashMap<i64, Holding>>>);

/// One held trial: its lease, and whether it was lost.
pub(super) type Holding = (Lease, Arc<AtomicBool>);

impl Holdings {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Holding>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a claim.
    pub(super) fn take(&self, trial: i64, lease: Lease) {
        self.map()
            .insert(trial, (lease, Arc::new(AtomicBool::new(false))));
    }

    /// The lease `trial` was claimed under.
    pub(super) fn lease(&self, trial: i64) -> Option<Lease> {
        self.map().get(&trial).map(|(lease, _)| *lease)
    }

    /// The flag training watches to stop a trial that was lost.
    pub(super) fn lost_flag(&self, trial: i64) -> Arc<AtomicBool> {
        self.map().get(&trial).map_or_else(
            || Arc::new(AtomicBool::new(false)),
            |(_, lost)| lost.clone(),
        )
    }
}
