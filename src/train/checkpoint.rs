//! A trial's checkpoint directory, kept as the log of its training: after every epoch the model,
//! optimizer and resume state are committed together, and the resume state carries everything
//! the database needs to catch up with them (every epoch's figures, the checkpoint rows).
//!
//! An epoch is committed in three steps: its files are written under `staging-HOST-PID/`, then
//! `state.json` is replaced atomically, then the staged files are renamed into place. A kill
//! before the state file is replaced leaves the previous epoch whole; a kill after it leaves the
//! new epoch's files in `staging-HOST-PID/`, and reading the state moves them into place. So
//! whatever the kill point, the directory holds one complete epoch.

use super::events::{CheckpointInfo, CheckpointKind};
use super::metrics::EpochMetrics;
use crate::error::{Error, Result};
use crate::experiment::Keep;
use crate::model::Net;
use burn::module::Module;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub(super) const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub(super) const STATE_FILE: &str = "state.json";
/// Staging directories are `staging-HOST-PID`: a process that lost the trial (stopped past the
/// heartbeat timeout, then continued) and the one that took it over never share scratch files,
/// and only a final trial's tidying removes another process's: a stale process that continues
/// where it stopped must not pull the files from under the new holder's commit. Whichever
/// renames last wins each file; the hashes in the state file tell a mixed set, which is then not
/// resumed from.
const STAGING_PREFIX: &str = "staging";

/// This process's staging directory in `dir`. The host is in the name because a runs directory
/// on a shared file system sees processes of several machines, whose pids may coincide.
pub(super) fn staging_dir(dir: &Path) -> PathBuf {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| {
        format!(
            "{STAGING_PREFIX}-{}-{}",
            crate::process::hostname(),
            std::process::id()
        )
    });
    dir.join(name)
}

/// Every staging directory in `dir`, this process's and those left by others.
fn staging_dirs(dir: &Path) -> Vec<PathBuf> {
    entries_starting(dir, STAGING_PREFIX)
}

/// The entries of `dir` whose names start with `prefix`.
fn entries_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// What a trial needs to continue after its last completed epoch, and what the database must
/// hold for that epoch: written after every epoch, with the hashes of the files it goes with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResumeState {
    /// Epochs completed.
    pub epoch: usize,
    /// State of the dropout generator after that epoch.
    pub dropout: u64,
    /// State of the augmentation generator after that epoch (absent in states written before
    /// augmentation existed, whose trials never drew from it).
    #[serde(default)]
    pub augment: Option<u64>,
    /// Best metric value so far and its epoch.
    pub best: Option<(f64, usize)>,
    /// The figures of every completed epoch, in order.
    pub history: Vec<EpochMetrics>,
    /// The checkpoint files as of that epoch (`last`, and `best` once there is one).
    pub checkpoints: Vec<CheckpointInfo>,
    /// sha256 of `optimizer.bpk` as of that epoch.
    pub optimizer_sha256: String,
    /// Population-based training: the members this one continued from, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<crate::trial::MemberCopy>,
}

/// Why a trial directory cannot be continued from.
#[derive(Debug, Clone, PartialEq)]
pub enum Unresumable {
    /// No epoch was ever committed (or the directory is gone).
    NoState,
    /// The state file is there but cannot be read.
    Unreadable(String),
    /// A file does not match the hash the state recorded for it.
    Damaged(String),
}

impl std::fmt::Display for Unresumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresumable::NoState => write!(f, "no epoch had completed its checkpoint files"),
            Unresumable::Unreadable(why) => write!(f, "its resume state is unreadable ({why})"),
            Unresumable::Damaged(why) => write!(f, "its checkpoint files are damaged ({why})"),
        }
    }
}

impl CheckpointKind {
    pub(super) fn file_name(self) -> &'static str {
        match self {
            CheckpointKind::Last => "last.bpk",
            CheckpointKind::Best => "best.bpk",
        }
    }
}

/// The model file a trial continues from.
pub fn model_path(dir: &Path) -> PathBuf {
    dir.join(CheckpointKind::Last.file_name())
}

/// The optimizer file a trial continues from.
pub fn optimizer_path(dir: &Path) -> PathBuf {
    dir.join(OPTIMIZER_FILE)
}

/// Forgets any earlier attempt, so that a trial starting over can never be mistaken for one
/// that may continue. Other processes' staging directories stay (see [`STAGING_PREFIX`]):
/// their files can never match this attempt's hashes.
pub fn clear(dir: &Path) -> Result<()> {
    remove_if_present(&dir.join(STATE_FILE))?;
    for snapshot in snapshot_dirs(dir) {
        remove_dir_if_present(&snapshot)?;
    }
    empty_own_staging(dir)
}

/// Removes what an earlier commit of this process left in its staging directory, so that
/// publishing moves only this epoch's files.
pub(super) fn empty_own_staging(dir: &Path) -> Result<()> {
    let staging = staging_dir(dir);
    match std::fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&staging, e)),
        _ => Ok(()),
    }
}

/// The checkpoint kinds a final trial gives up under `keep`: their rows must go before their
/// files do (see [`tidy_final`]).
pub fn dropped_kinds(keep: Keep) -> Vec<CheckpointKind> {
    let mut dropped = Vec::new();
    if !keep.best() {
        dropped.push(CheckpointKind::Best);
    }
    if !keep.last() {
        dropped.push(CheckpointKind::Last);
    }
    dropped
}

/// Empties a final trial's directory down to the checkpoints `keep` asks for: the resume files
/// go (the trial will never continue), and so does the directory when nothing is kept. Returns
/// the bytes freed.
pub fn tidy_final(dir: &Path, keep: Keep) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    if keep == Keep::None {
        let freed = crate::disk::usage(dir).bytes;
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        return Ok(freed);
    }
    let mut freed = 0;
    let mut remove = |path: PathBuf| -> Result<()> {
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.is_dir() {
                let size = crate::disk::usage(&path).bytes;
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                freed += size;
            } else {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                freed += meta.len();
            }
        }
        Ok(())
    };
    for staging in staging_dirs(dir).into_iter().chain(snapshot_dirs(dir)) {
        remove(staging)?;
    }
    remove(dir.join(STATE_FILE))?;
    for scratch in state_scratch_files(dir) {
        remove(scratch)?;
    }
    remove(dir.join(OPTIMIZER_FILE))?;
    for kind in dropped_kinds(keep) {
        remove(dir.join(kind.file_name()))?;
    }
    Ok(freed)
}

/// The epoch to commit: its figures and the training state after it.
pub struct EpochCommit<'a> {
    /// The model after the epoch.
    pub model: &'a Net,
    /// The optimizer after the epoch.
    pub optimizer: &'a burn::optim::ModuleOptimizer,
    /// Resume state without this epoch's files (its `checkpoints` are the previous ones).
    pub state: ResumeState,
    /// Whether this epoch is the best so far, so `best.bpk` becomes a copy of it.
    pub improved: bool,
    /// Whether to keep this epoch's files as a snapshot other members may copy.
    pub snapshot: bool,
}

/// Commits one epoch's files and returns the resume state as written, whose `checkpoints` are
/// this epoch's checkpoint rows.
pub fn commit_epoch(dir: &Path, commit: EpochCommit) -> Result<ResumeState> {
    let EpochCommit {
        model,
        optimizer,
        mut state,
        improved,
        snapshot,
    } = commit;
    empty_own_staging(dir)?;
    let staging = staging_dir(dir);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;

    let mut staged = vec![CheckpointKind::Last];
    let last = staging.join(CheckpointKind::Last.file_name());
    // burnpack writes to a scratch file, syncs it and renames it into place.
    model
        .clone()
        .save_file(&last)
        .map_err(|e| Error::Train(format!("cannot write checkpoint {}: {e}", last.display())))?;
    if improved {
        let best = staging.join(CheckpointKind::Best.file_name());
        copy_synced(&last, &best)?;
        staged.push(CheckpointKind::Best);
    }
    let staged_optimizer = staging.join(OPTIMIZER_FILE);
    optimizer.save(&staged_optimizer).map_err(|e| {
        Error::Train(format!(
            "cannot write optimizer state {}: {e}",
            staged_optimizer.display()
        ))
    })?;

    for kind in staged {
        let (size, sha256) = size_and_sha256(&staging.join(kind.file_name()))?;
        let info = CheckpointInfo {
            kind,
            epoch: state.epoch,
            path: dir.join(kind.file_name()),
            size,
            sha256,
        };
        state.checkpoints.retain(|c| c.kind != kind);
        state.checkpoints.push(info);
    }
    state.checkpoints.sort_by_key(|c| c.kind.as_str());
    state.optimizer_sha256 = size_and_sha256(&staged_optimizer)?.1;
    if snapshot {
        // Before the state names this epoch: whoever reads the epoch finds its snapshot.
        write_snapshot(dir, &staging, &state)?;
    }
    crate::fault::kill_point("before-state", state.epoch);

    write_state(dir, &state)?;
    crate::fault::kill_point("after-state", state.epoch);
    publish_staged(dir)?;
    Ok(state)
}

/// The snapshot of a trial's files after epoch `epoch` (population-based training).
pub(super) fn snapshot_dir(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{epoch}"))
}

/// Snapshots are `rung-EPOCH`: the model, optimizer and resume state after that epoch, hard
/// links to the epoch's files (which are only ever replaced by rename, never rewritten), so
/// a member copying them never reads files its donor is writing.
const SNAPSHOT_PREFIX: &str = "rung-";

/// Keeps the staged epoch's files as its snapshot, replacing one an earlier attempt at the
/// same epoch left.
fn write_snapshot(dir: &Path, staging: &Path, state: &ResumeState) -> Result<()> {
    let done = snapshot_dir(dir, state.epoch);
    let scratch = dir.join(format!(
        "{SNAPSHOT_PREFIX}{}.{}.tmp",
        state.epoch,
        std::process::id()
    ));
    remove_dir_if_present(&scratch)?;
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    for name in [CheckpointKind::Last.file_name(), OPTIMIZER_FILE] {
        let to = scratch.join(name);
        std::fs::hard_link(staging.join(name), &to).map_err(|e| Error::io(&to, e))?;
    }
    write_state(&scratch, state)?;
    remove_dir_if_present(&done)?;
    std::fs::rename(&scratch, &done).map_err(|e| Error::io(&done, e))
}

/// Every snapshot directory in `dir`, scratch ones included.
fn snapshot_dirs(dir: &Path) -> Vec<PathBuf> {
    entries_starting(dir, SNAPSHOT_PREFIX)
}

fn remove_dir_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Reads a trial directory's resume state, finishing an epoch commit a kill interrupted.
pub fn read_resume_state(dir: &Path) -> Result<ResumeState, Unresumable> {
    let text = match std::fs::read(dir.join(STATE_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unresumable::NoState),
        Err(e) => return Err(Unresumable::Unreadable(e.to_string())),
    };
    let mut state: ResumeState = serde_json::from_slice(&text)
        .map_err(|e| Unresumable::Unreadable(format!("{STATE_FILE}: {e}")))?;
    if state.epoch == 0 || state.history.len() != state.epoch {
        return Err(Unresumable::Unreadable(format!(
            "{STATE_FILE} holds {} epochs of figures for epoch {}",
            state.history.len(),
            state.epoch
        )));
    }
    let mut expected: Vec<(&str, &str)> = state
        .checkpoints
        .iter()
        .map(|c| (c.kind.file_name(), c.sha256.as_str()))
        .collect();
    expected.push((OPTIMIZER_FILE, &state.optimizer_sha256));
    let stagings = staging_dirs(dir);
    for (name, sha256) in expected {
        let path = dir.join(name);
        if sha256_of(&path).as_deref() == Some(sha256) {
            continue;
        }
        // The state was replaced but this file was not yet moved into place.
        let staged = stagings
            .iter()
            .map(|staging| staging.join(name))
            .find(|staged| sha256_of(staged).as_deref() == Some(sha256));
        if let Some(staged) = staged {
            std::fs::rename(&staged, &path).map_err(|e| {
                Unresumable::Damaged(format!("cannot move {} into place: {e}", staged.display()))
            })?;
            continue;
        }
        return Err(Unresumable::Damaged(format!(
            "{} does not match the sha256 recorded for epoch {}",
            path.display(),
            state.epoch
        )));
    }
    // What is left in this process's staging belongs to an epoch that never committed; other
    // processes' staging waits for the trial's final tidying, as one may still be committing.
    let _ = empty_own_staging(dir);
    // Paths follow the directory, which may have moved since.
    for checkpoint in &mut state.checkpoints {
        checkpoint.path = dir.join(checkpoint.kind.file_name());
    }
    Ok(state)
}

pub(super) fn write_state(dir: &Path, state: &ResumeState) -> Result<()> {
    let json = serde_json::to_vec(state).expect("resume state serialises");
    // Write, fsync, rename: the state file is either the old one or the new one, never partial.
    let tmp = dir.join(format!("{STATE_FILE}.{}.tmp", std::process::id()));
    let path = dir.join(STATE_FILE);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io(&path, e))
}

pub(super) fn publish_staged(dir: &Path) -> Result<()> {
    let staging = staging_dir(dir);
    let entries = std::fs::read_dir(&staging).map_err(|e| Error::io(&staging, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&staging, e))?;
        let to = dir.join(entry.file_name());
        match std::fs::rename(entry.path(), &to) {
            // Reading the state moves staged files whose hash it names into place: a process
            // that read the directory between our state write and this rename already did.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            result => result.map_err(|e| Error::io(&to, e))?,
        }
    }
    Ok(())
}

/// Scratch copies of the state file that a kill left before their rename.
fn state_scratch_files(dir: &Path) -> Vec<PathBuf> {
    entries_starting(dir, &format!("{STATE_FILE}."))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}

pub(super) fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(to, e))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

pub(super) fn size_and_sha256(path: &Path) -> Result<(u64, String)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok((bytes.len() as u64, hex::encode(Sha256::digest(&bytes))))
}

fn sha256_of(path: &Path) -> Option<String> {
    size_and_sha256(path).ok().map(|(_, sha)| sha)
}

/// Hex sha256 of a file, to check a checkpoint against its record.
pub fn file_sha256(path: &Path) -> Result<String> {
    size_and_sha256(path).map(|(_, sha)| sha)
}

/// Checks that trial `trial`'s checkpoint file at `path` is there and is the file recorded with
/// hash `sha256`, so that nothing is loaded from a file changed after training.
pub fn verify_checkpoint(trial: i64, path: &Path, sha256: &str) -> Result<()> {
    let actual = file_sha256(path).map_err(|_| {
        Error::NotFound(format!(
            "checkpoint {} of trial {trial} is missing (moved with --runs?)",
            path.display()
        ))
    })?;
    if actual != sha256 {
        return Err(Error::Data(format!(
            "checkpoint {} does not match the sha256 recorded for it ({sha256} recorded, {actual} \
             on disk): it was changed after training; re-run the trial",
            path.display()
        )));
    }
    Ok(())
}
