//! Disk housekeeping through the real binary: what `[sweep] keep` leaves, `sweep rm`,
//! `sweep gc`, the disk figures of `show` and `report`, and `predict` over a whole split.

mod common;

use common::{Db, TINY, Workspace, stderr, stdout};
use std::collections::BTreeSet;
use std::path::Path;
use sweep::store::Store;
use sweep::trial::TrialId;

/// The files under a trial's directory, by name.
fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn db_args(ws: &Workspace) -> [String; 2] {
    ["--db".into(), ws.db_arg()]
}

fn sweep_in(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let db = db_args(ws);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(db.iter().map(String::as_str));
    ws.sweep(&all)
}

fn keep_decides_which_checkpoints_a_finished_trial_leaves(db: Db) {
    for (keep, expected) in [
        ("best", vec!["best.bpk"]),
        ("last", vec!["last.bpk"]),
        ("both", vec!["best.bpk", "last.bpk"]),
        ("none", vec![]),
    ] {
        let ws = Workspace::on(db);
        let file = ws.experiment("tiny.toml", TINY);
        let out = ws.run(&file, &["--set", &format!("sweep.keep=\"{keep}\"")]);
        assert!(out.status.success(), "{keep}: {}", stderr(&out));
        let store = Store::open_existing(ws.db()).unwrap();
        for trial in ws.ls_json() {
            assert_eq!(trial["status"], "done");
            let id = trial["id"].as_i64().unwrap();
            let dir = ws.path("runs/tiny").join(id.to_string());
            let on_disk = files(&dir);
            let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(on_disk, expected, "keep = {keep}: trial {id}");
            assert_eq!(dir.exists(), keep != "none", "keep = {keep}");
            // The rows name exactly the files that are there.
            let rows: BTreeSet<String> = store
                .checkpoints(TrialId(id))
                .unwrap()
                .iter()
                .map(|c| {
                    assert!(Path::new(&c.path).is_file(), "{keep}: {}", c.path);
                    format!("{}.bpk", c.kind)
                })
                .collect();
            assert_eq!(rows, expected, "keep = {keep}: rows of trial {id}");
        }
        let show = stdout(&sweep_in(&ws, &["show", "1"]));
        assert!(show.contains("\nDisk\n"), "{show}");
        let files_line = format!(" {}  ", 2 * expected.len());
        let sweep_line = show
            .lines()
            .find(|l| l.starts_with("sweep tiny"))
            .unwrap_or_else(|| panic!("{show}"));
        assert!(sweep_line.contains(&files_line), "{keep}: {sweep_line}");
    }
}

fn predict_says_when_keep_gave_the_best_checkpoint_up(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    let out = ws.run(&file, &["--set", "sweep.keep=\"last\""]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = ws.data();
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "1", "--data", data.to_str().unwrap()];
        args.extend(extra);
        sweep_in(&ws, &args)
    };
    let out = predict(&[]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains("kept no best checkpoint"), "{message}");
    assert!(message.contains("keep = \"last\""), "{message}");
    assert!(message.contains("--checkpoint last"), "{message}");
    assert!(message.contains("\"both\""), "{message}");
    let out = predict(&["--checkpoint", "last"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("(last epoch 2)"), "{}", stderr(&out));
}

#[test]
fn predict_classifies_the_whole_split_unless_limited() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    // Trained and tested on 20 test images; predict still sees all 80.
    let out = ws.run(&file, &["--set", "data.test_limit=20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = ws.data();
    let output = ws.path("p.txt");
    let predict = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "1",
            "--data",
            data.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = sweep_in(&ws, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines = std::fs::read_to_string(&output).unwrap().lines().count();
        (lines, stderr(&out))
    };
    let (lines, message) = predict(&[]);
    assert_eq!(lines, 80);
    assert!(message.contains("on 80 test images"), "{message}");
    let (lines, message) = predict(&["--limit", "25"]);
    assert_eq!(lines, 25);
    assert!(
        message.contains("on 25 test images (the first 25"),
        "{message}"
    );
    // The validation split of 240 images at 0.75 is 60 images.
    let (lines, message) = predict(&["--split", "val"]);
    assert_eq!(lines, 60);
    assert!(message.contains("on 60 validation images"), "{message}");
}

fn rm_deletes_a_sweeps_rows_and_files_after_saying_what_goes(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    assert!(ws.run(&file, &[]).status.success());
    let other = ws.experiment("other.toml", &TINY.replace("\"tiny\"", "\"other\""));
    assert!(ws.run(&other, &[]).status.success());
    let dir = ws.path("runs/tiny");
    assert!(dir.is_dir());

    // Without a terminal and without --yes nothing goes.
    let out = sweep_in(&ws, &["rm", "tiny"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("2 trials, 4 epochs"), "{message}");
    assert!(message.contains("in 2 files under"), "{message}");
    assert!(message.contains("--yes"), "{message}");
    assert!(dir.is_dir());
    assert_eq!(ws.ls_json().len(), 4);

    let out = sweep_in(&ws, &["rm", "tiny", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("deleted sweep \"tiny\""));
    assert!(!dir.exists());
    let left = ws.ls_json();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|t| t["sweep"] == "other"));
    assert!(
        ws.path("runs/other").is_dir(),
        "the other sweep's files stay"
    );
    let store = Store::open_existing(ws.db()).unwrap();
    assert!(
        store.epochs(TrialId(1)).unwrap().is_empty(),
        "epoch rows went too"
    );

    let out = sweep_in(&ws, &["rm", "tiny", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("known: other"), "{}", stderr(&out));
}

fn rm_refuses_while_a_live_process_runs_the_sweep(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment(
        "slow.toml",
        &TINY
            .replace("epochs = 2", "epochs = 200")
            .replace("jobs = 2", "jobs = 1"),
    );
    let mut child = ws.spawn_run(&file, std::process::Stdio::null());
    ws.wait_for_epochs(&mut child, 1);
    let out = sweep_in(&ws, &["rm", "tiny", "--yes"]);
    let message = stderr(&out);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(message.contains("is being run"), "{message}");
    assert!(message.contains("trial "), "{message}");
    assert_eq!(ws.ls_json().len(), 2, "nothing deleted");
    assert!(ws.path("runs/tiny").is_dir());

    // Once its holder is dead the sweep can go.
    let out = sweep_in(&ws, &["rm", "tiny", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ws.ls_json().is_empty());
}

fn gc_removes_unreferenced_files_and_rows_without_files(db: Db) {
    let ws = Workspace::on(db);
    let file = ws.experiment("tiny.toml", TINY);
    assert!(
        ws.run(&file, &["--set", "sweep.keep=\"both\""])
            .status
            .success()
    );
    let trial = ws.path("runs/tiny/1");
    // Leftovers a kill could leave: a resume file of a final trial, a trial directory the
    // database does not know, a whole directory of a deleted sweep; and a checkpoint removed
    // by hand.
    std::fs::write(trial.join("state.json"), b"{}").unwrap();
    std::fs::create_dir_all(ws.path("runs/tiny/77")).unwrap();
    std::fs::write(ws.path("runs/tiny/77/last.bpk"), [0u8; 1000]).unwrap();
    std::fs::create_dir_all(ws.path("runs/gone/3")).unwrap();
    std::fs::write(ws.path("runs/gone/3/best.bpk"), [0u8; 500]).unwrap();
    std::fs::remove_file(ws.path("runs/tiny/2/last.bpk")).unwrap();
    // Not ours: stays.
    std::fs::write(ws.path("runs/tiny/notes.txt"), b"mine").unwrap();

    let dry = sweep_in(&ws, &["gc", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let listed = stdout(&dry);
    for path in ["runs/tiny/1/state.json", "runs/tiny/77", "runs/gone"] {
        assert!(
            listed.contains(&ws.path(path).display().to_string()),
            "{path}: {listed}"
        );
    }
    assert!(
        listed.contains("trial 2's last checkpoint: its file is gone"),
        "{listed}"
    );
    assert!(
        stderr(&dry).contains("would remove 1.5 KB in 3 files and 1 checkpoint row"),
        "{}",
        stderr(&dry)
    );
    assert!(
        trial.join("state.json").exists(),
        "a dry run deletes nothing"
    );
    // A listing that cannot be written is an error (a full disk); a closed pipe is not.
    let listing_to = |stdout: std::process::Stdio| {
        let mut all = vec!["gc".to_string(), "--dry-run".to_string()];
        all.extend(db_args(&ws));
        std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
            .current_dir(ws.dir.path())
            .args(&all)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = listing_to(full.into());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("standard output: No space left on device"),
        "{}",
        stderr(&out)
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = listing_to(writer.into());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let store = Store::open_existing(ws.db()).unwrap();
    assert_eq!(store.checkpoints(TrialId(2)).unwrap().len(), 2);

    let out = sweep_in(&ws, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!trial.join("state.json").exists());
    assert!(!ws.path("runs/tiny/77").exists());
    assert!(!ws.path("runs/gone").exists());
    assert!(ws.path("runs/tiny/notes.txt").exists());
    assert_eq!(
        files(&trial),
        ["best.bpk", "last.bpk"].map(String::from).into()
    );
    let kinds: Vec<String> = store
        .checkpoints(TrialId(2))
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, ["best"]);

    let again = sweep_in(&ws, &["gc"]);
    assert!(
        stderr(&again).contains("removed 0 B in 0 files and 0 checkpoint rows"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn the_report_says_what_the_checkpoints_take() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    assert!(ws.run(&file, &[]).status.success());
    let report = ws.path("report.md");
    let out = sweep_in(&ws, &["report", "tiny", "-o", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = std::fs::read_to_string(&report).unwrap();
    let bytes: u64 = ["runs/tiny/1/best.bpk", "runs/tiny/2/best.bpk"]
        .iter()
        .map(|p| std::fs::metadata(ws.path(p)).unwrap().len())
        .sum();
    let expected = format!(
        "{} in 2 files in `{}`",
        sweep::disk::bytes(bytes),
        ws.path("runs/tiny").display()
    );
    assert!(md.contains(&expected), "{expected}: {md}");
}

on_both_databases!(
    keep_decides_which_checkpoints_a_finished_trial_leaves,
    predict_says_when_keep_gave_the_best_checkpoint_up,
    rm_deletes_a_sweeps_rows_and_files_after_saying_what_goes,
    rm_refuses_while_a_live_process_runs_the_sweep,
    gc_removes_unreferenced_files_and_rows_without_files,
);
