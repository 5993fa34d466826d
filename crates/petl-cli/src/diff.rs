//! `petl diff project|stats` and multi-task `petl eval`: diff pruning's projection, where a
//! sparse diff lives, and serving many diffs from one loaded base.

use crate::args::{DiffCommand, DiffProjectArgs, DiffStatsArgs, EvalArgs};
use crate::commands::{artifact_dir, load_base};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use petl::data::{Split, TextEncoder};
use petl::methods::diff::{apply_diff, Projection};
use petl::models::BaseModel;
use petl::models::EncoderModel;
use petl::sparse::{SizeReport, ValueDType};
use petl::train::diff_pipeline::{dir_bytes, project_artifact};
use petl::train::plot::{render_svg, Panel, Series};
use petl::train::{TaskModel, TaskSource};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub fn run(c: DiffCommand, quiet: bool) -> Result<()> {
    match c {
        DiffCommand::Project(a) => project(a, quiet),
        DiffCommand::Stats(a) => stats(a),
    }
}

fn project(a: DiffProjectArgs, quiet: bool) -> Result<()> {
    let value_dtype: ValueDType = a
        .value_dtype
        .parse()
        .map_err(|e| anyhow::anyhow!("--value-dtype: {e}"))?;
    let projection = Projection {
        density: a.density,
        value_dtype,
        ..Projection::default()
    };
    // Projection sorts the whole diff on the host; a GPU would only add copies.
    let (model, _) = load_base(&a.model, 512, &Device::Cpu)?;
    let from = artifact_dir(&a.artifact);
    let s = project_artifact(&model, &from, &projection, &a.out)
        .with_context(|| format!("cannot project {}", from.display()))?;
    if !quiet {
        println!(
            "kept {} of {} entries ({:.3}% of the base; {:.2}% were nonzero before), |δ| ≥ {:.3e}",
            s.kept,
            s.total,
            100.0 * s.kept as f64 / model.num_base_params() as f64,
            100.0 * s.density_before,
            s.threshold
        );
        println!(
            "sparse diff {} bytes ({:.2} bytes per entry; positions {:.2} bits per entry = {:.3}× the bound)",
            s.sparse_bytes,
            s.size.bytes_per_nnz(),
            s.size.position_bits_per_nnz(),
            s.size.ratio_to_bound()
        );
        println!("artifact    {} ({} bytes)", a.out.display(), s.artifact_bytes);
    }
    Ok(())
}

/// Where a diff's entries are, grouped one way.
#[derive(Debug, Default, Serialize)]
struct Bucket {
    numel: u64,
    nnz: u64,
    tensors: usize,
    empty_tensors: usize,
}

impl Bucket {
    fn add(&mut self, numel: u64, nnz: u64) {
        self.numel += numel;
        self.nnz += nnz;
        self.tensors += 1;
        self.empty_tensors += usize::from(nnz == 0);
    }

    fn density(&self) -> f64 {
        self.nnz as f64 / self.numel.max(1) as f64
    }
}

#[derive(Debug, Serialize)]
struct Stats {
    artifact: String,
    method: String,
    task: String,
    artifact_bytes: u64,
    nnz: u64,
    base_params: usize,
    density_of_base: f64,
    size: Option<petl::sparse::SizeSummary>,
    by_layer: BTreeMap<String, Bucket>,
    by_type: BTreeMap<String, Bucket>,
    /// Tensors (structured diff pruning's groups) the diff leaves entirely unchanged.
    empty_groups: usize,
    groups: usize,
    /// `P(z_g ≠ 0)` by tensor, for a first-stage artifact with group gates.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    group_gates: BTreeMap<String, f64>,
}

/// `encoder.layer.3.attention.self.query.weight` → ("layer 03", "query").
fn classify(name: &str) -> (String, String) {
    let layer = match name
        .strip_prefix("encoder.layer.")
        .and_then(|r| r.split('.').next())
    {
        Some(l) => format!("layer {:0>2}", l),
        None if name.starts_with("embeddings.") => "embeddings".into(),
        None => "other".into(),
    };
    let kind = if name.contains("LayerNorm") || name.contains("layer_norm") {
        "layer_norm"
    } else if name.contains("self.query") {
        "query"
    } else if name.contains("self.key") {
        "key"
    } else if name.contains("self.value") {
        "value"
    } else if name.contains("attention.output") {
        "attn_out"
    } else if name.contains("intermediate") {
        "ffn_up"
    } else if name.contains(".output.") {
        "ffn_down"
    } else if name.contains("embeddings") {
        "embeddings"
    } else if name.contains("pooler") {
        "pooler"
    } else {
        "other"
    };
    let part = if name.ends_with(".bias") { ".bias" } else { "" };
    (layer, format!("{kind}{part}"))
}

fn stats(a: DiffStatsArgs) -> Result<()> {
    let dir = artifact_dir(&a.artifact);
    let meta = petl::artifact::load_meta(&dir)?;
    let decoded = petl::artifact::load_sparse(&dir, &meta)?;
    let method = meta
        .method
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_string();
    let task = meta
        .task
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_string();
    let mut by_layer: BTreeMap<String, Bucket> = BTreeMap::new();
    let mut by_type: BTreeMap<String, Bucket> = BTreeMap::new();
    let mut group_gates = BTreeMap::new();
    let (nnz, size) = match &decoded {
        Some(d) => {
            for (name, t) in &d.diff.tensors {
                let (layer, kind) = classify(name);
                by_layer.entry(layer).or_default().add(t.numel(), t.nnz());
                by_type.entry(kind).or_default().add(t.numel(), t.nnz());
            }
            (d.diff.nnz(), Some(d.report.clone()))
        }
        None => {
            // A first-stage (dense, gated) artifact: its diff and gates need the base.
            let (model, _) = load_base(&a.model, 512, &Device::Cpu)?;
            let tm = TaskModel::from_artifact(&model, &dir)?;
            let diffs = tm
                .delta()
                .dense_diffs(&model)?
                .context("this artifact changes no base parameter")?;
            for (name, d) in &diffs {
                let (layer, kind) = classify(name);
                let n = d.values.iter().filter(|v| **v != 0.0).count() as u64;
                by_layer.entry(layer).or_default().add(d.values.len() as u64, n);
                by_type.entry(kind).or_default().add(d.values.len() as u64, n);
            }
            group_gates = tm.delta().group_gate_probs()?;
            (by_type.values().map(|b| b.nnz).sum(), None)
        }
    };
    let groups: usize = by_type.values().map(|b| b.tensors).sum();
    let empty_groups: usize = by_type.values().map(|b| b.empty_tensors).sum();
    let stats = Stats {
        artifact: dir.display().to_string(),
        method,
        task,
        artifact_bytes: dir_bytes(&dir),
        nnz,
        base_params: meta.base_params,
        density_of_base: nnz as f64 / meta.base_params.max(1) as f64,
        size: size.as_ref().map(SizeReport::summary),
        by_layer,
        by_type,
        empty_groups,
        groups,
        group_gates,
    };
    if let Some(path) = &a.svg {
        petl::artifact::write_atomic(path, plot(&stats).as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    print_stats(&stats, size.as_ref());
    Ok(())
}

fn print_stats(s: &Stats, size: Option<&SizeReport>) {
    println!("artifact  {} ({} / {})", s.artifact, s.method, s.task);
    println!(
        "entries   {} = {:.4}% of {} base parameters; {} of {} tensors unchanged",
        s.nnz,
        100.0 * s.density_of_base,
        s.base_params,
        s.empty_groups,
        s.groups
    );
    if let Some(r) = size {
        println!(
            "bytes     artifact {}, sparse file {} = {:.2} bytes per entry ({} values)",
            s.artifact_bytes,
            r.file_bytes,
            r.bytes_per_nnz(),
            r.value_dtype
        );
        println!(
            "positions {:.2} bits per entry; bound log2 C(n,k) {:.2} bits per entry; ratio {:.3} \
             (per-tensor bound: {:.3})",
            r.position_bits_per_nnz(),
            r.bound_global_bits() / r.nnz().max(1) as f64,
            r.ratio_to_bound(),
            r.position_bits as f64 / r.bound_per_tensor_bits().max(1e-9)
        );
    }
    let bar = |d: f64, max: f64| "#".repeat(((d / max.max(1e-12)) * 40.0).round() as usize);
    for (title, table) in [("layer", &s.by_layer), ("tensor type", &s.by_type)] {
        let max = table.values().map(Bucket::density).fold(0.0, f64::max);
        println!("\nby {title:<12} {:>10} {:>12} {:>9}", "entries", "of", "density");
        for (k, b) in table {
            println!(
                "{k:<15} {:>10} {:>12} {:>8.3}% {}",
                b.nnz,
                b.numel,
                100.0 * b.density(),
                bar(b.density(), max)
            );
        }
    }
    if !s.group_gates.is_empty() {
        let open = s.group_gates.values().filter(|p| **p > 0.5).count();
        println!(
            "\ngroup gates: {open} of {} with P(z_g ≠ 0) > 0.5",
            s.group_gates.len()
        );
        let mut sorted: Vec<_> = s.group_gates.iter().collect();
        sorted.sort_by(|a, b| a.1.total_cmp(b.1));
        for (name, p) in sorted.iter().take(10) {
            println!("  {p:.4}  {name}");
        }
    }
}

/// Density (%) per layer, and per tensor type: the two marginals as two panels.
fn plot(s: &Stats) -> String {
    let layers: Vec<&String> = s.by_layer.keys().collect();
    let layer_series = Series {
        name: "all tensors".into(),
        points: layers
            .iter()
            .enumerate()
            .map(|(i, l)| (i as f64, 100.0 * s.by_layer[*l].density()))
            .collect(),
    };
    let type_series: Vec<Series> = s
        .by_type
        .iter()
        .enumerate()
        .map(|(i, (k, b))| Series {
            name: k.clone(),
            points: vec![(i as f64, 100.0 * b.density())],
        })
        .collect();
    render_svg(&[
        Panel {
            title: format!(
                "Where the diff lives: density per layer (0 = {}, last = {})",
                layers.first().map_or("", |s| s.as_str()),
                layers.last().map_or("", |s| s.as_str())
            ),
            x_label: "layer (sorted by name)".into(),
            y_label: "changed entries (%)".into(),
            series: vec![layer_series],
        },
        Panel {
            title: "Density per tensor type".into(),
            x_label: "tensor type (legend order)".into(),
            y_label: "changed entries (%)".into(),
            series: type_series,
        },
    ])
}

/// Loads one base and evaluates several artifacts on their own tasks, writing sparse diffs
/// into the base and taking them out again between tasks.
pub fn eval_many(a: &EvalArgs) -> Result<()> {
    // Each artifact on its own GLUE task, or all on one table (--train-file/--dev-file).
    let table = match a.task.train_file {
        Some(_) => Some(crate::commands::task_source(&a.task)?),
        None => None,
    };
    let started = Instant::now();
    let (model, encoder) = load_base(&a.model, a.max_len, &a.device.open()?)?;
    // What a switch would cost if each task reloaded the base instead.
    let base_load_ms = started.elapsed().as_secs_f64() * 1e3;
    let fingerprint_before = base_checksum(&model)?;
    struct Task<'m> {
        name: String,
        tm: TaskModel<'m>,
        diff: Option<petl::sparse::SparseDiff>,
        data: Vec<petl::data::Encoded>,
        dir: std::path::PathBuf,
    }
    let mut tasks = Vec::new();
    for path in &a.artifact {
        let dir = artifact_dir(path);
        let (tm, diff) = TaskModel::from_artifact_detached(&model, &dir)
            .with_context(|| format!("cannot load {}", dir.display()))?;
        let name = tm.spec().name.clone();
        let data = match &table {
            Some(TaskSource::Table {
                name: table_name,
                dev: Some(dev),
                ..
            }) => {
                let mut ds = petl::data::read_table(dev, table_name)?;
                if ds.spec.labels() != tm.spec().labels() {
                    bail!(
                        "{} was trained for labels {:?}, but {} has {:?}",
                        dir.display(),
                        tm.spec().labels(),
                        dev.path.display(),
                        ds.spec.labels()
                    );
                }
                if let Some(n) = a.eval_rows {
                    ds.truncate(n);
                }
                encoder.encode_all(&ds)?
            }
            Some(_) => bail!("evaluating on a table needs --dev-file"),
            None => {
                let data_dir = a.task.data_dir.as_ref().context(
                    "evaluating several artifacts needs --data-dir (each on its own GLUE task) \
                     or --train-file with --dev-file",
                )?;
                dev_set(&name, data_dir, &encoder, a.eval_rows)?
            }
        };
        tasks.push(Task {
            name,
            tm,
            diff,
            data,
            dir,
        });
    }
    #[derive(Serialize)]
    struct Row {
        task: String,
        artifact: String,
        nnz: usize,
        apply_ms: f64,
        remove_ms: f64,
        headline: Option<f64>,
        metrics: petl::metrics::Scores,
        examples_per_s: f64,
    }
    let mut rows: Vec<Row> = Vec::new();
    for round in 0..a.rounds.max(1) {
        for (i, t) in tasks.iter().enumerate() {
            let start = Instant::now();
            let applied = t.diff.as_ref().map(|d| apply_diff(&model, d)).transpose()?;
            let apply_ms = start.elapsed().as_secs_f64() * 1e3;
            let outcome = t.tm.evaluate(&t.data, a.batch_size, encoder.pad_id());
            let start = Instant::now();
            let nnz = applied.as_ref().map_or(0, |x| x.nnz());
            if let Some(applied) = applied {
                applied.remove(&model)?;
            }
            let remove_ms = start.elapsed().as_secs_f64() * 1e3;
            let outcome = outcome?;
            if round == 0 {
                rows.push(Row {
                    task: t.name.clone(),
                    artifact: t.dir.display().to_string(),
                    nnz,
                    apply_ms,
                    remove_ms,
                    headline: outcome.headline,
                    metrics: outcome.scores,
                    examples_per_s: outcome.examples_per_s,
                });
            } else if let Some(r) = rows.get_mut(i) {
                // Running mean over rounds.
                let k = round as f64;
                r.apply_ms = (r.apply_ms * k + apply_ms) / (k + 1.0);
                r.remove_ms = (r.remove_ms * k + remove_ms) / (k + 1.0);
            }
        }
    }
    let restored = base_checksum(&model)? == fingerprint_before;
    if !restored {
        bail!("the base model differs after removing every diff; this is a bug");
    }
    if a.check {
        for (t, r) in tasks.iter().zip(&rows) {
            let whole = TaskModel::from_artifact(&model, &t.dir)?;
            let hooked = whole.evaluate(&t.data, a.batch_size, encoder.pad_id())?;
            if hooked.scores != r.metrics {
                bail!(
                    "{}: in-place {:?} but through hooks {:?}",
                    t.name,
                    r.metrics,
                    hooked.scores
                );
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "tasks": rows, "base_load_ms": base_load_ms,
                "base_restored_bitwise": restored, "checked_against_hooks": a.check,
            })
        );
        return Ok(());
    }
    println!(
        "{:<8} {:>9} {:>10} {:>10} {:>9} {:>8}",
        "task", "nnz", "apply ms", "remove ms", "headline", "ex/s"
    );
    for r in &rows {
        println!(
            "{:<8} {:>9} {:>10.2} {:>10.2} {:>9.4} {:>8.1}",
            r.task,
            r.nnz,
            r.apply_ms,
            r.remove_ms,
            r.headline.unwrap_or(f64::NAN),
            r.examples_per_s
        );
    }
    println!("base loaded once in {base_load_ms:.0} ms (what reloading per task would cost)");
    println!(
        "base restored bit for bit after every task{}",
        if a.check {
            "; metrics equal the hook path's"
        } else {
            ""
        }
    );
    Ok(())
}

fn dev_set(
    task: &str,
    data_dir: &Path,
    encoder: &TextEncoder,
    rows: Option<usize>,
) -> Result<Vec<petl::data::Encoded>> {
    let source = TaskSource::Glue {
        name: task.to_string(),
        data_dir: data_dir.to_path_buf(),
    };
    let glue = source
        .glue()?
        .with_context(|| format!("task {task} is not a GLUE task"))?;
    let mut ds = glue.read(data_dir, Split::Dev)?;
    if let Some(n) = rows {
        ds.truncate(n);
    }
    Ok(encoder.encode_all(&ds)?)
}

/// An order-sensitive checksum of every base tensor's bits (FNV-1a over the f32 bit patterns).
fn base_checksum(model: &EncoderModel) -> Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in model.base_params().values() {
        for v in t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?
        {
            h ^= v.to_bits() as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(h)
}
