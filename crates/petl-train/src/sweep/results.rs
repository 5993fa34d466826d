//! The sweep's results: `results.csv`, `results.md` and `results.svg`, rewritten after every
//! run from the grid and each point's status.

use super::{value_text, Axis, Grid, PointInfo, RunStatus};
use crate::{plot, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// One line of the results tables, as text cells.
struct Row {
    id: String,
    values: Vec<String>,
    method: String,
    delta_params: Option<usize>,
    delta_percent: Option<f64>,
    headline_metric: String,
    headline: Option<f64>,
    dev: BTreeMap<String, f64>,
    train_examples_per_s: Option<f64>,
    wall_seconds: Option<f64>,
    status: &'static str,
    error: String,
}

fn rows(grid: &Grid, infos: &[PointInfo], statuses: &[RunStatus]) -> Vec<Row> {
    grid.points
        .iter()
        .zip(infos)
        .zip(statuses)
        .map(|((p, info), status)| {
            let mut row = Row {
                id: p.id.clone(),
                values: p.values.iter().map(value_text).collect(),
                method: info.method.clone().unwrap_or_default(),
                delta_params: info.delta_params,
                delta_percent: info.delta_percent,
                headline_metric: String::new(),
                headline: None,
                dev: BTreeMap::new(),
                train_examples_per_s: None,
                wall_seconds: None,
                status: "pending",
                error: String::new(),
            };
            match status {
                RunStatus::Pending => {}
                RunStatus::Failed(e) => {
                    row.status = "failed";
                    row.error = e.clone();
                }
                RunStatus::Done(s) => {
                    row.status = "done";
                    row.method = s.method.clone();
                    row.delta_params = Some(s.delta_params);
                    row.delta_percent = Some(s.delta_percent);
                    row.headline_metric = s.headline_metric.clone();
                    row.headline = s.dev_headline;
                    row.dev = s.dev.0.clone();
                    row.train_examples_per_s = Some(s.train_examples_per_s);
                    row.wall_seconds = Some(s.wall_seconds);
                }
            }
            row
        })
        .collect()
}

fn metric_names(rows: &[Row]) -> Vec<String> {
    let names: BTreeSet<&String> = rows.iter().flat_map(|r| r.dev.keys()).collect();
    names.into_iter().cloned().collect()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// RFC 4180 quoting: only where needed, so plain cells stay plain.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn results_csv(axes: &[Axis], rows: &[Row]) -> String {
    let metrics = metric_names(rows);
    let mut header: Vec<String> = vec!["id".into()];
    header.extend(axes.iter().map(|a| a.name.clone()));
    header.extend(
        [
            "method",
            "delta_params",
            "delta_percent",
            "headline_metric",
            "headline",
        ]
        .map(String::from),
    );
    header.extend(metrics.iter().map(|m| format!("dev_{m}")));
    header.extend(["train_examples_per_s", "wall_seconds", "status", "error"].map(String::from));
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    };
    line(header);
    for r in rows {
        let mut cells = vec![r.id.clone()];
        cells.extend(r.values.iter().cloned());
        cells.extend([
            r.method.clone(),
            opt(r.delta_params),
            opt(r.delta_percent),
            r.headline_metric.clone(),
            opt(r.headline),
        ]);
        cells.extend(metrics.iter().map(|m| opt(r.dev.get(m))));
        cells.extend([
            opt(r.train_examples_per_s),
            opt(r.wall_seconds),
            r.status.to_string(),
            r.error.clone(),
        ]);
        line(cells);
    }
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn results_md(axes: &[Axis], rows: &[Row]) -> String {
    let metrics = metric_names(rows);
    let headlines: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.headline_metric.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    let headline = match headlines.len() {
        1 => format!(
            "headline ({})",
            headlines.iter().next().copied().unwrap_or_default()
        ),
        _ => "headline".into(),
    };
    let mut header: Vec<String> = vec!["id".into()];
    header.extend(axes.iter().map(|a| a.name.clone()));
    header.extend(["method".into(), "delta params".into(), "delta %".into(), headline]);
    header.extend(metrics.iter().cloned());
    header.extend(["train ex/s", "wall s", "status"].map(String::from));
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    };
    line(&header);
    let rule: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, _)| {
            // Names left, numbers right, and the status (with any error message) left again.
            if i <= axes.len() + 1 || i + 1 == header.len() {
                "---"
            } else {
                "---:"
            }
            .to_string()
        })
        .collect();
    line(&rule);
    let f = |v: Option<f64>, prec: usize| v.map(|v| format!("{v:.prec$}")).unwrap_or_default();
    for r in rows {
        let mut cells = vec![r.id.clone()];
        cells.extend(r.values.iter().cloned());
        cells.extend([
            r.method.clone(),
            r.delta_params.map(thousands).unwrap_or_default(),
            f(r.delta_percent, 4),
            f(r.headline, 4),
        ]);
        cells.extend(metrics.iter().map(|m| f(r.dev.get(m).copied(), 4)));
        let status = match r.status {
            "failed" => {
                let e: String = r.error.chars().take(200).collect();
                format!(
                    "failed: {e}{}",
                    if r.error.chars().count() > 200 { "…" } else { "" }
                )
            }
            s => s.to_string(),
        };
        cells.extend([f(r.train_examples_per_s, 1), f(r.wall_seconds, 0), status]);
        line(&cells);
    }
    out
}

/// The legend label of an axis value: numbers and booleans say which axis they belong to.
fn value_label(axis: &Axis, v: &Value) -> String {
    match v {
        Value::String(_) | Value::Object(_) => value_text(v),
        v => format!("{}={v}", axis.name),
    }
}

fn results_svg(grid: &Grid, rows: &[Row], statuses: &[RunStatus]) -> String {
    let mut series: Vec<plot::Series> = match grid.axes.first() {
        Some(a) => a
            .values
            .iter()
            .map(|v| plot::Series {
                name: value_label(a, v),
                points: Vec::new(),
            })
            .collect(),
        None => vec![plot::Series {
            name: "runs".into(),
            points: Vec::new(),
        }],
    };
    for (p, r) in grid.points.iter().zip(rows) {
        let slot = match grid.axes.first() {
            Some(a) => a
                .values
                .iter()
                .position(|v| Some(v) == p.values.first())
                .unwrap_or(0),
            None => 0,
        };
        if let (Some(x), Some(y)) = (r.delta_percent, r.headline) {
            if r.status == "done" {
                series[slot].points.push((x, y));
            }
        }
    }
    let summary = statuses.iter().find_map(|s| match s {
        RunStatus::Done(s) => Some(s),
        _ => None,
    });
    let metric = summary.map_or("headline".to_string(), |s| s.headline_metric.clone());
    let title = match summary {
        Some(s) => format!("{}: dev {metric} against the stored delta", s.task),
        None => "dev headline against the stored delta (no finished runs yet)".into(),
    };
    plot::render_scatter_svg(&plot::Scatter {
        title,
        x_label: "delta parameters (% of the base model)".into(),
        y_label: format!("dev {metric}"),
        x_scale: plot::XScale::Auto,
        series,
    })
}

/// Rewrites `results.csv`, `results.md` and `results.svg` in `dir` for the current statuses.
pub(super) fn write_results(
    dir: &Path,
    grid: &Grid,
    infos: &[PointInfo],
    statuses: &[RunStatus],
) -> Result<()> {
    let rows = rows(grid, infos, statuses);
    petl_artifact::write_atomic(
        &dir.join("results.csv"),
        results_csv(&grid.axes, &rows).as_bytes(),
    )?;
    petl_artifact::write_atomic(&dir.join("results.md"), results_md(&grid.axes, &rows).as_bytes())?;
    petl_artifact::write_atomic(
        &dir.join("results.svg"),
        results_svg(grid, &rows, statuses).as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::tests::{grid, summary};

    #[test]
    fn results_tables_and_plot_cover_every_point() {
        let g = grid();
        let infos = g.infos();
        let mut statuses = vec![RunStatus::Pending; g.len()];
        statuses[0] = RunStatus::Done(Box::new(summary("pa-ffn", 0.5, 0.75)));
        statuses[3] = RunStatus::Done(Box::new(summary("lora", 0.01, 0.5)));
        statuses[2] = RunStatus::Failed("bad, \"really\" | bad\nline".into());
        let rows = rows(&g, &infos, &statuses);
        let csv = results_csv(&g.axes, &rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "id,preset,r,seed,method,delta_params,delta_percent,headline_metric,headline,dev_accuracy,dev_f1,\
             train_examples_per_s,wall_seconds,status,error"
        );
        assert_eq!(
            lines[1],
            "001-pa-ffn-r4-seed1,pa-ffn,4,1,pa-ffn,1234567,0.5,accuracy,0.75,0.75,0.65,12.5,7.25,done,"
        );
        assert!(
            lines[2].starts_with("002-pa-ffn-r16-seed1,pa-ffn,16,1,pa-ffn,")
                && lines[2].ends_with(",pending,")
        );
        assert!(
            csv.contains(",failed,\"bad, \"\"really\"\" | bad\nline\"\n"),
            "{csv}"
        );
        let md = results_md(&g.axes, &rows);
        let md_lines: Vec<&str> = md.lines().collect();
        assert_eq!(md_lines.len(), 2 + 6);
        assert!(md_lines[0].starts_with("| id | preset | r | seed | method | delta params | delta % | headline (accuracy) | accuracy | f1 |"));
        assert!(
            md_lines[2].contains("| 1,234,567 | 0.5000 | 0.7500 |"),
            "{}",
            md_lines[2]
        );
        assert!(md.contains("failed: bad, \"really\" \\| bad line"), "{md}");
        let svg = results_svg(&g, &rows, &statuses);
        assert!(svg.contains("rte: dev accuracy"));
        assert!(svg.contains("log scale"), "0.01% to 0.5% spans more than 20×");
        assert_eq!(svg.matches("class=\"point\"").count(), 2);
        assert!(svg.contains(">pa-ffn<") && svg.contains(">lora<"));
    }
}
