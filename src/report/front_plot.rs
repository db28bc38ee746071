//! SVG figures of a multi-objective sweep: the Pareto front in each pair of objectives, and
//! the hypervolume against trial number and against time.

use super::number::human;
use super::search_plot::{Draw, svg_error};
use crate::error::Result;
use plotters::prelude::*;
use std::path::Path;

/// Trials off the front.
const OFF_FRONT: RGBColor = RGBColor(160, 160, 160);
/// Trials on the front: the red circles a reader looks for (and a test counts).
pub const ON_FRONT: RGBColor = RGBColor(214, 39, 40);

/// One objective's values as plotted: its name and each finished trial's value.
pub struct Axis<'a> {
    /// Objective name.
    pub name: &'a str,
    /// Whether higher is better (for the staircase of the front).
    pub maximised: bool,
    /// Value per trial, in the order of the `on_front` flags.
    pub values: Vec<f64>,
}

/// A scatter of every finished trial for each pair of objectives, the trials on the front as
/// red circles joined by the front's staircase (two objectives), the others grey.
pub fn pareto(path: &Path, axes: &[Axis], on_front: &[bool]) -> Result<()> {
    let pairs: Vec<(usize, usize)> = (0..axes.len())
        .flat_map(|i| (i + 1..axes.len()).map(move |j| (i, j)))
        .collect();
    let draw = || -> Draw {
        let width = 520 * pairs.len() as u32;
        let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            "Pareto front (red: no finished trial is better on every objective)",
            ("sans-serif", 20),
        )?;
        let panels = root.split_evenly((1, pairs.len()));
        for (area, &(i, j)) in panels.iter().zip(&pairs) {
            let (x, y) = (&axes[i], &axes[j]);
            let (x_low, x_high) = span(&x.values);
            let (y_low, y_high) = span(&y.values);
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x_low..x_high, y_low..y_high)?;
            chart
                .configure_mesh()
                .x_desc(x.name)
                .y_desc(y.name)
                .x_labels(6)
                .x_label_formatter(&|v| human(*v))
                .y_label_formatter(&|v| human(*v))
                .draw()?;
            let points = |front: bool| {
                x.values
                    .iter()
                    .zip(&y.values)
                    .zip(on_front)
                    .filter(move |(_, f)| **f == front)
                    .map(|((&a, &b), _)| (a, b))
            };
            chart
                .draw_series(points(false).map(|p| Circle::new(p, 3, OFF_FRONT.stroke_width(1))))?;
            if axes.len() == 2 {
                let mut front: Vec<(f64, f64)> = points(true).collect();
                front.sort_by(|a, b| a.0.total_cmp(&b.0));
                if x.maximised {
                    front.reverse();
                }
                let stairs = front
                    .windows(2)
                    .flat_map(|w| [w[0], (w[1].0, w[0].1), w[1]]);
                chart.draw_series(LineSeries::new(stairs, ON_FRONT.stroke_width(1)))?;
            }
            chart.draw_series(points(true).map(|p| Circle::new(p, 4, ON_FRONT.filled())))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| svg_error(path, e))
}

/// The hypervolume after each finished trial, against its draw number (left) and against the
/// seconds since the sweep's first epoch (right).
pub fn hypervolume(path: &Path, by_number: &[(f64, f64)], by_time: &[(f64, f64)]) -> Result<()> {
    let (_, high) = span(
        &by_number
            .iter()
            .chain(by_time)
            .map(|p| p.1)
            .collect::<Vec<_>>(),
    );
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            "Hypervolume of the finished trials' front",
            ("sans-serif", 20),
        )?;
        let (left, right) = root.split_horizontally(550);
        for (area, x_desc, line) in [
            (left, "trials finished (draw order)", by_number),
            (right, "seconds since the first epoch began", by_time),
        ] {
            let x_max = line.iter().map(|p| p.0).fold(1.0, f64::max);
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..x_max * 1.03, 0.0..high.max(1e-12))?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("hypervolume")
                .x_label_formatter(&|v| human(*v))
                .y_label_formatter(&|v| human(*v))
                .draw()?;
            let stairs = line
                .windows(2)
                .flat_map(|w| [w[0], (w[1].0, w[0].1)])
                .chain(line.last().copied());
            chart.draw_series(LineSeries::new(stairs, ON_FRONT.stroke_width(2)))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| svg_error(path, e))
}

fn span(values: &[f64]) -> (f64, f64) {
    let (low, high) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((high - low) * 0.06).max(high.abs() * 1e-3).max(1e-9);
    (low - pad, high + pad)
}
