//! Generation from the command line: generation tasks for `petl train`, and `petl generate`.

use crate::args::{DecodeArgs, EvalArgs, GenTaskArgs, GenerateArgs, ModelArg, TaskArgs};
use crate::commands::{artifact_dir, resolve_model};
use anyhow::{bail, Context, Result};
use petl::generate::{BeamConfig, GenerationConfig, IncrementalDetokenizer, SampleConfig, Strategy};
use petl::train::generation::{GenBase, GenData, GenRunSummary, GenTask, GenTaskModel};
use petl::train::TaskSource;
use std::io::{BufRead, Write};
use std::path::Path;

/// The generation task the flags name, if they name one: `--task xsum` (with `--data-file`),
/// `--task wmt16-en-ro|wmt16-ro-en` (with `--data-dir`), or `--prompt-file`.
pub(crate) fn gen_task_source(a: &TaskArgs) -> Result<Option<TaskSource>> {
    let g = &a.generation;
    let name = a.task.as_deref().unwrap_or_default();
    let data = if let Some(path) = &g.prompt_file {
        GenData::Jsonl {
            path: path.clone(),
            source_field: g.source_field.clone(),
            target_field: g.target_field.clone(),
        }
    } else if name == "xsum" {
        let Some(path) = &g.data_file else {
            bail!("--task xsum needs --data-file (the XSum JSONL: document, summary, id)");
        };
        GenData::Xsum { path: path.clone() }
    } else if let Some(direction) = name.strip_prefix("wmt16-") {
        let Some(dir) = &a.data_dir else {
            bail!(
                "--task {name} needs --data-dir (the folder holding {}.en and .ro)",
                g.wmt_stem
            );
        };
        GenData::Wmt16 {
            dir: dir.clone(),
            stem: g.wmt_stem.clone(),
            direction: direction.to_string(),
        }
    } else {
        return Ok(None);
    };
    let Some(holdout) = a.holdout else {
        bail!("a generation task needs --holdout N: the last N examples are the evaluation set");
    };
    let task_name = match (&a.task, &g.prompt_file) {
        (Some(n), _) => n.clone(),
        (None, Some(p)) => p
            .file_stem()
            .map_or("prompts".into(), |s| s.to_string_lossy().into_owned()),
        (None, None) => "generation".into(),
    };
    Ok(Some(TaskSource::Generation(Box::new(GenTask {
        name: task_name,
        data,
        holdout,
        template: g.template.clone(),
        chat: g.chat,
        max_target_len: g.max_target_len,
        metric: None,
        generation: Some(decode_config(&g.decode, g.max_target_len)?),
    }))))
}

/// The decoding configuration the flags describe.
pub(crate) fn decode_config(d: &DecodeArgs, default_new_tokens: usize) -> Result<GenerationConfig> {
    let strategy = match (d.num_beams, d.temperature) {
        (0, _) => bail!("--num-beams must be at least 1"),
        (1, None) => Strategy::Greedy,
        (1, Some(temperature)) => Strategy::Sample(SampleConfig {
            temperature,
            top_k: d.top_k,
            top_p: d.top_p,
            seed: d.sample_seed,
        }),
        (beams, None) => Strategy::Beam(BeamConfig {
            num_beams: beams,
            length_penalty: d.length_penalty,
            ..BeamConfig::default()
        }),
        (_, Some(_)) => bail!("--temperature samples; beam search (--num-beams > 1) does not"),
    };
    let config = GenerationConfig {
        max_new_tokens: d.max_new_tokens.unwrap_or(default_new_tokens),
        min_new_tokens: d.min_new_tokens,
        strategy,
        no_repeat_ngram_size: d.no_repeat_ngram,
        repetition_penalty: d.repetition_penalty,
        ..GenerationConfig::default()
    };
    config.validate().context("decoding settings")?;
    Ok(config)
}

pub(crate) fn print_gen_summary(s: &GenRunSummary, out: &Path) {
    println!("task            {}", s.task);
    println!("method          {}", s.method);
    println!(
        "trainable       {} parameters ({:.4}% of the base's {})",
        s.trainable_params, s.trainable_percent, s.base_params
    );
    if let Some(before) = &s.base_eval {
        for (k, v) in before {
            println!("base {k:<10} {v:.2}");
        }
    }
    for (k, v) in &s.dev {
        println!("dev {k:<11} {v:.2}   (best, step {})", s.best_step);
    }
    println!("train speed     {:.2} examples/s", s.train_examples_per_s);
    println!("decode speed    {:.1} tokens/s", s.eval_tokens_per_s);
    println!("wall time       {:.1} s", s.wall_seconds);
    println!("run directory   {}", out.display());
}

/// `petl generate`: streams each prompt's continuation to stdout.
pub(crate) fn generate(a: GenerateArgs, quiet: bool) -> Result<()> {
    let model_path = resolve_model(
        &ModelArg {
            model: Some(a.model.clone()),
        },
        quiet,
    )?;
    let device = a.device.open()?;
    let base = GenBase::load(&model_path, &device, petl::models::Precision::F32)
        .with_context(|| format!("loading {}", model_path.display()))?;
    let task = serde_json::json!({"kind": "generation", "task": "interactive"});
    let tm = match &a.artifact {
        Some(dir) => GenTaskModel::from_artifact(&base, &artifact_dir(dir))
            .with_context(|| format!("loading artifact {}", dir.display()))?,
        None => GenTaskModel::frozen(&base, task)?,
    };
    let mut config = decode_config(&a.decode, 64)?;
    config.stop_tokens.extend(base.special().eos.iter().copied());
    let prompts: Vec<String> = match &a.prompt {
        Some(p) => vec![p.clone()],
        None => std::io::stdin().lock().lines().collect::<std::io::Result<_>>()?,
    };
    let stdout = std::io::stdout();
    let seq2seq = base.is_encoder_decoder();
    if seq2seq && a.chat {
        bail!(
            "--chat wraps the prompt in chat turns for a decoder-only model; {} reads its source as is",
            base.model_type()
        );
    }
    for prompt in prompts {
        let text = if a.chat {
            format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
        } else {
            prompt.clone()
        };
        // An encoder's source is framed by the tokenizer's own special tokens (BART `<s> … </s>`).
        let mut ids = base
            .tokenizer()
            .encode(text, seq2seq)
            .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?
            .get_ids()
            .to_vec();
        if !a.chat && !seq2seq {
            if let Some(bos) = base.special().bos {
                ids.insert(0, bos);
            }
        }
        let decode = |t: &[u32]| base.tokenizer().decode(t, true).unwrap_or_default();
        let mut detok = IncrementalDetokenizer::new(&decode);
        let generated = {
            let mut out = stdout.lock();
            let mut sink = |_row: usize, token: u32| {
                let piece = detok.push(token);
                if !piece.is_empty() {
                    let _ = write!(out, "{piece}");
                    let _ = out.flush();
                }
            };
            tm.generate(&[ids.as_slice()], &config, &mut sink)?
        };
        let tail = detok.finish();
        let mut out = stdout.lock();
        write!(out, "{tail}")?;
        writeln!(out)?;
        if a.ids {
            if let Some(g) = generated.first() {
                writeln!(out, "ids: {:?} ({:?})", g.tokens, g.finish_reason)?;
            }
        }
    }
    Ok(())
}

/// Flags that only mean something for generation tasks, named when given to another task.
pub(crate) fn refuse_generation_flags(g: &GenTaskArgs) -> Result<()> {
    if g.data_file.is_some() || g.chat || g.template.is_some() {
        bail!("--data-file, --chat and --template are for generation tasks (--task xsum, wmt16-en-ro, --prompt-file)");
    }
    Ok(())
}

/// `petl eval` on a generation task: decodes the task's evaluation split with the artifact
/// (`--artifact frozen` scores the base alone) and prints the scores.
pub(crate) fn eval_generation(a: &EvalArgs, task: &GenTask) -> Result<()> {
    let model_path = resolve_model(&a.model, false)?;
    let base = GenBase::load(&model_path, &a.device.open()?, petl::models::Precision::F32)
        .with_context(|| format!("loading {}", model_path.display()))?;
    let [artifact] = a.artifact.as_slice() else {
        bail!("a generation task is evaluated with one --artifact at a time");
    };
    let tm = if artifact.as_os_str() == "frozen" {
        GenTaskModel::frozen(&base, serde_json::json!({"kind": "generation", "task": task}))?
    } else {
        GenTaskModel::from_artifact(&base, &artifact_dir(artifact))?
    };
    let out =
        petl::train::generation::evaluate_task(&tm, task, a.max_len, a.eval_rows, a.batch_size, !a.json)?;
    if a.json {
        println!("{}", serde_json::to_string(&out.scores)?);
    } else {
        for (k, v) in &out.scores.0 {
            println!("{k:<10} {v:.2}");
        }
        println!(
            "decode     {:.1} tokens/s, {:.2} examples/s",
            out.tokens_per_s, out.examples_per_s
        );
    }
    Ok(())
}
