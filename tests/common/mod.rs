//! Shared test helpers: tiny IDX data sets written by the tests, and the real binary.

#![allow(dead_code)]

pub mod browser;
pub mod experiments;
pub mod postgres;

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use sweep::data::encode_idx;
use sweep::store::{Location, Store};
use sweep::trial::TrialId;

/// Writes a learnable 28x28 data set: class `c` draws a bright horizontal band at rows
/// `2c..2c+6` over faint noise. Training files are gzipped, test files raw, so both readers run.
pub fn write_dataset(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let (images, labels) = make_images(train, 11);
    write_gz(
        &dir.join("train-images-idx3-ubyte.gz"),
        &encode_idx(&[train, 28, 28], &images),
    );
    write_gz(
        &dir.join("train-labels-idx1-ubyte.gz"),
        &encode_idx(&[train], &labels),
    );
    let (images, labels) = make_images(test, 29);
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        encode_idx(&[test, 28, 28], &images),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        encode_idx(&[test], &labels),
    )
    .unwrap();
}

fn make_images(n: usize, salt: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = salt;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 59) as u8
    };
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i * 7 + salt as usize) % 10;
        labels.push(class as u8);
        for row in 0..28 {
            for _ in 0..28 {
                let band = row >= 2 * class && row < 2 * class + 6;
                images.push(if band { 200 + noise() } else { noise() });
            }
        }
    }
    (images, labels)
}

/// Gzips `bytes` into `path`.
pub fn write_gz(path: &Path, bytes: &[u8]) {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    std::fs::write(path, encoder.finish().unwrap()).unwrap();
}

/// Which database a test's sweep writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in the workspace.
    Sqlite,
    /// A fresh database on the test process's PostgreSQL server.
    Postgres,
}

/// Runs each named test, written as `fn name(db: Db)`, once per database: as
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Db::Sqlite)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Db::Postgres)
            })*
        }
    };
}

/// A temporary workspace with a data set and an experiment file.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    db: Location,
    postgres: Option<String>,
}

impl Workspace {
    /// A workspace with a 240-image training set and an 80-image test set, recording into a
    /// SQLite file.
    pub fn new() -> Self {
        Self::on(Db::Sqlite)
    }

    /// The same, recording into `db`.
    pub fn on(db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(&dir.path().join("data"), 240, 80);
        let (db, postgres) = match db {
            Db::Sqlite => (Location::Sqlite(dir.path().join("results.db")), None),
            Db::Postgres => {
                let name = postgres::fresh_database();
                (
                    Location::Postgres(postgres::cluster().url(&name)),
                    Some(name),
                )
            }
        };
        Workspace { dir, db, postgres }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// The results database.
    pub fn db(&self) -> Location {
        self.db.clone()
    }

    /// The results database as `--db` takes it.
    pub fn db_arg(&self) -> String {
        match &self.db {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }

    /// Whether nothing was ever recorded: no SQLite file, or no sweep table on the server.
    pub fn nothing_recorded(&self) -> bool {
        match (&self.db, &self.postgres) {
            (Location::Sqlite(path), _) => !path.exists(),
            (_, Some(name)) => {
                postgres::cluster().psql(
                    name,
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sweeps'",
                ) == "0"
            }
            _ => unreachable!("a PostgreSQL workspace has a database name"),
        }
    }

    /// `psql` on this workspace's PostgreSQL database.
    pub fn psql(&self, sql: &str) -> String {
        let name = self.postgres.as_ref().expect("a PostgreSQL workspace");
        postgres::cluster().psql(name, sql)
    }

    /// Writes an experiment file and returns its path.
    pub fn experiment(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// Runs the real `sweep` binary with `args`, in the workspace, with no SWEEP_* settings
    /// leaking in from the environment.
    pub fn sweep(&self, args: &[&str]) -> Output {
        self.sweep_with_env(args, &[("RUST_LOG", "warn")])
    }

    /// Runs the real `sweep` binary with `args` and the environment variables `env`, in the
    /// workspace, with no other SWEEP_* settings leaking in from the environment.
    pub fn sweep_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sweep"));
        command.current_dir(self.dir.path()).args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("SWEEP_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied()).output().unwrap()
    }

    /// `sweep run FILE --db DB --data DATA` plus `extra`.
    pub fn run(&self, experiment: &Path, extra: &[&str]) -> Output {
        self.run_with_env(experiment, extra, &[("RUST_LOG", "warn")])
    }

    /// `sweep run FILE --db DB --data DATA` plus `extra`, with the environment variables `env`.
    pub fn run_with_env(&self, experiment: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec![
            "run",
            experiment.to_str().unwrap(),
            "--db",
            &self.db_arg(),
            "--data",
            self.data().to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sweep_with_env(&refs, env)
    }

    /// Starts `sweep run FILE --db DB --data DATA` in the background with stdout discarded.
    pub fn spawn_run(&self, experiment: &Path, stderr: Stdio) -> Child {
        Command::new(env!("CARGO_BIN_EXE_sweep"))
            .current_dir(self.dir.path())
            .args(["run", experiment.to_str().unwrap(), "--db"])
            .arg(self.db_arg())
            .arg("--data")
            .arg(self.data())
            .env("RUST_LOG", "sweep=info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Epoch rows in the database so far (0 while it does not exist).
    pub fn recorded_epochs(&self) -> usize {
        let Ok(store) = Store::open_existing(self.db()) else {
            return 0;
        };
        let Ok(trials) = store.list_trials(None) else {
            return 0;
        };
        trials
            .iter()
            .map(|t| store.epochs(TrialId(t.id)).map_or(0, |e| e.len()))
            .sum()
    }

    /// Waits until the database holds `epochs` epoch rows, with `child` still running.
    pub fn wait_for_epochs(&self, child: &mut Child, epochs: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.recorded_epochs() < epochs {
            assert!(
                Instant::now() < deadline,
                "no epoch recorded within a minute"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended too early"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `sweep ls --format json` parsed.
    pub fn ls_json(&self) -> Vec<serde_json::Value> {
        let out = self.sweep(&["ls", "--db", &self.db_arg(), "--format", "json"]);
        assert!(out.status.success(), "ls failed: {}", stderr(&out));
        match serde_json::from_slice(&out.stdout).unwrap() {
            serde_json::Value::Array(items) => items,
            other => panic!("ls json is not an array: {other}"),
        }
    }

    /// Kills a run of `experiment` once it has recorded `epochs` epochs; returns the trials it
    /// left.
    pub fn killed_after_epochs(&self, experiment: &Path, epochs: usize) -> Vec<serde_json::Value> {
        let mut child = self.spawn_run(experiment, Stdio::null());
        self.wait_for_epochs(&mut child, epochs);
        child.kill().unwrap();
        child.wait().unwrap();
        self.ls_json()
    }
}

/// The draw numbers of listed trials, each once.
pub fn draw_numbers(trials: &[serde_json::Value]) -> std::collections::BTreeSet<i64> {
    trials.iter().map(|t| t["draw"].as_i64().unwrap()).collect()
}

/// Trial ids a process's log says it started.
pub fn started(log: &str) -> Vec<i64> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("trial ")? + 6..];
            let (id, tail) = rest.split_once(' ')?;
            tail.starts_with("started on").then(|| id.parse().ok())?
        })
        .collect()
}

/// Per trial in grid order: status, epochs recorded, validation loss by epoch, test accuracy.
pub type Outcome = Vec<(String, Vec<i64>, Vec<Option<f64>>, serde_json::Value)>;

/// What a sweep recorded, to compare with another run of it.
pub fn outcome(ws: &Workspace) -> Outcome {
    let store = Store::open_existing(ws.db()).unwrap();
    ws.ls_json()
        .iter()
        .map(|t| {
            let epochs = store.epochs(TrialId(t["id"].as_i64().unwrap())).unwrap();
            (
                t["status"].as_str().unwrap().to_string(),
                epochs.iter().map(|e| e.epoch).collect(),
                epochs.iter().map(|e| e.val_loss).collect(),
                t["test_acc"].clone(),
            )
        })
        .collect()
}

/// Whether `child` is stopped (by SIGSTOP).
pub fn stopped(child: &Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .is_ok_and(|stat| stat.contains(") T "))
}

/// Waits (until `deadline`) for `child`, started with a `SWEEP_STOP_AT` point, to stop there.
pub fn wait_until_stopped(child: &Child, deadline: Instant) {
    while !stopped(child) {
        assert!(
            Instant::now() < deadline,
            "the stop point was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `name` (`-STOP`, `-CONT`, `-KILL`) to `child` with kill(1).
pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {name}");
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A two-trial grid that trains in well under a second.
pub const TINY: &str = r#"
[sweep]
name = "tiny"
seed = 3
jobs = 2

[data]
split = 0.75

[grid]
arch = ["mlp", "lenet5"]
optimizer = "adam"
lr = 0.003
batch_size = 32
epochs = 2
dropout = 0.1

[arch.mlp]
hidden = [32]
"#;
