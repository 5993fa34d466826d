//! `petl bench`: each (implementation, method) measurement in a child process of its own — this
//! executable's hidden `bench-one`, or the PyTorch twin — so that each peak RSS is the
//! measurement's alone; then one table side by side.

use crate::args::{BenchArgs, BenchOneArgs};
use anyhow::{bail, Context, Result};
use petl::train::bench::{measure, BenchArch, BenchModel, BenchResult, BenchSpec};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The PyTorch twin, built in so that the binary always runs the twin of its own code.
const TORCH_SCRIPT: &str = include_str!("../../../scripts/bench_torch.py");

/// Lines of a failed child's stderr kept in the report.
const ERROR_LINES: usize = 12;

/// A measurement's result, or why its child failed.
type Outcome = std::result::Result<BenchResult, String>;

struct Measurement {
    implementation: &'static str,
    method: String,
    result: Outcome,
}

pub(crate) fn bench_one(a: BenchOneArgs) -> Result<()> {
    let spec = BenchSpec {
        model_dir: a.model_dir,
        method: a.method,
        batch: a.step.batch,
        seq: a.step.seq,
        warmup: a.step.warmup,
        steps: a.step.steps,
        seed: a.step.seed,
        checkpoint: a.step.checkpoint_activations,
        device: a.step.device,
        precision: a.step.precision,
    };
    let result = measure(&spec)
        .with_context(|| format!("benchmarking {} on {}", spec.method, spec.model_dir.display()))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

pub(crate) fn bench(a: BenchArgs, quiet: bool) -> Result<()> {
    let methods: Vec<String> = a
        .methods
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    if methods.is_empty() {
        bail!("--methods lists no method");
    }
    for m in &methods {
        petl::methods::preset(m).with_context(|| format!("--methods {}", a.methods))?;
    }
    if a.step.batch == 0 || a.step.seq == 0 || a.step.steps == 0 {
        bail!("--batch, --seq and --steps must be at least 1");
    }
    let threads = match a.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let model = BenchModel::parse(&a.model);
    if !quiet {
        eprintln!("bench: preparing model {}", model.label());
    }
    let dir = model.resolve().with_context(|| format!("--model {}", a.model))?;
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("model directory {}", dir.display()))?;
    let task = match BenchArch::of_dir(&dir).with_context(|| format!("--model {}", a.model))? {
        BenchArch::Encoder => "2-class classifier",
        BenchArch::Decoder => "causal language model",
    };
    let exe = std::env::current_exe().context("cannot find this petl executable to run measurements")?;
    // Holds the written-out twin until every measurement has run.
    let script_dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let torch = match &a.torch {
        Some(python) => Some((python.clone(), torch_script(&a, script_dir.path())?)),
        None => None,
    };

    let sides = usize::from(!a.skip_petl) + usize::from(torch.is_some());
    let total = methods.len() * sides;
    let mut done = Vec::with_capacity(total);
    for method in &methods {
        if !a.skip_petl {
            let mut cmd = Command::new(&exe);
            cmd.args(["--quiet", "bench-one", "--model-dir"])
                .arg(&dir)
                .args(["--method", method])
                .args(common_flags(&a))
                .env("RAYON_NUM_THREADS", threads.to_string());
            done.push(run_one("petl", method, cmd, done.len() + 1, total, quiet));
        }
        if let Some((python, script)) = &torch {
            let mut cmd = Command::new(python);
            cmd.arg(script)
                .arg("--model")
                .arg(&dir)
                .args(["--method", method])
                .args(common_flags(&a))
                .args(["--threads", &threads.to_string()])
                // OpenMP and MKL would otherwise start one thread per core before torch is told.
                .env("OMP_NUM_THREADS", threads.to_string())
                .env("MKL_NUM_THREADS", threads.to_string());
            done.push(run_one("torch", method, cmd, done.len() + 1, total, quiet));
        }
    }

    println!(
        "model {} ({}, {task}), batch {}, seq {}, {} warm-up + {} timed steps, {} threads, {} {}{}",
        model.label(),
        dir.display(),
        a.step.batch,
        a.step.seq,
        a.step.warmup,
        a.step.steps,
        threads,
        a.step.device,
        a.step.precision,
        if a.step.checkpoint_activations {
            ", activation checkpointing"
        } else {
            ""
        }
    );
    print!("{}", render_table(&methods, &done));
    print_footnotes(&done);
    if let Some(path) = &a.json {
        write_jsonl(path, &done, &a, &dir)?;
        println!("measurements: {}", path.display());
    }
    let failed = done.iter().filter(|m| m.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {total} measurements failed (errors above)");
    }
    Ok(())
}

fn common_flags(a: &BenchArgs) -> Vec<String> {
    let s = &a.step;
    [
        ("--batch", s.batch as u64),
        ("--seq", s.seq as u64),
        ("--warmup", s.warmup as u64),
        ("--steps", s.steps as u64),
        ("--seed", s.seed),
    ]
    .iter()
    .flat_map(|(flag, v)| [flag.to_string(), v.to_string()])
    .chain(
        s.checkpoint_activations
            .then(|| "--checkpoint-activations".to_string()),
    )
    .chain([
        "--device".to_string(),
        s.device.clone(),
        "--precision".to_string(),
        s.precision.to_string(),
    ])
    .collect()
}

fn torch_script(a: &BenchArgs, tmp: &Path) -> Result<PathBuf> {
    if let Some(script) = &a.torch_script {
        return Ok(script.clone());
    }
    let path = tmp.join("bench_torch.py");
    std::fs::write(&path, TORCH_SCRIPT).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Runs one measurement's child and reads its JSON line; a failure becomes the end of its
/// stderr, so one broken method does not stop the others.
fn run_one(
    implementation: &'static str,
    method: &str,
    mut cmd: Command,
    number: usize,
    total: usize,
    quiet: bool,
) -> Measurement {
    if !quiet {
        eprintln!("bench [{number}/{total}] {implementation} {method}: running");
    }
    let result = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
        .and_then(|out| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                return Err(format!("{} ({})", tail(&stderr), out.status));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout
                .lines()
                .rev()
                .find(|l| l.trim_start().starts_with('{'))
                .ok_or_else(|| format!("printed no JSON line; stderr: {}", tail(&stderr)))?;
            serde_json::from_str::<BenchResult>(line)
                .map_err(|e| format!("printed an unreadable result ({e}): {line}"))
        });
    if !quiet {
        match &result {
            Ok(r) => eprintln!(
                "bench [{number}/{total}] {implementation} {method}: {:.1} ms/step, {:.1} examples/s, peak {} MB",
                r.step_ms_median,
                r.examples_per_s,
                r.peak_rss_mb.map_or("?".into(), |m| format!("{m:.0}"))
            ),
            Err(e) => eprintln!(
                "bench [{number}/{total}] {implementation} {method}: failed: {}",
                e.lines().last().unwrap_or("")
            ),
        }
    }
    Measurement {
        implementation,
        method: method.to_string(),
        result,
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(ERROR_LINES);
    let kept = lines[start..].join("\n");
    if kept.is_empty() {
        "no error output".into()
    } else {
        kept
    }
}

const HEADER: [&str; 14] = [
    "method",
    "petl trainable",
    "torch trainable",
    "petl ms/step",
    "torch ms/step",
    "petl ex/s",
    "torch ex/s",
    "speed ratio",
    "petl RSS MB",
    "torch RSS MB",
    "RSS ratio",
    "petl infer ms",
    "torch infer ms",
    "notes",
];

/// The side-by-side table (Markdown). Speed ratio is torch ms / petl ms (petl's throughput over
/// PyTorch's: above 1, petl is faster); RSS ratio is petl MB / torch MB (below 1, petl uses
/// less memory).
fn render_table(methods: &[String], done: &[Measurement]) -> String {
    let find = |implementation: &str, method: &str| {
        done.iter()
            .find(|m| m.implementation == implementation && m.method == method)
            .map(|m| &m.result)
    };
    let rows: Vec<Vec<String>> = methods
        .iter()
        .map(|method| {
            let (p, t) = (find("petl", method), find("torch", method));
            let (po, to) = (succeeded(p), succeeded(t));
            let rss = |b: &BenchResult| b.peak_rss_mb.map_or("?".into(), |m| format!("{m:.0}"));
            let speed_ratio = match (po, to) {
                (Some(p), Some(t)) => format!("{:.2}", t.step_ms_median / p.step_ms_median),
                _ => "-".into(),
            };
            let rss_ratio = match (po.and_then(|p| p.peak_rss_mb), to.and_then(|t| t.peak_rss_mb)) {
                (Some(p), Some(t)) => format!("{:.2}", p / t),
                _ => "-".into(),
            };
            let errors: Vec<&str> = [("petl", p), ("torch", t)]
                .iter()
                .filter(|(_, r)| matches!(r, Some(Err(_))))
                .map(|(name, _)| *name)
                .collect();
            let mut notes = Vec::new();
            if let (Some(p), Some(t)) = (po, to) {
                if p.trainable_params != t.trainable_params {
                    notes.push("trainable counts differ".to_string());
                }
            }
            if !errors.is_empty() {
                notes.push(format!("{} failed (below)", errors.join(", ")));
            }
            vec![
                method.clone(),
                cell(p, |b| thousands(b.trainable_params)),
                cell(t, |b| thousands(b.trainable_params)),
                cell(p, |b| format!("{:.1}", b.step_ms_median)),
                cell(t, |b| format!("{:.1}", b.step_ms_median)),
                cell(p, |b| format!("{:.1}", b.examples_per_s)),
                cell(t, |b| format!("{:.1}", b.examples_per_s)),
                speed_ratio,
                cell(p, rss),
                cell(t, rss),
                rss_ratio,
                cell(p, |b| format!("{:.1}", b.infer_ms_median)),
                cell(t, |b| format!("{:.1}", b.infer_ms_median)),
                notes.join("; "),
            ]
        })
        .collect();
    markdown_table(&HEADER, &rows)
}

fn succeeded(r: Option<&Outcome>) -> Option<&BenchResult> {
    r.and_then(|r| r.as_ref().ok())
}

/// A table cell: `-` where the side was not run, `error` where it failed.
fn cell(r: Option<&Outcome>, f: impl Fn(&BenchResult) -> String) -> String {
    match r {
        None => "-".to_string(),
        Some(Err(_)) => "error".to_string(),
        Some(Ok(b)) => f(b),
    }
}

fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let pad = |text: &str, c: usize| {
        let fill = widths[c].saturating_sub(text.chars().count());
        // Numbers right-aligned, names and notes left-aligned.
        if c == 0 || c == header.len() - 1 {
            format!("{text}{}", " ".repeat(fill))
        } else {
            format!("{}{text}", " ".repeat(fill))
        }
    };
    let mut out = line(header.iter().enumerate().map(|(c, h)| pad(h, c)).collect());
    out += &line(
        widths
            .iter()
            .enumerate()
            .map(|(c, w)| {
                if c == 0 || c == header.len() - 1 {
                    "-".repeat(*w)
                } else {
                    format!("{}:", "-".repeat(w - 1))
                }
            })
            .collect(),
    );
    for r in rows {
        out += &line(r.iter().enumerate().map(|(c, t)| pad(t, c)).collect());
    }
    out
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn print_footnotes(done: &[Measurement]) {
    let mut versions = BTreeSet::new();
    let mut notes = BTreeSet::new();
    for m in done {
        if let Ok(r) = &m.result {
            versions.extend(r.versions.iter().map(|(k, v)| format!("{k} {v}")));
            notes.extend(
                r.notes
                    .iter()
                    .map(|n| format!("{} {}: {n}", m.implementation, m.method)),
            );
        }
    }
    println!(
        "speed ratio = torch ms / petl ms (above 1: petl is faster); RSS ratio = petl MB / torch MB \
         (below 1: petl uses less); RSS is each measurement process's peak."
    );
    if !versions.is_empty() {
        println!(
            "versions: {}",
            versions.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if !notes.is_empty() {
        println!("notes:");
        for n in notes {
            println!("  - {n}");
        }
    }
    let failures: Vec<&Measurement> = done.iter().filter(|m| m.result.is_err()).collect();
    if !failures.is_empty() {
        println!("errors:");
        for m in failures {
            if let Err(e) = &m.result {
                println!("  {} {}:", m.implementation, m.method);
                for l in e.lines() {
                    println!("    {l}");
                }
            }
        }
    }
}

fn write_jsonl(path: &Path, done: &[Measurement], a: &BenchArgs, dir: &Path) -> Result<()> {
    let mut text = String::new();
    for m in done {
        let value = match &m.result {
            Ok(r) => serde_json::to_value(r)?,
            Err(e) => serde_json::json!({
                "impl": m.implementation,
                "method": m.method,
                "model": dir.display().to_string(),
                "batch": a.step.batch,
                "seq": a.step.seq,
                "error": e,
            }),
        };
        text += &serde_json::to_string(&value)?;
        text.push('\n');
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    petl::artifact::write_atomic(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(770), "770");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(22_713_986), "22,713,986");
    }

    #[test]
    fn table_marks_errors_and_missing_sides() {
        let methods = vec!["lora".to_string()];
        let done = vec![Measurement {
            implementation: "petl",
            method: "lora".into(),
            result: Err("boom".into()),
        }];
        let t = render_table(&methods, &done);
        let row = t.lines().nth(2).unwrap_or_default();
        assert!(row.contains("error") && row.contains("petl failed"), "{t}");
        assert!(row.contains(" - "), "{t}");
    }
}
