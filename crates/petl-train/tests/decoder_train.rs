//! Decoder-only training beyond what the SmolLM2 runs show: activation checkpointing in the
//! generation loss gives the plain backward's gradients, and diff pruning on a Llama-family
//! decoder (the tiny random Llama of petl-models' goldens with a word-level tokenizer over real
//! WMT16 text) runs all three stages with checkpointing on and stores an exact sparse diff.

mod common;

use candle_core::Device;
use common::{logged_losses, model_dir, saved_predictions, wmt_en_ro, LLAMA_SPECIALS};
use petl_methods::preset;
use petl_models::{ForwardCtx, Precision};
use petl_ops::DropoutRng;
use petl_train::generation::{evaluate_task, train_generation, GenBase, GenTask, GenTaskModel, TextCodec};
use petl_train::{RunConfig, TaskSource, TrainConfig, TrainOptions};
use serde_json::{json, Value};
use std::path::Path;

/// Pairs evaluated.
const EVAL: usize = 4;

fn task() -> GenTask {
    wmt_en_ro(16)
}

fn tiny_llama(root: &Path) -> std::path::PathBuf {
    model_dir(root, "tiny-llama", LLAMA_SPECIALS, &[], &[])
}

/// The checkpointed backward (one block recomputed at a time) gives the gradients of the
/// plain backward, with LoRA's dropout drawing the same masks in both.
#[test]
fn checkpointed_gradients_equal_the_plain_backward() {
    let root = tempfile::tempdir().unwrap();
    let base = GenBase::load(&tiny_llama(root.path()), &Device::Cpu, Precision::F32).unwrap();
    let task = task();
    let (train, _) = task.split().unwrap();
    let codec = TextCodec::for_task(&base, &task, &train.kind, 48).unwrap();
    let batch = codec
        .encode_all(&train.examples[..6])
        .unwrap()
        .collate(&[0, 1, 2, 3, 4, 5], base.special().pad)
        .unwrap();
    for method in ["lora", "mam", "prefix"] {
        let tm =
            GenTaskModel::new(&base, &preset(method).unwrap(), json!({"kind": "generation"}), 5).unwrap();
        let ctx = || ForwardCtx::train(DropoutRng::for_step(9, 0));
        let (sum, n) = tm.loss_sum(&batch, 0.1, &mut ctx()).unwrap();
        let weight = 1.0 / n as f64;
        let plain = (sum * weight).unwrap().backward().unwrap();
        let (ck_sum, ck_n, ck) = tm
            .loss_and_grads_checkpointed(&batch, 0.1, weight, &mut ctx())
            .unwrap();
        assert_eq!(ck_n, n);
        let (sum, _) = tm.loss_sum(&batch, 0.1, &mut ctx()).unwrap();
        let sum = sum.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (ck_sum - sum).abs() < 1e-4 * sum,
            "{method}: loss {ck_sum} vs {sum}"
        );
        let mut worst = 0f64;
        for (name, var) in tm.params().iter() {
            let a = plain.get(var).expect("plain gradient");
            let b = &ck[name];
            let diff = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
            let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() as f64;
            worst = worst.max(diff / scale.max(1e-12));
        }
        eprintln!("{method}: checkpointed vs plain gradients, max relative difference {worst:.2e}");
        assert!(worst < 1e-4, "{method}: {worst}");
    }
}

/// Diff pruning on the decoder with activation checkpointing: exactly 0.5% of the base
/// parameters kept, and the sparse artifact reloads to the run's own predictions.
#[test]
fn llama_diff_pruning_with_checkpointing_stores_an_exact_sparse_diff() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_llama(root.path());
    let run = tempfile::tempdir().unwrap();
    let cfg = RunConfig {
        model: dir.clone(),
        task: TaskSource::Generation(Box::new(task())),
        method: preset("diff-pruning").unwrap(),
        pooling: Default::default(),
        init: None,
        train: TrainConfig {
            epochs: 3,
            batch_size: 8,
            eval_batch_size: 4,
            lr: 1e-2,
            warmup_ratio: 0.0,
            max_len: 48,
            eval_rows: Some(EVAL),
            eval_every: 1000,
            log_every: 1,
            seed: 3,
            checkpoint_activations: true,
            ..TrainConfig::default()
        },
    };
    train_generation(&cfg, &task(), run.path(), &TrainOptions::default(), false).unwrap();
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let want = (0.005 * petl_models::BaseModel::num_base_params(&base) as f64).round() as u64;
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("artifact/artifact.json")).unwrap())
            .unwrap();
    assert_eq!(meta["sparse_diff"]["nnz"].as_u64().unwrap(), want, "{meta}");

    let tm = GenTaskModel::from_artifact(&base, &run.path().join("artifact")).unwrap();
    let out = evaluate_task(&tm, &task(), 48, Some(EVAL), 4, false).unwrap();
    let saved = saved_predictions(&run.path().join("stage3/predictions.jsonl"));
    let again: Vec<String> = out.predictions.iter().map(|p| p.prediction.clone()).collect();
    assert_eq!(again, saved);
    // Stage 1 learnt: its logged loss fell.
    let losses = logged_losses(&run.path().join("stage1"));
    let (first, last) = (losses[0].1, losses[losses.len() - 1].1);
    eprintln!("diff pruning on the decoder: stage 1 loss {first:.3} -> {last:.3}");
    assert!(last < first, "stage 1 loss {first} -> {last}");
}

/// A generation run killed after 3 steps and resumed from its last checkpoint ends exactly
/// where an uninterrupted run does: the same losses at every step, the same artifact bytes.
#[test]
fn a_killed_generation_run_resumes_to_the_same_result() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_llama(root.path());
    let cfg = RunConfig {
        model: dir,
        task: TaskSource::Generation(Box::new(task())),
        method: preset("lora").unwrap(),
        pooling: Default::default(),
        init: None,
        train: TrainConfig {
            epochs: 2,
            batch_size: 4,
            eval_batch_size: 4,
            lr: 5e-3,
            max_len: 48,
            eval_rows: Some(EVAL),
            eval_every: 1000,
            checkpoint_every: 2,
            log_every: 1,
            seed: 11,
            ..TrainConfig::default()
        },
    };
    let whole = tempfile::tempdir().unwrap();
    train_generation(&cfg, &task(), whole.path(), &TrainOptions::default(), true).unwrap();

    let killed = tempfile::tempdir().unwrap();
    let stop = TrainOptions {
        stop_after: Some(3),
        ..TrainOptions::default()
    };
    let err = train_generation(&cfg, &task(), killed.path(), &stop, true).unwrap_err();
    assert!(err.to_string().contains("stopped after 3 steps"), "{err}");
    // Without --resume the directory is refused; with it, the run continues from step 2.
    assert!(train_generation(&cfg, &task(), killed.path(), &TrainOptions::default(), true).is_err());
    let resume = TrainOptions {
        resume: true,
        ..TrainOptions::default()
    };
    let summary = train_generation(&cfg, &task(), killed.path(), &resume, true).unwrap();
    assert!(
        summary.base_eval.is_some(),
        "the base's scores come back from the log"
    );

    let (a, b) = (logged_losses(whole.path()), logged_losses(killed.path()));
    assert_eq!(a.len(), 12, "{a:?}");
    assert_eq!(a, b);
    let weights = |run: &Path| std::fs::read(run.join("artifact/weights.safetensors")).unwrap();
    assert_eq!(weights(whole.path()), weights(killed.path()));
}
