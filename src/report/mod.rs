//! Output formats for listings: one file per format.

mod json;
mod table;

pub use json::{listings_json, trials_json};
pub use table::{listings_table, trials_table};

/// A format for data printed to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array, for scripts.
    Json,
}
