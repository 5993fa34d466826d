//! Load test of `petl serve` on loopback: throughput and latency with 1, 10, 100 and 1,000
//! tasks on one MiniLM, for LoRA and for sparse-diff tasks.
//!
//! ```text
//! cargo run --release -p petl-serve --example loadtest -- \
//!     --sentences path/to/glue/SST-2/dev.tsv --tasks 1,10,100,1000 --kinds lora,diff \
//!     --requests 600 --concurrency 64 --out runs/loadtest
//! ```
//!
//! Tasks are generated variants: a LoRA (r = 8 on query and value) or a 0.5%-dense sparse diff
//! with seeded random values, plus a random head, written as real artifacts. Every setting
//! preloads its tasks, then `--concurrency` clients send `--requests` single-sentence requests,
//! each for a task drawn uniformly at random. Bounded in requests and in time (`--max-seconds`
//! per setting). `--repeats N` runs every setting N times, interleaved, and reports the median.
//! Prints a Markdown table and writes every run to `results.jsonl`. `--prepare-only` writes the
//! tasks and stops.

use candle_core::{Device, Tensor};
use petl_data::{TaskKind, TaskSpec, TextEncoder};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ModelDir, Pooling};
use petl_serve::client::Client;
use petl_serve::{ServeConfig, Server};
use petl_sparse::{SparseDiff, SparseTensor};
use petl_train::TaskModel;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Args {
    sentences: Option<PathBuf>,
    tasks: Vec<usize>,
    kinds: Vec<String>,
    requests: usize,
    concurrency: usize,
    max_seconds: f64,
    density: f64,
    out: PathBuf,
    prepare_only: bool,
    repeats: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sentences: None,
        tasks: vec![1, 10, 100, 1000],
        kinds: vec!["lora".into(), "diff".into()],
        requests: 600,
        concurrency: 64,
        max_seconds: 120.0,
        density: 0.005,
        out: PathBuf::from("runs/loadtest"),
        prepare_only: false,
        repeats: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let list = |v: String| v.split(',').map(str::to_string).collect::<Vec<_>>();
        match flag.as_str() {
            "--sentences" => a.sentences = Some(value()?.into()),
            "--tasks" => {
                a.tasks = list(value()?)
                    .iter()
                    .map(|s| s.parse().map_err(|e| format!("--tasks {s}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--kinds" => a.kinds = list(value()?),
            "--requests" => a.requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?,
            "--concurrency" => a.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--max-seconds" => a.max_seconds = value()?.parse().map_err(|e| format!("--max-seconds: {e}"))?,
            "--density" => a.density = value()?.parse().map_err(|e| format!("--density: {e}"))?,
            "--out" => a.out = value()?.into(),
            "--prepare-only" => a.prepare_only = true,
            "--repeats" => a.repeats = value()?.parse().map_err(|e| format!("--repeats: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn spec() -> TaskSpec {
    TaskSpec::default_for(
        "sentiment",
        TaskKind::Classification {
            labels: vec!["negative".into(), "positive".into()],
        },
    )
}

fn perturb(tm: &TaskModel<'_>, rng: &mut impl Rng) -> candle_core::Result<()> {
    for (_, var) in tm.params().iter() {
        let t = var.as_tensor();
        let noise: Vec<f32> = (0..t.elem_count())
            .map(|_| rng.random_range(-0.05..0.05))
            .collect();
        var.set(&(t + Tensor::from_vec(noise, t.shape(), t.device())?)?)?;
    }
    Ok(())
}

/// A diff of `density` × all base parameters at uniformly random positions.
fn random_diff(model: &EncoderModel, density: f64, rng: &mut impl Rng) -> Result<SparseDiff, String> {
    let mut diff = SparseDiff::new();
    for (name, t) in model.base_params() {
        let n = t.elem_count();
        let k = ((n as f64 * density).round() as usize).min(n);
        let mut positions = BTreeSet::new();
        while positions.len() < k {
            positions.insert(rng.random_range(0..n as u64));
        }
        let values = positions
            .iter()
            .map(|_| rng.random_range(-0.02f32..0.02))
            .collect();
        let sparse = SparseTensor::new(t.dims().to_vec(), positions.into_iter().collect(), values)
            .map_err(|e| e.to_string())?;
        diff.insert(name.clone(), sparse);
    }
    Ok(diff)
}

/// Writes `count` task variants of `kind` under `dir` (kept between runs).
fn make_tasks(
    model: &EncoderModel,
    dir: &Path,
    kind: &str,
    count: usize,
    density: f64,
) -> Result<(), String> {
    let method = match kind {
        "lora" => petl_methods::preset("lora"),
        "diff" => petl_methods::preset("sparse-diff"),
        other => return Err(format!("unknown kind {other} (lora or diff)")),
    }
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..count {
        let out = dir.join(format!("{kind}-{i:04}"));
        if out.join("artifact.json").is_file() {
            continue;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let diff = (kind == "diff")
            .then(|| random_diff(model, density, &mut rng))
            .transpose()?;
        let tm = TaskModel::with_sparse_diff(model, &method, spec(), Pooling::Cls, i as u64, diff.as_ref())
            .map_err(|e| e.to_string())?;
        perturb(&tm, &mut rng).map_err(|e| e.to_string())?;
        tm.save_artifact(&out).map_err(|e| e.to_string())?;
        if (i + 1) % 100 == 0 {
            eprintln!(
                "  {kind}: {} tasks written ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn sentences(path: Option<&Path>) -> Vec<String> {
    let from_file = path.and_then(|p| std::fs::read_to_string(p).ok()).map(|text| {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    match from_file {
        Some(s) if !s.is_empty() => s,
        _ => vec![
            "a gripping, beautifully acted film".into(),
            "the plot was dull and the ending made no sense".into(),
        ],
    }
}

#[derive(Debug, serde::Serialize)]
struct Outcome {
    kind: String,
    tasks: usize,
    requests: usize,
    errors: usize,
    seconds: f64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    forwards: u64,
}

async fn run_setting(
    model_dir: &Path,
    task_dir: &Path,
    kind: &str,
    tasks: usize,
    args: &Args,
    texts: &[String],
) -> Result<Outcome, String> {
    let dir = ModelDir::open(model_dir).map_err(|e| e.to_string())?;
    let model = EncoderModel::load(&dir, &Device::Cpu).map_err(|e| e.to_string())?;
    let encoder = TextEncoder::from_file(&dir.tokenizer_path().map_err(|e| e.to_string())?, 128)
        .map_err(|e| e.to_string())?;
    // Only this setting's tasks are visible to the server.
    let visible = tempfile::tempdir().map_err(|e| e.to_string())?;
    for i in 0..tasks {
        let name = format!("{kind}-{i:04}");
        std::os::unix::fs::symlink(task_dir.join(&name), visible.path().join(&name))
            .map_err(|e| e.to_string())?;
    }
    let mut config = ServeConfig::new(visible.path().to_path_buf());
    config.max_loaded_bytes = 16 << 30;
    config.queue_capacity = 4 * args.concurrency;
    let server = Server::new(model, &encoder, config).map_err(|e| e.to_string())?;
    let metrics = server.metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(listener, async {
        let _ = stopped.await;
    }));

    let mut c = Client::connect(addr).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..tasks {
        let r = c
            .request("POST", &format!("/v1/artifacts/{kind}-{i:04}/load"), None)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("loading {kind}-{i:04}: {}", r.text()));
        }
    }
    eprintln!(
        "  loaded {tasks} {kind} tasks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Warm-up: a few batches so first-touch costs are not measured.
    for i in 0..4 {
        let body = serde_json::json!({"task": format!("{kind}-{:04}", i % tasks), "inputs": [texts[i % texts.len()]]});
        c.post_json("/v1/classify", &body)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (forwards_before, _) = metrics.forwards();

    let deadline = Instant::now() + Duration::from_secs_f64(args.max_seconds);
    let per_client = args.requests.div_ceil(args.concurrency);
    let started = Instant::now();
    let mut clients = Vec::new();
    for w in 0..args.concurrency {
        let texts = texts.to_vec();
        let kind = kind.to_string();
        clients.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + w as u64);
            let mut latencies = Vec::with_capacity(per_client);
            let mut errors = 0;
            let Ok(mut c) = Client::connect(addr).await else {
                return (latencies, per_client);
            };
            for _ in 0..per_client {
                if Instant::now() > deadline {
                    break;
                }
                let task = rng.random_range(0..tasks);
                let text = &texts[rng.random_range(0..texts.len())];
                let body = serde_json::json!({"task": format!("{kind}-{task:04}"), "inputs": [text], "truncate": true});
                let t = Instant::now();
                match c.post_json("/v1/classify", &body).await {
                    Ok(r) if r.status == 200 => latencies.push(t.elapsed().as_secs_f64()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (l, e) = c.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (forwards_after, _) = metrics.forwards();
    let _ = stop.send(());
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(f64::NAN, |s| s * 1000.0)
    };
    let forwards = forwards_after - forwards_before;
    Ok(Outcome {
        kind: kind.to_string(),
        tasks,
        requests: latencies.len(),
        errors,
        seconds,
        requests_per_s: latencies.len() as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        forwards,
    })
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<(), String> {
    let args = parse_args()?;
    let model_dir = petl_hub::ensure("minilm").map_err(|e| e.to_string())?;
    let model = EncoderModel::load(
        &ModelDir::open(&model_dir).map_err(|e| e.to_string())?,
        &Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let task_dir = args.out.join("tasks");
    std::fs::create_dir_all(&task_dir).map_err(|e| e.to_string())?;
    let task_dir = task_dir.canonicalize().map_err(|e| e.to_string())?;
    let most = args.tasks.iter().copied().max().unwrap_or(1);
    for kind in &args.kinds {
        eprintln!("writing up to {most} {kind} tasks under {}", task_dir.display());
        make_tasks(&model, &task_dir, kind, most, args.density)?;
    }
    drop(model);
    if args.prepare_only {
        return Ok(());
    }
    let texts = sentences(args.sentences.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Settings interleave across repeats, so drift in the machine's load spreads over all.
    let mut runs: Vec<Outcome> = Vec::new();
    for repeat in 0..args.repeats.max(1) {
        for kind in &args.kinds {
            for &tasks in &args.tasks {
                eprintln!("{kind}: {tasks} tasks (repeat {})", repeat + 1);
                let o = runtime.block_on(run_setting(&model_dir, &task_dir, kind, tasks, &args, &texts))?;
                eprintln!(
                    "  {:.1} req/s, p50 {:.0} ms, p99 {:.0} ms, {} errors",
                    o.requests_per_s, o.p50_ms, o.p99_ms, o.errors
                );
                runs.push(o);
            }
        }
    }
    let mut outcomes = Vec::new();
    for kind in &args.kinds {
        for &tasks in &args.tasks {
            let mut same: Vec<&Outcome> = runs
                .iter()
                .filter(|o| &o.kind == kind && o.tasks == tasks)
                .collect();
            same.sort_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s));
            let median = same[same.len() / 2];
            outcomes.push(Outcome {
                kind: kind.clone(),
                tasks,
                requests: same.iter().map(|o| o.requests).sum(),
                errors: same.iter().map(|o| o.errors).sum(),
                seconds: same.iter().map(|o| o.seconds).sum(),
                requests_per_s: median.requests_per_s,
                p50_ms: median.p50_ms,
                p99_ms: median.p99_ms,
                forwards: same.iter().map(|o| o.forwards).sum(),
            });
        }
    }
    let mut jsonl = String::new();
    for o in &runs {
        jsonl.push_str(&serde_json::to_string(o).map_err(|e| e.to_string())?);
        jsonl.push('\n');
    }
    std::fs::write(args.out.join("results.jsonl"), jsonl).map_err(|e| e.to_string())?;
    println!(
        "median of {} runs per setting; p50/p99 from the median run",
        args.repeats.max(1)
    );
    println!("| kind | tasks | requests | req/s | vs 1 task | p50 ms | p99 ms | rows/forward | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let single = outcomes
            .iter()
            .find(|x| x.kind == o.kind && x.tasks == 1)
            .map_or(f64::NAN, |x| x.requests_per_s);
        println!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.0} | {:.0} | {:.1} | {} |",
            o.kind,
            o.tasks,
            o.requests,
            o.requests_per_s,
            o.requests_per_s / single,
            o.p50_ms,
            o.p99_ms,
            o.requests as f64 / o.forwards.max(1) as f64,
            o.errors
        );
    }
    Ok(())
}
