//! Population-based training's exploit step on disk: a member continues from another member's
//! snapshot (model, optimizer state, generators) through the same three-step commit as an
//! epoch, so a kill at any point leaves either the member as it was or the member with the copy
//! whole, never a mix.

use super::checkpoint::{
    self, OPTIMIZER_FILE, ResumeState, STATE_FILE, copy_synced, empty_own_staging, publish_staged,
    read_resume_state, size_and_sha256, snapshot_dir, staging_dir, write_state,
};
use super::events::CheckpointKind;
use crate::error::{Error, Result};
use crate::trial::MemberCopy;
use std::path::Path;

/// Makes the member in `dir` continue after epoch `copy.epoch` from the snapshot its donor (in
/// `donor_dir`) kept after that epoch, recording `copy` in its resume state. Its own figures,
/// best epoch and best checkpoint stay its own. A member whose state already records this copy
/// (an earlier attempt committed it) is left as it is. Returns the member's resume state.
pub fn copy_member(dir: &Path, donor_dir: &Path, copy: MemberCopy) -> Result<ResumeState> {
    let epoch = copy.epoch;
    let mut state = read_resume_state(dir).map_err(|why| {
        Error::Train(format!(
            "cannot copy into {}: {why} (the member must have committed epoch {epoch})",
            dir.display()
        ))
    })?;
    if state.copies.iter().any(|c| c.epoch == epoch) {
        return Ok(state);
    }
    if state.epoch != epoch {
        return Err(Error::Train(format!(
            "{} is at epoch {}, not at epoch {epoch} where the copy belongs",
            dir.display(),
            state.epoch
        )));
    }
    let snapshot = snapshot_dir(donor_dir, epoch);
    let donor = read_snapshot(&snapshot, epoch)?;
    empty_own_staging(dir)?;
    let staging = staging_dir(dir);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let last = CheckpointKind::Last.file_name();
    for name in [last, OPTIMIZER_FILE] {
        copy_synced(&snapshot.join(name), &staging.join(name))?;
    }
    let (size, sha256) = size_and_sha256(&staging.join(last))?;
    for info in &mut state.checkpoints {
        if info.kind == CheckpointKind::Last {
            info.size = size;
            info.sha256 = sha256.clone();
        }
    }
    state.optimizer_sha256 = size_and_sha256(&staging.join(OPTIMIZER_FILE))?.1;
    state.dropout = donor.dropout;
    state.augment = donor.augment;
    state.copies.push(copy);
    crate::fault::kill_point("copy-before-state", epoch);
    write_state(dir, &state)?;
    crate::fault::kill_point("copy-after-state", epoch);
    publish_staged(dir)?;
    Ok(state)
}

/// The donor's resume state in its snapshot after `epoch`, with its files checked against it.
fn read_snapshot(snapshot: &Path, epoch: usize) -> Result<ResumeState> {
    let path = snapshot.join(STATE_FILE);
    let text = std::fs::read(&path).map_err(|e| {
        Error::Train(format!(
            "cannot read the snapshot {} to copy from: {e} (was the donor's directory \
             removed?)",
            path.display()
        ))
    })?;
    let donor: ResumeState = serde_json::from_slice(&text)
        .map_err(|e| Error::Train(format!("{} is unreadable: {e}", path.display())))?;
    let last = donor
        .checkpoints
        .iter()
        .find(|c| c.kind == CheckpointKind::Last)
        .map(|c| c.sha256.clone())
        .unwrap_or_default();
    for (name, expected) in [
        (CheckpointKind::Last.file_name(), last),
        (OPTIMIZER_FILE, donor.optimizer_sha256.clone()),
    ] {
        let file = snapshot.join(name);
        if donor.epoch != epoch || checkpoint::file_sha256(&file).ok() != Some(expected) {
            return Err(Error::Train(format!(
                "the snapshot {} does not hold epoch {epoch} whole ({name} does not match its \
                 state); the donor's epoch must be trained again",
                snapshot.display()
            )));
        }
    }
    Ok(donor)
}
