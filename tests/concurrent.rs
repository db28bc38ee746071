//! Two `sweep run` processes on one experiment and one database share the work: every trial is
//! claimed by exactly one of them.

mod common;

use common::experiments::MlpGrid;
use common::{Db, Workspace, started, stderr};
use std::collections::BTreeSet;
use std::process::Stdio;
use sweep::store::Store;
use sweep::trial::TrialId;

/// Six MLP trials of 20 epochs, one at a time per process.
fn shared() -> String {
    MlpGrid::trials("shared", 6, 20).sweep("jobs", 1).toml()
}

fn two_processes_share_a_sweep_without_running_a_trial_twice(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &shared());
    let mut first = ws.spawn_run(&file, Stdio::piped());
    // The second process starts while the first holds a running trial, which it must not take.
    ws.wait_for_epochs(&mut first, 1);
    let second = ws.spawn_run(&file, Stdio::piped());
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    let (log1, log2) = (stderr(&first), stderr(&second));
    assert!(first.status.success(), "{log1}");
    assert!(second.status.success(), "{log2}");

    let (ran1, ran2) = (started(&log1), started(&log2));
    assert!(
        !ran1.is_empty() && !ran2.is_empty(),
        "both worked:\n{log1}\n{log2}"
    );
    let mut all: Vec<i64> = ran1.iter().chain(&ran2).copied().collect();
    all.sort();
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "a trial ran twice:\n{log1}\n{log2}"
    );
    assert!(
        log2.contains("being run by another sweep process"),
        "the second process left the first one's trials alone:\n{log2}"
    );

    let trials = ws.ls_json();
    assert_eq!(trials.len(), 6);
    assert_eq!(unique.len(), 6, "every trial ran once");
    let store = Store::open_existing(ws.db()).unwrap();
    for trial in &trials {
        assert_eq!(trial["status"], "done", "{trial}");
        let epochs: Vec<i64> = store
            .epochs(TrialId(trial["id"].as_i64().unwrap()))
            .unwrap()
            .iter()
            .map(|e| e.epoch)
            .collect();
        assert_eq!(epochs, (1..=20).collect::<Vec<_>>());
    }
}

on_both_databases!(two_processes_share_a_sweep_without_running_a_trial_twice,);
