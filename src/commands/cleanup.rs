//! The commands that free disk: `sweep rm` and `sweep gc`.

use super::output::note;
use super::output::print;
use crate::cli::{GcArgs, RmArgs};
use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use sweep::disk::{self, Usage};
use sweep::sched::{default_runs_dir, live_trials};
use sweep::store::{Location, Store};
use sweep::trial::TrialId;
use sweep::{Error, Result};

/// `sweep rm`.
pub fn rm(args: RmArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let Some(sweep) = store.sweep_files(Some(&args.sweep))?.pop() else {
        return Err(store.unknown_sweep(&args.sweep)?);
    };
    let live = live_trials(&store, sweep.id)?;
    if !live.is_empty() {
        let holders: Vec<String> = live
            .iter()
            .map(|t| format!("trial {} ({})", t.id, t.owner.as_deref().unwrap_or("?")))
            .collect();
        return Err(Error::Usage(format!(
            "sweep {:?} is being run: {}; stop that process first (Ctrl-C), or wait for it \
             to finish, then run `sweep rm` again",
            sweep.name,
            holders.join(", ")
        )));
    }
    let dir = disk::sweep_dir(&sweep, &runs_root(&args.runs, &args.db.db));
    let files = disk::usage(&dir);
    note!(
        "sweep {:?}: {} trials, {} epochs of metrics and results in {}; checkpoints: {} under {}",
        sweep.name,
        sweep.trials.len(),
        store.epoch_count(sweep.id)?,
        args.db.db,
        files,
        dir.display()
    );
    if !args.yes && !confirm("delete them?")? {
        note!("nothing deleted");
        return Ok(1);
    }
    // Rows first: a kill between the two leaves files that no row names, which `gc` removes.
    store.delete_sweep(sweep.id)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    note!("deleted sweep {:?}; freed {}", sweep.name, files);
    Ok(0)
}

/// Asks on the terminal; without one, the answer must come with `--yes`.
fn confirm(question: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(
            "not asking without a terminal: pass --yes to delete".into(),
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io(std::path::Path::new("stdin"), e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The root the sweeps' directories default to: `--runs`, else `runs/` beside the database.
fn runs_root(runs: &Option<PathBuf>, db: &Location) -> PathBuf {
    runs.clone().unwrap_or_else(|| default_runs_dir(db))
}

/// `sweep gc`.
pub fn gc(args: GcArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let default_root = runs_root(&args.runs, &args.db.db);
    let sweeps = store.sweep_files(None)?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut total = Usage::default();
    let mut rows = 0;
    let mut roots = HashSet::from([default_root.clone()]);
    let mut known = HashSet::new();
    for sweep in &sweeps {
        let dir = disk::sweep_dir(sweep, &default_root);
        if let Some(root) = dir.parent() {
            roots.insert(root.to_path_buf());
        }
        known.insert(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
        let garbage = disk::garbage(sweep, &dir);
        for path in &garbage.paths {
            print(&format!("{verb} {}\n", path.display()))?;
            if !args.dry_run {
                remove(path)?;
            }
        }
        for (trial, kind) in &garbage.dead_rows {
            print(&format!(
                "{verb} the row of trial {trial}'s {kind} checkpoint: its file is gone\n"
            ))?;
        }
        if !args.dry_run {
            for (trial, kind) in &garbage.dead_rows {
                store.forget_checkpoints(TrialId(*trial), &[kind])?;
            }
        }
        total += garbage.usage;
        rows += garbage.dead_rows.len();
    }
    // The same root may be named relatively (the default) and absolutely (as recorded).
    let mut roots: Vec<PathBuf> = roots
        .into_iter()
        .filter_map(|root| root.canonicalize().ok())
        .collect();
    roots.sort();
    roots.dedup();
    for root in roots {
        for orphan in disk::orphan_sweep_dirs(&root, &known) {
            print(&format!(
                "{verb} {} (no sweep of that name)\n",
                orphan.display()
            ))?;
            total += disk::usage(&orphan);
            if !args.dry_run {
                remove(&orphan)?;
            }
        }
    }
    note!(
        "{verb} {total} and {rows} checkpoint row{} without a file",
        if rows == 1 { "" } else { "s" }
    );
    Ok(0)
}

fn remove(path: &std::path::Path) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
