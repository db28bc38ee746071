//! Launching workers with Slurm: `sweep slurm` writes an `sbatch` job array whose tasks each
//! run one `sweep worker` on the shared database, and submits it. Nothing passes between the
//! machines but the database.

use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::store::Location;
use std::path::{Path, PathBuf};

/// What the job array asks Slurm for, and what each worker is told.
#[derive(Debug, Clone, PartialEq)]
pub struct JobArray {
    /// The sweep the workers join.
    pub sweep: String,
    /// The database they share.
    pub db: Location,
    /// Array tasks, one worker each.
    pub workers: usize,
    /// CPUs per task (the worker's compute threads).
    pub cpus_per_task: usize,
    /// GPUs per task, if any (the worker trains on `cuda:0..G`, as Slurm numbers them).
    pub gpus_per_task: Option<usize>,
    /// Slurm partition.
    pub partition: Option<String>,
    /// Wall-time limit per task, in Slurm's syntax (`4:00:00`).
    pub time: Option<String>,
    /// Data directory for the workers.
    pub data_dir: Option<PathBuf>,
    /// Checkpoint root for the workers (a shared file system lets taken-over trials continue).
    pub runs_dir: Option<PathBuf>,
    /// Where each task's log goes.
    pub log_dir: PathBuf,
    /// The `sweep` binary the tasks run.
    pub binary: PathBuf,
    /// Seconds a worker waits for claimable trials before leaving.
    pub idle_exit: u64,
}

/// Quotes a value for a POSIX shell.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn quoted_path(path: &Path) -> String {
    quoted(&path.display().to_string())
}

impl JobArray {
    /// The batch script: the array's `#SBATCH` lines, then one `sweep worker` per task.
    pub fn script(&self) -> String {
        let mut s = String::from("#!/bin/bash\n");
        s.push_str(&format!("#SBATCH --job-name=sweep-{}\n", self.sweep));
        s.push_str(&format!("#SBATCH --array=0-{}\n", self.workers - 1));
        s.push_str("#SBATCH --ntasks=1\n");
        s.push_str(&format!("#SBATCH --cpus-per-task={}\n", self.cpus_per_task));
        if let Some(gpus) = self.gpus_per_task {
            s.push_str(&format!("#SBATCH --gpus-per-task={gpus}\n"));
        }
        if let Some(partition) = &self.partition {
            s.push_str(&format!("#SBATCH --partition={partition}\n"));
        }
        if let Some(time) = &self.time {
            s.push_str(&format!("#SBATCH --time={time}\n"));
        }
        s.push_str(&format!(
            "#SBATCH --output={}/slurm-%A_%a.out\n",
            self.log_dir.display()
        ));
        s.push_str("set -euo pipefail\n");
        // The URL (with its password) stays in this file, readable by its owner only.
        let db = match &self.db {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        };
        s.push_str(&format!("export SWEEP_DB={}\n", quoted(&db)));
        s.push_str("export SWEEP_HOST=\"$(hostname)\"\n");
        let mut command = vec![
            quoted_path(&self.binary),
            "worker".into(),
            "--sweep".into(),
            quoted(&self.sweep),
            "--jobs".into(),
            "1".into(),
            "--threads".into(),
            format!("\"${{SLURM_CPUS_PER_TASK:-{}}}\"", self.cpus_per_task),
            "--idle-exit".into(),
            self.idle_exit.to_string(),
        ];
        if let Some(gpus) = self.gpus_per_task {
            let devices: Vec<String> = (0..gpus).map(|i| format!("cuda:{i}")).collect();
            command.push("--devices".into());
            command.push(devices.join(","));
        }
        if let Some(dir) = &self.data_dir {
            command.push("--data".into());
            command.push(quoted_path(dir));
        }
        if let Some(dir) = &self.runs_dir {
            command.push("--runs".into());
            command.push(quoted_path(dir));
        }
        s.push_str(&format!("exec {}\n", command.join(" ")));
        s
    }
}

/// Registers `experiment`'s sweep in the job's database (so the workers find it), writes the
/// job's script to `workers.sbatch` in its log directory and submits it. Returns the job id and
/// the script's path.
pub fn launch(experiment: &Experiment, job: &JobArray) -> Result<(String, PathBuf)> {
    if let Location::Sqlite(path) = &job.db {
        tracing::warn!(
            "{}: a SQLite file works only when every task runs on this machine; give workers \
             on other nodes a postgres:// URL",
            path.display()
        );
    }
    drop(crate::sched::register(
        experiment,
        &job.db,
        job.runs_dir.as_deref(),
    )?);
    std::fs::create_dir_all(&job.log_dir).map_err(|e| Error::io(&job.log_dir, e))?;
    let path = job.log_dir.join("workers.sbatch");
    let id = submit_script(&job.script(), &path)?;
    Ok((id, path))
}

/// Writes the script (mode 0600: it holds the database URL) and submits it with `sbatch`;
/// returns the job id.
fn submit_script(script: &str, path: &Path) -> Result<String> {
    write_private(path, script)?;
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(path)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!(
                    "sbatch not found: run `sweep slurm` where Slurm's commands are (a login \
                     node; `apt-get install slurm-client` on Debian), or submit {} yourself \
                     (`--dry-run` prints it)",
                    path.display()
                ))
            } else {
                Error::io("sbatch", e)
            }
        })?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "sbatch refused {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // `--parsable` prints `id` or `id;cluster`.
    Ok(id.split(';').next().unwrap_or_default().to_string())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_an_array_of_workers_with_what_each_task_was_given() {
        let job = JobArray {
            sweep: "grid".into(),
            db: Location::parse("postgres://u:p'w@db/s"),
            workers: 16,
            cpus_per_task: 4,
            gpus_per_task: Some(2),
            partition: Some("gpu".into()),
            time: Some("4:00:00".into()),
            data_dir: Some("/data/fmnist".into()),
            runs_dir: None,
            log_dir: "/home/me/logs".into(),
            binary: "/opt/sweep".into(),
            idle_exit: 60,
        };
        let script = job.script();
        for line in [
            "#SBATCH --array=0-15",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --gpus-per-task=2",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=4:00:00",
            "#SBATCH --output=/home/me/logs/slurm-%A_%a.out",
            "export SWEEP_DB='postgres://u:p'\\''w@db/s'",
            "exec '/opt/sweep' worker --sweep 'grid' --jobs 1 --threads \
             \"${SLURM_CPUS_PER_TASK:-4}\" --idle-exit 60 --devices cuda:0,cuda:1 --data \
             '/data/fmnist'",
        ] {
            assert!(script.lines().any(|l| l == line), "{line}\n{script}");
        }
        assert!(!script.contains("--runs"));
    }
}
