//! A `sweep run` killed with SIGKILL mid-sweep loses nothing already recorded, and running it
//! again finishes every trial exactly once.

mod common;

use common::{Workspace, stderr};
use std::process::{Command, Stdio};
use sweep::store::Store;
use sweep::train::file_sha256;

const LONG: &str = r#"
[sweep]
name = "long"
jobs = 2
[data]
split = 0.8
[grid]
arch = "mlp"
optimizer = "adam"
lr = [0.001, 0.002, 0.003]
batch_size = 16
epochs = 40
[arch.mlp]
hidden = [256, 256]
"#;

#[test]
fn a_killed_run_resumes_without_losing_or_duplicating_results() {
    let ws = Workspace::new();
    let file = ws.experiment("long.toml", LONG);
    let mut child = ws.spawn_run(&file, Stdio::null());
    ws.wait_for_epochs(&mut child, 2);
    child.kill().unwrap();
    child.wait().unwrap();

    let before = ws.ls_json();
    assert!(
        before.iter().any(|t| t["status"] == "running"),
        "killed mid-trial: {before:?}"
    );

    let out = ws.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("continued from the last epoch"),
        "{}",
        stderr(&out)
    );
    let after = ws.ls_json();
    assert_eq!(after.len(), 3);
    let store = Store::open_existing(&ws.db()).unwrap();
    for trial in &after {
        assert_eq!(trial["status"], "done", "{trial}");
        let id = trial["id"].as_i64().unwrap();
        let epochs: Vec<i64> = store.epochs(id).unwrap().iter().map(|e| e.epoch).collect();
        assert_eq!(epochs, (1..=40).collect::<Vec<_>>(), "one row per epoch");
        for c in store.checkpoints(id).unwrap() {
            assert_eq!(
                file_sha256(std::path::Path::new(&c.path)).unwrap(),
                c.sha256
            );
        }
    }
    // A trial that had finished before the kill is kept exactly as it was.
    for old in before.iter().filter(|t| t["status"] == "done") {
        assert!(after.contains(old));
    }

    // Trials continued from their last epoch (model, optimizer and generator state restored)
    // end exactly where an uninterrupted run ends.
    let clean = Workspace::new();
    let out = clean.run(&clean.experiment("long.toml", LONG), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = clean.ls_json();
    for (resumed, uninterrupted) in after.iter().zip(&reference) {
        for metric in ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"] {
            assert_eq!(
                resumed[metric], uninterrupted[metric],
                "{metric}, lr {}",
                resumed["lr"]
            );
        }
    }
}

#[test]
fn ctrl_c_interrupts_cleanly_and_the_next_run_finishes() {
    let ws = Workspace::new();
    let file = ws.experiment("long.toml", LONG);
    let mut child = ws.spawn_run(&file, Stdio::piped());
    ws.wait_for_epochs(&mut child, 1);
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interrupted sweep is not a finished one"
    );
    let message = stderr(&out);
    assert!(message.contains("run the same command again"), "{message}");

    let statuses: Vec<String> = ws
        .ls_json()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(statuses.iter().any(|s| s == "interrupted"), "{statuses:?}");
    assert!(!statuses.iter().any(|s| s == "running"), "{statuses:?}");

    // `sweep resume NAME` continues from the spec stored in the database, no file needed.
    std::fs::remove_file(&file).unwrap();
    let db = ws.db();
    let data = ws.data();
    let resume = |name: &str| {
        ws.sweep(&[
            "resume",
            name,
            "--db",
            db.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
    };
    let out = resume("nope");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no sweep named \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = resume("long");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("continued from the last epoch"),
        "{}",
        stderr(&out)
    );
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));
}
