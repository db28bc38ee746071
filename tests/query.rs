//! The query commands (ls filters, show, best, compare, export, predict, report) on a real
//! small sweep.

mod common;

use common::{Db, Workspace, stderr, stdout};
use serde_json::Value;

const FOUR: &str = r#"
[sweep]
name = "four"
seed = 5
jobs = 2
[data]
split = 0.75
[grid]
arch = ["mlp", "convnet"]
optimizer = "adam"
lr = [0.003, 0.01]
batch_size = 32
epochs = 2
[arch.mlp]
hidden = [32]
"#;

fn swept(db: Db) -> Workspace {
    let ws = Workspace::on(db);
    let out = ws.run(&ws.experiment("four.toml", FOUR), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    ws
}

fn query(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let db = ws.db_arg();
    let mut all = args.to_vec();
    all.extend(["--db", db.as_str()]);
    ws.sweep(&all)
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ls_filters_sorts_limits_and_speaks_four_formats(db: Db) {
    let ws = swept(db);
    let all = json(&query(&ws, &["ls", "--format", "json"]));
    assert_eq!(all.as_array().unwrap().len(), 4);

    let picked = json(&query(
        &ws,
        &[
            "ls",
            "--where",
            "arch = mlp and lr in (0.01, 0.5)",
            "--format",
            "json",
        ],
    ));
    let picked = picked.as_array().unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0]["arch"], "mlp");
    assert_eq!(picked[0]["lr"], 0.01);

    let sorted = json(&query(
        &ws,
        &["ls", "--sort", "-val_acc", "--format", "json"],
    ));
    let accs: Vec<f64> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["val_acc"].as_f64().unwrap())
        .collect();
    assert!(accs.windows(2).all(|w| w[0] >= w[1]), "{accs:?}");
    let top = json(&query(
        &ws,
        &[
            "ls",
            "--sort",
            "val_acc:desc",
            "--limit",
            "1",
            "--format",
            "json",
        ],
    ));
    assert_eq!(top.as_array().unwrap().len(), 1);
    assert_eq!(top[0]["val_acc"].as_f64().unwrap(), accs[0]);

    let csv = stdout(&query(&ws, &["ls", "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("id,sweep,arch,optimizer,lr"), "{csv}");
    let md = stdout(&query(
        &ws,
        &["ls", "--format", "md", "--where", "arch = convnet"],
    ));
    assert!(md.starts_with("| id | sweep | arch |"), "{md}");
    assert!(md.lines().nth(1).unwrap().starts_with("| --- |"), "{md}");
    assert_eq!(md.lines().count(), 4);
    let table = stdout(&query(&ws, &["ls", "--where", "val_acc > 2"]));
    assert!(table.is_empty());
}

fn hostile_filters_are_values_or_errors_and_never_touch_the_data(db: Db) {
    let ws = swept(db);
    let quoted = query(
        &ws,
        &[
            "ls",
            "--where",
            "arch = \"mlp'; DROP TABLE trials; --\"",
            "--format",
            "json",
        ],
    );
    assert_eq!(json(&quoted), Value::Array(vec![]));

    let bare = query(&ws, &["ls", "--where", "arch = mlp; DROP TABLE trials"]);
    assert_eq!(bare.status.code(), Some(2));
    let message = stderr(&bare);
    assert!(message.contains("unexpected character ';'"), "{message}");
    assert!(
        message.contains("  arch = mlp; DROP TABLE trials\n            ^\n"),
        "{message}"
    );

    for (expr, expected) in [
        ("acc > 0.9", "unknown field \"acc\""),
        ("lr > fast", "lr is a number"),
        ("arch = mlp or", "expected a field name"),
        ("lr in 0.1", "expected `(`"),
        ("1 = 1", "expected a field name"),
        ("arch = \"mlp", "never closed"),
    ] {
        let out = query(&ws, &["ls", "--where", expr]);
        assert_eq!(out.status.code(), Some(2), "{expr}");
        assert!(stderr(&out).contains(expected), "{expr}: {}", stderr(&out));
        assert!(stderr(&out).contains('^'), "{expr}: a caret");
    }
    let out = query(&ws, &["ls", "--sort", "speed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown field"));

    let after = json(&query(&ws, &["ls", "--format", "json"]));
    assert_eq!(after.as_array().unwrap().len(), 4, "nothing was dropped");
}

fn show_best_compare_and_export(db: Db) {
    let ws = swept(db);
    let all = json(&query(&ws, &["ls", "--format", "json"]));
    let all = all.as_array().unwrap();
    let id = all[0]["id"].as_i64().unwrap().to_string();

    let text = stdout(&query(&ws, &["show", &id]));
    for section in [
        "Parameters",
        "Epochs",
        "Checkpoints",
        "Test: loss",
        "Confusion matrix",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(text.contains("Ankle boot"), "class names:\n{text}");
    let detail = json(&query(&ws, &["show", &id, "--format", "json"]));
    assert_eq!(detail["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(detail["confusion"].as_array().unwrap().len(), 10);
    let total: i64 = detail["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|c| c.as_i64().unwrap()))
        .sum();
    assert_eq!(total, 80);
    let missing = query(&ws, &["show", "999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no trial 999"));

    // best: overall and per architecture, checked against the listing.
    let best_of = |arch: Option<&str>| {
        all.iter()
            .filter(|t| arch.is_none_or(|a| t["arch"] == a))
            .max_by(|a, b| {
                a["val_acc"]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b["val_acc"].as_f64().unwrap())
                    .then(b["id"].as_i64().cmp(&a["id"].as_i64()))
            })
            .unwrap()["id"]
            .clone()
    };
    let best = json(&query(&ws, &["best", "--format", "json"]));
    assert_eq!(best.as_array().unwrap().len(), 1);
    assert_eq!(best[0]["id"], best_of(None));
    let per_arch = json(&query(&ws, &["best", "--by", "arch", "--format", "json"]));
    let per_arch = per_arch.as_array().unwrap();
    assert_eq!(per_arch.len(), 2);
    assert_eq!(per_arch[0]["id"], best_of(Some("mlp")));
    assert_eq!(per_arch[1]["id"], best_of(Some("convnet")));
    let bad = query(&ws, &["best", "--metric", "speed"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = query(&ws, &["best", "--by", "colour"]);
    assert_eq!(bad.status.code(), Some(2));

    // compare: the differing fields are marked.
    let (a, b) = (
        all[0]["id"].as_i64().unwrap().to_string(),
        all[1]["id"].as_i64().unwrap().to_string(),
    );
    let text = stdout(&query(&ws, &["compare", &a, &b]));
    assert!(text.contains("* lr"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("arch ")), "{text}");
    let rows = json(&query(&ws, &["compare", &a, &b, "--format", "json"]));
    let differs = |field: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["field"] == field)
            .unwrap()["differs"]
            .clone()
    };
    assert_eq!(differs("lr"), Value::Bool(true));
    assert_eq!(differs("arch"), Value::Bool(false));
    // The table rounds measured figures as ls does (4 decimals, seconds to 1); JSON keeps them.
    let table_row = |field: &str| {
        let line = text
            .lines()
            .find(|l| l.trim_start_matches("* ").starts_with(&format!("{field} ")))
            .unwrap_or_else(|| panic!("no {field} row in {text}"))
            .to_string();
        line.split_whitespace()
            .rev()
            .take(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for value in table_row("val_loss") {
        assert_eq!(
            value.split('.').nth(1).map(str::len),
            Some(4),
            "{value} in {text}"
        );
    }
    for value in table_row("duration_s") {
        assert_eq!(
            value.split('.').nth(1).map(str::len),
            Some(1),
            "{value} in {text}"
        );
    }
    let full = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["field"] == "val_loss")
        .unwrap();
    let key = format!("trial {a}");
    let digits = full[key.as_str()]
        .to_string()
        .split('.')
        .nth(1)
        .map_or(0, str::len);
    assert!(digits > 4, "JSON keeps full precision: {full}");

    // export: per trial and per epoch.
    let csv = stdout(&query(&ws, &["export"]));
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.lines().next().unwrap().contains("test_acc"));
    let epochs = json(&query(&ws, &["export", "--epochs", "--format", "json"]));
    let epochs = epochs.as_array().unwrap();
    assert_eq!(epochs.len(), 8);
    assert!(
        epochs
            .iter()
            .all(|e| e["trial"].is_i64() && e["val_loss"].is_f64())
    );
}

fn predict_writes_one_label_per_test_image(db: Db) {
    let ws = swept(db);
    let all = json(&query(&ws, &["ls", "--format", "json"]));
    let mlp = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["arch"] == "mlp")
        .unwrap();
    let output = ws.path("predictions.txt");
    let data = ws.data();
    let out = query(
        &ws,
        &[
            "predict",
            &mlp["id"].to_string(),
            "-o",
            output.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let labels: Vec<u8> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(labels.len(), 80);
    assert!(labels.iter().all(|&l| l < 10));
    // The test images of the workspace data set have label (i * 7 + 29) % 10.
    let correct = labels
        .iter()
        .enumerate()
        .filter(|(i, l)| (i * 7 + 29) % 10 == **l as usize)
        .count();
    let message = stderr(&out);
    assert!(
        message.contains(&format!("accuracy {:.4}", correct as f64 / 80.0)),
        "{message}"
    );

    let pending = query(&ws, &["predict", "999"]);
    assert_eq!(pending.status.code(), Some(1));
}

fn report_writes_markdown_with_svg_figures_and_a_baseline(db: Db) {
    let ws = swept(db);
    let other = ws.experiment(
        "other.toml",
        &FOUR
            .replace("name = \"four\"", "name = \"other\"")
            .replace("lr = [0.003, 0.01]", "lr = 0.003"),
    );
    assert!(ws.run(&other, &[]).status.success());
    let report = ws.path("out/report.md");
    let out = query(
        &ws,
        &[
            "report",
            "four",
            "-o",
            report.to_str().unwrap(),
            "--baseline",
            "other",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "# Sweep `four`",
        "## Summary",
        "## Leaderboard",
        "## What mattered",
        "### arch",
        "### lr",
        "## Learning curves",
        "![loss per epoch](report-loss.svg)",
        "## Best trial",
        "### Confusion matrix",
        "## Against `other`",
        "Configurations present in both sweeps",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(
        !text.contains("## Search"),
        "a grid has no search section:\n{text}"
    );
    assert!(
        text.contains("Most confused pairs")
            || text.contains("every test image was classified correctly"),
        "{text}"
    );
    for figure in ["report-loss.svg", "report-accuracy.svg"] {
        let svg = std::fs::read_to_string(ws.path("out").join(figure)).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(
            doc.descendants()
                .any(|n| n.tag_name().name() == "polyline" || n.tag_name().name() == "path"),
            "curves drawn"
        );
    }

    let missing = query(&ws, &["report", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("known: four, other"));
}

#[test]
fn empty_or_missing_databases_get_clear_messages() {
    let ws = Workspace::new();
    for args in [
        vec!["ls"],
        vec!["show", "1"],
        vec!["best"],
        vec!["export"],
        vec!["report", "x"],
    ] {
        let out = query(&ws, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("no results database"), "{args:?}");
    }
    // A file that is not SQLite's is named as such at once, and left as it was.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let sweep::store::Location::Sqlite(path) = ws.db() else {
        unreachable!("a SQLite workspace")
    };
    std::fs::write(&path, &garbage).unwrap();
    let toml = ws.experiment("tiny.toml", common::TINY);
    for out in [query(&ws, &["ls"]), ws.run(&toml, &[])] {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out)
                .contains("not a SQLite database, so not a sweep results file; it was left"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
    // A directory is named as one, for the commands that write and those that read.
    let dir = ws.path("data");
    let dir = dir.to_str().unwrap();
    for out in [
        ws.sweep(&["ls", "--db", dir]),
        ws.sweep(&["run", toml.to_str().unwrap(), "--db", dir]),
    ] {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains(&format!(
                "database {dir}: is a directory: --db takes a file (such as {dir}/sweep.db)"
            )),
            "{}",
            stderr(&out)
        );
    }
    std::fs::remove_file(&path).unwrap();
    sweep::store::Store::open(ws.db()).unwrap();
    let out = query(&ws, &["ls"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("no trials match"));
    let out = query(&ws, &["best"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no finished trial"),
        "{}",
        stderr(&out)
    );
    let out = query(&ws, &["report", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("none yet"), "{}", stderr(&out));
}

on_both_databases!(
    ls_filters_sorts_limits_and_speaks_four_formats,
    hostile_filters_are_values_or_errors_and_never_touch_the_data,
    show_best_compare_and_export,
    predict_writes_one_label_per_test_image,
    report_writes_markdown_with_svg_figures_and_a_baseline,
);

#[test]
fn output_that_cannot_be_written_is_an_error_and_a_closed_pipe_is_not() {
    let ws = swept(Db::Sqlite);
    let db = ws.db_arg();
    for args in [
        vec!["export", "--format", "csv"],
        vec!["ls", "--format", "json"],
        vec!["show", "1"],
    ] {
        let mut all = args.clone();
        all.extend(["--db", db.as_str()]);
        // /dev/full takes no bytes: every write fails as on a full disk.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args(&all)
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("standard output: No space left on device"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // `sweep ls | head -1`, head gone before sweep writes: sweep says nothing and exits 0.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["export", "--format", "json", "--db", db.as_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}
