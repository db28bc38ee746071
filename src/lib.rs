//! `sweep`: declarative hyperparameter sweeps for image classifiers, trained with burn and
//! tracked in SQLite.
//!
//! Rooms: [`experiment`] reads experiment files, [`data`] the IDX data set, [`model`] builds the
//! architectures, [`train`] runs one trial and emits events, [`sched`] runs a sweep, [`store`]
//! holds all SQL, [`report`] formats results.

pub mod data;
pub mod disk;
pub mod error;
pub mod experiment;
pub mod fault;
pub mod kernels;
pub mod model;
pub mod process;
pub mod report;
pub mod rng;
pub mod sched;
pub mod search;
pub mod serve;
pub mod slurm;
pub mod store;
pub mod train;
pub mod trial;

pub use error::{Error, Result};

/// The burn version the models are built with (from `Cargo.lock`), recorded with every sweep.
pub const BURN_VERSION: &str = env!("SWEEP_BURN_VERSION");

/// The tch crate version in `Cargo.lock`, which the `tch` feature compiles in.
pub const TCH_VERSION: &str = env!("SWEEP_TCH_VERSION");
