//! Live progress of a run, fed with the same training events the store records: indicatif bars
//! on a terminal, periodic log lines otherwise, nothing with `-q`.

use crate::train::{BatchPosition as Position, TrainEvent, TrialEnd};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// One bar per running trial and an overall bar (for a terminal).
    Bars,
    /// Log lines: each trial's start, epochs and end, and every `LINE_EVERY` where each running
    /// trial stands (for logs and CI).
    #[default]
    Lines,
    /// Nothing.
    Quiet,
}

/// How often `Lines` mode reports running trials between epochs.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Shows a run's progress; see [`ProgressMode`].
pub struct Progress {
    mode: ProgressMode,
    labels: HashMap<i64, String>,
    trials_total: usize,
    trials_finished: usize,
    running: BTreeMap<i64, Position>,
    last_line: Instant,
    multi: MultiProgress,
    overall: ProgressBar,
    bars: HashMap<i64, ProgressBar>,
}

impl Progress {
    /// Progress for `labels.len()` trials that train `epochs_total` epochs between them.
    pub fn new(mode: ProgressMode, labels: HashMap<i64, String>, epochs_total: u64) -> Progress {
        let multi = MultiProgress::with_draw_target(match mode {
            ProgressMode::Bars => ProgressDrawTarget::stderr_with_hz(5),
            _ => ProgressDrawTarget::hidden(),
        });
        let overall = multi.add(ProgressBar::new(epochs_total));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{wide_bar:.cyan/blue}] {pos}/{len} epochs  {msg}  \
                 elapsed {elapsed_precise}, ETA {eta_precise}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        let trials_total = labels.len();
        overall.set_prefix("sweep");
        overall.set_message(format!("0/{trials_total} trials"));
        Progress {
            mode,
            labels,
            trials_total,
            trials_finished: 0,
            running: BTreeMap::new(),
            last_line: Instant::now(),
            multi,
            overall,
            bars: HashMap::new(),
        }
    }

    /// Counts `trials` more trials of `epochs` epochs between them, not known when the run
    /// started (a searching sampler draws them as slots free up).
    pub fn expect(&mut self, trials: usize, epochs: u64) {
        self.trials_total += trials;
        self.overall.inc_length(epochs);
        let total = self.trials_total;
        self.overall.set_message(format!("0/{total} trials"));
    }

    /// Names a trial drawn after the run started.
    pub fn name(&mut self, trial: i64, label: String) {
        self.labels.insert(trial, label);
    }

    /// Takes in one training event.
    pub fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                trial,
                device,
                threads,
                fused_with,
            } => {
                self.running.insert(*trial, Position::default());
                let fused = if fused_with.is_empty() {
                    String::new()
                } else {
                    format!(", fused with {}", list_ids(fused_with))
                };
                self.say(format!(
                    "trial {trial} started on {device} ({threads} threads{fused}): {}",
                    self.label(*trial)
                ));
                if self.mode == ProgressMode::Bars {
                    let bar = self.multi.insert_from_back(1, ProgressBar::new(1));
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix} [{bar:25.green/white}] {msg}")
                            .expect("static template")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("trial {trial}"));
                    bar.set_message(self.label(*trial).to_string());
                    self.bars.insert(*trial, bar);
                }
            }
            TrainEvent::Measured { .. } => {}
            TrainEvent::Progress { trial, position } => {
                if let Some(bar) = self.bars.get(trial) {
                    bar.set_length(position.batches as u64);
                    bar.set_position(position.batch as u64);
                    bar.set_message(describe(position));
                }
                self.running.insert(*trial, position.clone());
            }
            TrainEvent::Epoch {
                trial, metrics: m, ..
            } => {
                self.overall.inc(1);
                self.say(format!(
                    "trial {trial} epoch {}: train loss {:.4}, val loss {:.4}, val acc {:.4} \
                     ({:.1} s)",
                    m.epoch, m.train_loss, m.val_loss, m.val_acc, m.seconds
                ));
            }
            TrainEvent::Finished {
                trial,
                end,
                seconds,
            } => {
                self.running.remove(trial);
                if let Some(bar) = self.bars.remove(trial) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                // A paused trial (ASHA, a PBT member between steps) comes back, an interrupted
                // or lost one is another run's or process's to end: none of them has ended yet.
                if !matches!(
                    end,
                    TrialEnd::Paused { .. } | TrialEnd::Interrupted | TrialEnd::Lost
                ) {
                    self.trials_finished += 1;
                }
                let (done, total) = (self.trials_finished, self.trials_total);
                self.overall.set_message(format!("{done}/{total} trials"));
                let line = match end {
                    TrialEnd::Done {
                        test: Some(test), ..
                    } => format!(
                        "trial {trial} done in {seconds:.1} s: test acc {:.4} ({done}/{total})",
                        test.accuracy
                    ),
                    TrialEnd::Done { test: None, .. } => format!(
                        "trial {trial} done in {seconds:.1} s, not tested (test_limit = 0) \
                         ({done}/{total})"
                    ),
                    TrialEnd::Diverged { message } | TrialEnd::Failed { message } => {
                        format!(
                            "trial {trial} {}: {message} ({done}/{total})",
                            end.describe()
                        )
                    }
                    TrialEnd::Pruned { .. } | TrialEnd::Paused { .. } => {
                        format!("trial {trial} {} after {seconds:.1} s", end.describe())
                    }
                    TrialEnd::Interrupted => format!("trial {trial} interrupted"),
                    TrialEnd::Lost => {
                        format!("trial {trial} lost to another process; its writes were refused")
                    }
                };
                match end {
                    TrialEnd::Done { .. } | TrialEnd::Pruned { .. } | TrialEnd::Paused { .. } => {
                        self.say(line)
                    }
                    _ => self.warn(line),
                }
            }
        }
    }

    /// Called now and then between events: `Lines` mode reports where running trials stand.
    pub fn tick(&mut self) {
        if self.mode != ProgressMode::Lines || self.last_line.elapsed() < LINE_EVERY {
            return;
        }
        self.last_line = Instant::now();
        for (trial, position) in &self.running {
            if position.batches > 0 {
                tracing::info!("trial {trial}: {}", describe(position));
            }
        }
    }

    /// Removes the bars.
    pub fn finish(self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }

    fn label(&self, trial: i64) -> &str {
        self.labels.get(&trial).map_or("", String::as_str)
    }

    fn say(&self, line: String) {
        self.print(line, false);
    }

    fn warn(&self, line: String) {
        self.print(line, true);
    }

    /// A line above the bars, or a log line (a warning when `warning`).
    fn print(&self, line: String, warning: bool) {
        match self.mode {
            ProgressMode::Bars => {
                let _ = self.multi.println(line);
            }
            ProgressMode::Lines if warning => tracing::warn!("{line}"),
            ProgressMode::Lines => tracing::info!("{line}"),
            ProgressMode::Quiet => {}
        }
    }
}

fn describe(p: &Position) -> String {
    format!(
        "epoch {}/{} batch {}/{} loss {:.4} {:.0} img/s",
        p.epoch, p.epochs, p.batch, p.batches, p.loss, p.images_per_s
    )
}

/// `2, 3 and 4`.
fn list_ids(ids: &[i64]) -> String {
    let names: Vec<String> = ids.iter().map(i64::to_string).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}
