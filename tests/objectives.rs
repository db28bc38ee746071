//! Sweeps with several objectives, through the real binary on tiny IDX files: what is recorded,
//! the front `ls --pareto`, `best` and the report show, the samplers' budgets across kills and
//! processes, on SQLite and PostgreSQL.

mod common;

use common::browser::{Browser, Server, get};
use common::{Db, Workspace, draw_numbers, stderr, stdout};
use std::collections::BTreeSet;
use std::process::Stdio;

/// A search of three architectures of different sizes (mlp 12,730 parameters, convnet 20,490,
/// lenet5 61,706) for accuracy against size.
fn space(sampler: &str, trials: usize, extra: &str) -> String {
    format!(
        r#"
[sweep]
name = "mo"
seed = 3
sampler = "{sampler}"
trials = {trials}
jobs = 2
objectives = ["val_acc", "params"]
population = 4
[data]
split = 0.75
[grid]
arch = ["mlp", "convnet", "lenet5"]
optimizer = "adam"
lr = {{ log_uniform = [1e-4, 1e-1] }}
dropout = {{ uniform = [0.0, 0.5] }}
epochs = 3
[arch.mlp]
hidden = [16]
{extra}"#
    )
}

const ASHA: &str = "[prune]\nmethod = \"asha\"\nmin_epochs = 1\nreduction_factor = 3\n";

/// The ids of the finished trials no other finished trial beats on both accuracy and size.
fn front_by_hand(trials: &[serde_json::Value]) -> BTreeSet<i64> {
    let done: Vec<(i64, f64, f64)> = trials
        .iter()
        .filter(|t| t["status"] == "done")
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["best_val_acc"].as_f64().unwrap(),
                t["params"].as_f64().unwrap(),
            )
        })
        .collect();
    done.iter()
        .filter(|(_, acc, size)| {
            !done
                .iter()
                .any(|(_, a, s)| a >= acc && s <= size && (a > acc || s < size))
        })
        .map(|t| t.0)
        .collect()
}

fn ids(json: &[u8]) -> Vec<i64> {
    serde_json::from_slice::<Vec<serde_json::Value>>(json)
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

fn a_search_for_two_objectives_records_and_shows_its_front(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("mo.toml", &space("tpe", 12, ASHA));
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 12);
    let sizes: BTreeSet<i64> = trials
        .iter()
        .map(|t| t["params"].as_i64().unwrap())
        .collect();
    assert!(sizes.is_subset(&[12730, 20490, 61706].into()), "{sizes:?}");
    assert!(
        trials
            .iter()
            .all(|t| t["epoch_seconds"].as_f64().unwrap() > 0.0)
    );
    assert!(
        trials.iter().all(|t| t["latency_ms"].is_null()),
        "measured only when asked"
    );

    let front = front_by_hand(&trials);
    assert!(!front.is_empty());
    let db_arg = ws.db_arg();
    let db = db_arg.as_str();
    let listed = ws.sweep(&["ls", "--pareto", "--format", "json", "--db", db]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = ids(&listed.stdout);
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), front);
    // Sorted by the first objective, best first.
    let acc = |id: i64| {
        let t = trials.iter().find(|t| t["id"] == id).unwrap();
        t["best_val_acc"].as_f64().unwrap()
    };
    assert!(
        listed.windows(2).all(|w| acc(w[0]) >= acc(w[1])),
        "{listed:?}"
    );
    let best = ws.sweep(&["best", "--format", "json", "--db", db]);
    assert!(best.status.success(), "{}", stderr(&best));
    assert_eq!(ids(&best.stdout), listed, "best prints the front");
    // --where filters on the recorded sizes; the table shows them.
    let small = ws.sweep(&[
        "ls",
        "--where",
        "params < 15000",
        "--format",
        "json",
        "--db",
        db,
    ]);
    let small = ids(&small.stdout);
    assert_eq!(
        small.len(),
        trials.iter().filter(|t| t["arch"] == "mlp").count(),
        "{small:?}"
    );
    let table = stdout(&ws.sweep(&["ls", "--db", db]));
    assert!(table.lines().next().unwrap().contains("params"), "{table}");
    let csv = stdout(&ws.sweep(&["export", "--format", "csv", "--db", db]));
    let header = csv.lines().next().unwrap();
    for column in ["params", "epoch_seconds", "latency_ms"] {
        assert!(header.split(',').any(|c| c == column), "{header}");
    }

    // The report's Pareto plot: red circles for the front, one grey circle per other
    // finished trial.
    let report = ws.path("out/r.md");
    let out = ws.sweep(&["report", "mo", "-o", report.to_str().unwrap(), "--db", db]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("## Pareto front"), "{text}");
    assert!(
        text.contains(&format!("{} are on the front", front.len())),
        "{text}"
    );
    let svg = std::fs::read_to_string(ws.path("out/r-pareto.svg")).unwrap();
    let red = format!("fill=\"#{:02X}{:02X}{:02X}\"", 214, 39, 40);
    let done = trials.iter().filter(|t| t["status"] == "done").count();
    assert_eq!(svg.matches(&red).count(), front.len(), "{svg}");
    assert_eq!(svg.matches("<circle").count(), done);
    assert!(ws.path("out/r-hypervolume.svg").exists());
}

fn a_grid_with_three_objectives_trains_every_point_and_reports_the_front(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment(
        "g.toml",
        r#"
[sweep]
name = "g"
objectives = ["val_acc", "latency_ms", "params"]
[data]
split = 0.75
[grid]
arch = ["mlp", "convnet"]
lr = [0.01, 0.001]
epochs = 1
[arch.mlp]
hidden = [16]
"#,
    );
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t["status"] == "done"));
    assert!(
        trials
            .iter()
            .all(|t| t["latency_ms"].as_f64().unwrap() > 0.0)
    );
    let db = ws.db_arg();
    let listed = ws.sweep(&["ls", "--pareto", "--format", "json", "--db", db.as_str()]);
    assert!(!ids(&listed.stdout).is_empty());
    let report = ws.path("r.md");
    let out = ws.sweep(&[
        "report",
        "g",
        "-o",
        report.to_str().unwrap(),
        "--db",
        db.as_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Three pairs of objectives: three panels, each with every trial.
    let svg = std::fs::read_to_string(ws.path("r-pareto.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 3 * 4);
}

fn an_nsga2_search_killed_midway_ends_with_exactly_its_budget(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment(
        "mo.toml",
        &space("nsga2", 12, "").replace("epochs = 3", "epochs = 6"),
    );
    let before = ws.killed_after_epochs(&file, 8);
    assert!(before.len() < 12, "killed before the budget was drawn");
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 12, "exactly the budget");
    assert_eq!(draw_numbers(&trials), (0..12).collect(), "none drawn twice");
    assert!(trials.iter().all(|t| t["status"] == "done"));
    for old in &before {
        let now = trials.iter().find(|t| t["id"] == old["id"]).unwrap();
        assert_eq!((&now["lr"], &now["arch"]), (&old["lr"], &old["arch"]));
    }
}

fn two_processes_share_a_multi_objective_budget(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("mo.toml", &space("nsga2", 10, ""));
    let first = ws.spawn_run(&file, Stdio::piped());
    let second = ws.spawn_run(&file, Stdio::piped());
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 10, "the budget holds across processes");
    assert_eq!(
        draw_numbers(&trials),
        (0..10).collect(),
        "each draw number once"
    );
}

fn the_web_view_shows_the_front(db: Db) {
    let ws = Workspace::on(db);
    let out = ws.run(&ws.experiment("mo.toml", &space("tpe", 12, ASHA)), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let front = front_by_hand(&ws.ls_json());
    let server = Server::start(&ws, &[]);
    let (status, body) = get(&server.base, "/api/sweeps/mo/analysis", &[]);
    assert_eq!(status, 200, "{body}");
    let analysis: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed: BTreeSet<i64> = analysis["front"]["front"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(listed, front, "{body}");
    let hypervolume = analysis["front"]["hypervolume_by_trial"]
        .as_array()
        .unwrap();
    assert!(!hypervolume.is_empty(), "{body}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = Browser::start().await;
        browser.open(&format!("{}/sweeps/mo", server.base)).await;
        let rows = browser
            .wait_for(
                "the front's table",
                20,
                "return document.querySelectorAll('#front tbody tr').length",
            )
            .await;
        assert_eq!(rows.as_u64(), Some(front.len() as u64));
        let text = browser.eval("return document.body.innerText").await;
        let text = text.as_str().unwrap();
        assert!(text.contains("Pareto front"), "{text}");
        assert!(text.contains("params against val_acc"), "{text}");
        browser.close().await;
    });
}

on_both_databases!(
    the_web_view_shows_the_front,
    a_search_for_two_objectives_records_and_shows_its_front,
    a_grid_with_three_objectives_trains_every_point_and_reports_the_front,
    an_nsga2_search_killed_midway_ends_with_exactly_its_budget,
    two_processes_share_a_multi_objective_budget,
);

#[test]
fn the_same_seed_draws_the_same_configurations() {
    for sampler in ["tpe", "nsga2"] {
        let runs: Vec<Vec<(String, String, String)>> = (0..2)
            .map(|_| {
                let ws = Workspace::new();
                // One job: the history each draw sees is the same in both runs.
                let text = space(sampler, 14, "").replace("jobs = 2", "jobs = 1");
                let out = ws.run(&ws.experiment("mo.toml", &text), &[]);
                assert!(out.status.success(), "{}", stderr(&out));
                let mut trials = ws.ls_json();
                trials.sort_by_key(|t| t["id"].as_i64());
                trials
                    .iter()
                    .map(|t| {
                        (
                            t["arch"].to_string(),
                            t["lr"].to_string(),
                            t["dropout"].to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        assert_eq!(runs[0], runs[1], "{sampler}");
        assert_eq!(runs[0].len(), 14);
    }
}
