//! `petl methods` and `petl params`: the design space, its presets, and what they cost.

use crate::args::{MethodsArgs, ParamsArgs};
use anyhow::{Context, Result};
use petl::methods::{Composition, DeltaSpec, Form, Method, Scale, PRESETS};
use petl::models::BaseModel;
use petl::models::{ModelDir, ModelShape};
use std::path::Path;

/// A method from a preset name, or from a TOML/JSON file holding `name` and `[[delta]]`.
pub fn parse_method(arg: &str) -> Result<Method> {
    let path = Path::new(arg);
    let is_file = matches!(path.extension().and_then(|e| e.to_str()), Some("toml" | "json"));
    if !is_file {
        return Ok(petl::methods::preset(arg)?);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read method file {arg}"))?;
    let method = if arg.ends_with(".json") {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    } else {
        toml::from_str(&text).map_err(anyhow::Error::from)
    };
    method.with_context(|| format!("invalid method file {arg}"))
}

/// The four coordinates of a delta, as the paper's Table 1 writes them.
fn coordinates(d: &DeltaSpec) -> String {
    let form = match &d.form {
        Form::Bottleneck { r, activation, .. } => format!("bottleneck r={r} {activation:?}").to_lowercase(),
        Form::LowRank { r } => format!("low-rank r={r}"),
        Form::Prefix {
            length,
            activation,
            reparam,
            ..
        } => {
            let mlp = reparam.map(|h| format!(" mlp={h}")).unwrap_or_default();
            format!("prefix l={length} {activation:?}{mlp}").to_lowercase()
        }
        Form::Scaling { .. } => "scaling".into(),
        Form::Bias {} => "bias".into(),
        Form::Dense {} => "dense".into(),
        Form::Diff { l0, projection } => {
            let gates = match l0 {
                Some(g) => format!(" l0 groups={:?}", g.groups).to_lowercase(),
                None => String::new(),
            };
            let keep = projection
                .as_ref()
                .map(|p| format!(" keep={}%", p.density * 100.0))
                .unwrap_or_default();
            format!("diff{gates}{keep}")
        }
        Form::SparseDiff {} => "sparse diff".into(),
        Form::Prompt { length } => format!("prompt l={length}"),
    };
    let composition = match d.composition {
        Composition::Add => "add".to_string(),
        Composition::Scaled(Scale::Fixed(s)) => format!("scaled s={s}"),
        Composition::Scaled(Scale::Learned) => "scaled s=learned".into(),
        Composition::Gated => "gated".into(),
    };
    let insertion = match d.form {
        Form::Bias {}
        | Form::Dense {}
        | Form::Diff { .. }
        | Form::SparseDiff {}
        | Form::Prompt { .. }
        | Form::Scaling { .. } => "-",
        _ => match d.insertion {
            petl::methods::Insertion::Sequential => "sequential",
            petl::methods::Insertion::Parallel => "parallel",
        },
    };
    format!(
        "{form:<28} {insertion:<10} {:<18} {composition}",
        d.site.to_string()
    )
}

pub fn methods(a: MethodsArgs) -> Result<()> {
    if a.json {
        let all: Vec<Method> = PRESETS.iter().map(|p| p.method()).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<28} {:<10} {:<18} composition",
        "preset", "form", "insertion", "site"
    );
    for p in PRESETS {
        let m = p.method();
        if m.deltas.is_empty() {
            println!("{:<18} (no delta: only the head trains)", p.name);
        }
        for (i, d) in m.deltas.iter().enumerate() {
            let name = if i == 0 { p.name } else { "  +" };
            println!("{name:<18} {}", coordinates(d));
        }
        println!("{:<18} ↳ {}", "", p.summary);
    }
    Ok(())
}

pub fn params(a: ParamsArgs) -> Result<()> {
    let shape = match (&a.model_config, &a.model) {
        (Some(config), _) => ModelShape::from_config_file(config)?,
        (None, Some(model)) => {
            let arg = crate::args::ModelArg {
                model: Some(model.clone()),
            };
            let dir = ModelDir::open(crate::commands::resolve_model(&arg, true)?)?;
            petl::models::EncoderModel::load(&dir, &candle_core::Device::Cpu)?.shape()
        }
        (None, None) => anyhow::bail!("give --model-config or --model"),
    };
    let method = parse_method(&a.method)?;
    method.validate(&shape)?;
    let report = Report::new(&method, &shape, a.budget);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Report {
    model_type: String,
    base_params: usize,
    method: String,
    deltas: Vec<DeltaRow>,
    trainable_params: usize,
    stored_params: usize,
    trainable_percent: f64,
    stored_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetRow>,
}

#[derive(serde::Serialize)]
struct DeltaRow {
    coordinates: String,
    trainable_params: usize,
    stored_params: usize,
}

#[derive(serde::Serialize)]
struct BudgetRow {
    target_percent: f64,
    bottleneck: usize,
    stored_params: usize,
    stored_percent: f64,
}

impl Report {
    fn new(method: &Method, shape: &ModelShape, budget: Option<f64>) -> Self {
        let pct = |n: usize| 100.0 * n as f64 / shape.base_params as f64;
        let total = method.count(shape);
        let deltas = method
            .deltas
            .iter()
            .zip(method.count_each(shape))
            .map(|(d, c)| DeltaRow {
                coordinates: coordinates(d),
                trainable_params: c.trainable,
                stored_params: c.stored,
            })
            .collect();
        let budget = budget.and_then(|target| {
            let (n, m) = petl::methods::bottleneck_for_budget(method, shape, target / 100.0)?;
            let stored = m.count(shape).stored;
            Some(BudgetRow {
                target_percent: target,
                bottleneck: n,
                stored_params: stored,
                stored_percent: pct(stored),
            })
        });
        Self {
            model_type: shape.model_type.clone(),
            base_params: shape.base_params,
            method: method.name.clone(),
            deltas,
            trainable_params: total.trainable,
            stored_params: total.stored,
            trainable_percent: pct(total.trainable),
            stored_percent: pct(total.stored),
            budget,
        }
    }

    fn print(&self) {
        println!("model      {} ({} parameters)", self.model_type, self.base_params);
        println!("method     {}", self.method);
        for d in &self.deltas {
            println!(
                "  {}   trainable {:>12}   stored {:>12}",
                d.coordinates, d.trainable_params, d.stored_params
            );
        }
        println!(
            "trainable  {} ({:.3}% of the base; prefix generators included)",
            self.trainable_params, self.trainable_percent
        );
        println!(
            "stored     {} ({:.3}% of the base; what an artifact keeps, the paper's budget)",
            self.stored_params, self.stored_percent
        );
        if let Some(b) = &self.budget {
            println!(
                "budget     {:.3}% ⇒ bottleneck {} ({} stored, {:.3}%)",
                b.target_percent, b.bottleneck, b.stored_params, b.stored_percent
            );
        }
    }
}
