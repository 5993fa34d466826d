//! `PATH=VALUE` assignments into a [`RunConfig`]: `petl train --set` and the axes of a sweep.
//!
//! The configuration is round-tripped through JSON, so a path names exactly what a JSON (or
//! TOML) configuration file would hold: `train.lr`, `task.data_dir`, `method.delta.0.form.r`.
//! Numeric segments index arrays and `*` stands for every element. Setting `method` to a preset
//! name puts the preset's full table in place first, so later assignments can reach into it.
//! The result is deserialised and validated like a configuration file: a misspelt key is an
//! error naming it, never a silently ignored setting.

use crate::{Result, RunConfig, TrainError};
use serde_json::{Map, Value};
use std::fmt;

/// One `PATH=VALUE` assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Dot-separated path into the configuration (`method.delta.0.form.r`).
    pub path: String,
    /// The value to put there.
    pub value: Value,
}

impl Assignment {
    /// An assignment of `value` at `path`.
    pub fn new(path: impl Into<String>, value: Value) -> Self {
        Self {
            path: path.into(),
            value,
        }
    }

    /// Parses `PATH=VALUE`. The value is read as JSON when it is valid JSON (numbers, booleans,
    /// arrays, objects, quoted strings) and taken as a plain string otherwise, so `site=ffn`
    /// and `method=lora` need no quotes.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: String| TrainError::Config {
            field: "override",
            reason,
        };
        let (path, raw) = text
            .split_once('=')
            .ok_or_else(|| bad(format!("`{text}` is not PATH=VALUE")))?;
        let path = path.trim();
        check_path(path).map_err(|reason| bad(format!("`{text}`: {reason}")))?;
        let value = serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_string()));
        Ok(Self::new(path, value))
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::String(s) => write!(f, "{}={s}", self.path),
            v => write!(f, "{}={v}", self.path),
        }
    }
}

impl std::str::FromStr for Assignment {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

pub(crate) fn check_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!("path `{path}` has an empty segment"));
    }
    Ok(())
}

/// `cfg` with `sets` applied in order; `cfg` itself is not changed.
///
/// Errors name the assignment and the path: a missing intermediate key or an out-of-range index
/// says what exists there, and a value the configuration rejects gives the deserialiser's
/// message (which names unknown keys) for the assignment that made it invalid.
pub fn apply_overrides(cfg: &RunConfig, sets: &[Assignment]) -> Result<RunConfig> {
    if sets.is_empty() {
        return Ok(cfg.clone());
    }
    let bad = |a: &Assignment, reason: String| TrainError::Config {
        field: "override",
        reason: format!("`{a}`: {reason}"),
    };
    let base = serde_json::to_value(cfg).map_err(|e| TrainError::Config {
        field: "override",
        reason: format!("the configuration cannot be written as JSON: {e}"),
    })?;
    // Every intermediate state is kept so that a final deserialisation error can be traced
    // back to the assignment that introduced it.
    let mut states = vec![base];
    for a in sets {
        check_path(&a.path).map_err(|reason| bad(a, reason))?;
        let value = resolve_preset(a).map_err(|reason| bad(a, reason))?;
        let mut next = states[states.len() - 1].clone();
        let segments: Vec<&str> = a.path.split('.').collect();
        set(&mut next, &mut Vec::new(), &segments, &value).map_err(|reason| bad(a, reason))?;
        states.push(next);
    }
    let last = &states[states.len() - 1];
    let out: RunConfig = match serde_json::from_value(last.clone()) {
        Ok(out) => out,
        Err(e) => {
            // Blame the assignment after the last state that still deserialised: earlier
            // assignments may pass through invalid states that later ones complete.
            let culprit = (0..sets.len())
                .rev()
                .find(|&j| serde_json::from_value::<RunConfig>(states[j].clone()).is_ok())
                .unwrap_or(sets.len() - 1);
            return Err(bad(&sets[culprit], format!("the configuration is invalid: {e}")));
        }
    };
    out.train.validate()?;
    Ok(out)
}

/// The value to store: a preset's full table when `method` is set to a preset name.
fn resolve_preset(a: &Assignment) -> std::result::Result<Value, String> {
    match (&a.path[..], &a.value) {
        ("method", Value::String(name)) => {
            let method = petl_methods::preset(name).map_err(|e| e.to_string())?;
            serde_json::to_value(method).map_err(|e| e.to_string())
        }
        _ => Ok(a.value.clone()),
    }
}

/// Sets `value` at `rest` below `node`, whose own path is `trail`.
fn set(
    node: &mut Value,
    trail: &mut Vec<String>,
    rest: &[&str],
    value: &Value,
) -> std::result::Result<(), String> {
    let Some((&segment, tail)) = rest.split_first() else {
        *node = value.clone();
        return Ok(());
    };
    let here = describe(trail);
    match node {
        Value::Object(map) => {
            if segment == "*" {
                return Err(format!(
                    "{here} is a table, and `*` only applies to arrays (its keys: {})",
                    keys(map)
                ));
            }
            if tail.is_empty() {
                // A missing leaf is created: optional fields are omitted when unset.
                map.insert(segment.to_string(), value.clone());
                return Ok(());
            }
            let known = keys(map);
            let child = map.get_mut(segment).ok_or_else(|| {
                let mut missing = trail.clone();
                missing.push(segment.to_string());
                format!("{} does not exist; {here} has {known}", describe(&missing))
            })?;
            descend(child, trail, segment.to_string(), tail, value)
        }
        Value::Array(items) => {
            if segment == "*" {
                // An empty array makes `*` a no-op, so one sweep axis can cover methods with
                // and without deltas.
                for (i, item) in items.iter_mut().enumerate() {
                    descend(item, trail, i.to_string(), tail, value)?;
                }
                return Ok(());
            }
            let len = items.len();
            let index: usize = segment.parse().map_err(|_| {
                format!("{here} is an array of {len}; index it with a number or `*`, not `{segment}`")
            })?;
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is out of range: {here} has {len} element(s)"))?;
            descend(item, trail, segment.to_string(), tail, value)
        }
        other => Err(format!(
            "{here} is {}, not a table or an array, so it has no `{segment}`",
            kind(other)
        )),
    }
}

fn descend(
    node: &mut Value,
    trail: &mut Vec<String>,
    segment: String,
    rest: &[&str],
    value: &Value,
) -> std::result::Result<(), String> {
    trail.push(segment);
    let result = set(node, trail, rest, value);
    trail.pop();
    result
}

fn describe(trail: &[String]) -> String {
    if trail.is_empty() {
        "the configuration".into()
    } else {
        format!("`{}`", trail.join("."))
    }
}

fn keys(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        "no keys".into()
    } else {
        map.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "unset (null)".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) | Value::Object(_) => "a container".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaskSource, TrainConfig};
    use petl_methods::{preset, Form};
    use serde_json::json;

    fn sample() -> RunConfig {
        RunConfig {
            model: "m".into(),
            task: TaskSource::Glue {
                name: "rte".into(),
                data_dir: "glue".into(),
            },
            method: preset("pa-ffn").unwrap(),
            pooling: petl_models::Pooling::Cls,
            init: None,
            train: TrainConfig::default(),
        }
    }

    fn sets(items: &[&str]) -> Vec<Assignment> {
        items.iter().map(|s| Assignment::parse(s).unwrap()).collect()
    }

    fn apply(items: &[&str]) -> Result<RunConfig> {
        apply_overrides(&sample(), &sets(items))
    }

    fn err(items: &[&str]) -> String {
        apply(items).unwrap_err().to_string()
    }

    #[test]
    fn values_parse_as_json_or_else_as_strings() {
        let p = |s: &str| Assignment::parse(s).unwrap();
        assert_eq!(p("train.lr=1e-3").value, json!(1e-3));
        assert_eq!(p("method.delta.0.form.r=8").value, json!(8));
        assert_eq!(p("x=true").value, json!(true));
        assert_eq!(p("x=[1, 2]").value, json!([1, 2]));
        assert_eq!(p("x={\"scaled\": 4.0}").value, json!({"scaled": 4.0}));
        assert_eq!(p("x=\"42\"").value, json!("42"));
        assert_eq!(p("site=ffn").value, json!("ffn"));
        assert_eq!(p("a=b=c").value, json!("b=c"), "only the first = splits");
        assert_eq!(p("x=").value, json!(""));
        assert_eq!(p(" train.seed = 3").path, "train.seed");
        assert_eq!(p("site=ffn").to_string(), "site=ffn");
        assert_eq!(p("x=[1,2]").to_string(), "x=[1,2]");
        for bad in ["no-equals", "=3", "a..b=1", "a.=1"] {
            assert!(Assignment::parse(bad).is_err(), "{bad}");
        }
        assert!(Assignment::parse("a..b=1")
            .unwrap_err()
            .to_string()
            .contains("empty segment"));
    }

    #[test]
    fn no_assignments_is_the_same_config() {
        assert_eq!(apply(&[]).unwrap(), sample());
    }

    #[test]
    fn numeric_segments_index_arrays_and_scalars_are_replaced() {
        let cfg = apply(&[
            "method.delta.0.form.r=8",
            "train.lr=0.001",
            "train.train_rows=100",
        ])
        .unwrap();
        assert_eq!(cfg.method.deltas[0].form.bottleneck(), Some(8));
        assert_eq!(cfg.train.lr, 1e-3);
        assert_eq!(cfg.train.train_rows, Some(100));
        assert_eq!(cfg.method.name, "pa-ffn");
        let cfg = apply(&["method.delta.0.site=attention", "task.data_dir=/data/glue"]).unwrap();
        assert_eq!(cfg.method.deltas[0].site, petl_methods::Site::Attention);
        assert_eq!(
            cfg.task,
            TaskSource::Glue {
                name: "rte".into(),
                data_dir: "/data/glue".into()
            }
        );
        assert_eq!(
            sample().method.deltas[0].form.bottleneck(),
            Some(200),
            "input unchanged"
        );
    }

    #[test]
    fn star_applies_to_every_element() {
        let cfg = apply(&[
            "method=houlsby",
            "method.delta.*.form.r=64",
            "method.delta.*.dropout=0.2",
        ])
        .unwrap();
        assert_eq!(cfg.method.deltas.len(), 2);
        for d in &cfg.method.deltas {
            assert_eq!(d.form.bottleneck(), Some(64));
            assert_eq!(d.dropout, 0.2);
        }
        // No deltas: nothing to change, and no error.
        let cfg = apply(&["method=head-only", "method.delta.*.form.r=64"]).unwrap();
        assert!(cfg.method.deltas.is_empty());
        assert!(err(&["train.*=1"]).contains("only applies to arrays"));
    }

    #[test]
    fn a_preset_name_resolves_so_later_assignments_reach_into_it() {
        let cfg = apply(&[
            "method=lora",
            "method.delta.0.form.r=4",
            "method.delta.0.composition.scaled=1.0",
        ])
        .unwrap();
        assert_eq!(cfg.method.name, "lora");
        assert_eq!(cfg.method.deltas[0].form, Form::LowRank { r: 4 });
        assert_eq!(
            cfg.method.deltas[0].composition,
            petl_methods::Composition::Scaled(petl_methods::Scale::Fixed(1.0))
        );
        let e = err(&["method=lorax"]);
        assert!(
            e.contains("method=lorax") && e.contains("lorax") && e.contains("mam"),
            "{e}"
        );
        // A full table works too.
        let cfg =
            apply(&[r#"method={"name":"mine","delta":[{"form":{"kind":"bias"},"site":"params"}]}"#]).unwrap();
        assert_eq!(cfg.method.name, "mine");
        assert_eq!(cfg.method.deltas[0].form, Form::Bias {});
    }

    #[test]
    fn a_missing_leaf_is_created() {
        let cfg = apply(&["method=prefix-flat", "method.delta.0.form.reparam=800"]).unwrap();
        assert!(matches!(
            cfg.method.deltas[0].form,
            Form::Prefix {
                reparam: Some(800),
                ..
            }
        ));
    }

    #[test]
    fn a_missing_intermediate_or_index_names_the_path_and_what_exists() {
        let e = err(&["train.optimizer.beta=1"]);
        assert!(
            e.contains("train.optimizer.beta=1") && e.contains("`train.optimizer` does not exist"),
            "{e}"
        );
        assert!(e.contains("epochs") && e.contains("batch_size"), "{e}");
        let e = err(&["method.delta.3.form.r=8"]);
        assert!(
            e.contains("index 3 is out of range") && e.contains("`method.delta` has 1"),
            "{e}"
        );
        let e = err(&["method.delta.first.form.r=8"]);
        assert!(
            e.contains("`method.delta` is an array") && e.contains("`first`"),
            "{e}"
        );
        let e = err(&["model.dir=x"]);
        assert!(e.contains("`model` is a string"), "{e}");
        let e = err(&["nothing.here=1"]);
        assert!(
            e.contains("`nothing` does not exist; the configuration has") && e.contains("model"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_the_assignment() {
        let e = err(&["train.learning_rate=1"]);
        assert!(
            e.contains("train.learning_rate=1") && e.contains("learning_rate"),
            "{e}"
        );
        let e = err(&["train.epochs=many"]);
        assert!(e.contains("train.epochs=many"), "{e}");
        let e = err(&["method.delta.0.site=nowhere"]);
        assert!(e.contains("nowhere"), "{e}");
        // The blame goes to the assignment that broke the configuration, not the last one.
        let e = err(&["train.bogus=1", "train.lr=0.1"]);
        assert!(
            e.contains("`train.bogus=1`") && !e.contains("train.lr=0.1"),
            "{e}"
        );
        // A state that is invalid only in passing is fine.
        let cfg = apply(&[
            "task.kind=table",
            r#"task={"kind":"glue","name":"sst2","data_dir":"g"}"#,
        ])
        .unwrap();
        assert_eq!(cfg.task.name(), "sst2");
    }

    #[test]
    fn ranges_are_validated() {
        let e = err(&["train.batch_size=0"]);
        assert!(e.contains("batch_size"), "{e}");
    }
}
