//! SVG figures of a searched sweep: optimisation history, intermediate values, and the metric
//! against each numeric parameter.

use super::number::human;
use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// How a trial of a search ended, for the figures' markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Trained every epoch.
    Done,
    /// Stopped for good by early stopping.
    Pruned,
    /// Stopped at a rung, promotable.
    Paused,
}

/// One parameter's panel: its values against the metric.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParamPanel {
    /// The parameter's name.
    pub name: &'static str,
    /// Whether the axis is logarithmic.
    pub log: bool,
    /// (parameter value, metric value, outcome, trial id) per trial.
    pub points: Vec<(f64, f64, Outcome, i64)>,
}

const DONE: RGBColor = RGBColor(31, 119, 180);
const STOPPED: RGBColor = RGBColor(150, 150, 150);
const BEST: RGBColor = RGBColor(214, 39, 40);

pub(super) type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

pub(super) fn svg_error(path: &Path, e: Box<dyn std::error::Error>) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A padded range holding every finite value (0..1 when there are none).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((high - low) * 0.06).max(1e-3);
    (low - pad, high + pad)
}

fn marker<DB: DrawingBackend>(
    (x, y): (f64, f64),
    outcome: Outcome,
) -> DynElement<'static, DB, (f64, f64)> {
    match outcome {
        Outcome::Done => Circle::new((x, y), 3, DONE.filled()).into_dyn(),
        Outcome::Pruned | Outcome::Paused => {
            Cross::new((x, y), 4, STOPPED.stroke_width(2)).into_dyn()
        }
    }
}

/// The metric of each trial and the best done trial so far, against draw number (left) and
/// against seconds since the sweep's first epoch (right).
pub fn history(
    path: &Path,
    metric: &str,
    higher: bool,
    points: &[super::search_report::HistoryPoint],
) -> Result<()> {
    let (low, high) = span(points.iter().map(|p| p.value));
    let better = |a: f64, b: f64| if higher { a > b } else { a < b };
    let best_so_far = |mut xs: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut line = Vec::new();
        let mut best: Option<f64> = None;
        for (x, y) in xs {
            if best.is_none_or(|b| better(y, b)) {
                if let Some(b) = best {
                    line.push((x, b));
                }
                best = Some(y);
                line.push((x, y));
            }
        }
        line
    };
    let done = |p: &&super::search_report::HistoryPoint| p.outcome == Outcome::Done;
    let by_number: Vec<(f64, f64, Outcome)> = points
        .iter()
        .map(|p| (p.number as f64, p.value, p.outcome))
        .collect();
    let by_time: Vec<(f64, f64, Outcome)> = points
        .iter()
        .filter_map(|p| Some((p.at_s?, p.value, p.outcome)))
        .collect();
    let last_number = points.iter().map(|p| p.number).max().unwrap_or(1) as f64;
    let line_number = best_so_far(
        points
            .iter()
            .filter(done)
            .map(|p| (p.number as f64, p.value))
            .collect(),
    );
    let line_time = best_so_far(
        points
            .iter()
            .filter(done)
            .filter_map(|p| Some((p.at_s?, p.value)))
            .collect(),
    );
    let last_time = by_time.iter().map(|p| p.0).fold(1.0, f64::max);
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("Optimisation history of {metric} (line: best done trial so far)"),
            ("sans-serif", 20),
        )?;
        let (left, right) = root.split_horizontally(550);
        for (area, x_desc, x_max, scatter, line) in [
            (
                left,
                "trial (draw order)",
                last_number,
                &by_number,
                &line_number,
            ),
            (
                right,
                "seconds since the first epoch began",
                last_time,
                &by_time,
                &line_time,
            ),
        ] {
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max * 1.03 + 0.5, low..high)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(metric)
                .x_labels(8)
                .x_label_formatter(&|x| human(*x))
                .y_label_formatter(&|y| human(*y))
                .draw()?;
            chart.draw_series(scatter.iter().map(|&(x, y, o)| marker((x, y), o)))?;
            chart.draw_series(LineSeries::new(line.iter().copied(), BEST.stroke_width(2)))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| svg_error(path, e))
}

/// `metric` after each epoch of every trial: done trials in blue, stopped ones in grey with a
/// cross at the epoch they stopped.
pub fn intermediate(
    path: &Path,
    metric: &str,
    curves: &[(Outcome, Vec<Option<f64>>)],
) -> Result<()> {
    let (low, high) = span(curves.iter().flat_map(|(_, v)| v.iter().flatten().copied()));
    let max_epoch = curves
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{metric} per epoch (grey: pruned or paused, x where it stopped)"),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.8..max_epoch + 0.2, low..high)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(metric)
            .x_label_formatter(&|x| human(*x))
            .y_label_formatter(&|y| human(*y))
            .draw()?;
        // Stopped trials first, so the done ones are drawn over them.
        let mut ordered: Vec<&(Outcome, Vec<Option<f64>>)> = curves.iter().collect();
        ordered.sort_by_key(|(o, _)| *o == Outcome::Done);
        for (outcome, values) in ordered {
            let line: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some(((i + 1) as f64, (*v)?)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            let color = if *outcome == Outcome::Done {
                DONE.mix(0.8)
            } else {
                STOPPED.mix(0.8)
            };
            chart.draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(1)))?;
            if let Some(&end) = line.last() {
                chart.draw_series(std::iter::once(marker(end, *outcome)))?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| svg_error(path, e))
}

/// One panel per numeric parameter: its value against the metric, two panels to a row.
pub fn params(path: &Path, metric: &str, panels: &[ParamPanel]) -> Result<()> {
    let (low, high) = span(
        panels
            .iter()
            .flat_map(|p| p.points.iter().map(|(_, y, _, _)| *y)),
    );
    let rows = panels.len().div_ceil(2);
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (1000, 40 + 330 * rows as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("{metric} against each numeric parameter"),
            ("sans-serif", 20),
        )?;
        let areas = root.split_evenly((rows, 2));
        for (panel, area) in panels.iter().zip(areas) {
            panel_chart(&area, metric, panel, (low, high))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| svg_error(path, e))
}

fn panel_chart(
    area: &DrawingArea<SVGBackend, Shift>,
    metric: &str,
    panel: &ParamPanel,
    (low, high): (f64, f64),
) -> Draw {
    let xs = || panel.points.iter().map(|(x, _, _, _)| *x);
    let (x_low, x_high) = if panel.log {
        let (l, h) = xs()
            .filter(|x| *x > 0.0)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        if l.is_finite() {
            (l / 1.3, h * 1.3)
        } else {
            (1e-3, 1.0)
        }
    } else {
        span(xs())
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56);
    let scatter = panel.points.iter().map(|&(x, y, o, _)| marker((x, y), o));
    if panel.log {
        let mut chart = builder.build_cartesian_2d((x_low..x_high).log_scale(), low..high)?;
        chart
            .configure_mesh()
            .x_desc(format!("{} (log)", panel.name))
            .y_desc(metric)
            .x_label_formatter(&|x| human(*x))
            .y_label_formatter(&|y| human(*y))
            .draw()?;
        chart.draw_series(scatter)?;
    } else {
        let mut chart = builder.build_cartesian_2d(x_low..x_high, low..high)?;
        chart
            .configure_mesh()
            .x_desc(panel.name)
            .y_desc(metric)
            .x_labels(6)
            .x_label_formatter(&|x| human(*x))
            .y_label_formatter(&|y| human(*y))
            .draw()?;
        chart.draw_series(scatter)?;
    }
    Ok(())
}
