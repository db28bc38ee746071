//! Eight workers standing in for eight machines (`SWEEP_HOST` differs, so only heartbeats tell
//! whether a holder lives) on one PostgreSQL sweep: two are killed with SIGKILL, one stops
//! (SIGSTOP) mid-trial until another took its trial over, then continued. Every trial ends done
//! once, with contiguous epochs and exactly the figures of a single-process run, and the stopped
//! worker's writes for the trial it lost are refused. A file of its own: eight processes and their
//! server are all this test process runs.

mod common;

use common::experiments::MlpGrid;
use common::{Db, Workspace, outcome, signal, stderr, wait_until_stopped};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sixteen small MLP trials of 20 epochs for eight machines, one trial each on one thread, given up after 3 s without a heartbeat.
const LRS: [f64; 16] = [
    0.001, 0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.004, 0.0045, 0.005, 0.0055, 0.006, 0.0065,
    0.007, 0.0075, 0.008, 0.0085,
];

fn fleet() -> String {
    MlpGrid::new("fleet", &LRS, 20)
        .hidden(&[128])
        .sweep("jobs", 1)
        .sweep("threads", 1)
        .sweep("heartbeat_timeout", 3)
        .toml()
}

#[test]
fn eight_workers_with_kills_and_a_stale_one_finish_the_sweep_exactly_once() {
    let ws = Workspace::on(Db::Postgres);
    let file = ws.experiment("fleet.toml", &fleet());
    let start = |machine: usize| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sweep"));
        command.current_dir(ws.dir.path());
        if machine == 0 {
            command.args(["run", file.to_str().unwrap()]);
        } else {
            command.args(["worker", "--sweep", "fleet", "--idle-exit", "15"]);
        }
        command
            .args(["--db", &ws.db_arg(), "--data"])
            .arg(ws.data())
            .env("RUST_LOG", "sweep=info")
            .env("SWEEP_HOST", format!("machine-{machine}"))
            // Machine 3 stops itself mid-trial, holding no database lock: a SIGSTOP from here
            // could land after its trial ended, or between two of them.
            .envs((machine == 3).then_some(("SWEEP_STOP_AT", "epoch-written-2:*")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Machine 0 registers the sweep; the others join once it is there.
    let mut first = start(0);
    ws.wait_for_epochs(&mut first, 1);
    let mut workers: Vec<Child> = vec![first];
    workers.extend((1..8).map(start));
    let held_by = |machine: usize| {
        ws.psql(&format!(
            "SELECT count(*) FROM trials WHERE status = 'running' AND owner LIKE 'machine-{machine}/%'"
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    wait_until_stopped(&workers[3], deadline);
    assert_ne!(held_by(3), "0", "machine 3 stopped mid-trial");
    signal(&workers[1], "-KILL");
    signal(&workers[2], "-KILL");
    // Keep machine 3 stopped until another worker took its trial over.
    while held_by(3) != "0" {
        assert!(
            Instant::now() < deadline,
            "nobody took machine 3's trial over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&workers[3], "-CONT");
    let mut logs = Vec::new();
    for (machine, worker) in workers.into_iter().enumerate() {
        let out = worker.wait_with_output().unwrap();
        let log = stderr(&out);
        if machine != 1 && machine != 2 {
            assert!(out.status.success(), "machine {machine}: {log}");
        }
        logs.push(log);
    }
    assert!(
        logs[3].contains("was taken over by another process"),
        "the stale worker's writes were refused: {}",
        logs[3]
    );

    let alone = Workspace::on(Db::Postgres);
    let single = alone.experiment("fleet.toml", &fleet());
    assert!(alone.run(&single, &[]).status.success());
    let expected = outcome(&alone);
    assert!(
        expected
            .iter()
            .all(|t| t.0 == "done" && t.1 == (1..=20).collect::<Vec<_>>())
    );
    assert_eq!(outcome(&ws), expected, "{logs:#?}");
}
