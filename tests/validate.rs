//! `sweep validate` and the experiment file's error messages, through the real binary.

mod common;

use common::{Workspace, stderr, stdout};

#[test]
fn validate_prints_the_expanded_grid_as_table_and_json() {
    let ws = Workspace::new();
    let file = ws.experiment(
        "grid.toml",
        r#"
[sweep]
repeats = 2
[data]
split = [0.8, 0.9]
[grid]
arch = ["mlp", "cnn", "lenet5"]
optimizer = ["sgd", "adam"]
lr = [0.001, 0.01]
[optimizer.sgd]
momentum = 0.9
"#,
    );
    let out = ws.sweep(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    // 3 archs x 2 optimizers x 2 lrs x 2 splits x 2 repeats, plus the header line.
    assert_eq!(table.lines().count(), 48 + 1);
    assert!(stderr(&out).contains("48 trials"));

    let out = ws.sweep(&["validate", file.to_str().unwrap(), "--format", "json"]);
    let trials: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trials.len(), 48);
    let first = &trials[0];
    assert_eq!(first["sweep"], "grid");
    assert_eq!(first["arch"], "mlp");
    assert_eq!(first["optimizer"], "sgd");
    assert_eq!(first["momentum"], 0.9);
    assert_eq!(first["hidden"], serde_json::json!([256, 128, 64]));
    assert_eq!(first["lr"], 0.001);
    assert_eq!(first["split"], 0.8);
    assert_eq!(
        (first["seed"].as_u64(), trials[1]["seed"].as_u64()),
        (Some(0), Some(1))
    );
    let adam = trials.iter().find(|t| t["optimizer"] == "adam").unwrap();
    assert_eq!(adam["eps"], 1e-8);
    assert!(
        adam.get("momentum").is_none(),
        "sgd options stay off adam trials"
    );
    let keys: std::collections::HashSet<_> = trials.iter().map(|t| t["key"].clone()).collect();
    assert_eq!(keys.len(), 48, "every trial has its own key");
}

#[test]
fn overrides_layer_file_then_environment_then_set_flags() {
    let ws = Workspace::new();
    let file = ws.experiment("x.toml", "[grid]\nlr = 0.1\nepochs = 3\n");
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()[0].clone()
    };
    let from_file = json(ws.sweep(&["validate", file.to_str().unwrap(), "--format", "json"]));
    assert_eq!(
        (from_file["lr"].as_f64(), from_file["epochs"].as_u64()),
        (Some(0.1), Some(3))
    );
    assert_eq!(from_file["sweep"], "x", "the sweep is named after the file");

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"));
    let out = command
        .args(["validate", file.to_str().unwrap(), "--format", "json"])
        .env("SWEEP_GRID__LR", "0.2")
        .env("SWEEP_DATA", "/not/a/config/key")
        .output()
        .unwrap();
    assert_eq!(json(out)["lr"], 0.2);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["validate", file.to_str().unwrap(), "--format", "json"])
        .args(["--set", "grid.lr=0.3", "--set", "sweep.name=renamed"])
        .env("SWEEP_GRID__LR", "0.2")
        .output()
        .unwrap();
    let trial = json(out);
    assert_eq!(
        (trial["lr"].as_f64(), trial["sweep"].as_str()),
        (Some(0.3), Some("renamed"))
    );
}

fn rejected(toml: &str, expected: &[&str]) {
    let ws = Workspace::new();
    let file = ws.experiment("bad.toml", toml);
    for command in ["validate", "run"] {
        let out = if command == "run" {
            ws.run(&file, &[])
        } else {
            ws.sweep(&["validate", file.to_str().unwrap()])
        };
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command} must exit 2 on {toml:?}"
        );
        let message = stderr(&out);
        assert!(message.contains("bad.toml"), "names the file: {message}");
        for needle in expected {
            assert!(
                message.contains(needle),
                "expected {needle:?} in: {message}"
            );
        }
        assert!(
            ws.nothing_recorded(),
            "a rejected experiment touches no database"
        );
    }
}

#[test]
fn malformed_toml_names_line_and_column() {
    rejected("[grid]\nlr = [0.1,\n", &["line 2", "column"]);
}

#[test]
fn unknown_architecture_lists_the_known_ones() {
    rejected(
        "[grid]\narch = [\"mlp\", \"vgg\"]\n",
        &["vgg", "lenet5", "convnet", "resnet", "grid.arch"],
    );
}

#[test]
fn unknown_keys_are_errors() {
    rejected("[grid]\nlearning_rate = 0.1\n", &["learning_rate", "grid"]);
    rejected("[sweeep]\nname = \"x\"\n", &["sweeep"]);
}

#[test]
fn invalid_values_name_key_value_and_rule() {
    rejected(
        "[grid]\nlr = [0.01, 0]\n",
        &["grid.lr = 0", "greater than 0"],
    );
    rejected("[grid]\nlr = -0.5\n", &["grid.lr = -0.5"]);
    rejected(
        "[data]\nsplit = 1.0\n",
        &["data.split = 1", "between 0 and 1"],
    );
    rejected("[data]\nsplit = [0.8, 0]\n", &["data.split = 0"]);
    rejected("[grid]\ndropout = 1.0\n", &["grid.dropout = 1", "[0, 1)"]);
    rejected("[grid]\nepochs = 0\n", &["grid.epochs = 0"]);
    rejected("[grid]\nbatch_size = 0\n", &["grid.batch_size = 0"]);
    rejected("[grid]\nlr = \"fast\"\n", &["grid.lr", "string"]);
}

#[test]
fn bad_objectives_are_refused_with_the_key_named() {
    let search = "[sweep]\nsampler = \"tpe\"\ntrials = 10\n";
    let grid = "[grid]\nlr = { log_uniform = [1e-4, 1e-1] }\nepochs = 3\n";
    let with = |sweep: &str, rest: &str| format!("{search}{sweep}\n{grid}{rest}");
    rejected(
        &with("objectives = [\"val_acc\", \"flops\"]", ""),
        &["sweep.objectives", "flops", "params", "latency_ms"],
    );
    rejected(
        &with("objectives = [\"params\", \"val_acc\", \"params\"]", ""),
        &["sweep.objectives", "params is listed twice"],
    );
    rejected(
        &with("objectives = [\"val_acc\", \"val_loss\"]", ""),
        &["sweep.objectives", "keep one"],
    );
    rejected(
        &with(
            "objectives = [\"val_acc\", \"params\"]\nmetric = \"val_acc\"",
            "",
        ),
        &["sweep.metric", "remove metric"],
    );
    rejected(
        &with(
            "objectives = [\"val_acc\", \"params\", \"epoch_seconds\", \"latency_ms\"]",
            "",
        ),
        &["sweep.objectives", "at most three"],
    );
    rejected(
        &format!("[sweep]\nsampler = \"nsga2\"\ntrials = 10\n{grid}"),
        &["sweep.sampler", "use sampler = \"tpe\""],
    );
    rejected(
        &with(
            "objectives = [\"val_acc\", \"params\"]",
            "[prune]\nmethod = \"median\"\n",
        ),
        &["prune.method", "\"asha\""],
    );
    // One objective is today's metric; two with ASHA are fine.
    let ws = Workspace::new();
    for (sweep, shown) in [
        (
            "objectives = [\"val_loss\"]",
            "objectives: val_loss (min)\n",
        ),
        (
            "objectives = [\"val_acc\", \"params\"]\n[prune]\nmethod = \"asha\"",
            "objectives: val_acc (max), params (min)\nearly stopping: asha, rungs at 1 x 3^k \
             epochs, ranked by non-dominated sorting then crowding distance",
        ),
    ] {
        let file = ws.experiment("ok.toml", &with(sweep, ""));
        let out = ws.sweep(&["validate", file.to_str().unwrap()]);
        assert!(out.status.success(), "{sweep}: {}", stderr(&out));
        assert!(stdout(&out).contains(shown), "{}", stdout(&out));
    }
}

#[test]
fn an_empty_axis_is_an_empty_grid() {
    rejected("[grid]\noptimizer = []\n", &["grid.optimizer", "empty"]);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let ws = Workspace::new();
    let out = ws.sweep(&["validate", "does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read experiment file does-not-exist.toml"));
}

#[test]
fn shipped_experiment_files_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("seeds")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 11, "{files:?}");
    let ws = Workspace::new();
    for file in files {
        let out = ws.sweep(&["validate", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
    }
}

/// A trial's key is how a database recognises it when a sweep runs again: a change to how trial
/// specs are built or serialised must not change the keys of trials already recorded.
#[test]
fn trial_keys_stay_what_earlier_versions_recorded() {
    let ws = Workspace::new();
    let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/quick.toml");
    let out = ws.sweep(&["validate", quick, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trials.len(), 32);
    assert_eq!(trials[0]["key"], "adb8ba8f393a8bfe");
    assert_eq!(trials[5]["key"], "68da25ebcf718b08");
}
