//! `sweep validate`: check an experiment file and print its trials (a search: its space and
//! budget) without running anything.

use super::output::note;
use super::output::print;
use crate::cli::ValidateArgs;
use sweep::experiment::Experiment;
use sweep::report;
use sweep::search::Sampler;
use sweep::{Error, Result};

/// `sweep validate`.
pub fn validate(args: ValidateArgs) -> Result<i32> {
    let experiment = Experiment::load(&args.experiment.file, &args.experiment.set)?;
    // The files are looked for, not read: `run` reads them.
    if let Some(dir) = &experiment.spec.data.dir {
        sweep::data::locate(Some(dir))
            .map_err(|e| Error::Spec(format!("{}: [data] dir: {e}", experiment.path.display())))?;
    }
    if let Some(sampler) = Sampler::new(&experiment.spec) {
        print(&report::search_space(&experiment.spec, sampler.space()))?;
        note!(
            "{}: {} sampler, {} trials in all, valid",
            experiment.path.display(),
            experiment.spec.sweep.sampler.as_str(),
            sampler.total_trials()
        );
        return Ok(0);
    }
    let trials = experiment.trials();
    print(&report::expanded_trials(
        &experiment.name,
        &trials,
        args.format,
    ))?;
    note!(
        "{}: {} trials, valid",
        experiment.path.display(),
        trials.len()
    );
    Ok(0)
}
