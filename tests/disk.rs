//! A full disk under the runs directory: the run stops at the first trial that cannot write its
//! files, says what to do, and the next run, with space freed, finishes every trial as an
//! uninterrupted run would have. A runs directory that cannot be written at all is refused
//! before anything is recorded. The disks are real ones: tmpfs mounts (the tests run as root).

mod common;

use common::{Workspace, outcome, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Six MLP trials of three epochs, one at a time; each epoch writes about 0.8 MB of files.
const SIX: &str = r#"
[sweep]
name = "six"
seed = 5
jobs = 1
threads = 1

[data]
split = 0.75

[grid]
arch = "mlp"
optimizer = "adam"
lr = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
batch_size = 32
epochs = 3

[arch.mlp]
hidden = [64]
"#;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs with `options` (`size=1200k`, `ro`) on `dir`.
    fn mount(dir: &Path, options: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test fills a small tmpfs, which needs root with permission to mount: {}",
            stderr(&out)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_run_and_the_next_run_finishes_every_trial() {
    let reference = Workspace::new();
    let file = reference.experiment("six.toml", SIX);
    let out = reference.run(&file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let ws = Workspace::new();
    let file = ws.experiment("six.toml", SIX);
    let runs = ws.path("runs");
    // Declared after the workspace, so unmounted before its directory is removed.
    let disk = Tmpfs::mount(&runs, "size=1200k");
    let runs_arg = runs.to_str().unwrap();
    let out = ws.run(&file, &["--runs", runs_arg]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(
        log.contains("the run stopped: the disk is full: free space (`sweep gc` removes"),
        "{log}"
    );
    let statuses: Vec<String> = ws
        .ls_json()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_string())
        .collect();
    let count = |s: &str| statuses.iter().filter(|t| *t == s).count();
    assert_eq!(count("failed"), 1, "{statuses:?}\n{log}");
    // Stopped there, rather than failing every trial after it in turn.
    assert!(count("pending") >= 3, "{statuses:?}\n{log}");
    assert_eq!(count("done") + count("failed") + count("pending"), 6);

    disk.resize("64m");
    let out = ws.run(&file, &["--runs", runs_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(outcome(&ws), outcome(&reference));
}

#[test]
fn a_runs_directory_that_cannot_be_written_is_refused_before_anything_runs() {
    let ws = Workspace::new();
    let file = ws.experiment("six.toml", SIX);
    let runs = ws.path("read-only");
    let _disk = Tmpfs::mount(&runs, "ro");
    let out = ws.run(&file, &["--runs", runs.to_str().unwrap()]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "cannot write to the runs directory {}/six: Read-only file system",
            runs.display()
        )),
        "{log}"
    );
    assert!(log.contains("pass --runs DIR with a directory"), "{log}");
    assert!(ws.ls_json().is_empty());
}
