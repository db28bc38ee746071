//! Population-based training through the real binary on tiny IDX files: reproducible lineage,
//! the replay of a member's schedule, kills at every point of a copy, two processes sharing a
//! population, and the `[pbt]` values refused before anything runs.

mod common;

use common::browser::{Browser, Server, get};
use common::{Db, Workspace, outcome, stderr, stdout};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

/// A population of four one-hidden-layer MLPs exploring the learning rate and weight decay,
/// stepping after every epoch; the bottom half copies the top half.
fn population(extra: &str) -> String {
    with_pbt(extra, "population = 4\ninterval = 1\nquantile = 0.5", "")
}

/// The same population with `[pbt]` holding `pbt`, and `tail` after the grid.
fn with_pbt(extra: &str, pbt: &str, tail: &str) -> String {
    format!(
        r#"
[sweep]
name = "pbt"
seed = 5
sampler = "pbt"
threads = 1
{extra}
[pbt]
{pbt}
[data]
split = 0.5
[grid]
arch = "mlp"
optimizer = "sgd"
lr = {{ log_uniform = [1e-3, 0.3] }}
weight_decay = {{ log_uniform = [1e-6, 1e-3] }}
epochs = 3
[optimizer.sgd]
momentum = 0.9
[arch.mlp]
hidden = [16]
{tail}
"#
    )
}

/// Every copy recorded, as `sweep show --format json` gives each member's lineage.
fn copies(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.ls_json()
        .iter()
        .flat_map(|t| {
            let id = t["id"].as_i64().unwrap().to_string();
            let out = ws.sweep(&["show", &id, "--db", &ws.db_arg(), "--format", "json"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let copies = detail["lineage"]["copies"].as_array().cloned().unwrap();
            copies
                .into_iter()
                .map(move |c| serde_json::json!({ "trial": id.clone(), "copy": c }))
        })
        .collect()
}

#[test]
fn one_job_gives_the_same_lineage_and_numbers_and_a_member_replays_bit_for_bit() {
    let runs: Vec<(Workspace, _, _)> = (0..2)
        .map(|_| {
            let ws = Workspace::new();
            let file = ws.experiment("pbt.toml", &population("jobs = 1"));
            let out = ws.run_with_env(&file, &[], &[("RUST_LOG", "sweep=info")]);
            let log = stderr(&out);
            assert!(out.status.success(), "{log}");
            // Pauses between steps are not ends: the count reaches the population once.
            assert!(log.contains("(4/4)") && !log.contains("(5/4)"), "{log}");
            let (recorded, lineage) = (outcome(&ws), copies(&ws));
            (ws, recorded, lineage)
        })
        .collect();
    assert_eq!(runs[0].1, runs[1].1, "the same seed, the same numbers");
    assert_eq!(runs[0].2, runs[1].2, "the same seed, the same copies");
    let lineage = &runs[0].2;
    // Two steps (after epochs 1 and 2), each moving the bottom two of four.
    assert_eq!(lineage.len(), 4, "{lineage:#?}");
    let ws = &runs[0].0;
    for trial in ws.ls_json() {
        assert_eq!(trial["status"], "done");
        assert_eq!(trial["epochs_done"], 3);
    }
    // Every member's files are tidied together at the end: no snapshot is left.
    for member in 1..=4 {
        let dir = ws.path(&format!("runs/pbt/{member}"));
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["best.bpk"], "{}", dir.display());
    }

    // The member copied last: its schedule, replayed as an experiment of one trial, trains
    // the same weights.
    let member = lineage.last().unwrap()["trial"]
        .as_str()
        .unwrap()
        .to_string();
    let show = ws.sweep(&["show", &member, "--db", &ws.db_arg()]);
    let text = stdout(&show);
    for section in [
        "Copies (population-based training)",
        "Ancestry of the final weights",
        "Schedule",
    ] {
        assert!(text.contains(section), "{text}");
    }
    let toml = ws.sweep(&["show", &member, "--db", &ws.db_arg(), "--format", "toml"]);
    assert!(toml.status.success(), "{}", stderr(&toml));
    let replay = ws.experiment("replay.toml", &stdout(&toml));
    assert!(stdout(&toml).contains("[schedule.lr]"), "{}", stdout(&toml));
    let out = ws.run(&replay, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    let find = |sweep: &str, id: Option<&str>| {
        trials
            .iter()
            .find(|t| {
                t["sweep"] == sweep && id.is_none_or(|id| t["id"].as_i64() == id.parse().ok())
            })
            .cloned()
            .unwrap()
    };
    let (original, replayed) = (
        find("pbt", Some(&member)),
        find(&format!("pbt-replay-{member}"), None),
    );
    for field in ["val_loss", "val_acc", "test_acc", "train_loss"] {
        assert_eq!(original[field], replayed[field], "{field}");
    }
}

#[test]
fn a_kill_at_each_point_of_a_copy_leaves_a_member_that_finishes_as_if_never_killed() {
    let clean = Workspace::new();
    let out = clean.run(&clean.experiment("pbt.toml", &population("jobs = 1")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (reference, reference_copies) = (outcome(&clean), copies(&clean));
    for point in [
        "copy-before-state:1",
        "copy-after-state:1",
        "copy-before-record:1",
        "copy-after-state:2",
        // An epoch that is a step's: its snapshot is written, its state not yet.
        "before-state:2",
        "before-event:2",
    ] {
        let ws = Workspace::new();
        let file = ws.experiment("pbt.toml", &population("jobs = 1"));
        let out = ws.run_with_env(
            &file,
            &[],
            &[("RUST_LOG", "warn"), ("SWEEP_KILL_AT", point)],
        );
        assert_eq!(out.status.signal(), Some(9), "{point}: {}", stderr(&out));
        let out = ws.run(&file, &[]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert_eq!(outcome(&ws), reference, "{point}");
        assert_eq!(copies(&ws), reference_copies, "{point}");
    }
}

fn two_processes_share_one_population_and_no_copy_is_lost_or_doubled(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("pbt.toml", &population("jobs = 1"));
    let children: Vec<_> = (0..2)
        .map(|_| ws.spawn_run(&file, Stdio::piped()))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A member left paused by a process that finished first is continued by a last run.
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 4);
    for trial in &trials {
        assert_eq!(trial["status"], "done", "{trial}");
        assert_eq!(trial["epochs_done"], 3, "{trial}");
    }
    // Each member's copies are one per step at most, and with one thread per trial the steps
    // decide exactly as one process alone does.
    let shared = copies(&ws);
    let alone = Workspace::new();
    let out = alone.run(&alone.experiment("pbt.toml", &population("jobs = 1")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(shared, copies(&alone));
    assert_eq!(outcome(&ws), outcome(&alone));
}

fn the_report_and_the_web_view_show_each_members_lineage_and_schedule(db: Db) {
    let ws = Workspace::on(db);
    let out = ws.run(&ws.experiment("pbt.toml", &population("jobs = 2")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lineage = copies(&ws);
    let member = lineage.last().unwrap()["trial"]
        .as_str()
        .unwrap()
        .to_string();
    let report = ws.path("report/pbt.md");
    let out = ws.sweep(&[
        "report",
        "pbt",
        "--db",
        &ws.db_arg(),
        "-o",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("## Population-based training"), "{text}");
    assert!(
        text.contains(&format!("4 members, {} copies", lineage.len())),
        "{text}"
    );
    for hyper in ["lr", "weight_decay"] {
        let figure = ws.path(&format!("report/pbt-schedule-{hyper}.svg"));
        let svg = std::fs::read_to_string(&figure).unwrap();
        assert!(
            svg.contains(&format!("{hyper} by epoch")),
            "{}",
            figure.display()
        );
    }

    let server = Server::start(&ws, &[]);
    let (status, body) = get(&server.base, &format!("/api/trials/{member}"), &[]);
    assert_eq!(status, 200, "{body}");
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    let copied = detail["lineage"]["copies"].as_array().unwrap();
    assert!(!copied.is_empty(), "{body}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = Browser::start().await;
        browser
            .open(&format!("{}/trials/{member}", server.base))
            .await;
        let rows = browser
            .wait_for(
                "the ancestry table",
                20,
                "return document.querySelectorAll('#ancestry tbody tr').length",
            )
            .await;
        let ancestry = detail["lineage"]["ancestry"].as_array().unwrap().len();
        assert_eq!(rows.as_u64(), Some(ancestry as u64));
        let copies_shown = browser
            .eval("return document.querySelectorAll('#copies tbody tr').length")
            .await;
        assert_eq!(copies_shown.as_u64(), Some(copied.len() as u64));
        let text = browser.eval("return document.body.innerText").await;
        let text = text.as_str().unwrap();
        assert!(text.contains("lr by epoch"), "{text}");
        browser.close().await;
    });
}

on_both_databases!(
    two_processes_share_one_population_and_no_copy_is_lost_or_doubled,
    the_report_and_the_web_view_show_each_members_lineage_and_schedule,
);

#[test]
fn bad_pbt_values_are_refused_before_anything_runs() {
    let cases = [
        (
            "population = 1",
            "",
            "pbt.population = 1: must be at least 2",
        ),
        ("interval = 0", "", "pbt.interval = 0: must be at least 1"),
        ("interval = 3", "", "they would never exchange"),
        (
            "quantile = 0.6",
            "",
            "pbt.quantile = 0.6: must be above 0 and at most 0.5",
        ),
        ("quantile = 0.0", "", "pbt.quantile = 0: must be above 0"),
        (
            "factors = [0.8, 0.0]",
            "",
            "list one or more factors above 0",
        ),
        ("factors = []", "", "list one or more factors above 0"),
        (
            "mutate = [\"batch_size\"]",
            "",
            "batch_size is fixed for a member's whole training",
        ),
        (
            "mutate = [\"arch\"]",
            "",
            "arch is fixed for a member's whole training",
        ),
        (
            "mutate = [\"dropout\"]",
            "",
            "dropout has one value in [grid]",
        ),
        ("mutate = [\"momentum\"]", "", "momentum is fixed"),
        (
            "mutate = [\"speed\"]",
            "",
            "unknown hyperparameter \"speed\"",
        ),
        (
            "",
            "[prune]\nmethod = \"asha\"",
            "stops members at every interval itself",
        ),
    ];
    for (pbt, tail, expected) in cases {
        let ws = Workspace::new();
        let file = ws.experiment("pbt.toml", &with_pbt("", pbt, tail));
        let validate = ws.sweep(&["validate", file.to_str().unwrap()]);
        for out in [validate, ws.run(&file, &[])] {
            assert_eq!(out.status.code(), Some(2), "{pbt}{tail}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(expected),
                "{pbt}{tail}: {}",
                stderr(&out)
            );
        }
        assert!(ws.nothing_recorded(), "{pbt}{tail}");
    }
    // [pbt] without its sampler, and a budget beside the population.
    let ws = Workspace::new();
    let file = ws.experiment(
        "pbt.toml",
        &population("jobs = 1").replace("sampler = \"pbt\"", "sampler = \"tpe\"\ntrials = 4"),
    );
    let out = ws.sweep(&["validate", file.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("[pbt] is read only by population-based training"),
        "{}",
        stderr(&out)
    );
    let file = ws.experiment("pbt.toml", &population("trials = 4"));
    let out = ws.sweep(&["validate", file.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("remove trials and set [pbt] population"),
        "{}",
        stderr(&out)
    );
}
