//! `sweep run` and `sweep ls` end to end: real binary, real SQLite file, tiny real IDX files.

mod common;

use common::{Db, TINY, Workspace, stderr, stdout};
use sweep::store::Store;
use sweep::train::file_sha256;
use sweep::trial::TrialId;

fn run_records_params_epochs_checkpoints_and_test_results(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 trials, 0 already done, 2 done"));

    let trials = ws.ls_json();
    assert_eq!(trials.len(), 2);
    for trial in &trials {
        assert_eq!(trial["sweep"], "tiny");
        assert_eq!(trial["status"], "done");
        assert_eq!(trial["optimizer"], "adam");
        assert_eq!(trial["lr"], 0.003);
        assert_eq!(trial["batch_size"], 32);
        assert_eq!(trial["epochs"], 2);
        assert_eq!(trial["epochs_done"], 2);
        assert_eq!(trial["device"], "cpu");
        for metric in ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"] {
            assert!(trial[metric].is_f64(), "{metric} missing in {trial}");
        }
    }
    let mlp = trials.iter().find(|t| t["arch"] == "mlp").unwrap();
    assert!(
        mlp["test_acc"].as_f64().unwrap() > 0.5,
        "the bands are learnable: {mlp}"
    );

    let store = Store::open_existing(ws.db()).unwrap();
    for trial in &trials {
        let id = trial["id"].as_i64().unwrap();
        let epochs = store.epochs(TrialId(id)).unwrap();
        assert_eq!(
            epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let checkpoints = store.checkpoints(TrialId(id)).unwrap();
        let kinds: Vec<&str> = checkpoints.iter().map(|c| c.kind.as_str()).collect();
        // `keep = "best"` by default: the last epoch's model and the resume files went.
        assert_eq!(kinds, vec!["best"]);
        for c in &checkpoints {
            let path = std::path::Path::new(&c.path);
            assert!(path.starts_with(ws.path("runs").join("tiny")), "{}", c.path);
            assert_eq!(std::fs::metadata(path).unwrap().len() as i64, c.size_bytes);
            assert_eq!(file_sha256(path).unwrap(), c.sha256);
        }
        let confusion = store.confusion(TrialId(id)).unwrap();
        assert_eq!(confusion.len(), 100);
        assert_eq!(
            confusion.iter().map(|c| c.2).sum::<i64>(),
            80,
            "every test image counted"
        );
    }

    let table = ws.sweep(&["ls", "--db", &ws.db_arg()]);
    let text = stdout(&table);
    assert!(text.starts_with("id"), "{text}");
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains("lenet5") && text.contains("done"));
}

fn test_limit_zero_skips_the_test_pass_and_predict_tests_later(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    let out = ws.run(
        &file,
        &["--set", "data.test_limit=0", "--set", "grid.arch=mlp"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["status"], "done");
    assert!(trials[0]["val_acc"].is_f64());
    assert!(trials[0]["test_acc"].is_null(), "{}", trials[0]);
    let id = trials[0]["id"].as_i64().unwrap();
    let store = Store::open_existing(ws.db()).unwrap();
    assert!(store.confusion(TrialId(id)).unwrap().is_empty());

    let labels = ws.path("predictions.txt");
    let predict = ws.sweep(&[
        "predict",
        &id.to_string(),
        "--db",
        &ws.db_arg(),
        "--data",
        ws.data().to_str().unwrap(),
        "-o",
        labels.to_str().unwrap(),
    ]);
    assert!(predict.status.success(), "{}", stderr(&predict));
    let written = std::fs::read_to_string(&labels).unwrap();
    assert_eq!(written.lines().count(), 80, "the whole test set");
}

fn rerunning_skips_finished_trials_and_adds_new_ones(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    assert!(ws.run(&file, &[]).status.success());
    let before = ws.ls_json();

    let again = ws.run(&file, &[]);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("2 trials, 2 already done, 0 done"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        ws.ls_json(),
        before,
        "finished trials are left exactly as they were"
    );

    let wider = ws.run(&file, &["--set", "grid.lr=[0.003, 0.01]"]);
    assert!(wider.status.success(), "{}", stderr(&wider));
    assert!(stderr(&wider).contains("4 trials, 2 already done, 2 done"));
    let after = ws.ls_json();
    assert_eq!(after.len(), 4);
    for old in &before {
        assert!(after.contains(old));
    }
}

#[test]
fn a_trial_gives_the_same_metrics_whatever_runs_beside_it() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    assert!(ws.run(&file, &["--jobs", "2"]).status.success());
    let parallel = ws.ls_json();
    std::fs::remove_file(ws.path("results.db")).unwrap();
    assert!(
        ws.run(&file, &["--jobs", "1", "--threads", "1"])
            .status
            .success()
    );
    let serial = ws.ls_json();
    for (a, b) in parallel.iter().zip(&serial) {
        for metric in ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"] {
            assert_eq!(a[metric], b[metric], "{metric} of {}", a["arch"]);
        }
    }
}

fn a_diverging_trial_is_recorded_and_the_sweep_goes_on(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment(
        "nan.toml",
        r#"
[sweep]
name = "nan"
[data]
split = 0.75
[grid]
arch = "mlp"
optimizer = "sgd"
lr = [1e30, 0.01]
batch_size = 32
epochs = 2
[arch.mlp]
hidden = [16]
"#,
    );
    let out = ws.run(&file, &[]);
    assert!(
        out.status.success(),
        "diverging is a result, not a failure: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("1 diverged"));
    let trials = ws.ls_json();
    let diverged = trials.iter().find(|t| t["lr"] == 1e30).unwrap();
    assert_eq!(diverged["status"], "diverged");
    assert!(diverged["error"].as_str().unwrap().contains("loss became"));
    let healthy = trials.iter().find(|t| t["lr"] == 0.01).unwrap();
    assert_eq!(healthy["status"], "done");
}

#[test]
fn missing_data_names_the_install_command_and_records_nothing() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    let empty = ws.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ws.sweep(&[
        "run",
        file.to_str().unwrap(),
        "--db",
        &ws.db_arg(),
        "--data",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("apt-get install -y dataset-fashion-mnist"),
        "{message}"
    );
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert!(ws.nothing_recorded());
}

#[test]
fn corrupt_data_files_are_errors_not_panics() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    let labels = ws.data().join("t10k-labels-idx1-ubyte");

    let whole = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &whole[..whole.len() - 5]).unwrap();
    let out = ws.run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    assert!(stderr(&out).contains("t10k-labels-idx1-ubyte"));

    let images = ws.data().join("train-images-idx3-ubyte.gz");
    let gz = std::fs::read(&images).unwrap();
    std::fs::write(&images, &gz[..gz.len() / 2]).unwrap();
    std::fs::write(&labels, &whole).unwrap();
    let out = ws.run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("corrupt or truncated gzip"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
    assert!(ws.nothing_recorded());
}

#[test]
fn mismatched_image_and_label_counts_are_reported() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    std::fs::write(
        ws.data().join("t10k-labels-idx1-ubyte"),
        sweep::data::encode_idx(&[79], &[0; 79]),
    )
    .unwrap();
    let out = ws.run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("80 images but"), "{}", stderr(&out));
}

#[test]
fn ls_on_a_missing_database_says_how_to_make_one() {
    let ws = Workspace::new();
    let out = ws.sweep(&["ls", "--db", "nothing-here.db"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no results database at nothing-here.db"));
    assert!(stderr(&out).contains("sweep run"));
    assert!(!ws.path("nothing-here.db").exists(), "ls creates no file");
}

fn ls_filters_by_sweep_and_rejects_unknown_names(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    assert!(ws.run(&file, &[]).status.success());
    let db = ws.db_arg();
    let out = ws.sweep(&[
        "ls",
        "--db",
        db.as_str(),
        "--sweep",
        "tiny",
        "--format",
        "json",
    ]);
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.len(), 2);
    let out = ws.sweep(&["ls", "--db", db.as_str(), "--sweep", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no sweep named \"other\""));
}

#[test]
fn zero_jobs_or_threads_are_rejected_before_anything_runs() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    for flag in ["--jobs", "--threads"] {
        let out = ws.run(&file, &[flag, "0"]);
        assert_eq!(out.status.code(), Some(2));
        let message = stderr(&out);
        assert!(
            message.contains(&format!("'0' for '{flag}")) && message.contains("at least 1"),
            "{message}"
        );
        assert!(ws.nothing_recorded());
    }
}

on_both_databases!(
    run_records_params_epochs_checkpoints_and_test_results,
    test_limit_zero_skips_the_test_pass_and_predict_tests_later,
    rerunning_skips_finished_trials_and_adds_new_ones,
    a_diverging_trial_is_recorded_and_the_sweep_goes_on,
    ls_filters_by_sweep_and_rejects_unknown_names,
);
