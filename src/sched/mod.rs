//! Running a sweep: pick the trials still to do, train them on worker threads, and send every
//! event to one writer thread that owns the database.
//!
//! Parts: `run` runs a sweep in named steps; `register` puts the sweep in the database;
//! `policy` decides what a free slot does next and `dispenser` carries that out against the
//! store (`resume` continues a claimed trial from its files); `slot` and `group` train one trial
//! or a fused group on a device; `writer` owns the database connection for events; `holdings`
//! keeps the leases; `progress` shows it all.

mod device;
mod dispenser;
mod group;
mod holdings;
mod policy;
mod population;
mod progress;
mod register;
mod resume;
mod run;
mod slot;
mod writer;

pub use device::HAS_TCH;
pub use progress::ProgressMode;
pub use register::{
    DEFAULT_HEARTBEAT_TIMEOUT_S, Registered, default_runs_dir, live_trials, register,
};
pub use run::{RunOptions, RunSummary, run_sweep};
