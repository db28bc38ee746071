//! What each command does, one file per group; `main.rs` parses the command line and hands the
//! command here.

mod cleanup;
mod enqueue;
mod launch;
mod output;
mod predict;
mod results;
mod serve;
mod validate;

use crate::cli::{Cli, Command};

/// Runs `command`; returns the process's exit code.
pub fn execute(command: Command, quiet: bool) -> sweep::Result<i32> {
    match command {
        Command::Validate(args) => validate::validate(args),
        Command::Enqueue(args) => enqueue::enqueue(args),
        Command::Run(args) => launch::run(args, quiet),
        Command::Resume(args) => launch::resume(args, quiet),
        Command::Worker(args) => launch::worker(args, quiet),
        Command::Slurm(args) => launch::slurm(args),
        Command::Ls(args) => results::ls(args),
        Command::Show(args) => results::show(args),
        Command::Best(args) => results::best(args),
        Command::Compare(args) => results::compare(args),
        Command::Export(args) => results::export(args),
        Command::Report(args) => results::report(args),
        Command::Serve(args) => serve::serve(args),
        Command::Predict(args) => predict::predict(args),
        Command::Rm(args) => cleanup::rm(args),
        Command::Gc(args) => cleanup::gc(args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "sweep", &mut script);
            output::print(&String::from_utf8_lossy(&script))
        }
    }
}
