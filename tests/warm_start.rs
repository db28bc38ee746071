//! Warm starts from earlier sweeps and enqueued configurations, through the real binary on tiny
//! IDX files: where a warm-started search draws first, that an enqueued configuration is trained
//! exactly once however many processes draw, and the values refused.

mod common;

use common::{Db, Workspace, stderr};
use std::process::Stdio;

/// A two-epoch search of the learning rate of a small MLP.
fn search(name: &str, sampler: &str, trials: usize, seed: u64, extra: &str) -> String {
    format!(
        r#"
[sweep]
name = "{name}"
sampler = "{sampler}"
trials = {trials}
seed = {seed}
{extra}
[data]
split = 0.5
[grid]
arch = "mlp"
optimizer = "adam"
lr = {{ log_uniform = [1e-4, 1e-1] }}
batch_size = [16, 32]
epochs = 2
[arch.mlp]
hidden = [16]
"#
    )
}

fn lrs(trials: &[serde_json::Value], sweep: &str) -> Vec<f64> {
    trials
        .iter()
        .filter(|t| t["sweep"] == sweep)
        .map(|t| t["lr"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_warm_started_search_draws_near_the_earlier_best_and_counts_only_its_own_trials() {
    let ws = Workspace::new();
    let first = ws.experiment("first.toml", &search("first", "random", 20, 1, ""));
    let out = ws.run(&first, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    // The first of equals, as the sampler ranks them (in draw order).
    let best = trials
        .iter()
        .rev()
        .max_by(|a, b| {
            let v = |t: &serde_json::Value| t["best_val_acc"].as_f64().unwrap_or(0.0);
            v(a).total_cmp(&v(b))
        })
        .unwrap();
    let best_lr = best["lr"].as_f64().unwrap();

    let warm_start = "warm_start = [\"first\"]";
    for (name, extra) in [("warm", warm_start), ("cold", "")] {
        let file = ws.experiment(&format!("{name}.toml"), &search(name, "tpe", 3, 2, extra));
        let out = ws.run(&file, &[]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    let trials = ws.ls_json();
    let distance = |sweep: &str| {
        let lrs = lrs(&trials, sweep);
        assert_eq!(
            lrs.len(),
            3,
            "{sweep}: the budget counts its own trials only"
        );
        lrs.iter().map(|lr| (lr / best_lr).ln().abs()).sum::<f64>() / 3.0
    };
    let (warm, cold) = (distance("warm"), distance("cold"));
    eprintln!("mean |ln(lr / best lr)| of the first three draws: warm {warm:.3}, cold {cold:.3}");
    assert!(
        warm < cold,
        "mean |ln(lr / best lr)| of the first draws: warm {warm:.3}, cold {cold:.3}"
    );

    // PBT's first population starts from the best borrowed configurations.
    let pbt = ws.experiment(
        "pbt.toml",
        &search("pbt", "pbt", 0, 3, warm_start)
            .replace("trials = 0\n", "")
            .replace("[data]", "[pbt]\npopulation = 2\ninterval = 1\n[data]"),
    );
    let out = ws.run(&pbt, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(lrs(&trials, "pbt")[0], best_lr);
}

#[test]
fn warm_starts_that_cannot_help_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    let file = ws.experiment(
        "random.toml",
        &search("r", "random", 3, 1, "warm_start = [\"first\"]"),
    );
    let out = ws.sweep(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not learn from earlier trials"),
        "{}",
        stderr(&out)
    );
    let file = ws.experiment(
        "tpe.toml",
        &search("t", "tpe", 3, 1, "warm_start = [\"missing\"]"),
    );
    let out = ws.run(&file, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("names sweep missing"),
        "{}",
        stderr(&out)
    );
    assert!(ws.ls_json().is_empty());
}

fn an_enqueued_configuration_is_trained_once_even_with_two_processes(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("q.toml", &search("q", "tpe", 2, 4, "jobs = 1"));
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db_arg = ws.db_arg();
    let enqueue = |sets: &[&str]| {
        let mut args = vec!["enqueue", "q", "--db", &db_arg];
        for set in sets {
            args.extend(["--set", set]);
        }
        ws.sweep(&args)
    };
    // Outside the space, unknown or fixed: refused, nothing queued.
    for (sets, why) in [
        (&["grid.lr=0.5"][..], "outside the space"),
        (
            &["grid.batch_size=64"][..],
            "is not one of batch_size's values",
        ),
        (&["grid.epochs=3"][..], "epochs is not searched"),
        (&["grid.speed=3"][..], "speed is not searched"),
        (&["lr=0.1"][..], "name a grid axis as grid.NAME"),
    ] {
        let out = enqueue(sets);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{sets:?}: {}", stderr(&out));
    }
    let out = enqueue(&["grid.lr=0.003", "grid.batch_size=32"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("budget has room for 0 more draws"),
        "{}",
        stderr(&out)
    );

    // Two processes draw the rest of a larger budget at once.
    let bigger = ws.experiment("q.toml", &search("q", "tpe", 6, 4, "jobs = 1"));
    let children: Vec<_> = (0..2)
        .map(|_| ws.spawn_run(&bigger, Stdio::piped()))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 6);
    let enqueued: Vec<&serde_json::Value> = trials
        .iter()
        .filter(|t| t["lr"].as_f64() == Some(0.003))
        .collect();
    assert_eq!(enqueued.len(), 1, "{trials:#?}");
    assert_eq!(enqueued[0]["batch_size"], 32);
    assert_eq!(enqueued[0]["draw"], 2, "the next draw after the first two");
    assert_eq!(enqueued[0]["status"], "done");
}

on_both_databases!(an_enqueued_configuration_is_trained_once_even_with_two_processes);

#[test]
fn a_grid_or_a_missing_sweep_takes_no_enqueued_configuration() {
    let ws = Workspace::new();
    let grid = ws.experiment(
        "g.toml",
        "[grid]\narch = \"mlp\"\nepochs = 1\n[arch.mlp]\nhidden = [4]\n",
    );
    let out = ws.run(&grid, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = ws.db_arg();
    let out = ws.sweep(&["enqueue", "g", "--db", &db, "--set", "grid.lr=0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a grid"), "{}", stderr(&out));
    let out = ws.sweep(&["enqueue", "nope", "--db", &db, "--set", "grid.lr=0.1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}
