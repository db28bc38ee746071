//! `sweep worker`: processes joining a stored sweep from "other machines" (the same one here,
//! sharing its database), leaving after `--max-trials` or once nothing was claimable for
//! `--idle-exit` seconds, and taking over what a killed process left.

mod common;

use common::{Db, Workspace, outcome, started, stderr};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const SHARED: &str = r#"
[sweep]
name = "shared"
jobs = 1
[data]
split = 0.8
[grid]
arch = "mlp"
optimizer = "adam"
lr = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
batch_size = 16
epochs = 12
[arch.mlp]
hidden = [256, 256]
"#;

/// `sweep worker --sweep shared` plus `extra`, in the workspace, logging which trials it runs.
fn worker(ws: &Workspace, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(ws.dir.path())
        .args([
            "worker",
            "--sweep",
            "shared",
            "--db",
            &ws.db_arg(),
            "--data",
        ])
        .arg(ws.data())
        .args(extra)
        .env("RUST_LOG", "sweep=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// All six trials done, each with epochs 1..=`epochs` recorded once, in order.
fn assert_complete(ws: &Workspace, epochs: i64) {
    let recorded = outcome(ws);
    assert_eq!(recorded.len(), 6);
    for (status, trial_epochs, _, _) in &recorded {
        assert_eq!(status, "done");
        assert_eq!(trial_epochs, &(1..=epochs).collect::<Vec<_>>());
    }
}

fn workers_join_a_running_sweep_and_no_trial_runs_twice(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", SHARED);
    let mut first = ws.spawn_run(&file, Stdio::piped());
    ws.wait_for_epochs(&mut first, 1);
    let workers = [worker(&ws, &[]), worker(&ws, &[])];
    let mut logs = vec![stderr(&first.wait_with_output().unwrap())];
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        logs.push(stderr(&out));
    }
    let ran: Vec<Vec<i64>> = logs.iter().map(|l| started(l)).collect();
    let all: Vec<i64> = ran.iter().flatten().copied().collect();
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a trial ran twice: {logs:#?}");
    assert_eq!(unique.len(), 6, "{logs:#?}");
    assert!(
        ran.iter().filter(|r| !r.is_empty()).count() >= 2,
        "the work was shared: {logs:#?}"
    );
    assert_complete(&ws, 12);
}

fn max_trials_and_idle_exit_decide_when_a_worker_leaves(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", SHARED);
    // Registered, one trial left running by a killed process, five pending.
    let mut first = ws.spawn_run(&file, Stdio::null());
    ws.wait_for_epochs(&mut first, 1);
    first.kill().unwrap();
    first.wait().unwrap();

    let out = worker(&ws, &["--max-trials", "2"])
        .wait_with_output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(started(&log).len(), 2, "{log}");
    let done = |ws: &Workspace| {
        ws.ls_json()
            .iter()
            .filter(|t| t["status"] == "done")
            .count()
    };
    assert_eq!(done(&ws), 2);

    let out = worker(&ws, &["--idle-exit", "1"])
        .wait_with_output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(started(&log).len(), 4, "{log}");
    assert_complete(&ws, 12);

    // Nothing unfinished: a patient worker leaves at once.
    let begun = Instant::now();
    let out = worker(&ws, &["--idle-exit", "60"])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(begun.elapsed().as_secs() < 30, "{:?}", begun.elapsed());
    assert!(started(&stderr(&out)).is_empty());
}

fn a_waiting_worker_takes_over_what_a_killed_process_held(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &SHARED.replace("epochs = 12", "epochs = 30"));
    let mut first = ws.spawn_run(&file, Stdio::null());
    ws.wait_for_epochs(&mut first, 2);
    let patient = worker(&ws, &["--idle-exit", "20"]);
    first.kill().unwrap();
    first.wait().unwrap();
    let out = patient.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming trial="), "{log}");
    assert_complete(&ws, 30);
}

fn an_unknown_sweep_or_zero_trials_is_refused(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &SHARED.replace("epochs = 12", "epochs = 1"));
    assert!(ws.run(&file, &[]).status.success());
    let out = ws.sweep(&["worker", "--sweep", "nope", "--db", &ws.db_arg()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no sweep named \"nope\""),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("known: shared"), "{}", stderr(&out));
    let out = ws.sweep(&[
        "worker",
        "--sweep",
        "shared",
        "--db",
        &ws.db_arg(),
        "--max-trials",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn a_stale_worker_loses_its_trial_and_its_writes_are_refused(db: Db) {
    let fence = SHARED
        .replace(
            "name = \"shared\"",
            "name = \"shared\"\nheartbeat_timeout = 2",
        )
        .replace(
            "lr = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]",
            "lr = [0.001, 0.002, 0.003]",
        )
        .replace("epochs = 12", "epochs = 40");
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &fence);
    // Two "machines": only heartbeats tell whether the other lives.
    let mut stale = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(ws.dir.path())
        .args([
            "run",
            file.to_str().unwrap(),
            "--db",
            &ws.db_arg(),
            "--data",
        ])
        .arg(ws.data())
        .env("RUST_LOG", "sweep=info")
        .env("SWEEP_HOST", "machine-a")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ws.wait_for_epochs(&mut stale, 2);
    let signal = |name: &str| {
        let ok = Command::new("kill")
            .args([name, &stale.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    std::thread::sleep(std::time::Duration::from_secs(4));
    let taker = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(ws.dir.path())
        .args([
            "worker",
            "--sweep",
            "shared",
            "--idle-exit",
            "3",
            "--db",
            &ws.db_arg(),
        ])
        .arg("--data")
        .arg(ws.data())
        .env("RUST_LOG", "sweep=info")
        .env("SWEEP_HOST", "machine-b")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the taker claim the stale trial and train on, then wake the stale worker.
    let claimed = Instant::now();
    while ws.recorded_epochs() < 4 && claimed.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    signal("-CONT");
    let stale_out = stale.wait_with_output().unwrap();
    let taker_out = taker.wait_with_output().unwrap();
    let (stale_log, taker_log) = (stderr(&stale_out), stderr(&taker_out));
    assert!(taker_out.status.success(), "{taker_log}");
    assert!(taker_log.contains("resuming trial=1"), "{taker_log}");
    assert!(
        stale_log.contains("trial 1 was taken over by another process"),
        "{stale_log}"
    );
    assert!(stale_out.status.success(), "{stale_log}");

    // Exactly what one uninterrupted process records.
    let alone = Workspace::on(db);
    let file = alone.experiment("shared.toml", &fence);
    assert!(alone.run(&file, &[]).status.success());
    let expected = outcome(&alone);
    assert_eq!(expected[0].1.len(), 40);
    assert_eq!(outcome(&ws), expected, "{stale_log}\n{taker_log}");
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));
}

on_both_databases!(
    a_stale_worker_loses_its_trial_and_its_writes_are_refused,
    workers_join_a_running_sweep_and_no_trial_runs_twice,
    max_trials_and_idle_exit_decide_when_a_worker_leaves,
    a_waiting_worker_takes_over_what_a_killed_process_held,
    an_unknown_sweep_or_zero_trials_is_refused,
);
