//! Training ingredients beyond the seed scripts (augmentation, learning-rate schedules with
//! warm-up, label smoothing, batch norm, a residual network), through the real binary on tiny
//! IDX files.

mod common;

use common::{Workspace, stderr};
use std::os::unix::process::ExitStatusExt;
use sweep::store::Store;
use sweep::trial::TrialId;

/// One trial of `grid` (extra `[grid]` keys) on an mlp (unless `grid` names an arch), four
/// epochs.
fn experiment(grid: &str) -> String {
    let arch = if grid.contains("arch =") {
        ""
    } else {
        "arch = \"mlp\""
    };
    format!(
        r#"
[sweep]
name = "ingredients"
seed = 3
[data]
split = 0.75
[grid]
{arch}
optimizer = "sgd"
lr = 0.05
batch_size = 16
epochs = 4
{grid}
[optimizer.sgd]
momentum = 0.9
[arch.mlp]
hidden = [32]
"#
    )
}

/// Epoch, train loss, train acc, val loss, val acc of every epoch of the only trial.
type Figures = Vec<(i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>)>;

fn figures(ws: &Workspace) -> Figures {
    let store = Store::open_existing(ws.db()).unwrap();
    let id = ws.ls_json()[0]["id"].as_i64().unwrap();
    store
        .epochs(TrialId(id))
        .unwrap()
        .iter()
        .map(|e| (e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc))
        .collect()
}

fn trained(grid: &str) -> (Workspace, Figures) {
    let ws = Workspace::new();
    let out = ws.run(&ws.experiment("i.toml", &experiment(grid)), &[]);
    assert!(out.status.success(), "{grid}: {}", stderr(&out));
    let figures = figures(&ws);
    (ws, figures)
}

const EVERY: [&str; 8] = [
    "augment = \"flip\"",
    "augment = \"flip+crop\"",
    "schedule = \"cosine\"\nwarmup_epochs = 1",
    "schedule = \"step\"\n[schedule.step]\nevery = 1",
    "schedule = \"onecycle\"",
    "label_smoothing = 0.1",
    "arch = \"cnn\"\nbatch_norm = true\n[arch.cnn]\nchannels = [4, 8]\nhidden = [16, 16]",
    "arch = \"resnet\"\n[arch.resnet]\nchannels = [4, 8]\nblocks = 1",
];

#[test]
fn each_ingredient_is_deterministic_changes_training_and_resumes_exactly() {
    let (_, plain) = trained("");
    for grid in EVERY {
        let (ws, first) = trained(grid);
        assert_eq!(first.len(), 4, "{grid}");
        let (_, second) = trained(grid);
        assert_eq!(first, second, "{grid}: the same seed trains the same");
        assert_ne!(first, plain, "{grid}: the ingredient changes training");
        if grid.contains("resnet") {
            // The test images' classes differ only in where a band lies, which global average
            // pooling cannot see away from the edges: the resnet shows it learns by its loss.
            let (start, end) = (first[0].1.unwrap(), first[3].1.unwrap());
            assert!(end < 0.9 * start, "{grid}: train loss {start} -> {end}");
        } else {
            assert!(
                ws.ls_json()[0]["val_acc"].as_f64().unwrap() > 0.2,
                "{grid}: it still learns"
            );
        }

        // Killed after epoch 2's files are in place, then run again: the same figures as the
        // uninterrupted run (generators, schedule position and optimizer state restored).
        let killed = Workspace::new();
        let file = killed.experiment("i.toml", &experiment(grid));
        let out = killed.run_with_env(
            &file,
            &[],
            &[("RUST_LOG", "warn"), ("SWEEP_KILL_AT", "before-event:2")],
        );
        assert_eq!(out.status.signal(), Some(9), "{grid}: {}", stderr(&out));
        let out = killed.run_with_env(&file, &[], &[("RUST_LOG", "sweep=info")]);
        let log = stderr(&out);
        assert!(out.status.success(), "{grid}: {log}");
        assert!(log.contains("resuming trial=1 epoch=2"), "{grid}: {log}");
        assert_eq!(figures(&killed), first, "{grid}: resumed figures");
        for key in ["test_acc", "test_loss", "best_epoch"] {
            assert_eq!(
                killed.ls_json()[0][key],
                ws.ls_json()[0][key],
                "{grid}: {key}"
            );
        }
    }
}

#[test]
fn augmentation_never_touches_evaluation() {
    let (ws, _) = trained("augment = \"flip+crop\"");
    // The best checkpoint classifies the validation images exactly as recorded at its epoch,
    // twice over: evaluation draws nothing from the augmentation stream.
    for _ in 0..2 {
        predict_gives_the_best_epochs_validation_accuracy(&ws);
    }
}

/// `sweep predict 1 --split val` reports the validation accuracy recorded at trial 1's best
/// epoch.
fn predict_gives_the_best_epochs_validation_accuracy(ws: &Workspace) {
    let best_epoch = ws.ls_json()[0]["best_epoch"].as_i64().unwrap();
    let recorded = figures(ws)[best_epoch as usize - 1].4.unwrap();
    let (db, data) = (ws.db_arg(), ws.data());
    let out = ws.sweep(&[
        "predict",
        "1",
        "--split",
        "val",
        "-o",
        "val.txt",
        "--db",
        &db,
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains(&format!("accuracy {recorded:.4}")),
        "recorded {recorded}: {log}"
    );
}

#[test]
fn flipped_evaluation_leaves_training_alone_and_predict_evaluates_alike() {
    let (_, plain) = trained("");
    let ws = Workspace::new();
    let text = experiment("").replace("[data]\n", "[data]\neval_flip = true\n");
    let out = ws.run(&ws.experiment("i.toml", &text), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let flipped = figures(&ws);
    // The same training, epoch by epoch; validation also sees each image mirrored.
    for (a, b) in plain.iter().zip(&flipped) {
        assert_eq!((a.0, a.1, a.2), (b.0, b.1, b.2));
    }
    assert_ne!(
        plain.iter().map(|e| e.3).collect::<Vec<_>>(),
        flipped.iter().map(|e| e.3).collect::<Vec<_>>()
    );
    assert_eq!(ws.ls_json()[0]["eval_flip"], true);
    predict_gives_the_best_epochs_validation_accuracy(&ws);
    let db = ws.db_arg();
    let listed = ws.sweep(&["ls", "--db", &db, "--where", "eval_flip = true"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("eval_flip"));
}

#[test]
fn label_smoothing_shapes_the_training_loss_and_leaves_validation_loss_plain() {
    let (_, plain) = trained("");
    let (_, smoothed) = trained("label_smoothing = 0.1");
    // Smoothed targets (0.91 on the label, 0.01 elsewhere) put a floor under the training
    // loss: their entropy, 0.50. Plain cross-entropy has none, and the validation loss is
    // plain cross-entropy in both runs, so it falls below that floor as the model learns.
    let floor = -(0.91f64 * 0.91f64.ln() + 9.0 * 0.01 * 0.01f64.ln());
    assert!(
        smoothed.iter().all(|e| e.1.unwrap() >= floor - 1e-6),
        "{smoothed:?}"
    );
    assert!(plain.last().unwrap().1.unwrap() < floor, "{plain:?}");
    assert!(smoothed.last().unwrap().3.unwrap() < floor, "{smoothed:?}");
}

#[test]
fn new_keys_are_listed_filtered_and_left_out_of_old_trials_keys() {
    let ws = Workspace::new();
    let file = ws.experiment(
        "i.toml",
        &experiment("augment = [\"none\", \"flip\"]\nschedule = [\"constant\", \"cosine\"]")
            .replace("epochs = 4", "epochs = 1"),
    );
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = ws.db_arg();
    let ls = |filter: &str| {
        let out = ws.sweep(&["ls", "--where", filter, "--db", db.as_str()]);
        assert!(out.status.success(), "{filter}: {}", stderr(&out));
        common::stdout(&out)
    };
    let all = ls("id > 0");
    let header = all.lines().next().unwrap();
    assert!(
        header.contains("augment") && header.contains("schedule"),
        "{all}"
    );
    assert!(
        !header.contains("label_smoothing"),
        "only varied keys: {all}"
    );
    assert_eq!(ls("augment = none").lines().count(), 3, "header + 2 trials");
    assert_eq!(
        ls("augment = flip and schedule = cosine").lines().count(),
        2
    );
    assert_eq!(ls("warmup = 0").lines().count(), 5);

    // A trial with every new key at its default keeps the key it had before they existed.
    let store = Store::open_existing(ws.db()).unwrap();
    let sweep = store.sweep_id("ingredients").unwrap().unwrap();
    let stored = store.sweep_trials(sweep).unwrap();
    let (_, plain) = stored
        .iter()
        .find(|(_, t)| t.augment.as_str() == "none" && t.schedule.as_str() == "constant")
        .unwrap();
    let json = serde_json::to_string(plain).unwrap();
    for key in [
        "augment",
        "schedule",
        "warmup_epochs",
        "label_smoothing",
        "crop_padding",
    ] {
        assert!(!json.contains(key), "{key} in {json}");
    }
}

#[test]
fn bad_ingredients_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    for (grid, extra, expected) in [
        ("augment = \"rotate\"", "", vec!["rotate", "flip+crop"]),
        ("schedule = \"linear\"", "", vec!["linear", "onecycle"]),
        (
            "label_smoothing = 1.0",
            "",
            vec!["grid.label_smoothing = 1", "[0, 1)"],
        ),
        (
            "warmup_epochs = 4",
            "",
            vec!["grid.warmup_epochs = 4", "before the last epoch"],
        ),
        (
            "schedule = \"step\"",
            "[schedule.step]\nevery = 0\n",
            vec!["schedule.step.every = 0"],
        ),
        (
            "schedule = \"step\"",
            "[schedule.step]\ngamma = -1\n",
            vec!["schedule.step.gamma = -1"],
        ),
        (
            "augment = \"crop\"",
            "[data]\ncrop_padding = 20\n",
            vec!["data.crop_padding = 20"],
        ),
        (
            "augment = { uniform = [0, 1] }",
            "",
            vec!["grid.augment", "not a distribution"],
        ),
        (
            "batch_norm = true",
            "",
            vec!["grid.batch_norm = true", "mlp has no convolutions"],
        ),
        (
            "arch = \"resnet\"\nbatch_norm = false",
            "",
            vec!["grid.batch_norm = false", "resnet always uses batch norm"],
        ),
        (
            "batch_norm = { uniform = [0, 1] }",
            "",
            vec!["grid.batch_norm", "not a distribution"],
        ),
        (
            "arch = \"resnet\"",
            "[arch.resnet]\nblocks = 0\n",
            vec!["arch.resnet.blocks = 0"],
        ),
        (
            "arch = \"resnet\"",
            "[arch.resnet]\nchannels = []\n",
            vec!["arch.resnet.channels = []", "1 to 4 stage widths"],
        ),
        ("arch = \"vgg\"", "", vec!["vgg", "resnet"]),
    ] {
        let toml = experiment(grid).replace("[data]\nsplit = 0.75\n", "") + extra;
        let toml = if extra.contains("[data]") {
            toml
        } else {
            toml + "[data]\nsplit = 0.75\n"
        };
        let file = ws.experiment("bad.toml", &toml);
        let out = ws.sweep(&["validate", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{grid} {extra}: {}",
            stderr(&out)
        );
        let message = stderr(&out);
        for needle in expected {
            assert!(
                message.contains(needle),
                "{grid} {extra}: {needle} in {message}"
            );
        }
    }
}

#[test]
fn batch_norm_is_listed_filtered_and_left_out_of_keys_when_off() {
    let ws = Workspace::new();
    let grid = "arch = \"cnn\"\nbatch_norm = [false, true]\n[arch.cnn]\nchannels = [4, 8]\nhidden = [16, 16]";
    let file = ws.experiment(
        "bn.toml",
        &experiment(grid).replace("epochs = 4", "epochs = 1"),
    );
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = ws.db_arg();
    let ls = |filter: &str| {
        let out = ws.sweep(&["ls", "--where", filter, "--db", db.as_str()]);
        assert!(out.status.success(), "{filter}: {}", stderr(&out));
        common::stdout(&out)
    };
    let all = ls("id > 0");
    assert!(all.lines().next().unwrap().contains("batch_norm"), "{all}");
    for filter in ["batch_norm = true", "bn = false"] {
        assert_eq!(ls(filter).lines().count(), 2, "{filter}: header + 1 trial");
    }
    let store = Store::open_existing(ws.db()).unwrap();
    let sweep = store.sweep_id("ingredients").unwrap().unwrap();
    for (_, trial) in store.sweep_trials(sweep).unwrap() {
        let json = serde_json::to_string(&trial).unwrap();
        assert_eq!(json.contains("batch_norm"), trial.batch_norm, "{json}");
    }
}
