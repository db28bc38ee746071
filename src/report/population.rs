//! The report's population-based training section: each member's lineage (the members its
//! final weights passed through) and, per explored hyperparameter, each member's schedule along
//! that lineage as a figure.

use super::lineage::Lineage;
use super::number::human;
use super::search_plot::svg_error;
use super::table::opt;
use super::{Format, Rows};
use crate::error::Result;
use crate::experiment::Hyper;
use crate::store::TrialListing;
use plotters::prelude::*;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The section for the members' `lineages` (by trial id), with one schedule figure per
/// explored hyperparameter written into `dir`.
pub fn population_section(
    lineages: &[(i64, Lineage)],
    trials: &[TrialListing],
    dir: &Path,
    stem: &str,
) -> Result<(String, Vec<PathBuf>)> {
    let mut md = String::from("## Population-based training\n\n");
    let copies: usize = lineages.iter().map(|(_, l)| l.copies.len()).sum();
    let _ = writeln!(
        md,
        "{} members, {copies} copies. Each member's final weights passed through the members \
         listed under *lineage*, each for the epochs given; *copies* are the steps at which the \
         member continued from another one (after epoch: from trial).\n",
        lineages.len()
    );
    let rows = lineages
        .iter()
        .map(|(id, lineage)| {
            let trial = trials.iter().find(|t| t.id == *id);
            vec![
                id.to_string(),
                trial.map_or("-".into(), |t| t.status.to_string()),
                opt(trial.and_then(|t| t.val_acc), 4),
                opt(trial.and_then(|t| t.test_acc), 4),
                lineage
                    .copies
                    .iter()
                    .map(|c| format!("{}: #{}", c.epoch, c.donor))
                    .collect::<Vec<_>>()
                    .join(", "),
                lineage
                    .ancestry
                    .iter()
                    .map(|s| format!("#{} ({}-{})", s.member, s.first_epoch, s.last_epoch))
                    .collect::<Vec<_>>()
                    .join(" → "),
            ]
        })
        .collect();
    md.push_str(
        &Rows {
            header: [
                "member", "status", "val_acc", "test_acc", "copies", "lineage",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }
        .render(Format::Md),
    );
    md.push('\n');
    let mut figures = Vec::new();
    let hypers: Vec<Hyper> = lineages
        .first()
        .map(|(_, l)| l.schedule.iter().map(|(h, _)| *h).collect())
        .unwrap_or_default();
    for hyper in hypers {
        let file = format!("{stem}-schedule-{}.svg", hyper.name());
        let path = dir.join(&file);
        schedule_plot(&path, hyper, lineages)?;
        let _ = writeln!(
            md,
            "![{} by epoch along each member's lineage]({file})\n",
            hyper.name()
        );
        figures.push(path);
    }
    Ok((md, figures))
}

/// Each member's value of `hyper` by epoch along its lineage, as steps (log scale for the
/// learning rate and weight decay, whose ranges span decades).
fn schedule_plot(path: &Path, hyper: Hyper, lineages: &[(i64, Lineage)]) -> Result<()> {
    let steps: Vec<(i64, Vec<(f64, f64)>)> = lineages
        .iter()
        .map(|(id, lineage)| {
            let last = lineage.ancestry.last().map_or(1, |s| s.last_epoch);
            let values = lineage
                .schedule
                .iter()
                .find(|(h, _)| *h == hyper)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut line = Vec::new();
            for (i, &(from, value)) in values.iter().enumerate() {
                let until = values.get(i + 1).map_or(last + 1, |next| next.0);
                line.push((from as f64 - 0.5, value));
                line.push((until as f64 - 0.5, value));
            }
            (*id, line)
        })
        .collect();
    let values: Vec<f64> = steps
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .collect();
    let max_epoch = steps
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.0))
        .fold(1.5, f64::max);
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log = matches!(hyper, Hyper::Lr | Hyper::WeightDecay) && low > 0.0;
    let (low, high) = if !low.is_finite() {
        (0.0, 1.0)
    } else if log {
        (low / 1.3, high * 1.3)
    } else {
        let pad = ((high - low) * 0.06).max(1e-3);
        (low - pad, high + pad)
    };
    let caption = format!(
        "{} by epoch along each member's lineage (one colour per member)",
        hyper.name()
    );
    type Draw = std::result::Result<(), Box<dyn std::error::Error>>;
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let x_range = 0.5..max_epoch;
        macro_rules! lines {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("epoch")
                    .y_desc(hyper.name())
                    .y_label_formatter(&|y| human(*y))
                    .draw()?;
                for (index, (id, line)) in steps.iter().enumerate() {
                    let color = Palette99::pick(index).to_rgba();
                    chart
                        .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
                        .label(format!("#{id}"))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }};
        }
        if log {
            lines!(builder.build_cartesian_2d(x_range, (low..high).log_scale())?);
        } else {
            lines!(builder.build_cartesian_2d(x_range, low..high)?);
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| svg_error(path, e))
}
