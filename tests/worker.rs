//! `sweep worker`: processes joining a stored sweep from "other machines" (the same one here,
//! sharing its database), leaving after `--max-trials` or once nothing was claimable for
//! `--idle-exit` seconds, and taking over what a killed process left.

mod common;

use common::experiments::MlpGrid;
use common::{Db, Workspace, outcome, signal, started, stderr, wait_until_stopped};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use sweep::store::Store;
use sweep::trial::TrialId;

/// Six MLP trials of 12 epochs, one at a time per process.
fn shared_grid() -> MlpGrid {
    MlpGrid::trials("shared", 6, 12).sweep("jobs", 1)
}

/// The shared sweep's experiment file.
fn shared() -> String {
    shared_grid().toml()
}

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
    let file = ws.experiment("shared.toml", &shared());
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
    let file = ws.experiment("shared.toml", &shared());
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
    let file = ws.experiment("shared.toml", &shared_grid().epochs(30).toml());
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

/// `--idle-exit` counts from the end of the worker's last trial, not from its claim: a worker
/// whose own trial outlasted its patience still waits that long for a holder to go stale.
fn an_idle_worker_waits_from_the_end_of_its_last_trial(db: Db) {
    let two_trials = MlpGrid::trials("shared", 2, 12).sweep("jobs", 1).toml();
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &two_trials);
    // Both on one machine, so trial 1's holder is known alive (its pid) until it is killed.
    let mut holder = on_machine(
        &ws,
        "machine-a",
        &["run", file.to_str().unwrap()],
        &[("SWEEP_STOP_AT", "epoch-written-2:1")],
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    wait_until_stopped(&holder, deadline);
    // The worker takes trial 2 and stops in it for longer than its patience; meanwhile trial
    // 1's holder dies.
    let patient = on_machine(
        &ws,
        "machine-a",
        &["worker", "--sweep", "shared", "--idle-exit", "1"],
        &[("SWEEP_STOP_AT", "epoch-written-2:2")],
    );
    wait_until_stopped(&patient, deadline);
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    signal(&patient, "-CONT");
    let out = patient.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(started(&log), [2, 1], "{log}");
    assert!(log.contains("resuming trial=1"), "{log}");
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));
}

fn an_unknown_sweep_or_zero_trials_is_refused(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &shared_grid().epochs(1).toml());
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

/// The shared sweep cut to three trials of `epochs` epochs whose holders are given up after 2 s
/// without a heartbeat.
fn fenced_sweep(epochs: usize) -> String {
    MlpGrid::trials("shared", 3, epochs)
        .sweep("jobs", 1)
        .sweep("heartbeat_timeout", 2)
        .toml()
}

/// `sweep ARGS` as if on machine `name` (so only heartbeats tell whether it lives), with `env`.
fn on_machine(ws: &Workspace, name: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(ws.dir.path())
        .args(args)
        .args(["--db", &ws.db_arg(), "--data"])
        .arg(ws.data())
        .env("RUST_LOG", "sweep=info")
        .env("SWEEP_HOST", name)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (until `deadline`) for `stale`, started with a `SWEEP_STOP_AT` point, to stop there;
/// then starts a worker as another machine, with `env`, and waits until it has recorded three
/// epochs of trial 1, which `stale` held. Returns that worker.
fn take_over_trial_1(
    ws: &Workspace,
    stale: &Child,
    env: &[(&str, &str)],
    deadline: Instant,
    why: &str,
) -> Child {
    wait_until_stopped(stale, deadline);
    let mut taker = on_machine(
        ws,
        "machine-b",
        &["worker", "--sweep", "shared", "--idle-exit", "3"],
        env,
    );
    let epochs_of_trial_1 = || {
        Store::open_existing(ws.db())
            .and_then(|store| store.epochs(TrialId(1)))
            .map_or(0, |epochs| epochs.len())
    };
    while epochs_of_trial_1() < 3 {
        if Instant::now() >= deadline {
            let _ = taker.kill();
            let out = taker.wait_with_output().unwrap();
            let sessions = ws.db_arg().starts_with("postgres").then(|| {
                ws.psql(
                    "SELECT pid, state, wait_event_type, wait_event, backend_xid, left(query, 90) \
                 FROM pg_stat_activity WHERE datname = current_database()",
                )
            });
            let statuses: Vec<_> = ws.ls_json().iter().map(|t| t["status"].clone()).collect();
            panic!(
                "{why}\ntrials: {statuses:?}\nsessions: {sessions:?}\ntaker: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    taker
}

/// `child`'s stderr as it comes, gathered by a thread until the child closes it.
fn tail(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::BufRead;
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let gathered = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = gathered.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// What one uninterrupted process records for `experiment`.
fn single_process_outcome(db: Db, experiment: &str) -> common::Outcome {
    let alone = Workspace::on(db);
    let file = alone.experiment("shared.toml", experiment);
    assert!(alone.run(&file, &[]).status.success());
    outcome(&alone)
}

fn a_stale_worker_loses_its_trial_and_its_writes_are_refused(db: Db) {
    let fence = fenced_sweep(40);
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &fence);
    // Stopped by itself mid-trial: a SIGSTOP sent once the test saw epochs recorded may land
    // after the whole trial on a loaded machine (its 40 epochs take about a second).
    let stale = on_machine(
        &ws,
        "machine-a",
        &["run", file.to_str().unwrap()],
        &[("SWEEP_STOP_AT", "epoch-written-2:1")],
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    let taker = take_over_trial_1(&ws, &stale, &[], deadline, "nobody took trial 1 over");
    signal(&stale, "-CONT");
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

    let expected = single_process_outcome(db, &fence);
    assert_eq!(expected[0].1.len(), 40);
    assert_eq!(outcome(&ws), expected, "{stale_log}\n{taker_log}");
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));
}

/// A process stopped between its claim and the trial's first file (the window a SIGSTOP, a
/// swapped-out machine or a long GC pause opens) must not touch the files of the process that
/// took the trial over meanwhile once it continues: it checks its lease first and leaves.
fn a_worker_stopped_right_after_its_claim_leaves_the_trial_to_its_taker(db: Db) {
    let fence = fenced_sweep(30);
    let ws = Workspace::on(db);
    let file = ws.experiment("shared.toml", &fence);
    let mut stale = on_machine(
        &ws,
        "machine-a",
        &["run", file.to_str().unwrap()],
        &[("SWEEP_STOP_AT", "after-claim:1")],
    );
    let stale_log = tail(&mut stale);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    // The taker holds still with trial 1's files committed (and no database lock: a SIGSTOP
    // from here could land inside a SQLite write and lock the stale process out); the stale
    // process is woken, and the files are compared once it has given the trial up.
    let taker = take_over_trial_1(
        &ws,
        &stale,
        &[("SWEEP_STOP_AT", "epoch-written-3:1")],
        deadline,
        "nobody took trial 1 over",
    );
    wait_until_stopped(&taker, deadline);
    let dir = ws.dir.path().join("runs/shared/1");
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let committed = files();
    assert!(
        committed.contains(&"state.json".to_string()),
        "{committed:?}"
    );
    signal(&stale, "-CONT");
    while !stale_log
        .lock()
        .unwrap()
        .contains("trial 1 lost to another process")
    {
        assert!(Instant::now() < deadline, "{}", stale_log.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        files(),
        committed,
        "the stale process touched the taker's files"
    );
    signal(&taker, "-CONT");

    assert!(stale.wait().unwrap().success());
    let taker_out = taker.wait_with_output().unwrap();
    let stale_log = stale_log.lock().unwrap().clone();
    let taker_log = stderr(&taker_out);
    assert!(taker_out.status.success(), "{taker_log}");
    assert!(!stale_log.contains("trial 1 epoch"), "{stale_log}");
    assert_eq!(
        outcome(&ws),
        single_process_outcome(db, &fence),
        "{stale_log}\n{taker_log}"
    );
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));
}

/// A process stopped inside a write transaction holds its trial's row lock, which hides the
/// trial from every claim (they skip locked rows): PostgreSQL ends such a stalled transaction
/// after a few seconds, so the trial is taken over all the same, and the stalled process, once
/// continued, has its write refused and goes on.
#[test]
fn a_worker_stalled_inside_a_write_transaction_is_taken_over() {
    let fence = fenced_sweep(30);
    let ws = Workspace::on(Db::Postgres);
    let file = ws.experiment("shared.toml", &fence);
    let stale = on_machine(
        &ws,
        "machine-a",
        &["run", file.to_str().unwrap()],
        &[("SWEEP_STOP_AT", "in-epoch-write:1")],
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let taker = take_over_trial_1(
        &ws,
        &stale,
        &[],
        deadline,
        "nobody took trial 1 over from the stalled transaction",
    );
    signal(&stale, "-CONT");
    let stale_out = stale.wait_with_output().unwrap();
    let taker_out = taker.wait_with_output().unwrap();
    let (stale_log, taker_log) = (stderr(&stale_out), stderr(&taker_out));
    assert!(stale_out.status.success(), "{stale_log}");
    assert!(taker_out.status.success(), "{taker_log}");
    assert!(
        stale_log.contains("trial 1 was taken over by another process"),
        "{stale_log}"
    );
    assert_eq!(
        outcome(&ws),
        single_process_outcome(Db::Postgres, &fence),
        "{stale_log}\n{taker_log}"
    );
}

on_both_databases!(
    a_stale_worker_loses_its_trial_and_its_writes_are_refused,
    a_worker_stopped_right_after_its_claim_leaves_the_trial_to_its_taker,
    workers_join_a_running_sweep_and_no_trial_runs_twice,
    max_trials_and_idle_exit_decide_when_a_worker_leaves,
    a_waiting_worker_takes_over_what_a_killed_process_held,
    an_idle_worker_waits_from_the_end_of_its_last_trial,
    an_unknown_sweep_or_zero_trials_is_refused,
);
