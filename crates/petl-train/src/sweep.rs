//! Sweeps: a grid of runs over one base configuration, trained one after another.
//!
//! A sweep file (TOML, or JSON with the same keys) holds `[base]`, a [`RunConfig`] whose `model`
//! may be left out and given when the grid is built, and an ordered list of `[[axis]]` tables:
//! `path` (as in [`Assignment`]), `values` and an optional `name` (the results column; by
//! default the path's last named segment). The grid is the cartesian product of the axes in
//! file order, the first axis slowest, and every point has a stable id such as
//! `003-pa-ffn-r64`.
//!
//! [`run_sweep`] trains each point in `DIR/runs/<id>/` with [`train`] and keeps going when one
//! fails. It is resumable: finished runs (those with `metrics.json`) are skipped, interrupted
//! ones continue from their checkpoint, and a directory holding a different grid
//! (`DIR/sweep.json`) is refused. After every run it rewrites `results.csv`, `results.md` and
//! `results.svg` (the headline dev metric against the stored delta as % of the base), and it
//! appends one line per finished, failed or skipped run to `sweep.jsonl`.

use crate::overrides::{apply_overrides, check_path, Assignment};
use crate::{train, Result, RunConfig, RunSummary, TrainError, TrainOptions};
use petl_models::ModelShape;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

mod results;

use results::write_results;

/// More points than this is almost certainly a mistake in the file (and days of training).
const MAX_POINTS: usize = 10_000;

/// Results columns that an axis may not be named after.
const FIXED_COLUMNS: [&str; 10] = [
    "id",
    "method",
    "delta_params",
    "delta_percent",
    "headline_metric",
    "headline",
    "train_examples_per_s",
    "wall_seconds",
    "status",
    "error",
];

/// One dimension of a sweep: a configuration path and the values it takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Axis {
    /// Column header in the results.
    pub name: String,
    /// Where the values go, as in `petl train --set`.
    pub path: String,
    /// The values, in grid order.
    pub values: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    base: Map<String, Value>,
    #[serde(default)]
    axis: Vec<AxisFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AxisFile {
    path: String,
    values: Vec<Value>,
    #[serde(default)]
    name: Option<String>,
}

/// A parsed sweep file: the base configuration (model still open) and the axes.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    base: Map<String, Value>,
    axes: Vec<Axis>,
    source: PathBuf,
}

impl SweepSpec {
    /// Reads a TOML (or, with a `.json` extension, JSON) sweep file; unknown keys, empty axes and
    /// clashing column names are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Self::parse(&text, json, path)
    }

    /// Parses the text of a sweep file; `source` names it in errors.
    pub fn parse(text: &str, json: bool, source: &Path) -> Result<Self> {
        let bad = |message: String| TrainError::ConfigFile {
            path: source.to_path_buf(),
            message,
        };
        let file: SweepFile = if json {
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| bad(e.to_string()))?
        };
        let mut axes = Vec::with_capacity(file.axis.len());
        for (i, a) in file.axis.into_iter().enumerate() {
            check_path(&a.path).map_err(|reason| bad(format!("axis {}: {reason}", i + 1)))?;
            let name = a.name.unwrap_or_else(|| default_name(&a.path));
            if a.values.is_empty() {
                return Err(bad(format!("axis `{name}` has no values")));
            }
            if FIXED_COLUMNS.contains(&name.as_str()) || name.starts_with("dev_") {
                return Err(bad(format!(
                    "axis name `{name}` clashes with a results column; give the axis another `name`"
                )));
            }
            if axes.iter().any(|b: &Axis| b.name == name) {
                return Err(bad(format!(
                    "two axes are named `{name}`; give one another `name`"
                )));
            }
            axes.push(Axis {
                name,
                path: a.path,
                values: a.values,
            });
        }
        let points = axes.iter().try_fold(1usize, |n, a| n.checked_mul(a.values.len()));
        if points.is_none_or(|n| n > MAX_POINTS) {
            return Err(bad(format!("the grid has more than {MAX_POINTS} points")));
        }
        Ok(Self {
            base: file.base,
            axes,
            source: source.to_path_buf(),
        })
    }

    /// The axes, in file order.
    pub fn axes(&self) -> &[Axis] {
        &self.axes
    }

    /// `model` as written in `[base]`, if it is there.
    pub fn model(&self) -> Option<&str> {
        self.base.get("model").and_then(Value::as_str)
    }

    /// The grid, with `model` as the base configuration's model. A point whose assignments
    /// give an invalid configuration is kept with its error (a sweep may cross a method with a
    /// setting it lacks); an invalid `[base]` is an error.
    pub fn grid(&self, model: &Path) -> Result<Grid> {
        let mut base = self.base.clone();
        base.insert(
            "model".into(),
            Value::String(model.to_string_lossy().into_owned()),
        );
        let bad = |message: String| TrainError::ConfigFile {
            path: self.source.clone(),
            message: format!("[base]: {message}"),
        };
        let base: RunConfig = serde_json::from_value(Value::Object(base)).map_err(|e| bad(e.to_string()))?;
        base.train.validate().map_err(|e| bad(e.to_string()))?;
        let total: usize = self.axes.iter().map(|a| a.values.len()).product();
        let width = total.to_string().len().max(3);
        let points = (0..total)
            .map(|index| {
                let values = grid_values(&self.axes, index);
                let sets: Vec<Assignment> = self
                    .axes
                    .iter()
                    .zip(&values)
                    .map(|(a, v)| Assignment::new(a.path.clone(), v.clone()))
                    .collect();
                Point {
                    index,
                    id: point_id(index + 1, width, &self.axes, &values),
                    config: apply_overrides(&base, &sets).map_err(|e| e.to_string()),
                    values,
                }
            })
            .collect();
        Ok(Grid {
            axes: self.axes.clone(),
            points,
        })
    }
}

/// The last path segment that names something (`method.delta.*.form.r` → `r`).
fn default_name(path: &str) -> String {
    path.rsplit('.')
        .find(|s| *s != "*" && s.parse::<usize>().is_err())
        .unwrap_or(path)
        .to_string()
}

/// The axis values of point `index`: mixed radix with the last axis fastest.
fn grid_values(axes: &[Axis], mut index: usize) -> Vec<Value> {
    let mut values = vec![Value::Null; axes.len()];
    for (slot, axis) in values.iter_mut().zip(axes).rev() {
        let n = axis.values.len();
        *slot = axis.values[index % n].clone();
        index /= n;
    }
    values
}

/// `003-pa-ffn-r64`: the 1-based index, zero-padded so ids sort in grid order, then a slug of
/// each value (strings as themselves, numbers after the axis name).
fn point_id(number: usize, width: usize, axes: &[Axis], values: &[Value]) -> String {
    let parts: Vec<String> = axes
        .iter()
        .zip(values)
        .map(|(a, v)| value_slug(&a.name, v))
        .filter(|s| !s.is_empty())
        .collect();
    let mut slug = parts.join("-");
    if slug.len() > 100 {
        // Slugs are ASCII, so any byte index is a char boundary.
        slug.truncate(100);
        slug = slug.trim_end_matches(['-', '.']).to_string();
    }
    if slug.is_empty() {
        format!("{number:0width$}")
    } else {
        format!("{number:0width$}-{slug}")
    }
}

fn value_slug(name: &str, v: &Value) -> String {
    match v {
        Value::String(s) => slug(s),
        Value::Number(n) => slug(&format!("{name}{n}")),
        Value::Bool(true) => slug(name),
        Value::Bool(false) => slug(&format!("no-{name}")),
        Value::Null => slug(&format!("{name}-none")),
        Value::Object(m) => match m.get("name").and_then(Value::as_str) {
            Some(n) => slug(n),
            None => slug(&v.to_string()),
        },
        Value::Array(_) => slug(&v.to_string()),
    }
}

/// Lower-case ASCII letters, digits and dots; anything else becomes one `-`.
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches(['-', '.']).to_string()
}

/// An axis value as a table cell: strings bare, a table with a `name` (a whole method) by that
/// name, everything else as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => v.to_string(),
        },
        v => v.to_string(),
    }
}

/// The expanded grid of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// The axes, in file order.
    pub axes: Vec<Axis>,
    /// Every point, first axis slowest.
    pub points: Vec<Point>,
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// 0-based position in the grid.
    pub index: usize,
    /// Stable, filesystem-safe id; the run directory's name.
    pub id: String,
    /// The value of each axis.
    pub values: Vec<Value>,
    /// The run's configuration, or why the assignments do not give one.
    pub config: std::result::Result<RunConfig, String>,
}

#[derive(Serialize)]
struct GridRecord<'a> {
    format: u32,
    axes: &'a [Axis],
    points: Vec<PointRecord<'a>>,
}

#[derive(Serialize)]
struct PointRecord<'a> {
    id: &'a str,
    values: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a RunConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// What a point costs, from its configuration and the model's `config.json` alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointInfo {
    /// The resolved method's name.
    pub method: Option<String>,
    /// Stored delta parameters (the paper's budget; the head is not included).
    pub delta_params: Option<usize>,
    /// `delta_params` as a percentage of the base model.
    pub delta_percent: Option<f64>,
    /// Why the point cannot train, when that is known before training.
    pub problem: Option<String>,
}

impl Grid {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the grid has no points (never true for a grid from a [`SweepSpec`]).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The resolved grid as written to `sweep.json`.
    pub fn to_json(&self) -> String {
        let record = GridRecord {
            format: 1,
            axes: &self.axes,
            points: self
                .points
                .iter()
                .map(|p| PointRecord {
                    id: &p.id,
                    values: &p.values,
                    config: p.config.as_ref().ok(),
                    error: p.config.as_ref().err().map(String::as_str),
                })
                .collect(),
        };
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(&record).unwrap_or_default() + "\n"
    }

    /// Method name, delta parameter count and validity of every point. Shapes come from each
    /// model's `config.json`, read once per model.
    pub fn infos(&self) -> Vec<PointInfo> {
        let mut shapes: HashMap<PathBuf, std::result::Result<ModelShape, String>> = HashMap::new();
        self.points
            .iter()
            .map(|p| {
                let cfg = match &p.config {
                    Ok(cfg) => cfg,
                    Err(e) => {
                        return PointInfo {
                            problem: Some(e.clone()),
                            ..PointInfo::default()
                        }
                    }
                };
                let shape = shapes
                    .entry(cfg.model.clone())
                    .or_insert_with(|| {
                        ModelShape::from_config_file(&cfg.model.join("config.json"))
                            .map_err(|e| e.to_string())
                    })
                    .as_ref();
                let mut info = PointInfo {
                    method: Some(cfg.method.name.clone()),
                    ..PointInfo::default()
                };
                match shape {
                    Ok(shape) => {
                        let stored = cfg.method.count(shape).stored;
                        info.delta_params = Some(stored);
                        info.delta_percent = Some(100.0 * stored as f64 / shape.base_params as f64);
                        info.problem = cfg.method.validate(shape).err().map(|e| e.to_string());
                    }
                    Err(e) => info.problem = Some(e.clone()),
                }
                info
            })
            .collect()
    }

    /// Whether `dir` already holds this grid (`Ok(true)`), no sweep (`Ok(false)`), or a
    /// different one (an error saying where the two first differ).
    pub fn check_dir(&self, dir: &Path) -> Result<bool> {
        let path = dir.join("sweep.json");
        let refuse = |reason: String| TrainError::Resume {
            path: dir.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(old) => match grid_difference(&old, &self.to_json()) {
                None => Ok(true),
                Some(d) => Err(refuse(format!(
                    "it holds a sweep of a different grid ({d}); choose another directory, or delete it \
                     to start over"
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.join("runs").exists() {
                    return Err(refuse(
                        "it has runs/ but no sweep.json, so its grid is unknown".into(),
                    ));
                }
                Ok(false)
            }
            Err(source) => Err(TrainError::Io { path, source }),
        }
    }
}

/// Where two `sweep.json` texts first differ, or `None` when they describe the same grid.
/// Both go through the same JSON parser, so equal grids compare equal whatever float precision
/// the parser keeps.
fn grid_difference(old: &str, new: &str) -> Option<String> {
    let old: Value = match serde_json::from_str(old) {
        Ok(v) => v,
        Err(e) => return Some(format!("its sweep.json is unreadable: {e}")),
    };
    let new: Value = serde_json::from_str(new).unwrap_or(Value::Null);
    first_difference(&old, &new, &mut Vec::new())
}

fn first_difference(old: &Value, new: &Value, trail: &mut Vec<String>) -> Option<String> {
    let at = |trail: &[String]| {
        if trail.is_empty() {
            "the grid".to_string()
        } else {
            format!("`{}`", trail.join("."))
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                trail.push(k.clone());
                let d = first_difference(x, y, trail);
                trail.pop();
                if d.is_some() {
                    return d;
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                trail.push(i.to_string());
                let d = first_difference(x, y, trail);
                trail.pop();
                if d.is_some() {
                    return d;
                }
            }
            (a.len() != b.len())
                .then(|| format!("{} has {} entries there and {} here", at(trail), a.len(), b.len()))
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!(
            "{} is {} there and {} here",
            at(trail),
            short(a),
            short(b)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s
    }
}

/// Where a point stands.
#[derive(Debug, Clone)]
pub enum RunStatus {
    /// Not run yet.
    Pending,
    /// Finished, now or by an earlier invocation.
    Done(Box<RunSummary>),
    /// Failed with this message.
    Failed(String),
}

/// What the sweep reports as it goes; all but `Started` are also appended to `sweep.jsonl`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SweepEvent {
    /// A run is about to train.
    Started {
        /// 1-based position.
        number: usize,
        /// Points in the grid.
        total: usize,
        /// The point's id.
        id: String,
    },
    /// A run finished.
    Finished {
        /// 1-based position.
        number: usize,
        /// Points in the grid.
        total: usize,
        /// The point's id.
        id: String,
        /// Axis name → value.
        values: Map<String, Value>,
        /// The run's summary (`metrics.json`).
        summary: Box<RunSummary>,
    },
    /// A run was finished before; its directory holds `metrics.json`.
    Skipped {
        /// 1-based position.
        number: usize,
        /// Points in the grid.
        total: usize,
        /// The point's id.
        id: String,
        /// Axis name → value.
        values: Map<String, Value>,
        /// The earlier run's summary.
        summary: Box<RunSummary>,
    },
    /// A run (or its configuration) failed; the sweep went on.
    Failed {
        /// 1-based position.
        number: usize,
        /// Points in the grid.
        total: usize,
        /// The point's id.
        id: String,
        /// Axis name → value.
        values: Map<String, Value>,
        /// The error, with its causes.
        error: String,
    },
}

/// The outcome of [`run_sweep`].
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// Each point's final status, in grid order.
    pub statuses: Vec<RunStatus>,
    /// Runs trained by this call.
    pub trained: usize,
    /// Runs skipped because an earlier call finished them.
    pub skipped: usize,
    /// Ids of the runs that failed.
    pub failed: Vec<String>,
}

/// Trains every point of `grid` under `dir` (see the module documentation) with `opts` (its
/// progress bar and device; `resume` is decided per run); `on_event` hears about every run before and after it. A failing run
/// is recorded and the sweep goes on; errors are returned only for the sweep itself (a
/// different grid in `dir`, unwritable files).
pub fn run_sweep(
    grid: &Grid,
    dir: &Path,
    opts: &TrainOptions,
    on_event: &mut dyn FnMut(&SweepEvent),
) -> Result<SweepReport> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !grid.check_dir(dir)? {
        petl_artifact::write_atomic(&dir.join("sweep.json"), grid.to_json().as_bytes())?;
    }
    let infos = grid.infos();
    let total = grid.len();
    let mut statuses = vec![RunStatus::Pending; total];
    let mut report = SweepReport {
        statuses: Vec::new(),
        trained: 0,
        skipped: 0,
        failed: Vec::new(),
    };
    // Finished runs show in the tables from the start, not only once the loop reaches them.
    for (p, status) in grid.points.iter().zip(statuses.iter_mut()) {
        if let Ok(summary) = read_summary(&dir.join("runs").join(&p.id)) {
            *status = RunStatus::Done(Box::new(summary));
        }
    }
    let mut log = EventLog {
        path: dir.join("sweep.jsonl"),
    };
    for p in &grid.points {
        let (number, id) = (p.index + 1, p.id.clone());
        let values: Map<String, Value> = grid
            .axes
            .iter()
            .zip(&p.values)
            .map(|(a, v)| (a.name.clone(), v.clone()))
            .collect();
        let run_dir = dir.join("runs").join(&p.id);
        let event = match visit(p, &run_dir, total, opts, on_event) {
            Visit::Skipped(summary) => {
                report.skipped += 1;
                statuses[p.index] = RunStatus::Done(summary.clone());
                SweepEvent::Skipped {
                    number,
                    total,
                    id,
                    values,
                    summary,
                }
            }
            Visit::Finished(summary) => {
                report.trained += 1;
                statuses[p.index] = RunStatus::Done(summary.clone());
                SweepEvent::Finished {
                    number,
                    total,
                    id,
                    values,
                    summary,
                }
            }
            Visit::Failed(error) => {
                report.failed.push(id.clone());
                statuses[p.index] = RunStatus::Failed(error.clone());
                SweepEvent::Failed {
                    number,
                    total,
                    id,
                    values,
                    error,
                }
            }
        };
        log.append(&event)?;
        on_event(&event);
        write_results(dir, grid, &infos, &statuses)?;
    }
    report.statuses = statuses;
    Ok(report)
}

/// What became of one point.
enum Visit {
    Skipped(Box<RunSummary>),
    Finished(Box<RunSummary>),
    Failed(String),
}

/// Skips, trains (or resumes) or fails one point in `run_dir`.
fn visit(
    p: &Point,
    run_dir: &Path,
    total: usize,
    opts: &TrainOptions,
    on_event: &mut dyn FnMut(&SweepEvent),
) -> Visit {
    if run_dir.join("metrics.json").exists() {
        return match read_summary(run_dir) {
            Ok(summary) => Visit::Skipped(Box::new(summary)),
            Err(error) => Visit::Failed(error),
        };
    }
    let cfg = match &p.config {
        Ok(cfg) => cfg,
        Err(error) => return Visit::Failed(error.clone()),
    };
    on_event(&SweepEvent::Started {
        number: p.index + 1,
        total,
        id: p.id.clone(),
    });
    let opts = TrainOptions {
        // A directory with a config.toml is a run this sweep started: continue it.
        resume: run_dir.join("config.toml").exists(),
        stop_after: None,
        ..opts.clone()
    };
    match train(cfg, run_dir, &opts) {
        // What a rerun will read back: JSON floats need not round-trip to the last bit, and
        // the tables should not change when nothing ran.
        Ok(summary) => Visit::Finished(Box::new(read_summary(run_dir).unwrap_or(summary))),
        Err(e) => Visit::Failed(error_chain(&e)),
    }
}

fn read_summary(run_dir: &Path) -> std::result::Result<RunSummary, String> {
    let path = run_dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))
}

/// The error's message followed by those of its causes that it does not already include.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// `sweep.jsonl`: appended one line at a time, so a killed sweep leaves every earlier line.
struct EventLog {
    path: PathBuf,
}

impl EventLog {
    fn append(&mut self, event: &SweepEvent) -> Result<()> {
        let mut record = serde_json::to_value(event).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut record {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            m.insert("unix_time".into(), now.into());
        }
        let io = |source| TrainError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(file, "{record}").map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TINY: &str = "../petl-models/tests/golden/tiny-bert";

    fn model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY)
    }

    const FILE: &str = r#"
[base]
method = "pa-ffn"
[base.task]
kind = "glue"
name = "rte"
data_dir = "glue"
[base.train]
epochs = 1
lr = 1e-3

[[axis]]
name = "preset"
path = "method"
values = ["pa-ffn", "lora"]

[[axis]]
path = "method.delta.*.form.r"
values = [4, 16, 0]

[[axis]]
path = "train.seed"
values = [1]
"#;

    fn spec(text: &str) -> Result<SweepSpec> {
        SweepSpec::parse(text, false, Path::new("s.toml"))
    }

    pub(crate) fn grid() -> Grid {
        spec(FILE).unwrap().grid(&model()).unwrap()
    }

    #[test]
    fn the_grid_is_the_product_in_file_order_with_readable_ids() {
        let s = spec(FILE).unwrap();
        assert_eq!(s.model(), None);
        let names: Vec<&str> = s.axes().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["preset", "r", "seed"]);
        let g = s.grid(&model()).unwrap();
        let ids: Vec<&str> = g.points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "001-pa-ffn-r4-seed1",
                "002-pa-ffn-r16-seed1",
                "003-pa-ffn-r0-seed1",
                "004-lora-r4-seed1",
                "005-lora-r16-seed1",
                "006-lora-r0-seed1"
            ]
        );
        let cfg = g.points[4].config.as_ref().unwrap();
        assert_eq!(cfg.method.name, "lora");
        assert_eq!(cfg.method.deltas[0].form.bottleneck(), Some(16));
        assert_eq!(cfg.train.seed, 1);
        assert_eq!(cfg.train.epochs, 1);
        assert_eq!(cfg.model, model());
        assert_eq!(g.points[4].values, vec![json!("lora"), json!(16), json!(1)]);
        assert_eq!(g, s.grid(&model()).unwrap(), "expansion is deterministic");
    }

    #[test]
    fn ids_are_filesystem_safe_slugs() {
        assert_eq!(slug("Scaled PA/ffn (s=4)"), "scaled-pa-ffn-s-4");
        assert_eq!(slug("../etc"), "etc");
        assert_eq!(value_slug("lr", &json!(1e-3)), "lr0.001");
        assert_eq!(value_slug("lr", &json!(2e-5)), "lr0.00002");
        assert_eq!(value_slug("mean", &json!(true)), "mean");
        assert_eq!(value_slug("mean", &json!(false)), "no-mean");
        assert_eq!(
            value_slug("site", &json!({"weights": ["query", "value"]})),
            "weights-query-value"
        );
        assert_eq!(
            value_slug("method", &json!({"name": "PA 64", "delta": []})),
            "pa-64"
        );
        let axes = vec![Axis {
            name: "x".into(),
            path: "x".into(),
            values: vec![json!("a".repeat(300))],
        }];
        let id = point_id(7, 4, &axes, &[json!("a".repeat(300))]);
        assert!(id.starts_with("0007-a") && id.len() <= 105, "{id}");
        assert_eq!(point_id(12, 3, &[], &[]), "012");
        assert_eq!(default_name("method.delta.*.form.r"), "r");
        assert_eq!(default_name("method.delta.0"), "delta");
    }

    #[test]
    fn bad_files_are_named_errors() {
        let e = |t: &str| spec(t).unwrap_err().to_string();
        assert!(e("[base]\n[[axes]]\npath = \"x\"\nvalues = [1]\n").contains("axes"));
        assert!(e("[base]\n[[axis]]\npath = \"x\"\nvalues = [1]\nsteps = 2\n").contains("steps"));
        assert!(e("[base]\n[[axis]]\npath = \"x\"\nvalues = []\n").contains("no values"));
        assert!(e("[base]\n[[axis]]\npath = \"a..b\"\nvalues = [1]\n").contains("empty segment"));
        let twice =
            "[base]\n[[axis]]\npath = \"train.lr\"\nvalues = [1]\n[[axis]]\npath = \"x.lr\"\nvalues = [2]\n";
        assert!(e(twice).contains("two axes are named `lr`"));
        assert!(e("[base]\n[[axis]]\npath = \"method\"\nvalues = [\"lora\"]\n").contains("clashes"));
        let big = (0..4).fold("[base]\n".to_string(), |t, i| {
            t + &format!("[[axis]]\npath = \"a{i}\"\nvalues = [1,2,3,4,5,6,7,8,9,10,11]\n")
        });
        assert!(e(&big).contains("more than"));
        let base = spec("[base]\nmethod = \"lora\"\n[base.task]\nkind = \"glue\"\nname = \"rte\"\ndata_dir = \"g\"\n[base.train]\nlearning_rate = 1\n").unwrap();
        let err = base.grid(&model()).unwrap_err().to_string();
        assert!(
            err.contains("s.toml") && err.contains("[base]") && err.contains("learning_rate"),
            "{err}"
        );
        let json = SweepSpec::parse(
            r#"{"base": {"model": "m"}, "axis": [{"path": "train.lr", "values": [1]}]}"#,
            true,
            Path::new("s.json"),
        )
        .unwrap();
        assert_eq!(json.model(), Some("m"));
    }

    #[test]
    fn invalid_points_are_kept_with_their_error_and_infos_count_parameters() {
        let g = grid();
        let infos = g.infos();
        assert_eq!(infos.len(), 6);
        let shape = ModelShape::from_config_file(&model().join("config.json")).unwrap();
        let lora4 = &infos[3];
        assert_eq!(lora4.method.as_deref(), Some("lora"));
        let expected = g.points[3].config.as_ref().unwrap().method.count(&shape).stored;
        assert_eq!(lora4.delta_params, Some(expected));
        assert!(expected > 0);
        let pct = 100.0 * expected as f64 / shape.base_params as f64;
        assert!((lora4.delta_percent.unwrap() - pct).abs() < 1e-12);
        assert!(lora4.problem.is_none());
        assert!(
            infos[1].delta_params > infos[0].delta_params,
            "r 16 costs more than r 4"
        );
        let r0 = infos[2].problem.as_deref().unwrap();
        assert!(r0.contains("at least 1"), "{r0}");
        let broken = spec(&FILE.replace("path = \"train.seed\"", "path = \"train.seeds.x\"")).unwrap();
        let g = broken.grid(&model()).unwrap();
        let e = g.points[0].config.as_ref().unwrap_err();
        assert!(e.contains("train.seeds"), "{e}");
        assert_eq!(g.infos()[0].problem.as_deref(), Some(e.as_str()));
    }

    #[test]
    fn a_directory_holding_another_grid_is_refused_with_the_difference() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid();
        assert!(!g.check_dir(dir.path()).unwrap());
        std::fs::write(dir.path().join("sweep.json"), g.to_json()).unwrap();
        assert!(g.check_dir(dir.path()).unwrap());
        let other = spec(&FILE.replace("lr = 1e-3", "lr = 2e-3"))
            .unwrap()
            .grid(&model())
            .unwrap();
        let e = other.check_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("different grid") && e.contains("train.lr") && e.contains("0.001"),
            "{e}"
        );
        let fewer = spec(&FILE.replace("[4, 16, 0]", "[4, 16]"))
            .unwrap()
            .grid(&model())
            .unwrap();
        let e = fewer.check_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("different grid"), "{e}");
        let orphan = tempfile::tempdir().unwrap();
        std::fs::create_dir(orphan.path().join("runs")).unwrap();
        assert!(g
            .check_dir(orphan.path())
            .unwrap_err()
            .to_string()
            .contains("no sweep.json"));
    }

    pub(crate) fn summary(method: &str, pct: f64, acc: f64) -> RunSummary {
        let mut dev = std::collections::BTreeMap::new();
        dev.insert("accuracy".to_string(), acc);
        dev.insert("f1".to_string(), acc - 0.1);
        RunSummary {
            task: "rte".into(),
            method: method.into(),
            trainable_params: 10,
            stored_params: 10,
            delta_params: 1234567,
            delta_percent: pct,
            base_params: 100,
            total_params: 110,
            trainable_percent: 9.0,
            headline_metric: "accuracy".into(),
            dev: petl_metrics::Scores(dev.clone()),
            dev_headline: Some(acc),
            best_step: 3,
            final_dev: petl_metrics::Scores(dev),
            steps: 3,
            train_examples: 32,
            dev_examples: 8,
            train_examples_per_s: 12.5,
            eval_examples_per_s: 40.0,
            wall_seconds: 7.25,
            train_seconds: 5.0,
        }
    }

    #[test]
    fn a_sweep_records_failures_and_goes_on() {
        // Every point fails fast (the tiny model has no tokenizer.json), which exercises the
        // bookkeeping without training; the real runs are in petl-cli's tests/sweep.rs.
        let dir = tempfile::tempdir().unwrap();
        let g = grid();
        let mut seen = Vec::new();
        let report = run_sweep(&g, dir.path(), &TrainOptions::default(), &mut |e| {
            seen.push(serde_json::to_value(e).unwrap())
        })
        .unwrap();
        assert_eq!(report.failed.len(), 6);
        assert_eq!((report.trained, report.skipped), (0, 0));
        let started = seen.iter().filter(|e| e["event"] == "started").count();
        assert_eq!(started, 6, "every point tried to train, the invalid one too");
        let log = std::fs::read_to_string(dir.path().join("sweep.jsonl")).unwrap();
        let events: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 6);
        assert!(events
            .iter()
            .all(|e| e["event"] == "failed" && e["unix_time"].is_u64()));
        assert_eq!(
            events[0]["values"],
            json!({"preset": "pa-ffn", "r": 4, "seed": 1})
        );
        assert!(
            events[0]["error"].as_str().unwrap().contains("tokenizer.json"),
            "{}",
            events[0]["error"]
        );
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        assert_eq!(csv.lines().filter(|l| l.contains(",failed,")).count(), 6);
        assert!(dir.path().join("results.md").exists() && dir.path().join("results.svg").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sweep.json")).unwrap(),
            g.to_json()
        );
        // A finished run is skipped the next time.
        let done = dir.path().join("runs").join(&g.points[0].id);
        petl_artifact::write_json_atomic(&done.join("metrics.json"), &summary("pa-ffn", 1.0, 0.6)).unwrap();
        let report = run_sweep(&g, dir.path(), &TrainOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((report.skipped, report.failed.len()), (1, 5));
        assert!(matches!(report.statuses[0], RunStatus::Done(_)));
        let log = std::fs::read_to_string(dir.path().join("sweep.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 12);
        assert!(log.lines().nth(6).unwrap().contains("\"event\":\"skipped\""));
        let other = spec(&FILE.replace("epochs = 1", "epochs = 2"))
            .unwrap()
            .grid(&model())
            .unwrap();
        assert!(run_sweep(&other, dir.path(), &TrainOptions::default(), &mut |_| {}).is_err());
    }
}
