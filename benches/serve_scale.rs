//! `sweep serve` at scale: builds a SQLite database of SWEEP_BENCH_TRIALS (default 100,000)
//! trials x 10 epochs **through the store** (register, claim, start, ten epochs, finish: the
//! calls `sweep run` makes) for a random search over lr (log-uniform) and dropout; every third
//! trial is pruned at epoch 3. The rows are synthetic: no model is trained; the figures are drawn
//! from a formula of the parameters plus noise. Then it starts the real `sweep serve` on it and
//! times, over HTTP, the sweep page's first data (summary, version, first table page, curves),
//! its analysis (cold, then cached), a table page deep in the sweep sorted and filtered, and the
//! server's resident memory over 1,000 page loads. `benches/serve.sh` runs it beside
//! optuna-dashboard.
//!
//! `cargo bench --bench serve_scale` (SWEEP_BENCH_DB=FILE keeps the database there and reuses it;
//! SWEEP_BENCH_BUILD_ONLY=1 only builds it).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;
use sweep::experiment::Experiment;
use sweep::store::Location;
use sweep::train::{EpochMetrics, TrainEvent, TrialEnd};
use sweep::trial::TrialId;

/// Every third trial stops at this epoch, pruned (as ASHA's first rung would).
const PRUNED_AT: usize = 3;

fn build(db: &Location, trials: usize) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scale.toml");
    // A random search over a log-distributed learning rate and a dropout.
    std::fs::write(
        &file,
        format!(
            "[sweep]\nname = \"scale\"\nsampler = \"random\"\ntrials = {trials}\n\
             [grid]\narch = \"mlp\"\nepochs = 10\nlr = {{ log_uniform = [1e-4, 1e-1] }}\n\
             dropout = {{ uniform = [0.0, 0.5] }}\n"
        ),
    )
    .unwrap();
    let experiment = Experiment::load(&file, &[]).unwrap();
    let registered = sweep::sched::register(&experiment, db, Some(dir.path())).unwrap();
    let sampler = registered.sampler.expect("a random search");
    // Random draws do not depend on the history, so they are drawn up front and written in
    // one transaction, in draw order, as `sweep run` would have added them one by one.
    let specs: Vec<_> = (0..trials as u64)
        .flat_map(|n| sampler.draw(n, &[]))
        .collect();
    let store = registered.store;
    let rows = store.sync_trials(registered.sweep_id, &specs).unwrap();
    let started = Instant::now();
    for (n, (row, spec)) in rows.iter().zip(&specs).enumerate() {
        let id = row.id;
        let Some((_, lease)) = store
            .claim_trial(
                id,
                "bench/1/1",
                |_| None,
                std::time::Duration::from_secs(600),
                false,
            )
            .unwrap()
        else {
            continue;
        };
        let noise = |k: usize| (((id.0 as usize * 7919 + k * 104729) % 1000) as f64) / 1000.0;
        let quality = 0.9 - 0.08 * (spec.lr.log10() + 2.5).powi(2) - 0.1 * spec.dropout;
        let pruned = n % 3 == 1;
        let epochs: Vec<EpochMetrics> = (1..=if pruned { PRUNED_AT } else { 10 })
            .map(|e| {
                let acc = (quality * (1.0 - (-(e as f64) / 3.0).exp()) + 0.02 * noise(e))
                    .clamp(0.05, 0.99);
                EpochMetrics {
                    epoch: e,
                    train_loss: 2.3 * (1.0 - acc) + 0.1,
                    train_acc: acc + 0.01,
                    val_loss: 2.3 * (1.0 - acc) + 0.15,
                    val_acc: acc,
                    seconds: 1.0,
                    train_seconds: 0.9,
                }
            })
            .collect();
        store
            .apply(
                &TrainEvent::Started {
                    trial: id.0,
                    device: "cpu".into(),
                    threads: 1,
                    fused_with: vec![],
                },
                lease,
            )
            .unwrap();
        store
            .catch_up(TrialId(id.0), lease, &epochs, &[], &[])
            .unwrap();
        let end = if pruned {
            TrialEnd::Pruned {
                best_epoch: PRUNED_AT,
            }
        } else {
            TrialEnd::Done {
                test: None,
                best_epoch: 10,
            }
        };
        store
            .apply(
                &TrainEvent::Finished {
                    trial: id.0,
                    end,
                    seconds: epochs.len() as f64,
                },
                lease,
            )
            .unwrap();
        if n % 10_000 == 0 {
            eprintln!(
                "{n} trials written in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn get(host: &str, path: &str) -> (u16, usize, f64) {
    let at = Instant::now();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let seconds = at.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    (status, body, seconds)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let trials: usize = std::env::var("SWEEP_BENCH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(100_000);
    let keep = std::env::var("SWEEP_BENCH_DB").ok();
    let dir = tempfile::tempdir().unwrap();
    let path = keep.map_or_else(|| dir.path().join("scale.db"), std::path::PathBuf::from);
    let db = Location::Sqlite(path.clone());
    if !path.exists() {
        let at = Instant::now();
        build(&db, trials);
        println!(
            "built {trials} synthetic trials x 10 epochs through the store in {:.0} s",
            at.elapsed().as_secs_f64()
        );
    }
    if std::env::var_os("SWEEP_BENCH_BUILD_ONLY").is_some() {
        return;
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args([
            "serve",
            "--db",
            path.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let host = url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let first_data = [
        "/api/sweeps/scale",
        "/api/sweeps/scale/version",
        "/api/sweeps/scale/trials?page=1&per_page=50",
        "/api/sweeps/scale/curves?top=5",
    ];
    let report = |label: &str, paths: &[&str]| {
        let (mut bytes, mut seconds) = (0, 0.0);
        for path in paths {
            let (status, size, s) = get(&host, path);
            assert_eq!(status, 200, "{path}");
            bytes += size;
            seconds += s;
        }
        println!(
            "| sweep serve | {trials} | {label} | {seconds:.3} s | {:.1} KB |",
            bytes as f64 / 1000.0
        );
    };
    println!("| viewer | trials | request | time | size |\n| --- | --- | --- | --- | --- |");
    report(
        "sweep page, first data (summary, version, table page 1, curves), right after start",
        &first_data,
    );
    report("sweep page, first data again", &first_data);
    for path in &first_data {
        report(&format!("  of which {path}"), &[path]);
    }
    report(
        "analysis (history, intermediate values, parameters, importance, what mattered), first request: waits for the computation the server starts at start-up",
        &["/api/sweeps/scale/analysis"],
    );
    report("analysis, kept", &["/api/sweeps/scale/analysis"]);
    let deep = format!(
        "/api/sweeps/scale/trials?page={}&per_page=50&sort=-val_acc",
        trials / 100
    );
    report("table page deep in the sweep, sorted by val_acc", &[&deep]);
    report(
        "table page, filtered (lr > 0.001 and dropout < 0.2) and sorted",
        &[
            "/api/sweeps/scale/trials?page=3&per_page=50&sort=-val_acc&where=lr%20%3E%200.001%20and%20dropout%20%3C%200.2",
        ],
    );
    let before = rss_kib(server.id());
    let mut times = Vec::new();
    for _ in 0..1000 {
        let at = Instant::now();
        for path in &first_data {
            assert_eq!(get(&host, path).0, 200);
        }
        times.push(at.elapsed().as_secs_f64());
    }
    let after = rss_kib(server.id());
    times.sort_by(f64::total_cmp);
    println!(
        "\nsweep serve over 1,000 loads of the sweep page's first data: median {:.3} s, p90 {:.3} s; resident memory {} KiB before, {} KiB after",
        times[500], times[900], before, after
    );
    let _ = server.kill();
    let _ = server.wait();
}
