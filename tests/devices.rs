//! Device selection: what every build refuses before running anything, and (in builds with the
//! `tch` feature) training on libtorch's CPU backend.

mod common;

use common::{TINY, Workspace, stderr};
use sweep::sched::HAS_TCH;

#[test]
fn unusable_devices_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);

    let out = ws.run(&file, &["--devices", "cpu,cuda:99"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("cuda:99"), "{message}");
    if HAS_TCH {
        assert!(message.contains("CUDA GPU"), "{message}");
    } else {
        assert!(message.contains("--features tch"), "{message}");
    }
    assert!(ws.nothing_recorded(), "nothing recorded");

    let out = ws.run(&file, &["--devices", "tpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use cpu, tch-cpu or cuda:N"),
        "{}",
        stderr(&out)
    );

    let both = ws.experiment(
        "both.toml",
        &TINY.replace("jobs = 2", "jobs = 2\ndevices = [\"cpu\", \"tch-cpu\"]"),
    );
    let out = ws.run(&both, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pick one of them"),
        "{}",
        stderr(&out)
    );
    assert!(ws.nothing_recorded(), "nothing recorded");
}

#[cfg(not(feature = "tch"))]
#[test]
fn tch_cpu_is_refused_without_the_tch_build() {
    const { assert!(!HAS_TCH) };
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    let out = ws.run(&file, &["--devices", "tch-cpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--features tch"), "{}", stderr(&out));
    assert!(ws.nothing_recorded(), "nothing recorded");
}

#[cfg(feature = "tch")]
#[test]
fn tch_cpu_trains_on_libtorch() {
    const { assert!(HAS_TCH) };
    let ws = Workspace::new();
    let file = ws.experiment("tiny.toml", TINY);
    let out = ws.run(&file, &["--devices", "tch-cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = ws.ls_json();
    assert_eq!(trials.len(), 2);
    for trial in &trials {
        assert_eq!(trial["status"], "done", "{trial}");
        assert_eq!(trial["device"], "tch-cpu");
    }
    let mlp = trials.iter().find(|t| t["arch"] == "mlp").unwrap();
    assert!(
        mlp["test_acc"].as_f64().unwrap() > 0.5,
        "libtorch learns the bands too: {mlp}"
    );
}
