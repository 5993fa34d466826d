//! Where a mixed-task forward's time goes: one MiniLM forward of 32 SST-2 sentences with no
//! delta, with 32 tasks' (empty) hooks through `RowGroups`, and with 32 sparse-diff tasks'
//! corrections (a call per task per hook point, or one pass per hook point), against the diff
//! written into the base.
//!
//! `cargo run --release -p petl-serve --example mixed_forward -- runs/loadtest/tasks path/to/SST-2/dev.tsv`

use candle_core::Device;
use petl_data::{collate, Example, Label, TextEncoder};
use petl_methods::diff::{apply_diff, CorrectionGroups, SparseCorrection};
use petl_models::{EncoderInput, EncoderModel, ForwardCtx, Hooks, ModelDir, NoHooks, RowGroups};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let tasks = std::path::PathBuf::from(args.get(1).ok_or("usage: mixed_forward TASK_DIR SST2_DEV")?);
    let dev = std::fs::read_to_string(args.get(2).ok_or("usage: mixed_forward TASK_DIR SST2_DEV")?)?;
    let dir = ModelDir::open(petl_hub::ensure("minilm")?)?;
    let model = EncoderModel::load(&dir, &Device::Cpu)?;
    let encoder = TextEncoder::from_file(&dir.tokenizer_path()?, 128)?;
    let rows = 32;
    let encoded: Vec<_> = dev
        .lines()
        .skip(1)
        .take(rows)
        .map(|l| {
            encoder.encode(&Example {
                text_a: l.split('\t').next().unwrap_or_default().to_string(),
                text_b: None,
                label: Label::Unlabeled,
            })
        })
        .collect::<Result<_, _>>()?;
    let batch = collate(&encoded.iter().collect::<Vec<_>>(), encoder.pad_id())?;
    let input = EncoderInput::from_host(
        &batch.input_ids,
        &batch.type_ids,
        &batch.attention_mask,
        batch.batch_size,
        batch.seq_len,
        &Device::Cpu,
    )?;
    let diffs: Vec<_> = (0..rows)
        .map(|i| {
            let d = tasks.join(format!("diff-{i:04}"));
            let meta = petl_artifact::load_meta(&d)?;
            Ok::<_, Box<dyn std::error::Error>>(petl_artifact::load_sparse(&d, &meta)?.ok_or("no diff")?.diff)
        })
        .collect::<Result<_, _>>()?;
    let corrections: Vec<SparseCorrection> = diffs
        .iter()
        .map(|d| SparseCorrection::new(&model, d))
        .collect::<Result<_, _>>()?;
    let time = |name: &str, hooks: &dyn Hooks| -> Result<(), Box<dyn std::error::Error>> {
        model.forward(&input, hooks, &mut ForwardCtx::eval())?;
        // The fastest of several runs: the machine's other work only ever adds time.
        let mut best = f64::INFINITY;
        for _ in 0..8 {
            let start = Instant::now();
            model.forward(&input, hooks, &mut ForwardCtx::eval())?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!("{name:<40} {:>7.1} ms", best * 1000.0);
        Ok(())
    };
    println!("{rows} rows × {} tokens", batch.seq_len);
    time("no delta", &NoHooks)?;
    let applied = apply_diff(&model, &diffs[0])?;
    time("one diff written into the base", &NoHooks)?;
    applied.remove(&model)?;
    let empty: Vec<(std::ops::Range<usize>, &dyn Hooks)> =
        (0..rows).map(|i| (i..i + 1, &NoHooks as &dyn Hooks)).collect();
    time("32 row groups, no delta", &RowGroups::new(empty)?)?;
    let one: Vec<(std::ops::Range<usize>, &dyn Hooks)> = vec![(0..rows, &corrections[0] as &dyn Hooks)];
    time("1 diff as corrections on all rows", &RowGroups::new(one)?)?;
    let mixed: Vec<(std::ops::Range<usize>, &dyn Hooks)> = (0..rows)
        .map(|i| (i..i + 1, &corrections[i] as &dyn Hooks))
        .collect();
    time("32 diffs as corrections, one row each", &RowGroups::new(mixed)?)?;
    let grouped = CorrectionGroups::new((0..rows).map(|i| (i..i + 1, &corrections[i])).collect())?;
    time("32 diffs, one pass per hook point", &grouped)?;
    Ok(())
}
