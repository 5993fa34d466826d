//! Same weights ⇒ same outputs as Hugging Face `peft` 0.21 for LoRA, IA³, prefix tuning (flat
//! and MLP-generated) and prompt tuning, on the tiny random BERT. Goldens and the mapping from
//! peft's tensor names to petl's come from `tests/golden/gen/make_peft_golden.py`.
//!
//! peft drops `token_type_ids` for prompt-learning methods, so those goldens hold two outputs:
//! `hidden` (peft's, all token types 0) and `hidden_with_token_types` (the same computation with
//! the input's token types, which is what petl does with them).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs_diff, tiny};
use petl_methods::{Delta, Method};
use petl_models::{EncoderInput, EncoderModel, ForwardCtx, ParamStore};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

const TOLERANCE: f32 = 1e-4;

fn golden(case: &str) -> (Method, HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("peft-{case}"));
    let method: Method =
        serde_json::from_str(&std::fs::read_to_string(dir.join("method.json")).unwrap()).unwrap();
    let tensors = candle_core::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu).unwrap();
    (method, tensors)
}

fn input(g: &HashMap<String, Tensor>, with_types: bool) -> EncoderInput {
    let ids = |k: &str| g[k].to_dtype(DType::U32).unwrap();
    let types = if with_types {
        ids("token_type_ids")
    } else {
        ids("token_type_ids").zeros_like().unwrap()
    };
    EncoderInput {
        input_ids: ids("input_ids"),
        type_ids: types,
        attention_mask: ids("attention_mask"),
    }
}

fn load(model: &EncoderModel, method: &Method, g: &HashMap<String, Tensor>) -> (ParamStore, Delta) {
    let mut store = ParamStore::new(&Device::Cpu, 0);
    let delta = Delta::build(method, model, &mut store).unwrap();
    let weights: BTreeMap<String, Tensor> = g
        .iter()
        .filter(|(k, _)| k.starts_with("delta"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    store.assign(&weights).unwrap();
    (store, delta)
}

/// Compares petl's last hidden state with peft's at real (unpadded) positions; padded queries
/// are computed but never used.
fn compare(case: &str, model: &EncoderModel, delta: &Delta, g: &HashMap<String, Tensor>, with_types: bool) {
    let expected = if with_types && g.contains_key("hidden_with_token_types") {
        &g["hidden_with_token_types"]
    } else {
        &g["hidden"]
    };
    let out = model
        .forward(&input(g, with_types), delta, &mut ForwardCtx::eval())
        .unwrap();
    assert_eq!(out.hidden.dims(), expected.dims(), "{case}: shape");
    let keep = out.mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let diff = max_abs_diff(
        &out.hidden.broadcast_mul(&keep).unwrap(),
        &expected.broadcast_mul(&keep).unwrap(),
    );
    eprintln!("{case} (token types {with_types}): max |Δ| = {diff:.2e}");
    assert!(diff <= TOLERANCE, "{case}: max |Δ| {diff} against peft");
}

#[test]
fn lora_matches_peft() {
    let model = tiny();
    let (method, g) = golden("lora");
    let (_, delta) = load(&model, &method, &g);
    compare("lora", &model, &delta, &g, true);
}

#[test]
fn ia3_matches_peft() {
    let model = tiny();
    let (method, g) = golden("ia3");
    let (_, delta) = load(&model, &method, &g);
    compare("ia3", &model, &delta, &g, true);
}

#[test]
fn prefix_tuning_matches_peft() {
    let model = tiny();
    let (method, g) = golden("prefix");
    let (_, delta) = load(&model, &method, &g);
    compare("prefix", &model, &delta, &g, false);
    compare("prefix", &model, &delta, &g, true);
}

#[test]
fn generated_prefixes_match_peft_and_eject_to_the_same_function() {
    let model = tiny();
    let (method, g) = golden("prefix-mlp");
    let (store, delta) = load(&model, &method, &g);
    compare("prefix-mlp", &model, &delta, &g, false);
    compare("prefix-mlp", &model, &delta, &g, true);

    // Ejecting stores the generated prefixes, equal to peft's, and nothing of the generator.
    let stored = delta.stored_tensors(&store).unwrap();
    assert!(stored.keys().all(|k| !k.contains("prefix_mlp")));
    for l in 0..2 {
        for part in ["keys", "values"] {
            let ours = &stored[&format!("delta0.layer{l}.prefix.{part}")];
            let theirs = &g[&format!("ejected.layer{l}.prefix.{part}")];
            assert!(max_abs_diff(ours, theirs) <= 1e-6, "ejected layer {l} {part}");
        }
    }
    // The ejected method with the stored tensors computes what the generator did.
    let mut flat_store = ParamStore::new(&Device::Cpu, 0);
    let flat = Delta::build(&method.ejected(), &model, &mut flat_store).unwrap();
    flat_store.assign(&stored).unwrap();
    let run = |d: &Delta| {
        model
            .forward(&input(&g, true), d, &mut ForwardCtx::eval())
            .unwrap()
            .hidden
    };
    assert!(max_abs_diff(&run(&delta), &run(&flat)) <= 1e-6);
}

#[test]
fn prompt_tuning_matches_peft() {
    let model = tiny();
    let (method, g) = golden("prompt");
    let (_, delta) = load(&model, &method, &g);
    compare("prompt", &model, &delta, &g, false);
    compare("prompt", &model, &delta, &g, true);
}
