//! Methods on the Llama-family decoder: the same `Delta` as on the encoder, through the same hook
//! points, matching Hugging Face `peft` (LoRA logits and gradients, prefix tuning with
//! key/value-wide prefixes under grouped-query attention) and hand-done prompt tuning. Goldens:
//! `crates/petl-models/tests/golden/gen/make_decoder_golden.py` (tiny-llama: GQA, llama3 rope,
//! tied head; tiny-qwen2: q/k/v biases, untied head).

mod common;

use candle_core::{DType, Device, Tensor};
use petl_methods::{Delta, Form, InitScheme, Method, PRESETS};
use petl_models::{BaseModel, DecoderInput, DecoderModel, ForwardCtx, ModelDir, ParamStore};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Logits against peft / transformers, f32.
const TOLERANCE: f32 = 1e-4;
/// Gradients against torch autograd, relative to the largest gradient entry of each tensor.
const GRAD_TOLERANCE: f32 = 1e-4;

fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../petl-models/tests/golden")
        .join(case)
}

fn model(case: &str) -> DecoderModel {
    DecoderModel::load(&ModelDir::open(dir(case)).unwrap(), &Device::Cpu).unwrap()
}

fn golden(case: &str) -> (Value, HashMap<String, Tensor>) {
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir(case).join("golden.json")).unwrap()).unwrap();
    let tensors = candle_core::safetensors::load(dir(case).join("golden.safetensors"), &Device::Cpu).unwrap();
    (json, tensors)
}

fn input(v: &Value) -> DecoderInput {
    let rows = |k: &str| -> Vec<Vec<u32>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect()
    };
    let (ids, mask) = (rows("input_ids"), rows("attention_mask"));
    DecoderInput::from_host(
        &ids.concat(),
        &mask.concat(),
        ids.len(),
        ids[0].len(),
        &Device::Cpu,
    )
    .unwrap()
}

/// The delta of `method` with its tensors set from the golden entries under `prefix`.
fn load(
    model: &DecoderModel,
    method: &Method,
    g: &HashMap<String, Tensor>,
    prefix: &str,
) -> (ParamStore, Delta) {
    let mut store = ParamStore::new(&Device::Cpu, 0);
    let delta = Delta::build(method, model, &mut store).unwrap();
    let weights: BTreeMap<String, Tensor> = g
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
        .filter(|(k, _)| k.starts_with("delta"))
        .collect();
    assert_eq!(weights.len(), store.len(), "every parameter has a golden value");
    store.assign(&weights).unwrap();
    (store, delta)
}

fn masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let keep = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    (a - b)
        .unwrap()
        .broadcast_mul(&keep)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn logits(model: &DecoderModel, input: &DecoderInput, delta: &dyn petl_models::Hooks) -> (Tensor, Tensor) {
    let mut ctx = ForwardCtx::eval();
    let out = model.forward(input, delta, &mut ctx).unwrap();
    (model.lm_logits(&out.hidden, delta, &mut ctx).unwrap(), out.mask)
}

fn method_of(v: &Value) -> Method {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn lora_matches_peft_logits_and_gradients() {
    for case in ["tiny-llama", "tiny-qwen2"] {
        let m = model(case);
        let (json, g) = golden(case);
        let method = method_of(&json["lora"]["method"]);
        let (store, delta) = load(&m, &method, &g, "lora.");
        let batch = input(&json["right"]);
        let (got, mask) = logits(&m, &batch, &delta);
        let d = masked_diff(&got, &g["lora.logits"], &mask);
        println!("{case} LoRA: max |Δ logits| = {d:.2e}");
        assert!(d <= TOLERANCE, "{case}: LoRA logits differ by {d}");

        // Cross-entropy at a few target positions, the head evaluated there only.
        let targets: Vec<(usize, usize, u32)> = json["lora"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t[0].as_u64().unwrap() as usize,
                    t[1].as_u64().unwrap() as usize,
                    t[2].as_u64().unwrap() as u32,
                )
            })
            .collect();
        let mut ctx = ForwardCtx::eval();
        let out = m.forward(&batch, &delta, &mut ctx).unwrap();
        let at: Vec<(usize, usize)> = targets.iter().map(|&(r, p, _)| (r, p)).collect();
        let picked = m.logits_at(&out.hidden, &at, &delta, &mut ctx).unwrap();
        let tokens = Tensor::from_vec(
            targets.iter().map(|t| t.2).collect::<Vec<_>>(),
            targets.len(),
            &Device::Cpu,
        )
        .unwrap();
        let loss = petl_ops::cross_entropy(&picked, &tokens).unwrap();
        let want_loss = json["lora"]["loss"].as_f64().unwrap() as f32;
        let got_loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            (got_loss - want_loss).abs() <= TOLERANCE * want_loss.abs().max(1.0),
            "{case}: loss {got_loss} vs {want_loss}"
        );
        let grads = loss.backward().unwrap();
        let mut worst = 0f32;
        for (name, var) in store.iter() {
            let got = grads
                .get(var)
                .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
            let want = &g[&format!("lora.grad.{name}")];
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(scale > 0.0, "{case}: torch's gradient of {name} is zero");
            let d = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                / scale;
            worst = worst.max(d);
        }
        println!(
            "{case} LoRA: loss {got_loss:.6} (torch {want_loss:.6}), max relative |Δ grad| = {worst:.2e}"
        );
        assert!(
            worst <= GRAD_TOLERANCE,
            "{case}: LoRA gradients differ by {worst} (relative)"
        );

        // Folded into the weights (the projections have no bias), the delta gives the same logits.
        let merged = delta.merged(&m).unwrap();
        assert_eq!(merged.num_merged(), 2 * m.config().num_layers);
        let (folded, _) = logits(&m, &batch, &merged);
        let d = masked_diff(&folded, &g["lora.logits"], &mask);
        assert!(d <= TOLERANCE, "{case}: merged LoRA differs by {d}");
    }
}

#[test]
fn prefix_tuning_matches_peft_with_key_value_wide_prefixes() {
    let m = model("tiny-llama");
    let (json, g) = golden("tiny-llama");
    let method = method_of(&json["peft_prefix"]["method"]);
    let (store, delta) = load(&m, &method, &g, "peft_prefix.");
    // Under grouped-query attention a prefix is as wide as the keys: 2 heads of 16, not 64.
    let kv_dim = m.config().kv_dim();
    assert_eq!(
        store.get("delta0.layer0.prefix.keys").unwrap().dims(),
        [3, kv_dim]
    );
    assert_eq!(method.count(&m.shape()).trainable, store.num_elements());
    let (got, mask) = logits(&m, &input(&json["right"]), &delta);
    let d = masked_diff(&got, &g["peft_prefix.logits"], &mask);
    println!("tiny-llama prefix tuning: max |Δ logits| = {d:.2e}");
    assert!(d <= TOLERANCE, "prefix logits differ by {d}");
}

#[test]
fn prompt_tuning_matches_transformers_with_prepended_rows() {
    for case in ["tiny-llama", "tiny-qwen2"] {
        let m = model(case);
        let (json, g) = golden(case);
        let (_, delta) = load(&m, &method_of(&json["prompt"]["method"]), &g, "prompt.");
        let (got, mask) = logits(&m, &input(&json["left"]), &delta);
        let d = masked_diff(&got, &g["prompt.logits"], &mask);
        println!("{case} prompt tuning: max |Δ logits| = {d:.2e}");
        assert!(d <= TOLERANCE, "{case}: prompt logits differ by {d}");
    }
}

/// Every preset builds on the decoder with the parameter count `count` predicts, trains (each
/// trainable tensor gets a finite, non-zero gradient through the decoder's hook points), and
/// decodes from a cache exactly as the full forward computes.
#[test]
fn every_preset_trains_and_decodes_on_the_decoder() {
    let m = model("tiny-llama");
    let shape = m.shape();
    let batch = DecoderInput::from_host(
        &[0, 5, 6, 7, 8, 9, 10, 11],
        &[0, 1, 1, 1, 1, 1, 1, 1],
        2,
        4,
        &Device::Cpu,
    )
    .unwrap();
    for p in PRESETS {
        let mut method = p.method();
        for d in &mut method.deltas {
            let n = if matches!(d.form, Form::Prompt { .. }) {
                3
            } else {
                4
            };
            d.form.set_bottleneck(n);
            if let Form::Prefix { reparam: Some(h), .. } = &mut d.form {
                *h = 8;
            }
            // Non-zero up-projections, so the down-projections see a gradient too.
            d.init = InitScheme::Bert;
        }
        let mut store = ParamStore::new(&Device::Cpu, 5);
        let delta = Delta::build(&method, &m, &mut store).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        assert_eq!(
            method.count(&shape).trainable,
            store.num_elements(),
            "{}: count",
            p.name
        );
        let mut ctx = ForwardCtx::eval();
        let out = m.forward(&batch, &delta, &mut ctx).unwrap();
        let s = out.hidden.dim(1).unwrap();
        let at = [(0, s - 1), (1, s - 2), (1, s - 1)];
        let picked = m.logits_at(&out.hidden, &at, &delta, &mut ctx).unwrap();
        let loss =
            petl_ops::cross_entropy(&picked, &Tensor::new(&[3u32, 9, 77], &Device::Cpu).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let (mut gated, mut closed) = (0, 0);
        for (name, var) in store.iter() {
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{}: no gradient for {name}", p.name));
            let g = g
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{}: non-finite gradient for {name}",
                p.name
            );
            let zero = g.iter().all(|v| *v == 0.0);
            if name.contains("embed_tokens") || name.contains("log_alpha") {
                // Embedding rows of unused tokens, and L0 gates clamped at 0 or 1, rightly get none.
            } else if name.contains(".diff.")
                && method
                    .deltas
                    .iter()
                    .any(|d| matches!(d.form, Form::Diff { l0: Some(_), .. }))
            {
                // The evaluation gate is a fixed sample: it may close a whole tensor's group.
                gated += 1;
                closed += zero as usize;
            } else {
                assert!(!zero, "{}: zero gradient for {name}", p.name);
            }
        }
        assert!(
            closed * 2 < gated.max(1),
            "{}: {closed} of {gated} gated diffs got no gradient",
            p.name
        );
        // The fused attention gives the composed path's loss and gradients in training, dropout
        // on: identity hooks that claim every hook point (the trait's defaults) force the
        // composed path.
        struct Composed;
        impl petl_models::Hooks for Composed {}
        let train_loss = |hooks: &dyn petl_models::Hooks| {
            let mut ctx = ForwardCtx::train(petl_ops::DropoutRng::for_step(5, 1));
            let out = m.forward(&batch, hooks, &mut ctx).unwrap();
            let picked = m.logits_at(&out.hidden, &at, hooks, &mut ctx).unwrap();
            let labels = Tensor::new(&[3u32, 9, 77], &Device::Cpu).unwrap();
            let loss = petl_ops::cross_entropy(&picked, &labels).unwrap();
            (loss.to_scalar::<f32>().unwrap(), loss.backward().unwrap())
        };
        let (fused_loss, fused) = train_loss(&delta);
        let (composed_loss, composed) = train_loss(&petl_models::Chain(&delta, &Composed));
        common::assert_same_pass(p.name, &store, (fused_loss, &fused), (composed_loss, &composed));
        // Prefill + two steps against the full forward over the same tokens.
        let (mut cache, _) = m.prefill(&batch, &delta, &mut ctx).unwrap();
        m.step(&mut cache, &[40, 41], &delta, &mut ctx).unwrap();
        let got = m.step(&mut cache, &[50, 51], &delta, &mut ctx).unwrap();
        let longer = DecoderInput::from_host(
            &[0, 5, 6, 7, 40, 50, 8, 9, 10, 11, 41, 51],
            &[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            2,
            6,
            &Device::Cpu,
        )
        .unwrap();
        let full = m.forward(&longer, &delta, &mut ctx).unwrap();
        let n = full.hidden.dim(1).unwrap();
        let want = m
            .logits_at(&full.hidden, &[(0, n - 1), (1, n - 1)], &delta, &mut ctx)
            .unwrap();
        let d = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d <= TOLERANCE, "{}: cached decoding differs by {d}", p.name);
    }
}

/// Activation checkpointing recomputes each block from its saved input and random stream:
/// the loss and every gradient equal the plain backward's, dropout included.
#[test]
fn checkpointed_backward_equals_the_plain_backward() {
    let m = model("tiny-llama");
    let method: Method = serde_json::from_str(
        r#"{"name": "mix", "delta": [
            {"form": {"kind": "low_rank", "r": 4}, "site": {"weights": ["query", "value", "ffn_gate"]},
             "composition": {"scaled": 2.0}, "dropout": 0.3},
            {"form": {"kind": "prefix", "length": 2, "shift_positions": true}, "site": "heads",
             "composition": "gated", "layers": [1, 2]},
            {"form": {"kind": "prompt", "length": 2}, "site": "embeddings"}]}"#,
    )
    .unwrap();
    let mut store = ParamStore::new(&Device::Cpu, 9);
    let delta = Delta::build(&method, &m, &mut store).unwrap();
    let batch = DecoderInput::from_host(
        &[0, 5, 6, 7, 8, 9, 10, 11],
        &[0, 1, 1, 1, 1, 1, 1, 1],
        2,
        4,
        &Device::Cpu,
    )
    .unwrap();
    let targets = Tensor::new(&[3u32, 9, 77], &Device::Cpu).unwrap();
    let mut tail = |hidden: &Tensor, _mask: &Tensor, ctx: &mut ForwardCtx| -> petl_models::Result<Tensor> {
        let s = hidden.dim(1)?;
        let logits = m.logits_at(hidden, &[(0, s - 1), (1, s - 2), (1, s - 1)], &delta, ctx)?;
        Ok(petl_ops::cross_entropy(&logits, &targets)?)
    };
    let mut ctx = ForwardCtx::train(petl_ops::DropoutRng::new(4));
    let out = m.forward(&batch, &delta, &mut ctx).unwrap();
    let loss = tail(&out.hidden, &out.mask, &mut ctx).unwrap();
    let plain = loss.backward().unwrap();
    let vars: Vec<&candle_core::Var> = store.iter().map(|(_, v)| v).collect();
    let mut ctx = ForwardCtx::train(petl_ops::DropoutRng::new(4));
    let ck = m
        .backward_checkpointed(&batch, &delta, &mut ctx, &vars, &mut tail)
        .unwrap();
    let d = (ck.loss - &loss)
        .unwrap()
        .abs()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-6, "loss differs by {d}");
    for ((name, var), got) in store.iter().zip(&ck.grads) {
        let want = plain
            .get(var)
            .unwrap_or_else(|| panic!("no plain gradient for {name}"));
        let got = got
            .as_ref()
            .unwrap_or_else(|| panic!("no checkpointed gradient for {name}"));
        let d = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "{name}: checkpointed gradient differs by {d}");
    }
}

/// SmolLM2-135M with a LoRA delta, from the directory that
/// `make_decoder_golden.py --smollm2 FILE.gguf --smollm2-hf-out DIR` writes (PETL_SMOLLM2_DIR).
fn smollm2_with_lora() -> (DecoderModel, ParamStore, Delta) {
    petl_ops::reuse_freed_memory();
    let dir = std::env::var("PETL_SMOLLM2_DIR").expect("PETL_SMOLLM2_DIR");
    let m = DecoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap();
    let mut method = petl_methods::preset("lora").unwrap();
    method.deltas[0].form.set_bottleneck(8);
    method.deltas[0].init = InitScheme::Bert;
    let mut store = ParamStore::new(&Device::Cpu, 0);
    let delta = Delta::build(&method, &m, &mut store).unwrap();
    (m, store, delta)
}

fn smollm2_ids(batch: usize, seq: usize) -> Vec<u32> {
    (0..batch * seq).map(|i| (i * 7919 % 49000) as u32 + 10).collect()
}

/// Time of a LoRA training step on SmolLM2-135M, batch 8 × 128, loss on the second half:
/// `PETL_SMOLLM2_DIR=DIR cargo test --release -p petl-methods --test decoder_peft -- --ignored --nocapture`.
#[test]
#[ignore = "needs PETL_SMOLLM2_DIR; a timing run, not a check"]
fn smollm2_lora_step_timing() {
    let (m, store, delta) = smollm2_with_lora();
    let (batch, seq) = (8usize, 128usize);
    let ids = smollm2_ids(batch, seq);
    let input = DecoderInput::from_host(&ids, &vec![1; batch * seq], batch, seq, &Device::Cpu).unwrap();
    let at: Vec<(usize, usize)> = (0..batch)
        .flat_map(|r| (seq / 2..seq - 1).map(move |p| (r, p)))
        .collect();
    let targets: Vec<u32> = at.iter().map(|&(r, p)| ids[r * seq + p + 1]).collect();
    let targets = Tensor::from_vec(targets, at.len(), &Device::Cpu).unwrap();
    for i in 0..4 {
        let t = std::time::Instant::now();
        let mut ctx = ForwardCtx::eval();
        let out = m.forward(&input, &delta, &mut ctx).unwrap();
        let fwd = t.elapsed();
        let logits = m.logits_at(&out.hidden, &at, &delta, &mut ctx).unwrap();
        let loss = petl_ops::cross_entropy(&logits, &targets).unwrap();
        let head = t.elapsed();
        let grads = loss.backward().unwrap();
        let total = t.elapsed();
        assert_eq!(
            store.iter().filter(|(_, v)| grads.get(v).is_some()).count(),
            store.len()
        );
        println!(
            "step {i}: batch {batch}×{seq}, {} targets: forward {:.0} ms, + head/loss {:.0} ms, + backward {:.0} ms = {:.0} ms",
            at.len(),
            fwd.as_secs_f64() * 1e3,
            (head - fwd).as_secs_f64() * 1e3,
            (total - head).as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
    }
}

/// Time of cached greedy decoding on SmolLM2-135M with LoRA: 8 left-padded prompts of 57–64
/// tokens, 32 steps (run as [`smollm2_lora_step_timing`]).
#[test]
#[ignore = "needs PETL_SMOLLM2_DIR; a timing run, not a check"]
fn smollm2_decoding_timing() {
    let (m, _store, delta) = smollm2_with_lora();
    let batch = 8;
    let ids = smollm2_ids(batch, 64);
    let prompts: Vec<&[u32]> = (0..batch).map(|r| &ids[r * 64..r * 64 + 64 - r]).collect();
    let input = DecoderInput::left_padded(&prompts, 2, &Device::Cpu).unwrap();
    let mut ctx = ForwardCtx::eval();
    let t = std::time::Instant::now();
    let (mut cache, mut logits) = m.prefill(&input, &delta, &mut ctx).unwrap();
    let prefill = t.elapsed();
    let t = std::time::Instant::now();
    let steps = 32;
    for _ in 0..steps {
        let next = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        logits = m.step(&mut cache, &next, &delta, &mut ctx).unwrap();
    }
    println!(
        "decoding {batch} rows: prefill of 64 {:.0} ms, {:.1} ms per step over {steps} steps",
        prefill.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3 / steps as f64
    );
}
