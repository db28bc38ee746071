//! A `sweep run` killed with SIGKILL mid-sweep loses nothing already recorded, and running it
//! again finishes every trial exactly once.

mod common;

use common::experiments::MlpGrid;
use common::{Db, Workspace, stderr};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use sweep::store::Store;
use sweep::train::file_sha256;
use sweep::trial::TrialId;

/// Three MLP trials of 40 epochs, two at a time.
fn long() -> String {
    MlpGrid::trials("long", 3, 40).sweep("jobs", 2).toml()
}

fn a_killed_run_resumes_without_losing_or_duplicating_results(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("long.toml", &long());
    let mut child = ws.spawn_run(&file, Stdio::null());
    ws.wait_for_epochs(&mut child, 2);
    child.kill().unwrap();
    child.wait().unwrap();

    let before = ws.ls_json();
    assert!(
        before.iter().any(|t| t["status"] == "running"),
        "killed mid-trial: {before:?}"
    );

    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("continued from the last epoch"),
        "{}",
        stderr(&out)
    );
    let after = ws.ls_json();
    assert_eq!(after.len(), 3);
    let store = Store::open_existing(ws.db()).unwrap();
    for trial in &after {
        assert_eq!(trial["status"], "done", "{trial}");
        let id = trial["id"].as_i64().unwrap();
        let epochs: Vec<i64> = store
            .epochs(TrialId(id))
            .unwrap()
            .iter()
            .map(|e| e.epoch)
            .collect();
        assert_eq!(epochs, (1..=40).collect::<Vec<_>>(), "one row per epoch");
        for c in store.checkpoints(TrialId(id)).unwrap() {
            assert_eq!(
                file_sha256(std::path::Path::new(&c.path)).unwrap(),
                c.sha256
            );
        }
    }
    // A trial that had finished before the kill is kept exactly as it was.
    for old in before.iter().filter(|t| t["status"] == "done") {
        assert!(after.contains(old));
    }

    // Trials continued from their last epoch (model, optimizer and generator state restored)
    // end exactly where an uninterrupted run ends.
    let clean = Workspace::on(db);
    let out = clean.run(&clean.experiment("long.toml", &long()), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = clean.ls_json();
    for (resumed, uninterrupted) in after.iter().zip(&reference) {
        for metric in ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"] {
            assert_eq!(
                resumed[metric], uninterrupted[metric],
                "{metric}, lr {}",
                resumed["lr"]
            );
        }
    }
}

/// Two trials run one after the other, so the first one reaches an armed kill point.
/// Two small MLP trials of 6 epochs with dropout, one at a time.
fn short() -> String {
    MlpGrid::new("short", &[0.001, 0.003], 6)
        .hidden(&[64])
        .dropout(0.2)
        .sweep("jobs", 1)
        .toml()
}

/// One epoch row's figures: epoch, train loss, train acc, val loss, val acc.
type Figures = (i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

/// Every trial's epoch rows.
fn epoch_figures(ws: &Workspace) -> Vec<Vec<Figures>> {
    let store = Store::open_existing(ws.db()).unwrap();
    ws.ls_json()
        .iter()
        .map(|t| {
            store
                .epochs(TrialId(t["id"].as_i64().unwrap()))
                .unwrap()
                .iter()
                .map(|e| (e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc))
                .collect()
        })
        .collect()
}

fn a_kill_at_every_point_of_an_epoch_commit_resumes_from_the_last_complete_epoch(db: Db) {
    let clean = Workspace::on(db);
    let out = clean.run(&clean.experiment("short.toml", &short()), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = epoch_figures(&clean);
    let reference_trials = clean.ls_json();

    // Where the kill comes in epoch 3 of the first trial, and the epoch its files are at then.
    for (point, files_at) in [("before-state", 2), ("after-state", 3), ("before-event", 3)] {
        let ws = Workspace::on(db);
        let file = ws.experiment("short.toml", &short());
        let kill_at = format!("{point}:3");
        let out = ws.run_with_env(
            &file,
            &[],
            &[("RUST_LOG", "warn"), ("SWEEP_KILL_AT", &kill_at)],
        );
        assert_eq!(out.status.signal(), Some(9), "{point}: {}", stderr(&out));
        let store = Store::open_existing(ws.db()).unwrap();
        let recorded = store.epochs(TrialId(1)).unwrap().len();
        assert!(recorded < 3, "{point}: the kill came before epoch 3's row");
        drop(store);

        let out = ws.run_with_env(&file, &[], &[("RUST_LOG", "sweep=info")]);
        let log = stderr(&out);
        assert!(out.status.success(), "{point}: {log}");
        assert!(
            log.contains(&format!("resuming trial=1 epoch={files_at}")),
            "{point}: {log}"
        );
        assert!(
            log.contains("1 trials continued from the last epoch"),
            "{point}: {log}"
        );
        if recorded < files_at {
            assert!(
                log.contains(&format!("recording epochs {}..={files_at}", recorded + 1)),
                "{point}: {log}"
            );
        }
        // Completed epochs are not trained again.
        for epoch in 1..=files_at {
            assert!(
                !log.contains(&format!("trial 1 epoch {epoch}:")),
                "{point}: epoch {epoch} trained twice: {log}"
            );
        }
        assert!(
            log.contains(&format!("trial 1 epoch {}:", files_at + 1)),
            "{log}"
        );

        assert_eq!(epoch_figures(&ws), reference, "{point}: epoch figures");
        let trials = ws.ls_json();
        for (resumed, uninterrupted) in trials.iter().zip(&reference_trials) {
            for metric in [
                "status",
                "best_epoch",
                "best_val_acc",
                "test_loss",
                "test_acc",
            ] {
                assert_eq!(resumed[metric], uninterrupted[metric], "{point}: {metric}");
            }
        }
        let store = Store::open_existing(ws.db()).unwrap();
        for trial in &trials {
            let checkpoints = store
                .checkpoints(TrialId(trial["id"].as_i64().unwrap()))
                .unwrap();
            let kinds: Vec<&str> = checkpoints.iter().map(|c| c.kind.as_str()).collect();
            assert_eq!(
                kinds,
                ["best"],
                "{point}: the best model kept, as `keep` says"
            );
            for c in checkpoints {
                assert_eq!(
                    file_sha256(std::path::Path::new(&c.path)).unwrap(),
                    c.sha256,
                    "{point}: {} checkpoint",
                    c.kind
                );
            }
        }
    }
}

fn damaged_files_start_the_trial_over_and_say_why(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("short.toml", &short());
    let out = ws.run_with_env(
        &file,
        &[],
        &[("RUST_LOG", "warn"), ("SWEEP_KILL_AT", "before-event:3")],
    );
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let last = ws.path("runs/short/1/last.bpk");
    let mut bytes = std::fs::read(&last).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&last, bytes).unwrap();

    let out = ws.run(&file, &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("starting over"), "{log}");
    assert!(
        log.contains("last.bpk does not match the sha256 recorded for epoch 3"),
        "{log}"
    );
    let figures = epoch_figures(&ws);
    assert!(figures.iter().all(|t| t.len() == 6), "{figures:?}");
}

fn ctrl_c_interrupts_cleanly_and_the_next_run_finishes(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("long.toml", &long());
    let mut child = ws.spawn_run(&file, Stdio::piped());
    ws.wait_for_epochs(&mut child, 1);
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interrupted sweep is not a finished one"
    );
    let message = stderr(&out);
    assert!(message.contains("run the same command again"), "{message}");

    let statuses: Vec<String> = ws
        .ls_json()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(statuses.iter().any(|s| s == "interrupted"), "{statuses:?}");
    assert!(!statuses.iter().any(|s| s == "running"), "{statuses:?}");

    // `sweep resume NAME` continues from the spec stored in the database, no file needed.
    std::fs::remove_file(&file).unwrap();
    let db = ws.db_arg();
    let data = ws.data();
    let resume = |name: &str| {
        ws.sweep(&[
            "resume",
            name,
            "--db",
            db.as_str(),
            "--data",
            data.to_str().unwrap(),
        ])
    };
    let out = resume("nope");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no sweep named \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = resume("long");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("continued from the last epoch"),
        "{}",
        stderr(&out)
    );
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));
}

on_both_databases!(
    a_killed_run_resumes_without_losing_or_duplicating_results,
    a_kill_at_every_point_of_an_epoch_commit_resumes_from_the_last_complete_epoch,
    damaged_files_start_the_trial_over_and_say_why,
    ctrl_c_interrupts_cleanly_and_the_next_run_finishes,
);
