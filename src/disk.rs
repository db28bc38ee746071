//! How much disk checkpoint directories take, measured on the files themselves (the database
//! records model files, not the resume state beside them).

use crate::trial::TrialStatus;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A sweep as `rm` and `gc` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepFiles {
    /// Database id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its checkpoint root as recorded by the last run (`None` for sweeps run before it was).
    pub runs_dir: Option<PathBuf>,
    /// Every trial: id and status.
    pub trials: Vec<(i64, TrialStatus)>,
    /// Every checkpoint row: trial id, kind, recorded path.
    pub checkpoints: Vec<(i64, String, PathBuf)>,
}

/// Files and bytes under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Regular files counted.
    pub files: u64,
    /// Their sizes added up.
    pub bytes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.files == 1 { "" } else { "s" };
        write!(f, "{} in {} file{plural}", bytes(self.bytes), self.files)
    }
}

/// A directory and what its files take.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DirUsage {
    /// The directory.
    pub dir: PathBuf,
    /// Its files.
    #[serde(flatten)]
    pub usage: Usage,
}

impl DirUsage {
    /// Measures `dir`.
    pub fn of(dir: PathBuf) -> DirUsage {
        DirUsage {
            usage: usage(&dir),
            dir,
        }
    }
}

/// The regular files under `path` (or `path` itself when it is a file); what cannot be read
/// counts as nothing, and symbolic links are not followed.
pub fn usage(path: &Path) -> Usage {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Usage::default();
    };
    if meta.is_file() {
        return Usage {
            files: 1,
            bytes: meta.len(),
        };
    }
    let mut total = Usage::default();
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            total += usage(&entry.path());
        }
    }
    total
}

/// A byte count for people: `512 B`, `160.0 KB`, `127.3 MB` (powers of 1000, as `du --si`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Where a sweep's trial directories are: as recorded, or (for sweeps run before the directory
/// was recorded) `default_root/NAME`.
pub fn sweep_dir(sweep: &SweepFiles, default_root: &Path) -> PathBuf {
    sweep
        .runs_dir
        .clone()
        .unwrap_or_else(|| default_root.join(&sweep.name))
}

/// What `sweep gc` removes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Garbage {
    /// Files and directories no row refers to and no unfinished trial needs.
    pub paths: Vec<PathBuf>,
    /// Their size.
    pub usage: Usage,
    /// Checkpoint rows whose file is gone: trial id and kind.
    pub dead_rows: Vec<(i64, String)>,
}

impl Garbage {
    fn add(&mut self, path: PathBuf) {
        self.usage += usage(&path);
        self.paths.push(path);
    }
}

/// The garbage of a sweep's directory: directories of trials the database does not hold, the
/// files of final trials that no checkpoint row points at (resume state, checkpoints `keep`
/// gave up), and rows whose file is gone. Unfinished trials keep everything, as their
/// resumption needs it. Entries whose names are not trial ids are not ours and stay.
pub fn garbage(sweep: &SweepFiles, dir: &Path) -> Garbage {
    let mut found = Garbage::default();
    let status: HashMap<i64, TrialStatus> = sweep.trials.iter().copied().collect();
    let mut referenced = HashSet::new();
    for (trial, kind, recorded) in &sweep.checkpoints {
        let expected = dir.join(trial.to_string()).join(format!("{kind}.bpk"));
        let present: Vec<&Path> = [recorded.as_path(), &expected]
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        if present.is_empty() {
            found.dead_rows.push((*trial, kind.clone()));
        }
        referenced.extend(present.into_iter().filter_map(|p| p.canonicalize().ok()));
    }
    for trial_dir in trial_dirs(dir) {
        let Some(id) = trial_id(&trial_dir) else {
            continue;
        };
        match status.get(&id) {
            None => found.add(trial_dir),
            Some(s) if s.is_final() => {
                for entry in entries(&trial_dir) {
                    let kept = entry.canonicalize().is_ok_and(|p| referenced.contains(&p));
                    if !kept {
                        found.add(entry);
                    }
                }
            }
            Some(_) => {}
        }
    }
    found
}

/// Directories under a runs root that belong to no sweep in the database: what a `sweep rm` cut
/// short, or a database replaced under its files, left. Only directories made of trial
/// directories (numeric names) count, so nothing else a user keeps there is touched.
pub fn orphan_sweep_dirs(root: &Path, sweep_dirs: &HashSet<PathBuf>) -> Vec<PathBuf> {
    trial_dirs(root)
        .into_iter()
        .filter(|dir| {
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if sweep_dirs.contains(&canonical) {
                return false;
            }
            let inside = entries(dir);
            !inside.is_empty() && inside.iter().all(|e| e.is_dir() && trial_id(e).is_some())
        })
        .collect()
}

fn trial_id(dir: &Path) -> Option<i64> {
    dir.file_name()?.to_str()?.parse().ok()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

fn trial_dirs(dir: &Path) -> Vec<PathBuf> {
    entries(dir).into_iter().filter(|p| p.is_dir()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1000), "1.0 KB");
        assert_eq!(bytes(160_400), "160.4 KB");
        assert_eq!(bytes(999_990), "1.0 MB");
        assert_eq!(bytes(127_300_000), "127.3 MB");
        assert_eq!(bytes(3_000_000_000), "3.0 GB");
    }

    #[test]
    fn usage_counts_nested_files_and_not_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/x"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("a/b/y"), [0u8; 5]).unwrap();
        assert_eq!(
            usage(dir.path()),
            Usage {
                files: 2,
                bytes: 15
            }
        );
        assert_eq!(usage(&dir.path().join("nothing")), Usage::default());
        assert_eq!(usage(dir.path()).to_string(), "15 B in 2 files");
    }

    #[test]
    fn garbage_spares_unfinished_trials_and_what_rows_point_at() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("s");
        let file = |rel: &str| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, [1u8; 100]).unwrap();
            path
        };
        let done_best = file("1/best.bpk");
        file("1/last.bpk");
        file("1/state.json");
        file("1/optimizer.bpk");
        file("2/last.bpk");
        file("2/state.json");
        file("3/last.bpk");
        file("notes/readme.txt");
        let sweep = SweepFiles {
            id: 1,
            name: "s".into(),
            runs_dir: Some(dir.clone()),
            // 1 done, 2 interrupted (resumable), 3 unknown to the database.
            trials: vec![(1, TrialStatus::Done), (2, TrialStatus::Interrupted)],
            checkpoints: vec![
                (1, "best".into(), done_best.clone()),
                (2, "best".into(), dir.join("2/best.bpk")),
            ],
        };
        let found = garbage(&sweep, &dir);
        assert_eq!(
            found.paths,
            vec![
                dir.join("1/last.bpk"),
                dir.join("1/optimizer.bpk"),
                dir.join("1/state.json"),
                dir.join("3"),
            ]
        );
        assert_eq!(
            found.usage,
            Usage {
                files: 4,
                bytes: 400
            }
        );
        assert_eq!(found.dead_rows, vec![(2, "best".to_string())]);

        let known = HashSet::from([dir.canonicalize().unwrap()]);
        assert!(orphan_sweep_dirs(root.path(), &known).is_empty());
        assert_eq!(
            orphan_sweep_dirs(root.path(), &HashSet::new()),
            Vec::<PathBuf>::new(),
            "a directory holding a non-trial entry is not a sweep's"
        );
        std::fs::remove_dir_all(dir.join("notes")).unwrap();
        assert_eq!(orphan_sweep_dirs(root.path(), &HashSet::new()), vec![dir]);
    }
}
