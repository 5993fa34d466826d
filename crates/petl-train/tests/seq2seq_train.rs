//! Encoder-decoder training through `petl_train::train`: the tiny random BART and mBART of
//! petl-models' parity goldens (whose forward passes match transformers), given a word-level
//! tokenizer over the commonest words of the real WMT16 en-ro test set, learn to translate a
//! few dozen of its sentence pairs.
//!
//! Checked: the target layout each family needs (BART `<s> … </s>` after `</s>`; mBART
//! `… </s> ro_RO` after `ro_RO`), that the training loss equals the cross-entropy of the full
//! logits at the labelled positions, that LoRA, prefix tuning (three prefix generators) and
//! MAM bring the loss down, and that the saved artifact reloads to the same translations.
//!
//! The data is read from `$PETL_SHARED_DATA` (default `../shared/data` beside the checkout).

mod common;

use candle_core::{Device, Tensor};
use common::{
    logged_losses, model_dir, saved_predictions, shared_data, wmt_en_ro, BART_SPECIALS, MARIAN_SPECIALS,
    TRAIN,
};

/// Pairs evaluated.
const EVAL: usize = 6;
use petl_data::{GenExample, IGNORE_INDEX};
use petl_methods::preset;
use petl_models::{ForwardCtx, Precision, Seq2SeqInput};
use petl_train::generation::{
    evaluate_task, train_generation, EncodedSet, GenArch, GenBase, GenBatch, GenData, GenTask, GenTaskModel,
    TextCodec,
};
use petl_train::{RunConfig, TaskSource, TrainConfig, TrainOptions};
use serde_json::{json, Value};
use std::path::Path;

fn wmt_task() -> GenTask {
    wmt_en_ro(20)
}

fn run_config(model: &Path, method: &str) -> RunConfig {
    RunConfig {
        model: model.to_path_buf(),
        task: TaskSource::Generation(Box::new(wmt_task())),
        method: preset(method).unwrap(),
        pooling: Default::default(),
        init: None,
        train: TrainConfig {
            epochs: 12,
            batch_size: 8,
            eval_batch_size: 8,
            lr: 1e-2,
            warmup_ratio: 0.0,
            max_len: 24,
            eval_rows: Some(EVAL),
            // One evaluation, at the end: the artifact is the trained state.
            eval_every: 1000,
            log_every: 1,
            seed: 3,
            ..TrainConfig::default()
        },
    }
}

/// The mean training loss of the first and of the last logged steps.
fn first_and_last_loss(run: &Path) -> (f64, f64) {
    let losses: Vec<f64> = logged_losses(run).into_iter().map(|(_, l)| l).collect();
    assert!(losses.len() >= 9, "too few logged steps: {losses:?}");
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (mean(&losses[..3]), mean(&losses[losses.len() - 3..]))
}

/// Trains `method` on `model`, checks the loss fell by `factor`, and reloads the artifact:
/// its translations of the evaluation pairs equal the run's `predictions.jsonl`.
fn train_and_reload(model: &Path, method: &str, factor: f64) {
    let run = tempfile::tempdir().unwrap();
    let cfg = run_config(model, method);
    train_generation(&cfg, &wmt_task(), run.path(), &TrainOptions::default(), false).unwrap();
    let (first, last) = first_and_last_loss(run.path());
    assert!(
        last < factor * first,
        "{method}: loss went from {first:.3} to {last:.3}"
    );

    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["dev"]["bleu"].is_number(), "{metrics}");
    let saved: Vec<(String, usize)> = std::fs::read_to_string(run.path().join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["prediction"].as_str().unwrap().to_string(),
                v["tokens"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(saved.len(), EVAL);

    let base = GenBase::load(model, &Device::Cpu, Precision::F32).unwrap();
    let tm = GenTaskModel::from_artifact(&base, &run.path().join("artifact")).unwrap();
    let out = evaluate_task(&tm, &wmt_task(), 24, Some(EVAL), 8, false).unwrap();
    let again: Vec<(String, usize)> = out
        .predictions
        .iter()
        .map(|p| (p.prediction.clone(), p.tokens))
        .collect();
    assert_eq!(
        again, saved,
        "{method}: the reloaded artifact translates differently"
    );

    // The artifact carries what was learnt: its loss on the training pairs is far below the
    // frozen base's.
    let task = wmt_task();
    let (train, _) = task.split().unwrap();
    let codec = TextCodec::for_task(&base, &task, &train.kind, 24).unwrap();
    let batch = codec
        .encode_all(&train.examples)
        .unwrap()
        .collate(&(0..TRAIN).collect::<Vec<_>>(), base.special().pad)
        .unwrap();
    let frozen = GenTaskModel::frozen(&base, json!({"kind": "generation"})).unwrap();
    let mean_loss = |m: &GenTaskModel<'_>| {
        let (sum, n) = m.loss_sum(&batch, 0.0, &mut ForwardCtx::eval()).unwrap();
        sum.to_scalar::<f32>().unwrap() as f64 / n as f64
    };
    let (tuned, before) = (mean_loss(&tm), mean_loss(&frozen));
    eprintln!("{method}: training loss {first:.3} -> {last:.3}; reloaded {tuned:.3}, frozen {before:.3}");
    assert!(
        tuned < factor * before,
        "{method}: reloaded loss {tuned:.3}, frozen {before:.3}"
    );
}

#[test]
fn bart_targets_start_with_bos_after_the_decoder_start() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), "tiny-bart", BART_SPECIALS, &[], &[]);
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    assert!(base.is_encoder_decoder());
    let task = wmt_task();
    let (train, _) = task.split().unwrap();
    let codec = TextCodec::for_task(&base, &task, &train.kind, 24).unwrap();
    let EncodedSet::Seq2Seq(enc) = codec.encode_all(&train.examples[..2]).unwrap() else {
        panic!("BART is encoded as source/target pairs");
    };
    // BART: decoder_start_token_id 2 (`</s>`), labels `<s> … </s>`, source `<s> … </s>`.
    let e = &enc[0];
    assert_eq!(e.decoder_input_ids()[..2], [2, 0]);
    assert_eq!(e.labels()[0], 0);
    assert_eq!(*e.labels().last().unwrap(), 2);
    assert_eq!(e.source_ids()[0], 0);
    assert_eq!(*e.source_ids().last().unwrap(), 2);
    assert!(e.labels().len() <= 20 && e.source_ids().len() <= 24);
}

#[test]
fn mbart_targets_end_with_the_target_language_code() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(
        root.path(),
        "tiny-mbart",
        BART_SPECIALS,
        &["en_XX", "ro_RO"],
        &["</s>", "en_XX"],
    );
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let ro = base.tokenizer().token_to_id("ro_RO").unwrap();
    let en = base.tokenizer().token_to_id("en_XX").unwrap();
    let task = wmt_task();
    let (train, _) = task.split().unwrap();
    let codec = TextCodec::for_task(&base, &task, &train.kind, 24).unwrap();
    let EncodedSet::Seq2Seq(enc) = codec.encode_all(&train.examples[..1]).unwrap() else {
        panic!("mBART is encoded as source/target pairs");
    };
    let e = &enc[0];
    assert_eq!(e.labels()[e.labels().len() - 2..], [2, ro]);
    assert_eq!(e.decoder_input_ids()[0], ro);
    assert_eq!(e.source_ids()[e.source_ids().len() - 2..], [2, en]);

    // The other direction asks for en_XX; a language the tokenizer lacks is a named error.
    let mut back = task.clone();
    back.data = GenData::Wmt16 {
        dir: shared_data().join("wmt16_en_ro"),
        stem: "newstest2016".into(),
        direction: "ro-en".into(),
    };
    let codec = TextCodec::for_task(&base, &back, &train.kind, 24).unwrap();
    let EncodedSet::Seq2Seq(enc) = codec.encode_all(&train.examples[..1]).unwrap() else {
        panic!()
    };
    assert_eq!(enc[0].decoder_input_ids()[0], en);
    let err = base.seq2seq_format(Some("de")).unwrap_err().to_string();
    assert!(err.contains("de_XX"), "{err}");

    // A prompt template means nothing to an encoder-decoder.
    let mut templated = task.clone();
    templated.template = Some("Translate: {source}".into());
    let err = TextCodec::for_task(&base, &templated, &train.kind, 24)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder-decoder"), "{err}");
}

/// `loss_sum` (LM head at the labelled positions only, fused cross-entropy) equals the
/// cross-entropy of the full logits at every labelled position, summed.
#[test]
fn seq2seq_loss_equals_cross_entropy_of_the_full_logits() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), "tiny-bart", BART_SPECIALS, &[], &[]);
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let task = wmt_task();
    let (train, _) = task.split().unwrap();
    let examples: Vec<GenExample> = train.examples[..3].to_vec();
    let codec = TextCodec::for_task(&base, &task, &train.kind, 24).unwrap();
    let set = codec.encode_all(&examples).unwrap();
    let GenBatch::Seq2Seq(batch) = set.collate(&[0, 1, 2], base.special().pad).unwrap() else {
        panic!()
    };
    let tm = GenTaskModel::new(&base, &preset("lora").unwrap(), json!({"kind": "generation"}), 1).unwrap();
    let (sum, n) = tm
        .loss_sum(&GenBatch::Seq2Seq(batch.clone()), 0.0, &mut ForwardCtx::eval())
        .unwrap();
    assert_eq!(n, batch.target_tokens);

    let GenArch::Seq2Seq(model) = base.arch() else {
        panic!()
    };
    let (rows, s, t) = (batch.batch_size, batch.source_len, batch.target_len);
    let input = Seq2SeqInput {
        input_ids: Tensor::from_slice(&batch.input_ids, (rows, s), &Device::Cpu).unwrap(),
        attention_mask: Tensor::from_slice(&batch.attention_mask, (rows, s), &Device::Cpu).unwrap(),
        decoder_input_ids: Tensor::from_slice(&batch.decoder_input_ids, (rows, t), &Device::Cpu).unwrap(),
        decoder_attention_mask: Some(
            Tensor::from_slice(&batch.decoder_attention_mask, (rows, t), &Device::Cpu).unwrap(),
        ),
    };
    let ctx = &mut ForwardCtx::eval();
    let (_, hidden) = model.forward(&input, tm.delta(), ctx).unwrap();
    let logits = model.lm_logits(&hidden, tm.delta(), ctx).unwrap();
    let logits = logits.to_vec3::<f32>().unwrap();
    let mut want = 0f64;
    for (r, row_logits) in logits.iter().enumerate() {
        for (p, row) in row_logits.iter().enumerate() {
            let label = batch.labels[r * t + p];
            if label == IGNORE_INDEX {
                continue;
            }
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            want += lse - row[label as usize] as f64;
        }
    }
    let got = sum.to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-4 * want.abs(), "loss_sum {got} vs {want}");
}

#[test]
fn bart_lora_trains_and_its_artifact_reloads_to_the_same_translations() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), "tiny-bart", BART_SPECIALS, &[], &[]);
    train_and_reload(&dir, "lora", 0.7);
}

/// Prefix tuning on an encoder-decoder has three prefix generators (encoder self-attention,
/// decoder self-attention, cross-attention); MAM adds a scaled parallel adapter at the FFNs.
#[test]
fn mbart_prefix_and_mam_train_and_reload() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(
        root.path(),
        "tiny-mbart",
        BART_SPECIALS,
        &["en_XX", "ro_RO"],
        &["</s>", "en_XX"],
    );
    train_and_reload(&dir, "prefix", 0.7);
    train_and_reload(&dir, "mam", 0.7);
}

/// Diff pruning on an encoder-decoder, all three stages: L0-gated dense diff, projection to
/// exactly 0.5% of the base parameters, fixed-mask fine-tuning. The artifact stores only the
/// kept entries and reloads to the same translations.
#[test]
fn bart_diff_pruning_stores_an_exact_sparse_diff_that_reloads() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), "tiny-bart", BART_SPECIALS, &[], &[]);
    let run = tempfile::tempdir().unwrap();
    let mut cfg = run_config(&dir, "diff-pruning");
    cfg.train.epochs = 4;
    let summary = train_generation(&cfg, &wmt_task(), run.path(), &TrainOptions::default(), false).unwrap();
    assert_eq!(summary.method, "diff-pruning");

    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let base_params = petl_models::BaseModel::num_base_params(&base);
    let want = (0.005 * base_params as f64).round() as u64;
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("diff-pruning.json")).unwrap())
            .unwrap();
    assert_eq!(report["projection"]["kept"].as_u64().unwrap(), want, "{report}");
    assert!(report["projected_dev_headline"].is_number(), "{report}");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("artifact/artifact.json")).unwrap())
            .unwrap();
    assert_eq!(meta["sparse_diff"]["nnz"].as_u64().unwrap(), want, "{meta}");
    assert_eq!(meta["stored_params"].as_u64().unwrap(), want, "{meta}");

    let tm = GenTaskModel::from_artifact(&base, &run.path().join("artifact")).unwrap();
    let out = evaluate_task(&tm, &wmt_task(), 24, Some(EVAL), 8, false).unwrap();
    let saved = saved_predictions(&run.path().join("stage3/predictions.jsonl"));
    let again: Vec<String> = out.predictions.iter().map(|p| p.prediction.clone()).collect();
    assert_eq!(again, saved);
    let (first, last) = first_and_last_loss(&run.path().join("stage1"));
    eprintln!(
        "diff pruning: stage 1 loss {first:.3} -> {last:.3}; stage 3 {:?}",
        first_and_last_loss(&run.path().join("stage3"))
    );
    assert!(last < first, "stage 1 loss went from {first:.3} to {last:.3}");
}

/// Marian (sinusoidal positions, decoder start = padding, targets `… </s>`) trains through
/// the same loop.
#[test]
fn marian_lora_trains_and_reloads() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), "tiny-marian", MARIAN_SPECIALS, &[], &["</s>"]);
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let task = wmt_task();
    let (train, _) = task.split().unwrap();
    let codec = TextCodec::for_task(&base, &task, &train.kind, 24).unwrap();
    let EncodedSet::Seq2Seq(enc) = codec.encode_all(&train.examples[..1]).unwrap() else {
        panic!("Marian is encoded as source/target pairs");
    };
    // Decoder start 95 (the padding id), labels and source ending in `</s>` (0).
    assert_eq!(enc[0].decoder_input_ids()[0], 95);
    assert_eq!(*enc[0].labels().last().unwrap(), 0);
    assert_eq!(*enc[0].source_ids().last().unwrap(), 0);
    drop(base);
    // Sinusoidal positions and LoRA on q/v only: a little slower to move than BART here.
    train_and_reload(&dir, "lora", 0.75);
}
