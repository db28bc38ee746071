//! PostgreSQL stopped and started again in the middle of a sweep: the run retries, keeps
//! training, writes what it owes once the server is back, and ends with every epoch row present
//! once. A file of its own, so that stopping this process's test server disturbs no other test.

mod common;

use common::experiments::MlpGrid;
use common::{Db, Workspace, outcome, postgres, stderr};
use std::process::Stdio;

/// Four MLP trials of 150 epochs, two at a time on one thread each.
fn steady() -> String {
    MlpGrid::trials("steady", 4, 150)
        .sweep("jobs", 2)
        .sweep("threads", 1)
        .toml()
}

#[test]
fn a_sweep_survives_a_postgresql_restart_with_nothing_missing_or_doubled() {
    let ws = Workspace::on(Db::Postgres);
    let file = ws.experiment("steady.toml", &steady());
    let mut run = ws.spawn_run(&file, Stdio::piped());
    ws.wait_for_epochs(&mut run, 3);
    postgres::cluster().stop();
    // Longer than a connection attempt waits (5 s), so writes fail and are retried.
    std::thread::sleep(std::time::Duration::from_secs(8));
    postgres::cluster().start();
    let out = run.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("unreachable"), "the outage was met: {log}");

    let alone = Workspace::on(Db::Postgres);
    let file = alone.experiment("steady.toml", &steady());
    assert!(alone.run(&file, &[]).status.success());
    let expected = outcome(&alone);
    assert!(
        expected
            .iter()
            .all(|t| t.0 == "done" && t.1 == (1..=150).collect::<Vec<_>>())
    );
    assert_eq!(outcome(&ws), expected, "{log}");
}
