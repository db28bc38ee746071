//! `[sweep] fuse`: trials of one architecture trained as one model record, per trial and per
//! epoch, what they record trained alone; a member that diverges ends alone; a group killed
//! mid-sweep resumes member by member; architectures without a fused form train alone.

mod common;

use common::{Db, Outcome, Workspace, outcome, stderr};

/// Twelve trials of `arch` (three learning rates, two dropout rates, two seeds) in groups of
/// `fuse`.
fn group(arch: &str, optimizer: &str, lrs: &str) -> String {
    format!(
        r#"
[sweep]
name = "fused"
jobs = 1
threads = 1
repeats = 2
[data]
split = 0.8
[grid]
arch = "{arch}"
optimizer = "{optimizer}"
lr = {lrs}
batch_size = 16
epochs = 2
dropout = [0.0, 0.3]
[arch.mlp]
hidden = [64, 32]
[arch.cnn]
channels = [4, 8]
hidden = [32, 16]
"#
    )
}

/// Runs `experiment` with `fuse`, checking it succeeded; its log.
fn run(ws: &Workspace, experiment: &str, fuse: usize) -> String {
    run_on(ws, experiment, fuse, "cpu")
}

/// Runs `experiment` with `fuse` on `devices`, checking it succeeded; its log. Fused groups get
/// two threads, so their members' own work (batches, optimizer steps, evaluation) runs side by
/// side, while trials alone run on one.
fn run_on(ws: &Workspace, experiment: &str, fuse: usize, devices: &str) -> String {
    let file = ws.experiment("fused.toml", experiment);
    let set = format!("sweep.fuse={fuse}");
    let threads = format!("sweep.threads={}", if fuse > 1 { 2 } else { 1 });
    let out = ws.run_with_env(
        &file,
        &["--set", &set, "--set", &threads, "--devices", devices],
        &[("RUST_LOG", "sweep=info")],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    log
}

/// `got` and `expected` record the same trials with the same statuses and epochs, and every
/// epoch's validation loss and every test accuracy agree within float tolerance (the fused
/// convolutions sum in another order than the unfused ones).
fn assert_close(got: &Outcome, expected: &Outcome) {
    assert_eq!(got.len(), expected.len());
    for (trial, (got, expected)) in got.iter().zip(expected).enumerate() {
        assert_eq!(
            (&got.0, &got.1),
            (&expected.0, &expected.1),
            "trial {trial}"
        );
        for (epoch, (a, b)) in got.2.iter().zip(&expected.2).enumerate() {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "trial {trial} epoch {}: val_loss {a} fused, {b} alone",
                epoch + 1
            );
        }
        let (a, b) = (got.3.as_f64().unwrap(), expected.3.as_f64().unwrap());
        assert!((a - b).abs() <= 0.02, "trial {trial}: test_acc {a} / {b}");
    }
}

fn fused_trials_record_what_they_record_alone(arch: &str) {
    let experiment = group(arch, "adam", "[0.0005, 0.001, 0.002]");
    let alone = Workspace::new();
    run(&alone, &experiment, 1);
    let fused = Workspace::new();
    let log = run(&fused, &experiment, 4);
    assert!(log.contains("fused with"), "{log}");
    assert_close(&outcome(&fused), &outcome(&alone));
    // Which trials trained together is recorded and shown.
    let listed = fused.ls_json();
    assert!(
        listed.iter().all(|t| t["fused_with"].is_string()),
        "{listed:?}"
    );
    assert!(
        alone
            .ls_json()
            .iter()
            .all(|t| t.get("fused_with").is_none())
    );
    let shown = fused.sweep(&["show", "1", "--db", &fused.db_arg()]);
    assert!(
        common::stdout(&shown).contains("trained fused with trials 2, 3, 4 as one model"),
        "{}",
        common::stdout(&shown)
    );
}

#[test]
fn fused_mlps_record_what_they_record_alone() {
    fused_trials_record_what_they_record_alone("mlp");
}

#[test]
fn fused_cnns_record_what_they_record_alone() {
    fused_trials_record_what_they_record_alone("cnn");
}

#[test]
fn fused_lenet5s_record_what_they_record_alone() {
    fused_trials_record_what_they_record_alone("lenet5");
}

/// The `fused_with` column exists and is written on both databases.
fn groups_are_recorded(db: Db) {
    let ws = Workspace::on(db);
    run(&ws, &group("mlp", "sgd", "[0.01, 0.02, 0.03]"), 6);
    let listed = ws.ls_json();
    assert_eq!(listed[0]["fused_with"], "2,3,4,5,6");
    assert_eq!(listed[11]["fused_with"], "7,8,9,10,11");
    assert!(listed.iter().all(|t| t["status"] == "done"));
}

#[test]
fn a_diverging_member_ends_alone_and_the_others_go_on() {
    let experiment = group("mlp", "sgd", "[0.01, 1e9, 0.02]");
    let alone = Workspace::new();
    run(&alone, &experiment, 1);
    let fused = Workspace::new();
    run(&fused, &experiment, 4);
    let (got, expected) = (outcome(&fused), outcome(&alone));
    let statuses: Vec<&str> = got.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "diverged").count(), 4);
    assert_eq!(statuses.iter().filter(|s| **s == "done").count(), 8);
    let finished =
        |o: &Outcome| -> Outcome { o.iter().filter(|t| t.0 == "done").cloned().collect() };
    assert_close(&finished(&got), &finished(&expected));
    let diverged = fused
        .ls_json()
        .into_iter()
        .find(|t| t["status"] == "diverged")
        .unwrap();
    assert!(
        diverged["error"]
            .as_str()
            .unwrap()
            .contains("training loss became"),
        "{diverged}"
    );
}

#[test]
fn a_killed_fused_sweep_resumes_each_member_where_it_stood() {
    let experiment =
        group("mlp", "adam", "[0.0005, 0.001, 0.002]").replace("epochs = 2", "epochs = 3");
    let whole = Workspace::new();
    run(&whole, &experiment, 4);

    let ws = Workspace::new();
    let file = ws.experiment("fused.toml", &experiment);
    // Killed once the first member's epoch-2 files are in place, before its rows are: the
    // group's members then stand at different epochs.
    let killed = ws.run_with_env(
        &file,
        &["--set", "sweep.fuse=4"],
        &[("SWEEP_KILL_AT", "before-event:2")],
    );
    assert!(!killed.status.success());
    let log = run(&ws, &experiment, 4);
    assert!(log.contains("resuming"), "{log}");
    assert!(log.contains("recording epochs 2..=2"), "{log}");
    assert_close(&outcome(&ws), &outcome(&whole));
}

#[test]
fn architectures_without_a_fused_form_train_alone_and_zero_is_refused() {
    let ws = Workspace::new();
    let experiment = group("convnet", "adam", "[0.001]").replace("repeats = 2", "repeats = 1");
    let log = run(&ws, &experiment, 4);
    assert!(
        log.contains("trains alone: convnet has no fused form"),
        "{log}"
    );
    assert!(
        log.contains("fuse = 4 on cpu (flex): fused groups measured no faster than the same"),
        "{log}"
    );
    assert!(ws.ls_json().iter().all(|t| t["status"] == "done"));

    let file = ws.experiment("fused.toml", &experiment);
    let out = ws.run(&file, &["--set", "sweep.fuse=0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("sweep.fuse = 0: must be at least 1"),
        "{}",
        stderr(&out)
    );
}

/// A search draws each group's members together; a draw that does not fit the group (another
/// batch size) trains in the next one.
#[test]
fn a_search_draws_fused_groups_within_its_budget() {
    let experiment = r#"
[sweep]
name = "fused"
seed = 3
sampler = "random"
trials = 10
jobs = 1
threads = 1
[data]
split = 0.8
[grid]
arch = "mlp"
optimizer = "adam"
lr = { log_uniform = [1e-4, 1e-2] }
dropout = { uniform = [0.0, 0.5] }
batch_size = [16, 32]
epochs = 2
[arch.mlp]
hidden = [16]
"#;
    let ws = Workspace::new();
    let log = run(&ws, experiment, 4);
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 10, "{log}");
    assert!(trials.iter().all(|t| t["status"] == "done"), "{log}");
    let fused: Vec<_> = trials
        .iter()
        .filter(|t| t["fused_with"].is_string())
        .collect();
    // The budget's last two draws may be left without mates; the rest fill groups of four.
    assert!(fused.len() >= 8, "{log}");
    for trial in &fused {
        for mate in trial["fused_with"].as_str().unwrap().split(',') {
            let mate: i64 = mate.parse().unwrap();
            let mate = trials.iter().find(|t| t["id"] == mate).unwrap();
            assert_eq!(mate["batch_size"], trial["batch_size"], "{log}");
        }
    }
}

/// Without the `tch` build, a fused sweep on libtorch is refused as any libtorch sweep is.
#[cfg(not(feature = "tch"))]
#[test]
fn fused_cnns_on_libtorch_are_refused_without_the_tch_build() {
    let experiment = group("cnn", "adam", "[0.0005, 0.001, 0.002]");
    let ws = Workspace::new();
    let file = ws.experiment("fused.toml", &experiment);
    let out = ws.run(&file, &["--set", "sweep.fuse=4", "--devices", "tch-cpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--features tch"), "{}", stderr(&out));
    assert!(ws.nothing_recorded());
}

/// On libtorch the CNNs' convolutions fuse too, as grouped convolutions.
#[cfg(feature = "tch")]
#[test]
fn fused_cnns_on_libtorch_record_what_they_record_alone() {
    let experiment = group("cnn", "adam", "[0.0005, 0.001, 0.002]");
    let alone = Workspace::new();
    run_on(&alone, &experiment, 1, "tch-cpu");
    let fused = Workspace::new();
    let log = run_on(&fused, &experiment, 4, "tch-cpu");
    assert!(log.contains("fused with"), "{log}");
    assert_close(&outcome(&fused), &outcome(&alone));
    assert!(fused.ls_json().iter().all(|t| t["device"] == "tch-cpu"));
}

on_both_databases!(groups_are_recorded);
