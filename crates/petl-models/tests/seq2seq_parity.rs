//! BART, mBART and Marian against Hugging Face `transformers` (golden files written by
//! `tests/golden/gen/make_seq2seq_golden.py`, eager attention, f32): logits, the encoder
//! output, cached decoding against the full decoder and greedy decoding against `generate`,
//! every hook point once per site, and LoRA and prefix hooks against peft / prefixed attention
//! in PyTorch.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs_diff, Counter};
use petl_models::{
    BaseModel, EncoderOutput, ForwardCtx, Hooks, KvPrefix, ModelDir, ModelError, ModelShape, NoHooks, Proj,
    Result, Seq2SeqInput, Seq2SeqModel, Sublayer,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The bound the encoder parity tests hold tiny models to.
const TOLERANCE: f32 = 1e-4;
const CASES: [&str; 3] = ["tiny-bart", "tiny-mbart", "tiny-marian"];

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn load(case: &str) -> (Seq2SeqModel, HashMap<String, Tensor>) {
    let model = Seq2SeqModel::load(&ModelDir::open(golden_dir(case)).unwrap(), &Device::Cpu).unwrap();
    let g =
        candle_core::safetensors::load(golden_dir(case).join("golden.safetensors"), &Device::Cpu).unwrap();
    (model, g)
}

fn u32s(g: &HashMap<String, Tensor>, k: &str) -> Tensor {
    g[k].to_dtype(DType::U32).unwrap()
}

fn input(g: &HashMap<String, Tensor>) -> Seq2SeqInput {
    Seq2SeqInput {
        input_ids: u32s(g, "input_ids"),
        attention_mask: u32s(g, "attention_mask"),
        decoder_input_ids: u32s(g, "decoder_input_ids"),
        decoder_attention_mask: Some(u32s(g, "decoder_attention_mask")),
    }
}

/// Full forward to logits `[batch, t, vocab]`.
fn logits(model: &Seq2SeqModel, input: &Seq2SeqInput, hooks: &dyn Hooks) -> Tensor {
    let mut ctx = ForwardCtx::eval();
    let (_, hidden) = model.forward(input, hooks, &mut ctx).unwrap();
    model.lm_logits(&hidden, hooks, &mut ctx).unwrap()
}

#[test]
fn logits_and_encoder_output_match_transformers() {
    for case in CASES {
        let (model, g) = load(case);
        let input = input(&g);
        let mut ctx = ForwardCtx::eval();
        let (encoded, hidden) = model.forward(&input, &NoHooks, &mut ctx).unwrap();
        let logits = model.lm_logits(&hidden, &NoHooks, &mut ctx).unwrap();
        let de = max_abs_diff(&encoded.hidden, &g["encoder_last_hidden_state"]);
        let dl = max_abs_diff(&logits, &g["logits"]);
        println!("{case}: max |Δ encoder| = {de:.2e}, max |Δ logits| = {dl:.2e}");
        assert!(de <= TOLERANCE, "{case} encoder output differs by {de}");
        assert!(dl <= TOLERANCE, "{case} logits differ by {dl}");
        // The decoder inputs are the labels shifted the family's way.
        let shifted = model.shift_right(&u32s(&g, "labels")).unwrap();
        assert_eq!(
            shifted.to_vec2::<u32>().unwrap(),
            input.decoder_input_ids.to_vec2::<u32>().unwrap(),
            "{case}"
        );
    }
}

#[test]
fn the_shape_from_config_json_is_the_loaded_models() {
    for case in CASES {
        let (model, _) = load(case);
        let from_config = ModelShape::from_config_file(&golden_dir(case).join("config.json")).unwrap();
        assert_eq!(model.shape(), from_config, "{case}");
        assert_eq!(model.shape().num_blocks(), 4);
        // transformers: sum(p.numel() for p in model.parameters() if p.requires_grad) of the
        // tiny models (Marian's frozen sinusoidal tables are not parameters to petl).
        let expected = match case {
            "tiny-bart" => 50_176,
            "tiny-mbart" => 50_304,
            _ => 45_824,
        };
        assert_eq!(model.num_base_params(), expected, "{case}");
    }
}

#[test]
fn weight_names_and_layers_cover_both_stacks() {
    let (model, _) = load("tiny-bart");
    assert_eq!(
        model.weight_name(1, Proj::Query).as_deref(),
        Some("encoder.layers.1.self_attn.q_proj.weight")
    );
    assert_eq!(model.weight_name(1, Proj::CrossQuery), None);
    assert_eq!(
        model.weight_name(2, Proj::CrossValue).as_deref(),
        Some("decoder.layers.0.encoder_attn.v_proj.weight")
    );
    assert_eq!(
        model.weight_name(3, Proj::FfnDown).as_deref(),
        Some("decoder.layers.1.fc2.weight")
    );
    assert_eq!(model.weight_name(4, Proj::Query), None);
    assert_eq!(model.weight_name(0, Proj::FfnGate), None);
    for (layer, proj) in [(0, Proj::Key), (3, Proj::CrossOut), (2, Proj::FfnUp)] {
        let name = model.weight_name(layer, proj).unwrap();
        assert!(model.base_params().contains_key(&name), "{name}");
        assert_eq!(model.layer_of(&name), Some(layer));
    }
    assert_eq!(
        model.layer_of("decoder.layers.1.encoder_attn_layer_norm.bias"),
        Some(3)
    );
    assert_eq!(model.layer_of("shared.weight"), None);
    assert_eq!(model.layer_of("decoder.layernorm_embedding.weight"), None);
}

// ----------------------------------------------------------------------------- test hooks

/// LoRA from the golden factors: `linear(P) += 2 · x Aᵀ Bᵀ` (peft, alpha 8 / r 4).
struct Lora<'a>(&'a HashMap<String, Tensor>);

fn role(p: Proj) -> &'static str {
    match p {
        Proj::Query => "query",
        Proj::Value => "value",
        Proj::CrossQuery => "cross_query",
        Proj::CrossValue => "cross_value",
        _ => "none",
    }
}

impl Hooks for Lora<'_> {
    fn linear(&self, layer: usize, p: Proj, x: &Tensor, y: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        let name = |part: &str| format!("delta0.layer{layer}.{}.{part}.weight", role(p));
        match (self.0.get(&name("down")), self.0.get(&name("up"))) {
            (Some(a), Some(b)) => Ok((y + (x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)? * 2.0)?)?),
            _ => Ok(y),
        }
    }
}

/// Prefixes from the golden tensors, `[3, d]` per layer and attention, optionally numbering the
/// decoder's positions after them (how transformers treats past keys and values).
struct Prefix<'a> {
    g: &'a HashMap<String, Tensor>,
    shift: usize,
}

impl Hooks for Prefix<'_> {
    fn kv_prefix(
        &self,
        layer: usize,
        s: Sublayer,
        batch: usize,
        _c: &mut ForwardCtx,
    ) -> Result<Option<KvPrefix>> {
        let kind = if s == Sublayer::CrossAttention {
            "cross_prefix"
        } else {
            "prefix"
        };
        let get = |part: &str| self.g.get(&format!("delta0.layer{layer}.{kind}.{part}"));
        let (Some(k), Some(v)) = (get("keys"), get("values")) else {
            return Ok(None);
        };
        let split = |t: &Tensor| -> Result<Tensor> {
            let (l, d) = t.dims2()?;
            Ok(t.reshape((1, l, 4, d / 4))?
                .transpose(1, 2)?
                .broadcast_as((batch, 4, l, d / 4))?
                .contiguous()?)
        };
        Ok(Some(KvPrefix {
            keys: split(k)?,
            values: split(v)?,
        }))
    }

    fn position_offset(&self) -> usize {
        self.shift
    }
}

#[test]
fn lora_hooks_match_peft() {
    for case in CASES {
        let (model, g) = load(case);
        let d = max_abs_diff(&logits(&model, &input(&g), &Lora(&g)), &g["logits_lora"]);
        println!("{case}: LoRA max |Δ logits| = {d:.2e}");
        assert!(d <= TOLERANCE, "{case} LoRA logits differ by {d}");
        // The LoRA changes the logits by far more than the tolerance.
        assert!(max_abs_diff(&g["logits"], &g["logits_lora"]) > 0.1);
    }
}

#[test]
fn prefix_hooks_match_prefixed_attention_in_every_attention() {
    for case in CASES {
        let (model, g) = load(case);
        let input = input(&g);
        for (shift, key) in [(0, "logits_prefix"), (3, "logits_prefix_pkv")] {
            let d = max_abs_diff(&logits(&model, &input, &Prefix { g: &g, shift }), &g[key]);
            println!("{case}: {key} max |Δ logits| = {d:.2e}");
            assert!(d <= TOLERANCE, "{case} {key} differs by {d}");
        }
        assert!(max_abs_diff(&g["logits"], &g["logits_prefix"]) > 0.1);
        assert!(max_abs_diff(&g["logits_prefix"], &g["logits_prefix_pkv"]) > 0.1);
    }
}

// ----------------------------------------------------------------------------- decoding

/// Logits of every decoder position from prefill + steps, `[batch, t, vocab]`.
fn cached_logits(model: &Seq2SeqModel, encoded: &EncoderOutput, ids: &Tensor, hooks: &dyn Hooks) -> Tensor {
    let mut ctx = ForwardCtx::eval();
    let t = ids.dim(1).unwrap();
    let (mut cache, first) = model
        .prefill(encoded, &ids.narrow(1, 0, 1).unwrap(), hooks, &mut ctx)
        .unwrap();
    let mut out = vec![first];
    for i in 1..t {
        let tokens: Vec<u32> = ids
            .narrow(1, i, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        out.push(model.step(&mut cache, &tokens, hooks, &mut ctx).unwrap());
        assert_eq!(cache.len(), i + 1);
    }
    Tensor::stack(&out, 1).unwrap()
}

#[test]
fn cached_decoding_equals_the_full_decoder() {
    for case in CASES {
        let (model, g) = load(case);
        let input = Seq2SeqInput {
            decoder_attention_mask: None,
            ..input(&g)
        };
        let prefix = Prefix { g: &g, shift: 3 };
        let hooks: [(&str, &dyn Hooks); 3] = [("base", &NoHooks), ("lora", &Lora(&g)), ("prefix", &prefix)];
        for (name, hooks) in hooks {
            let mut ctx = ForwardCtx::eval();
            let encoded = model
                .encode(&input.input_ids, &input.attention_mask, hooks, &mut ctx)
                .unwrap();
            let full = logits(&model, &input, hooks);
            let cached = cached_logits(&model, &encoded, &input.decoder_input_ids, hooks);
            let d = max_abs_diff(&full, &cached);
            println!("{case} {name}: cached vs full max |Δ logits| = {d:.2e}");
            assert!(d <= TOLERANCE, "{case} {name}: cached decoding differs by {d}");
        }
    }
}

/// Greedy decoding through prefill + step as `generate` does it for these configs: argmax,
/// `forced_eos_token_id` at the last step, finished rows padded.
fn greedy(model: &Seq2SeqModel, gen: &serde_json::Value) -> Vec<Vec<u32>> {
    let ids2 = |v: &serde_json::Value| -> Vec<Vec<u32>> { serde_json::from_value(v.clone()).unwrap() };
    let id = |k: &str| gen[k].as_u64().unwrap() as u32;
    let source = ids2(&gen["input_ids"]);
    let mask = ids2(&gen["attention_mask"]);
    let rows = source.len();
    let tensor = |v: Vec<Vec<u32>>| Tensor::new(v, &Device::Cpu).unwrap();
    let (eos, pad, start) = (
        id("eos_token_id"),
        id("pad_token_id"),
        id("decoder_start_token_id"),
    );
    let steps = gen["max_new_tokens"].as_u64().unwrap() as usize;
    let mut ctx = ForwardCtx::eval();
    let encoded = model
        .encode(&tensor(source), &tensor(mask), &NoHooks, &mut ctx)
        .unwrap();
    let starts = tensor(vec![vec![start]; rows]);
    let (mut cache, mut logits) = model.prefill(&encoded, &starts, &NoHooks, &mut ctx).unwrap();
    let mut out = vec![vec![start]; rows];
    let mut done = vec![false; rows];
    for step in 0..steps {
        let best = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let next: Vec<u32> = (0..rows)
            .map(|r| match (done[r], step + 1 == steps) {
                (true, _) => pad,
                (false, true) => id("forced_eos_token_id"),
                (false, false) => best[r],
            })
            .collect();
        for (r, &t) in next.iter().enumerate() {
            out[r].push(t);
            done[r] |= t == eos;
        }
        if done.iter().all(|&d| d) {
            break;
        }
        logits = model.step(&mut cache, &next, &NoHooks, &mut ctx).unwrap();
    }
    out
}

#[test]
fn greedy_decoding_with_the_cache_matches_generate() {
    for case in CASES {
        let (model, _) = load(case);
        let text = std::fs::read_to_string(golden_dir(case).join("generate.json")).unwrap();
        let gen: serde_json::Value = serde_json::from_str(&text).unwrap();
        let want: Vec<Vec<u32>> = serde_json::from_value(gen["greedy"]["sequences"].clone()).unwrap();
        // The goldens run every row to the length limit; the decoder start is the config's
        // (Marian: the padding token).
        assert_eq!(
            gen["decoder_start_token_id"].as_u64(),
            model.config().decoder_start_token_id.map(u64::from),
            "{case}"
        );
        assert_eq!(greedy(&model, &gen), want, "{case}: greedy tokens");
    }
}

#[test]
fn select_rows_reorders_and_repeats_hypotheses() {
    let (model, g) = load("tiny-mbart");
    let hooks = Prefix { g: &g, shift: 0 };
    let input = input(&g);
    let ids = input.decoder_input_ids.to_vec2::<u32>().unwrap();
    let mut ctx = ForwardCtx::eval();
    let encoded = model
        .encode(&input.input_ids, &input.attention_mask, &hooks, &mut ctx)
        .unwrap();
    let start = input.decoder_input_ids.narrow(1, 0, 1).unwrap();
    let (mut cache, _) = model.prefill(&encoded, &start, &hooks, &mut ctx).unwrap();
    let column = |i: usize, rows: &[usize]| -> Vec<u32> { rows.iter().map(|&r| ids[r][i]).collect() };
    model
        .step(&mut cache, &column(1, &[0, 1, 2]), &hooks, &mut ctx)
        .unwrap();
    // Beam expansion: row 2 twice, row 0 once; row 1 dropped.
    let rows = [2, 0, 2];
    model.select_rows(&mut cache, &rows).unwrap();
    assert_eq!(cache.rows().unwrap(), 3);
    let stepped = model
        .step(&mut cache, &column(2, &rows), &hooks, &mut ctx)
        .unwrap();
    // The same rows decoded from scratch.
    let index = Tensor::new(&[2u32, 0, 2], &Device::Cpu).unwrap();
    let pick = |t: &Tensor| t.index_select(&index, 0).unwrap();
    let reordered = Seq2SeqInput {
        input_ids: pick(&input.input_ids),
        attention_mask: pick(&input.attention_mask),
        decoder_input_ids: pick(&input.decoder_input_ids).narrow(1, 0, 3).unwrap(),
        decoder_attention_mask: None,
    };
    let full = logits(&model, &reordered, &hooks)
        .narrow(1, 2, 1)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let d = max_abs_diff(&full, &stepped);
    assert!(d <= TOLERANCE, "reordered cache differs by {d}");
    let e = model.select_rows(&mut cache, &[0, 3]).unwrap_err().to_string();
    assert!(e.contains("cache row 3 does not exist"), "{e}");
    let e = model
        .step(&mut cache, &[5], &hooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 tokens for 3 rows"), "{e}");
}

// ----------------------------------------------------------------------------- hook points

#[test]
fn every_hook_point_is_called_once_per_site() {
    for case in CASES {
        let (model, g) = load(case);
        let shape = model.shape();
        let counter = Counter::default();
        let input = input(&g);
        logits(&model, &input, &counter);
        // This test counts the hook points of the design space; the base-read hooks
        // (`base_linear`, `base_norm`, `base_lookup`) are the decoder test's.
        let mut seen = counter.take();
        seen.retain(|k, _| !k.starts_with("base_"));
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        expected.insert("embeddings".into(), 1);
        for l in 0..shape.num_blocks() {
            let decoder = l >= 2;
            let mut sublayers = vec![Sublayer::Attention, Sublayer::Ffn];
            if decoder {
                sublayers.push(Sublayer::CrossAttention);
            }
            for s in sublayers {
                expected.insert(format!("input {l} {s:?}"), 1);
                expected.insert(format!("output {l} {s:?}"), 1);
                if s != Sublayer::Ffn {
                    expected.insert(format!("kv_prefix {l} {s:?}"), 1);
                    expected.insert(format!("heads {l} {s:?}"), 1);
                }
            }
            for p in Proj::ALL.into_iter().filter(|&p| shape.has_proj(l, p)) {
                expected.insert(format!("linear {l} {p:?}"), 1);
                expected.insert(format!("linear_input {l} {p:?}"), 1);
            }
        }
        // Every base parameter is read once per forward; the tied table three times: encoder
        // lookup, decoder lookup, LM head.
        for name in model.base_params().keys() {
            expected.insert(
                format!("param {name}"),
                if name == "shared.weight" { 3 } else { 1 },
            );
        }
        assert_eq!(seen, expected, "{case}");

        // A decoding step: no prefix is asked for, cross-attention keys and values are cached,
        // the encoder does not run.
        let mut ctx = ForwardCtx::eval();
        let encoded = model
            .encode(&input.input_ids, &input.attention_mask, &NoHooks, &mut ctx)
            .unwrap();
        let start = input.decoder_input_ids.narrow(1, 0, 1).unwrap();
        let (mut cache, _) = model.prefill(&encoded, &start, &NoHooks, &mut ctx).unwrap();
        model.step(&mut cache, &[5, 6, 7], &counter, &mut ctx).unwrap();
        let seen = counter.take();
        assert!(!seen
            .keys()
            .any(|k| k.starts_with("kv_prefix") || k.contains("CrossKey")));
        assert!(!seen.keys().any(|k| k.contains("param encoder.")));
        assert_eq!(seen.get("linear 3 CrossQuery"), Some(&1));
        assert_eq!(seen.get("heads 3 CrossAttention"), Some(&1));
        assert_eq!(seen.get("param shared.weight"), Some(&2));
    }
}

// ----------------------------------------------------------------------------- errors

#[test]
fn bad_inputs_are_errors_not_panics() {
    let (model, g) = load("tiny-bart");
    let dev = Device::Cpu;
    let mut ctx = ForwardCtx::eval();
    let encode = |ids: &Tensor, mask: &Tensor| -> String {
        model
            .encode(ids, mask, &NoHooks, &mut ForwardCtx::eval())
            .unwrap_err()
            .to_string()
    };
    let long = Tensor::full(5u32, (1, 65), &dev).unwrap();
    let e = encode(&long, &Tensor::ones((1, 65), DType::U32, &dev).unwrap());
    assert!(
        e.contains("source positions 0..65 exceed the model's 64 positions"),
        "{e}"
    );
    let empty = Tensor::zeros((1, 0), DType::U32, &dev).unwrap();
    assert!(encode(&empty, &empty).contains("input_ids is empty"));
    let bad = Tensor::new(&[[0u32, 96, 2]], &dev).unwrap();
    let e = encode(&bad, &Tensor::ones((1, 3), DType::U32, &dev).unwrap());
    assert!(e.contains("token id 96 is out of range (vocab_size 96)"), "{e}");
    let ids = Tensor::new(&[[0u32, 5, 2]], &dev).unwrap();
    let e = encode(&ids, &Tensor::ones((1, 4), DType::U32, &dev).unwrap());
    assert!(e.contains("attention_mask has shape [1, 4]"), "{e}");
    let e = encode(&Tensor::new(&[0u32, 5, 2], &dev).unwrap(), &ids);
    assert!(e.contains("input_ids must be [batch, seq]"), "{e}");

    let input = input(&g);
    let encoded = model
        .encode(&input.input_ids, &input.attention_mask, &NoHooks, &mut ctx)
        .unwrap();
    let long = Tensor::full(5u32, (3, 65), &dev).unwrap();
    let e = model
        .decode(&encoded, &long, None, &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("decoder positions 0..65 exceed"), "{e}");
    let two_rows = Tensor::full(5u32, (2, 4), &dev).unwrap();
    let e = model
        .decode(&encoded, &two_rows, None, &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("decoder batch needs [2, _, 32]"), "{e}");
    // A cache runs out of positions like the full decoder.
    let start = Tensor::full(2u32, (3, 63), &dev).unwrap();
    let (mut cache, _) = model.prefill(&encoded, &start, &NoHooks, &mut ctx).unwrap();
    model.step(&mut cache, &[5, 5, 5], &NoHooks, &mut ctx).unwrap();
    let e = model
        .step(&mut cache, &[5, 5, 5], &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("decoder positions 64..65 exceed"), "{e}");
}

/// The tiny `case`'s files with tensors changed by `edit`, in a fresh directory.
fn edited_copy(case: &str, tag: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petl-seq2seq-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(golden_dir(case).join("config.json"), dir.join("config.json")).unwrap();
    let mut tensors =
        candle_core::safetensors::load(golden_dir(case).join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn bad_checkpoints_name_the_tensor() {
    let load_err = |dir: &Path| {
        let e = Seq2SeqModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap_err();
        std::fs::remove_dir_all(dir).unwrap();
        e
    };
    let dir = edited_copy("tiny-bart", "missing", |t| {
        t.remove("model.decoder.layers.1.encoder_attn.k_proj.bias");
    });
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("decoder.layers.1.encoder_attn.k_proj.bias"),
        "{e}"
    );
    let dir = edited_copy("tiny-bart", "shape", |t| {
        t.insert(
            "model.encoder.layers.0.fc1.weight".into(),
            Tensor::zeros((63, 32), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::ShapeMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("encoder.layers.0.fc1.weight") && e.to_string().contains("[64, 32]"),
        "{e}"
    );
    // A checkpoint that stores the table only under the encoder's name still loads.
    let dir = edited_copy("tiny-bart", "renamed", |t| {
        let shared = t.remove("model.shared.weight").unwrap();
        t.insert("model.encoder.embed_tokens.weight".into(), shared);
    });
    let model = Seq2SeqModel::load(&ModelDir::open(&dir).unwrap(), &Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(model.base_params().contains_key("encoder.embed_tokens.weight"));
    let g = load("tiny-bart").1;
    let d = max_abs_diff(&logits(&model, &input(&g), &NoHooks), &g["logits"]);
    assert!(d <= TOLERANCE, "{d}");
}

#[test]
fn half_precision_linears_and_training_dropout() {
    let (model, g) = load("tiny-mbart");
    let input = input(&g);
    let dir = ModelDir::open(golden_dir("tiny-mbart")).unwrap();
    let half = Seq2SeqModel::load_with_precision(&dir, &Device::Cpu, petl_models::Precision::F16).unwrap();
    let q = |m: &Seq2SeqModel| m.base_params()["decoder.layers.0.encoder_attn.q_proj.weight"].dtype();
    assert_eq!((q(&model), q(&half)), (DType::F32, DType::F16));
    let full = logits(&model, &input, &NoHooks);
    let d = max_abs_diff(&full, &logits(&half, &input, &NoHooks));
    let scale = full.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(
        d / scale < 1e-2,
        "f16 linears move the logits by {d} (of {scale})"
    );

    // Training passes draw dropout from the context's stream: reproducible, and not the eval pass.
    let train = |seed: u64| {
        let mut ctx = ForwardCtx::train(petl_ops::DropoutRng::new(seed));
        let (_, hidden) = model.forward(&input, &NoHooks, &mut ctx).unwrap();
        model.lm_logits(&hidden, &NoHooks, &mut ctx).unwrap()
    };
    assert_eq!(max_abs_diff(&train(1), &train(1)), 0.0);
    assert!(max_abs_diff(&train(1), &train(2)) > 1e-2);
    assert!(max_abs_diff(&train(1), &full) > 1e-2);
}

// ----------------------------------------------------------------------------- Marian

#[test]
fn marian_positions_are_fixed_sinusoids_computed_or_stored() {
    let (model, g) = load("tiny-marian");
    // transformers neither saves the tables nor counts them as trainable; petl computes them
    // and keeps them out of the base parameters (no hook can train them).
    assert!(!model.base_params().keys().any(|n| n.contains("embed_positions")));
    assert!(!model
        .base_params()
        .keys()
        .any(|n| n.contains("layernorm_embedding")));
    assert!(model.extra_tensors().is_empty());
    let input = input(&g);
    let computed = logits(&model, &input, &NoHooks);

    // A checkpoint that stores the table (older opus-mt conversions do) is read as transformers
    // reads it: transformers' own table gives petl's computed logits back, a zeroed one does not.
    let with_table = |tag: &str, table: Tensor| {
        let dir = edited_copy("tiny-marian", tag, |t| {
            for stack in ["encoder", "decoder"] {
                t.insert(format!("model.{stack}.embed_positions.weight"), table.clone());
            }
        });
        let loaded = Seq2SeqModel::load(&ModelDir::open(&dir).unwrap(), &Device::Cpu);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    };
    let stored = with_table("stored", g["embed_positions"].clone()).unwrap();
    assert!(stored.extra_tensors().is_empty());
    assert_eq!(stored.num_base_params(), model.num_base_params());
    let d = max_abs_diff(&logits(&stored, &input, &NoHooks), &computed);
    println!("tiny-marian: stored vs computed sinusoid tables, max |Δ logits| = {d:.2e}");
    assert!(d <= 1e-6, "petl's sinusoids differ from transformers' table: {d}");
    let zeroed = with_table("zeroed", g["embed_positions"].zeros_like().unwrap()).unwrap();
    assert!(max_abs_diff(&logits(&zeroed, &input, &NoHooks), &computed) > 0.1);
    let e = with_table("short", g["embed_positions"].narrow(0, 0, 10).unwrap()).unwrap_err();
    assert!(matches!(e, ModelError::ShapeMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("encoder.embed_positions.weight") && e.to_string().contains("[64, 32]"),
        "{e}"
    );
}

#[test]
fn marian_refuses_separate_decoder_vocabularies() {
    let config = std::fs::read_to_string(golden_dir("tiny-marian").join("config.json")).unwrap();
    let edited = config.replace(
        "\"share_encoder_decoder_embeddings\": true",
        "\"share_encoder_decoder_embeddings\": false",
    );
    assert_ne!(edited, config);
    let e = petl_models::Seq2SeqConfig::from_json(&edited)
        .unwrap_err()
        .to_string();
    assert!(e.contains("share_encoder_decoder_embeddings"), "{e}");
    let edited = config.replace("\"decoder_vocab_size\": 96", "\"decoder_vocab_size\": 97");
    assert_ne!(edited, config);
    let e = petl_models::Seq2SeqConfig::from_json(&edited)
        .unwrap_err()
        .to_string();
    assert!(e.contains("decoder_vocab_size"), "{e}");
}
