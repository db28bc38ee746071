//! Searching samplers and early stopping, through the real binary on tiny IDX files.

mod common;

use common::{Db, Workspace, draw_numbers, stderr};
use std::process::Stdio;
use sweep::store::Store;
use sweep::trial::TrialId;

fn search(sampler: &str, trials: usize, extra: &str) -> String {
    format!(
        r#"
[sweep]
name = "search"
seed = 5
sampler = "{sampler}"
trials = {trials}
jobs = 1
[data]
split = 0.75
[grid]
arch = "mlp"
optimizer = ["adam", "sgd"]
lr = {{ log_uniform = [1e-4, 1e-1] }}
dropout = {{ uniform = [0.0, 0.5] }}
batch_size = {{ int_log_uniform = [16, 64] }}
epochs = 2
[arch.mlp]
hidden = [16]
{extra}
"#
    )
}

/// The drawn parameters of every trial, in draw order.
fn draws(ws: &Workspace) -> Vec<(String, String, String, String)> {
    let mut trials = ws.ls_json();
    trials.sort_by_key(|t| t["id"].as_i64());
    trials
        .iter()
        .map(|t| {
            (
                t["optimizer"].to_string(),
                t["lr"].to_string(),
                t["dropout"].to_string(),
                t["batch_size"].to_string(),
            )
        })
        .collect()
}

#[test]
fn random_and_tpe_draw_the_same_configurations_for_the_same_seed() {
    for (sampler, trials) in [("random", 5), ("tpe", 13)] {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let ws = Workspace::new();
                let out = ws.run(&ws.experiment("s.toml", &search(sampler, trials, "")), &[]);
                assert!(out.status.success(), "{}", stderr(&out));
                let drawn = draws(&ws);
                assert_eq!(drawn.len(), trials, "{sampler}");
                drawn
            })
            .collect();
        assert_eq!(runs[0], runs[1], "{sampler}: same file, same seed");
        let distinct: std::collections::HashSet<_> = runs[0].iter().collect();
        assert_eq!(distinct.len(), trials, "{sampler}: every draw differs");
    }
    // Another seed, other draws.
    let ws = Workspace::new();
    let file = ws.experiment(
        "s.toml",
        &search("random", 5, "").replace("seed = 5", "seed = 6"),
    );
    assert!(ws.run(&file, &[]).status.success());
    let other = draws(&ws);
    let ws = Workspace::new();
    assert!(
        ws.run(&ws.experiment("s.toml", &search("random", 5, "")), &[])
            .status
            .success()
    );
    assert_ne!(draws(&ws), other);
}

#[test]
fn bad_spaces_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    let cases = [
        (
            search("grid", 3, "").replace("trials = 3\n", ""),
            "grid.lr = { log_uniform = [0.0001, 0.1] }: a distribution needs a searching sampler",
        ),
        (
            search("random", 3, "").replace("trials = 3\n", ""),
            "sweep.trials = (missing)",
        ),
        (
            search("random", 3, "").replace("[0.0, 0.5]", "[0.5, 0.5]"),
            "grid.dropout = { uniform = [0.5, 0.5] }: low (0.5) must be below high (0.5)",
        ),
        (
            search("random", 3, "").replace("[1e-4, 1e-1]", "[0.0, 1e-1]"),
            "grid.lr = { log_uniform = [0, 0.1] }: a log distribution needs bounds above 0",
        ),
        (
            search("random", 3, "").replace("[0.0, 0.5]", "[nan, 0.5]"),
            "grid.dropout = { uniform = [NaN, 0.5] }: bounds must be finite numbers",
        ),
        (
            search("random", 3, "").replace("[16, 64]", "[16.5, 64]"),
            "grid.batch_size = { int_log_uniform = [16.5, 64] }: an integer distribution needs \
             whole-number bounds",
        ),
        (
            search("random", 3, "").replace("int_log_uniform = [16, 64]", "uniform = [16, 64]"),
            "grid.batch_size = { uniform = [16, 64] }: takes whole numbers",
        ),
        (
            search("random", 3, "").replace("uniform = [0.0, 0.5]", "gaussian = [0.0, 0.5]"),
            "unknown distribution `gaussian`",
        ),
        (
            search("random", 3, "").replace("[0.0, 0.5]", "[0.0, 1.5]"),
            "grid.dropout = { uniform = [0, 1.5] }: both bounds: dropout must be in [0, 1)",
        ),
        (
            search("random", 3, "[prune]\nmethod = \"asha\"\nmin_epochs = 2\n"),
            "prune.min_epochs = 2: the first rung must come before the last epoch (2)",
        ),
        (
            search(
                "random",
                3,
                "[prune]\nmethod = \"asha\"\nreduction_factor = 1\n",
            ),
            "prune.reduction_factor = 1: must be at least 2",
        ),
        (
            search("random", 3, "").replace("[sweep]\n", "[sweep]\nmultivariate = true\n"),
            "sweep.multivariate = true: only TPE models the axes jointly or alone",
        ),
        (
            search("random", 3, "").replace("[sweep]\n", "[sweep]\nstartup_trials = 4\n"),
            "sweep.startup_trials = 4: only TPE has random start-up trials",
        ),
        (
            search("tpe", 3, "").replace("[sweep]\n", "[sweep]\nstartup_trials = 0\n"),
            "sweep.startup_trials = 0: must be at least 1",
        ),
        (
            search(
                "tpe",
                3,
                "[prune]\nmethod = \"median\"\nfill_rungs = true\n",
            ),
            "prune.fill_rungs = true: only ASHA has rungs",
        ),
    ];
    for (toml, message) in cases {
        let file = ws.experiment("bad.toml", &toml);
        let out = ws.sweep(&["validate", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{message}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{message}\n{}",
            stderr(&out)
        );
        let out = ws.run(&file, &[]);
        assert_eq!(out.status.code(), Some(2), "{message}");
        assert!(ws.nothing_recorded(), "nothing ran for {message}");
    }
    // A valid search prints its space and budget instead of a trial table.
    let file = ws.experiment("good.toml", &search("tpe", 7, ""));
    let out = ws.sweep(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    for line in [
        "optimizer       choice of [adam, sgd]",
        "lr              log_uniform [0.0001, 0.1]",
        "batch_size      int_log_uniform [16, 64]",
        "arch            fixed at mlp",
        "sampler tpe (multivariate), 7 configurations x 1 repeats = 7 trials, seed 5",
        "objectives: val_acc (max)",
    ] {
        assert!(printed.contains(line), "{line}\n{printed}");
    }
    let file = ws.experiment(
        "startup.toml",
        &search("tpe", 7, "").replace("[sweep]\n", "[sweep]\nstartup_trials = 4\n"),
    );
    let out = ws.sweep(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("sampler tpe (multivariate, 4 start-up trials), 7 configurations"),
        "{printed}"
    );
}

fn two_processes_share_the_budget_exactly(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment(
        "s.toml",
        &search("random", 8, "").replace("epochs = 2", "epochs = 6"),
    );
    let first = ws.spawn_run(&file, Stdio::piped());
    let second = ws.spawn_run(&file, Stdio::piped());
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 8, "the budget holds across processes");
    assert!(trials.iter().all(|t| t["status"] == "done"));
    assert_eq!(
        draw_numbers(&trials),
        (0..8).collect(),
        "each draw number once"
    );
}

/// One epoch's figures: epoch, train loss, val loss, val acc.
type Figures = (i64, Option<f64>, Option<f64>, Option<f64>);

/// The epoch figures of a trial.
fn figures(ws: &Workspace, id: i64) -> Vec<Figures> {
    let store = Store::open_existing(ws.db()).unwrap();
    store
        .epochs(TrialId(id))
        .unwrap()
        .iter()
        .map(|e| (e.epoch, e.train_loss, e.val_loss, e.val_acc))
        .collect()
}

/// A grid in a known order: a good learning rate, a fair one, then four that barely learn.
const LADDER: &str = r#"
[sweep]
name = "ladder"
seed = 5
jobs = 1
[data]
split = 0.75
[grid]
arch = "mlp"
optimizer = "adam"
lr = [0.01, 0.001, 1e-6, 2e-6, 3e-6, 4e-6]
batch_size = 32
epochs = 3
[arch.mlp]
hidden = [16]
"#;

fn asha_pauses_promotes_and_resumes_exactly_where_the_trial_stopped(db: Db) {
    let ws = Workspace::on(db);
    let asha = "[prune]\nmethod = \"asha\"\nmin_epochs = 1\nreduction_factor = 3\n";
    let file = ws.experiment("ladder.toml", &format!("{LADDER}{asha}"));
    let out = ws.run_with_env(&file, &[], &[("RUST_LOG", "sweep=info")]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    // lr 0.001 is second of two at the first rung: paused. Once six trials have reached the
    // rung the top third is two places, and it is promoted and finishes; the rest are pruned.
    assert!(log.contains("trial 2 paused"), "{log}");
    assert!(log.contains("promoted trial=2"), "{log}");
    let trials = ws.ls_json();
    let status: Vec<&str> = trials
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        ["done", "done", "pruned", "pruned", "pruned", "pruned"],
        "{log}"
    );
    for t in &trials[2..] {
        assert_eq!(figures(&ws, t["id"].as_i64().unwrap()).len(), 1, "{t}");
    }
    // Paused trial 2 continued from its resume files; once final, every trial keeps only its
    // best model (pruned at the end of the run included).
    for t in &trials {
        let dir = ws.path("runs/ladder").join(t["id"].to_string());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["best.bpk"], "{t}");
    }

    // The promoted trial ends exactly as it does trained without a pause.
    let plain = Workspace::on(db);
    let out = plain.run(&plain.experiment("ladder.toml", LADDER), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = plain.ls_json();
    for i in 0..2 {
        let id = trials[i]["id"].as_i64().unwrap();
        assert_eq!(
            figures(&ws, id),
            figures(&plain, reference[i]["id"].as_i64().unwrap()),
            "trial {id}: per-epoch figures"
        );
        for key in ["test_acc", "test_loss", "best_epoch"] {
            assert_eq!(trials[i][key], reference[i][key], "trial {id}: {key}");
        }
    }
}

/// With `fill_rungs`, no trial leaves a rung before three have reached it: the first trial
/// pauses too, and goes on once it is the best of three; the end is the same as Optuna's rule
/// gives this ladder. With a budget of two (nothing left to draw, the rung never fills), the
/// best of the two still trains to its end.
#[test]
fn filled_rungs_hold_the_first_trials_until_three_have_reached_the_rung() {
    let ws = Workspace::new();
    let asha = "[prune]\nmethod = \"asha\"\nmin_epochs = 1\nreduction_factor = 3\n\
                fill_rungs = true\n";
    let file = ws.experiment("ladder.toml", &format!("{LADDER}{asha}"));
    let out = ws.run_with_env(&file, &[], &[("RUST_LOG", "sweep=info")]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    for line in ["trial 1 paused", "promoted trial=1", "trial 2 paused"] {
        assert!(log.contains(line), "{line}\n{log}");
    }
    let status: Vec<String> = ws
        .ls_json()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        status,
        ["done", "done", "pruned", "pruned", "pruned", "pruned"],
        "{log}"
    );

    let two = Workspace::new();
    let file = two.experiment(
        "two.toml",
        &search("random", 2, asha).replace("epochs = 2", "epochs = 3"),
    );
    let out = two.run_with_env(&file, &[], &[("RUST_LOG", "sweep=info")]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let trials = two.ls_json();
    let done: Vec<&serde_json::Value> = trials.iter().filter(|t| t["status"] == "done").collect();
    assert_eq!(done.len(), 1, "{log}");
    assert!(log.contains("promoted"), "{log}");
    let at_rung = |t: &serde_json::Value| figures(&two, t["id"].as_i64().unwrap())[0].3;
    let best = trials.iter().filter_map(at_rung).fold(f64::MIN, f64::max);
    assert_eq!(
        at_rung(done[0]),
        Some(best),
        "the better of the two at epoch 1 went on"
    );
}

fn a_search_killed_midway_ends_with_exactly_its_budget(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment(
        "s.toml",
        &search(
            "tpe",
            12,
            "[prune]\nmethod = \"asha\"\nmin_epochs = 1\nreduction_factor = 2\n",
        )
        .replace("jobs = 1", "jobs = 2")
        .replace("epochs = 2", "epochs = 8"),
    );
    let before = ws.killed_after_epochs(&file, 6);
    assert!(before.len() < 12, "killed before the budget was drawn");

    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 12, "exactly the budget");
    assert_eq!(draw_numbers(&trials), (0..12).collect(), "none drawn twice");
    for t in &trials {
        assert!(t["status"] == "done" || t["status"] == "pruned", "{t}");
        let epochs: Vec<i64> = figures(&ws, t["id"].as_i64().unwrap())
            .iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(epochs, (1..=epochs.len() as i64).collect::<Vec<_>>(), "{t}");
    }
    // Trials drawn before the kill keep their parameters.
    for old in &before {
        let now = trials.iter().find(|t| t["id"] == old["id"]).unwrap();
        assert_eq!(now["lr"], old["lr"]);
    }
}

#[test]
fn each_drawn_configuration_runs_once_per_repeat() {
    let ws = Workspace::new();
    let file = ws.experiment(
        "s.toml",
        &search("random", 3, "").replace("jobs = 1", "jobs = 1\nrepeats = 2"),
    );
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 6, "3 configurations x 2 repeats");
    assert!(trials.iter().all(|t| t["status"] == "done"));
    for draw in 0..3 {
        let mut of_draw: Vec<&serde_json::Value> =
            trials.iter().filter(|t| t["draw"] == draw).collect();
        assert_eq!(of_draw.len(), 2, "draw {draw}");
        of_draw.sort_by_key(|t| t["seed"].as_i64());
        assert_eq!(of_draw[0]["lr"], of_draw[1]["lr"], "same configuration");
        assert_eq!(of_draw[0]["seed"], 5);
        assert_eq!(of_draw[1]["seed"], 6);
    }
}

#[test]
fn a_searched_sweeps_report_draws_its_history_and_ranks_its_parameters() {
    let ws = Workspace::new();
    let asha = "[prune]\nmethod = \"asha\"\nmin_epochs = 1\nreduction_factor = 3\n";
    let file = ws.experiment(
        "s.toml",
        &search("random", 12, asha).replace("epochs = 2", "epochs = 3"),
    );
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = ws.path("out/r.md");
    let db = ws.db_arg();
    let out = ws.sweep(&[
        "report",
        "search",
        "-o",
        report.to_str().unwrap(),
        "--db",
        db.as_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&report).unwrap();

    let trials = ws.ls_json();
    let with = |status: &str| trials.iter().filter(|t| t["status"] == status).count();
    let (done, pruned) = (with("done"), with("pruned"));
    assert_eq!(done + pruned, 12, "{trials:?}");
    assert!(pruned > 0 && done > 0, "{trials:?}");
    assert!(
        text.contains(&format!(
            "12 trials drawn: {done} trained every epoch, {pruned} pruned, 0 paused"
        )),
        "{text}"
    );
    // The first trial in draw order with the highest value.
    let value = |t: &serde_json::Value| t["best_val_acc"].as_f64().unwrap();
    let mut finished: Vec<&serde_json::Value> =
        trials.iter().filter(|t| t["status"] == "done").collect();
    finished.sort_by_key(|t| t["id"].as_i64());
    let top = finished.iter().map(|t| value(t)).fold(f64::MIN, f64::max);
    let best = finished.iter().find(|t| value(t) == top).unwrap();
    assert!(
        text.contains(&format!(
            "The best, {:.4}, came from trial #{}",
            best["best_val_acc"].as_f64().unwrap(),
            best["id"]
        )),
        "{text}"
    );

    // Done trials are circles: in both history panels, at the end of their curve, and once in
    // each numeric parameter's panel (lr, batch_size, dropout; optimizer is not numeric).
    let svg = |name: &str| std::fs::read_to_string(ws.path(&format!("out/r-{name}.svg"))).unwrap();
    let circles = |name: &str| svg(name).matches("<circle").count();
    assert_eq!(circles("history"), 2 * done);
    assert_eq!(circles("intermediate"), done);
    assert_eq!(circles("params"), 3 * done);
    let params = svg("params");
    assert!(params.contains("lr (log)") && params.contains("batch_size (log)"));
    assert!(params.contains("\ndropout\n"), "dropout has a linear axis");
    for figure in ["history", "intermediate", "params"] {
        assert!(text.contains(&format!("(r-{figure}.svg)")), "{text}");
    }

    // One importance row per searched parameter, shares adding up to about 100%.
    let table = &text[text.find("### Parameter importance").unwrap()..];
    let table = &table[..table.find("\n## ").unwrap_or(table.len())];
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| parameter") && !l.starts_with("| ---"))
        .collect();
    let share: f64 = rows
        .iter()
        .map(|r| r.trim_end_matches(" |").rsplit(" | ").next().unwrap())
        .map(|s| s.trim_end_matches('%').parse::<f64>().unwrap_or(0.0))
        .sum();
    assert!((share - 100.0).abs() <= 2.0, "{table}");
    let mut names: Vec<&str> = rows
        .iter()
        .map(|r| r.split(" | ").next().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["| batch_size", "| dropout", "| lr", "| optimizer"],
        "{table}"
    );
    assert!(
        table.contains("the 12 trials that reached epoch 1"),
        "{table}"
    );
}

on_both_databases!(
    two_processes_share_the_budget_exactly,
    asha_pauses_promotes_and_resumes_exactly_where_the_trial_stopped,
    a_search_killed_midway_ends_with_exactly_its_budget,
);
