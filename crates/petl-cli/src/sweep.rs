//! `petl sweep`: a sweep file's grid trained run by run, or with `--dry-run` only listed.

use crate::args::{ModelArg, SweepArgs};
use crate::commands::resolve_model;
use anyhow::{bail, Context, Result};
use petl::train::sweep::value_text;
use petl::train::{run_sweep, Grid, SweepEvent, SweepSpec, TrainOptions};
use std::path::Path;

pub fn sweep(a: SweepArgs, quiet: bool) -> Result<()> {
    let spec = SweepSpec::from_file(&a.config)?;
    // The flag wins over the file, as `--model` wins over `--config` in `petl train`.
    let model = ModelArg {
        model: a.model.clone().or_else(|| spec.model().map(str::to_string)),
    };
    let model = resolve_model(&model, quiet)?;
    let grid = spec.grid(&model)?;
    if a.dry_run {
        return dry_run(&grid, &a.out);
    }
    let opts = TrainOptions {
        progress: !a.no_progress && !quiet,
        device: a.device.open()?,
        ..TrainOptions::default()
    };
    let report = run_sweep(&grid, &a.out, &opts, &mut |e| print_event(e, quiet))
        .with_context(|| format!("sweep {} into {}", a.config.display(), a.out.display()))?;
    let md = std::fs::read_to_string(a.out.join("results.md")).unwrap_or_default();
    print!("{md}");
    println!(
        "results: {} (also results.csv, results.svg)",
        a.out.join("results.md").display()
    );
    if !quiet {
        eprintln!(
            "sweep: {} runs: {} trained, {} finished before, {} failed",
            grid.len(),
            report.trained,
            report.skipped,
            report.failed.len()
        );
    }
    if !report.failed.is_empty() {
        bail!(
            "{} of {} runs failed: {} (errors in {})",
            report.failed.len(),
            grid.len(),
            report.failed.join(", "),
            a.out.join("results.md").display()
        );
    }
    Ok(())
}

fn print_event(e: &SweepEvent, quiet: bool) {
    match e {
        SweepEvent::Started { number, total, id } if !quiet => {
            eprintln!("sweep: run {number}/{total} {id}");
        }
        SweepEvent::Finished {
            number,
            total,
            id,
            summary: s,
            ..
        } if !quiet => eprintln!(
            "sweep: done {number}/{total} {id}: dev {} {}, delta {:.4}% of the base, {:.0} s",
            s.headline_metric,
            s.dev_headline.map_or("-".into(), |h| format!("{h:.4}")),
            s.delta_percent,
            s.wall_seconds
        ),
        SweepEvent::Skipped {
            number,
            total,
            id,
            summary: s,
            ..
        } if !quiet => eprintln!(
            "sweep: skip {number}/{total} {id}: finished before (dev {} {})",
            s.headline_metric,
            s.dev_headline.map_or("-".into(), |h| format!("{h:.4}"))
        ),
        // Failures are printed even with --quiet: they make the exit status nonzero.
        SweepEvent::Failed {
            number,
            total,
            id,
            error,
            ..
        } => eprintln!("sweep: FAILED {number}/{total} {id}: {error}"),
        _ => {}
    }
}

fn dry_run(grid: &Grid, out: &Path) -> Result<()> {
    // Runs in a directory of another grid are not this grid's: only count them when it is ours.
    let claim = grid.check_dir(out);
    let ours = matches!(claim, Ok(true));
    let infos = grid.infos();
    let shape: Vec<String> = grid
        .axes
        .iter()
        .map(|a| format!("{} {}", a.values.len(), a.name))
        .collect();
    println!(
        "sweep: {} runs ({}) into {}",
        grid.len(),
        if shape.is_empty() {
            "no axes".to_string()
        } else {
            shape.join(" × ")
        },
        out.display()
    );
    let mut header: Vec<String> = vec!["id".into()];
    header.extend(grid.axes.iter().map(|a| a.name.clone()));
    header.extend(["method", "delta params", "delta %", "status"].map(String::from));
    let mut rows = vec![header];
    for (p, info) in grid.points.iter().zip(&infos) {
        let mut row = vec![p.id.clone()];
        row.extend(p.values.iter().map(value_text));
        let status = match &info.problem {
            Some(problem) => format!("invalid: {problem}"),
            None if ours && out.join("runs").join(&p.id).join("metrics.json").exists() => "done".into(),
            None => "to run".into(),
        };
        row.extend([
            info.method.clone().unwrap_or_else(|| "-".into()),
            info.delta_params.map_or("-".into(), |n| n.to_string()),
            info.delta_percent.map_or("-".into(), |p| format!("{p:.4}")),
            status,
        ]);
        rows.push(row);
    }
    print_aligned(&rows);
    // A dry run answers "what would happen": a directory the real run refuses is part of that.
    claim?;
    Ok(())
}

/// Left-aligned columns; the last column runs free so long error messages do not widen the
/// others.
fn print_aligned(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, text) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(text);
            } else {
                let pad = widths[c] - text.chars().count();
                line.push_str(text);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", line.trim_end());
    }
}
