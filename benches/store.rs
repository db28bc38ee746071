//! Store overhead per trial: claim, the start, one epoch's rows and the finish (with its test
//! confusion), by 1, 8 and 32 concurrent workers racing over the same trials, on SQLite and on
//! PostgreSQL; and the claim time in a sweep of 10,000 trials against one of 256.
//!
//! `cargo bench --bench store` runs SQLite only; `SWEEP_BENCH_PG=postgres://... cargo bench
//! --bench store` adds PostgreSQL (e.g. inside `pg_virtualenv`, with
//! `SWEEP_BENCH_PG=postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE`). Prints
//! markdown rows for BENCHMARKS.md.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use sweep::experiment::Experiment;
use sweep::store::{Location, Store};
use sweep::train::{Confusion, EpochMetrics, Evaluation, TrainEvent, TrialEnd};
use sweep::trial::TrialId;

/// Per claimed trial: the time of each store call, in seconds.
#[derive(Default, Clone, Copy)]
struct Timing {
    claim: f64,
    start: f64,
    epoch: f64,
    finish: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// A sweep of `trials` one-epoch trials named `name` in `db`; returns their ids.
fn sweep_of(db: &Location, name: &str, trials: usize) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "[sweep]\nname = \"{name}\"\nrepeats = {trials}\n[grid]\narch = \"mlp\"\n\
             epochs = 1\n"
        ),
    )
    .unwrap();
    let experiment = Experiment::load(&file, &[]).unwrap();
    sweep::sched::register(&experiment, db, Some(dir.path()))
        .unwrap()
        .stored
        .iter()
        .map(|(row, _)| row.id.0)
        .collect()
}

/// `workers` threads, each with its own connection, race to claim every trial and record it.
/// Returns the timings, the errors and the number of trials claimed twice.
fn race(db: &Location, ids: &[i64], workers: usize) -> (Vec<Timing>, usize, usize) {
    let timings = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    let claims: Vec<AtomicUsize> = ids.iter().map(|_| AtomicUsize::new(0)).collect();
    let mut confusion = Confusion::default();
    for class in 0..10 {
        confusion.add(class, (class * 3) % 10);
    }
    let test = Evaluation {
        loss: 0.5,
        accuracy: 0.9,
        confusion,
        predictions: Vec::new(),
    };
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (timings, errors, claims, test) = (&timings, &errors, &claims, &test);
            scope.spawn(move || {
                let store = Store::open(db.clone()).unwrap();
                let owner = format!("bench-{w}/{}/{w}", std::process::id());
                // Each worker scans the trials from its own offset, as processes that started
                // at different times would.
                let offset = w * ids.len() / workers.max(1);
                for k in 0..ids.len() {
                    let index = (offset + k) % ids.len();
                    let id = ids[index];
                    let mut timing = Timing::default();
                    let at = Instant::now();
                    let claimed = store.claim_trial(
                        TrialId(id),
                        &owner,
                        |_| None,
                        Duration::from_secs(600),
                        false,
                    );
                    timing.claim = at.elapsed().as_secs_f64();
                    let lease = match claimed {
                        Ok(Some((_, lease))) => lease,
                        Ok(None) => continue,
                        Err(e) => {
                            eprintln!("claim: {e}");
                            errors.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                    };
                    claims[index].fetch_add(1, Ordering::SeqCst);
                    let events = [
                        TrainEvent::Started {
                            trial: id,
                            device: "cpu".into(),
                            threads: 1,
                            fused_with: Vec::new(),
                        },
                        TrainEvent::Epoch {
                            trial: id,
                            metrics: EpochMetrics {
                                epoch: 1,
                                train_loss: 1.0,
                                train_acc: 0.5,
                                val_loss: 1.1,
                                val_acc: 0.45,
                                seconds: 0.01,
                                train_seconds: 0.008,
                            },
                            checkpoints: Vec::new(),
                        },
                        TrainEvent::Finished {
                            trial: id,
                            end: TrialEnd::Done {
                                test: Some(Box::new(test.clone())),
                                best_epoch: 1,
                            },
                            seconds: 0.02,
                        },
                    ];
                    let mut spent = [0.0; 3];
                    for (event, spent) in events.iter().zip(&mut spent) {
                        let at = Instant::now();
                        if let Err(e) = store.apply(event, lease) {
                            eprintln!("write: {e}");
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                        *spent = at.elapsed().as_secs_f64();
                    }
                    [timing.start, timing.epoch, timing.finish] = spent;
                    timings.lock().unwrap().push(timing);
                }
            });
        }
    });
    let twice = claims
        .iter()
        .filter(|c| c.load(Ordering::SeqCst) != 1)
        .count();
    (
        timings.into_inner().unwrap(),
        errors.load(Ordering::SeqCst),
        twice,
    )
}

fn ms(seconds: f64) -> String {
    format!("{:.2}", seconds * 1000.0)
}

fn main() {
    let sqlite_dir = tempfile::tempdir().unwrap();
    let mut backends = vec![(
        "SQLite",
        Location::Sqlite(sqlite_dir.path().join("bench.db")),
    )];
    if let Ok(url) = std::env::var("SWEEP_BENCH_PG") {
        backends.push(("PostgreSQL", Location::parse(&url)));
    } else {
        eprintln!("SWEEP_BENCH_PG unset: SQLite only");
    }
    let stamp = std::process::id();
    println!(
        "| database | workers | trials | claim (ms) | start | epoch | finish | claim + start + \
         epoch + finish, median (p90) | trials/s | errors | claimed twice or never |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, db) in &backends {
        for (workers, trials) in [(1, 256), (8, 256), (32, 256), (8, 10_000)] {
            let ids = sweep_of(db, &format!("bench{stamp}w{workers}t{trials}"), trials);
            let began = Instant::now();
            let (timings, errors, twice) = race(db, &ids, workers);
            let wall = began.elapsed().as_secs_f64();
            let total: Vec<f64> = timings
                .iter()
                .map(|t| t.claim + t.start + t.epoch + t.finish)
                .collect();
            println!(
                "| {name} | {workers} | {trials} | {} | {} | {} | {} | {} ({}) | {:.0} | {errors} \
                 | {twice} |",
                ms(median(timings.iter().map(|t| t.claim).collect())),
                ms(median(timings.iter().map(|t| t.start).collect())),
                ms(median(timings.iter().map(|t| t.epoch).collect())),
                ms(median(timings.iter().map(|t| t.finish).collect())),
                ms(median(total.clone())),
                ms(quantile(total, 0.9)),
                timings.len() as f64 / wall,
            );
        }
    }
}
