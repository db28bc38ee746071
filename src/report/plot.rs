//! SVG figures for the sweep report, drawn with plotters.

use super::number::human;
use crate::error::{Error, Result};
use crate::store::EpochRow;
use plotters::prelude::*;
use std::path::Path;

/// Which pair of curves a learning-curve figure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// Training and validation loss.
    Loss,
    /// Training and validation accuracy.
    Accuracy,
}

/// Draws train (dashed) and validation (solid) curves of each labelled trial into an SVG file.
pub fn learning_curves(
    path: &Path,
    curve: Curve,
    trials: &[(String, Vec<EpochRow>)],
) -> Result<()> {
    let pick = |e: &EpochRow| match curve {
        Curve::Loss => (e.train_loss, e.val_loss),
        Curve::Accuracy => (e.train_acc, e.val_acc),
    };
    let values: Vec<f64> = trials
        .iter()
        .flat_map(|(_, epochs)| epochs.iter().flat_map(|e| [pick(e).0, pick(e).1]))
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    let max_epoch = trials
        .iter()
        .flat_map(|(_, e)| e.iter().map(|e| e.epoch))
        .max()
        .unwrap_or(1)
        .max(2);
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let (low, high) = if low.is_finite() {
        let pad = ((high - low) * 0.05).max(1e-3);
        (low - pad, high + pad)
    } else {
        (0.0, 1.0)
    };
    let title = match curve {
        Curve::Loss => "Loss per epoch (dashed: train, solid: validation)",
        Curve::Accuracy => "Accuracy per epoch (dashed: train, solid: validation)",
    };
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1i64..max_epoch, low..high)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(match curve {
                Curve::Loss => "cross-entropy",
                Curve::Accuracy => "accuracy",
            })
            .x_label_formatter(&|x| x.to_string())
            .y_label_formatter(&|y| human(*y))
            .draw()?;
        for (index, (label, epochs)) in trials.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let points = |train: bool| -> Vec<(i64, f64)> {
                epochs
                    .iter()
                    .filter_map(|e| {
                        let (t, v) = pick(e);
                        let value = if train { t } else { v }?;
                        value.is_finite().then_some((e.epoch, value))
                    })
                    .collect()
            };
            chart
                .draw_series(LineSeries::new(points(false), color.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart.draw_series(DashedLineSeries::new(points(true), 6, 4, color.into()))?;
            // Markers keep one-epoch trials visible (a line needs two points).
            chart.draw_series(
                points(false)
                    .into_iter()
                    .map(move |p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(match curve {
                Curve::Loss => SeriesLabelPosition::UpperRight,
                Curve::Accuracy => SeriesLabelPosition::LowerRight,
            })
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}
