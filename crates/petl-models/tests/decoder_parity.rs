//! The Llama-family decoder against Hugging Face `transformers` (goldens written by
//! `tests/golden/gen/make_decoder_golden.py`: tiny random Llama with GQA, llama3 rope scaling
//! and tied embeddings; tiny Qwen2 with q/k/v biases and an untied head; eager attention, f32),
//! cached decoding against the full forward, hook points and errors.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs_diff, Counter};
use petl_models::{
    BaseModel, Checkpoint, DecoderConfig, DecoderInput, DecoderModel, ForwardCtx, Hooks, KvPrefix, ModelDir,
    ModelShape, NoHooks, Proj, Result, Sublayer,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Logits of the tiny models against transformers (f32 throughout).
const TOLERANCE: f32 = 1e-4;

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

struct Golden {
    json: Value,
    tensors: HashMap<String, Tensor>,
}

fn golden(case: &str) -> Golden {
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir(case).join("golden.json")).unwrap()).unwrap();
    let tensors = candle_core::safetensors::load(dir(case).join("golden.safetensors"), &Device::Cpu).unwrap();
    Golden { json, tensors }
}

fn model(case: &str) -> DecoderModel {
    DecoderModel::load(&ModelDir::open(dir(case)).unwrap(), &Device::Cpu).unwrap()
}

fn ids2(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
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
}

fn input(v: &Value) -> DecoderInput {
    let ids = ids2(&v["input_ids"]);
    let mask = ids2(&v["attention_mask"]);
    let (b, s) = (ids.len(), ids[0].len());
    DecoderInput::from_host(&ids.concat(), &mask.concat(), b, s, &Device::Cpu).unwrap()
}

/// Max |a − b| over the positions where `mask` `[batch, seq]` is 1 (padded queries are
/// computed but never used).
fn masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let keep = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    a.sub(b)
        .unwrap()
        .broadcast_mul(&keep)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn logits(model: &DecoderModel, input: &DecoderInput, hooks: &dyn Hooks) -> (Tensor, Tensor) {
    let mut ctx = ForwardCtx::eval();
    let out = model.forward(input, hooks, &mut ctx).unwrap();
    (model.lm_logits(&out.hidden, hooks, &mut ctx).unwrap(), out.mask)
}

fn check_logits(case: &str) {
    let m = model(case);
    let g = golden(case);
    for batch in ["right", "left"] {
        let (got, mask) = logits(&m, &input(&g.json[batch]), &NoHooks);
        let d = masked_diff(&got, &g.tensors[&format!("{batch}.logits")], &mask);
        println!("{case} {batch}-padded: max |Δ logits| = {d:.2e}");
        assert!(d <= TOLERANCE, "{case} {batch}: logits differ by {d}");
    }
    // The size formula from config.json alone agrees with the loaded tensors.
    let from_config = ModelShape::of_decoder(m.config());
    assert_eq!(from_config.base_params, m.num_base_params(), "{case}");
    assert_eq!(from_config.base_tensors, m.base_params().len(), "{case}");
}

#[test]
fn tiny_llama_matches_transformers() {
    check_logits("tiny-llama");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check_logits("tiny-qwen2");
}

#[test]
fn half_precision_linears_stay_close() {
    // The tiny weights are float16 values, so only the activations' rounding differs.
    let m = DecoderModel::load_with_precision(
        &ModelDir::open(dir("tiny-qwen2")).unwrap(),
        &Device::Cpu,
        petl_models::Precision::F16,
    )
    .unwrap();
    let g = golden("tiny-qwen2");
    let (got, mask) = logits(&m, &input(&g.json["right"]), &NoHooks);
    let want = &g.tensors["right.logits"];
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let d = masked_diff(&got, want, &mask) / scale;
    println!("tiny-qwen2 f16 linears: max |Δ logits| / max |logit| = {d:.2e}");
    assert!(d < 1e-2, "f16 logits off by {d} (relative)");
}

/// Greedy decoding through prefill + step, stopping rows at EOS and padding them as `generate`.
fn greedy(model: &DecoderModel, input: &DecoderInput, steps: usize, eos: u32, pad: u32) -> Vec<Vec<u32>> {
    let mut ctx = ForwardCtx::eval();
    let (mut cache, mut logits) = model.prefill(input, &NoHooks, &mut ctx).unwrap();
    let rows = cache.rows();
    let mut out = vec![Vec::new(); rows];
    let mut done = vec![false; rows];
    for step in 0..steps {
        let next: Vec<u32> = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let next: Vec<u32> = next
            .iter()
            .zip(&done)
            .map(|(&t, &d)| if d { pad } else { t })
            .collect();
        for (r, &t) in next.iter().enumerate() {
            out[r].push(t);
            done[r] |= t == eos;
        }
        if done.iter().all(|&d| d) || step + 1 == steps {
            break;
        }
        logits = model.step(&mut cache, &next, &NoHooks, &mut ctx).unwrap();
    }
    out
}

#[test]
fn greedy_decoding_with_the_cache_matches_generate() {
    for case in ["tiny-llama", "tiny-qwen2"] {
        let m = model(case);
        let g = golden(case);
        let want = ids2(&g.json["greedy"]["new_tokens"]);
        let got = greedy(&m, &input(&g.json["greedy"]), want[0].len(), 2, 0);
        assert_eq!(got, want, "{case}: greedy tokens");
    }
}

/// Keys and values prepended at every layer, as a prefix-tuning delta would.
struct Prefix {
    /// Per layer `[heads, length, head_dim]` keys and values.
    layers: Vec<(Tensor, Tensor)>,
    offset: usize,
}

impl Prefix {
    fn from_golden(g: &Golden, layers: usize) -> Self {
        let layers = (0..layers)
            .map(|l| {
                (
                    g.tensors[&format!("prefix.layer{l}.keys")].clone(),
                    g.tensors[&format!("prefix.layer{l}.values")].clone(),
                )
            })
            .collect();
        Self { layers, offset: 3 }
    }

    /// The same prefix given per query head: each key/value head repeated for its group.
    fn per_query_head(&self, group: usize) -> Self {
        let rep = |t: &Tensor| {
            let (h, l, d) = t.dims3().unwrap();
            t.unsqueeze(1)
                .unwrap()
                .broadcast_as((h, group, l, d))
                .unwrap()
                .reshape((h * group, l, d))
                .unwrap()
        };
        Self {
            layers: self.layers.iter().map(|(k, v)| (rep(k), rep(v))).collect(),
            offset: self.offset,
        }
    }
}

impl Hooks for Prefix {
    fn kv_prefix(
        &self,
        layer: usize,
        s: Sublayer,
        batch: usize,
        _c: &mut ForwardCtx,
    ) -> Result<Option<KvPrefix>> {
        assert_eq!(s, Sublayer::Attention);
        let (k, v) = &self.layers[layer];
        let expand = |t: &Tensor| -> Result<Tensor> {
            let (h, l, d) = t.dims3()?;
            Ok(t.unsqueeze(0)?.broadcast_as((batch, h, l, d))?.contiguous()?)
        };
        Ok(Some(KvPrefix {
            keys: expand(k)?,
            values: expand(v)?,
        }))
    }

    fn position_offset(&self) -> usize {
        self.offset
    }
}

#[test]
fn kv_prefix_matches_transformers_past_key_values() {
    for case in ["tiny-llama", "tiny-qwen2"] {
        let m = model(case);
        let g = golden(case);
        let prefix = Prefix::from_golden(&g, m.config().num_layers);
        let batch = input(&g.json["left"]);
        let want = &g.tensors["prefix.logits"];
        let (got, mask) = logits(&m, &batch, &prefix);
        let d = masked_diff(&got, want, &mask);
        println!("{case} kv prefix: max |Δ logits| = {d:.2e}");
        assert!(d <= TOLERANCE, "{case}: prefix logits differ by {d}");
        // One prefix per query head (repeated like K/V) is the same attention.
        let wide = prefix.per_query_head(m.config().group_size());
        let (got, _) = logits(&m, &batch, &wide);
        assert!(
            masked_diff(&got, want, &mask) <= TOLERANCE,
            "{case}: per-head prefix"
        );
        // The shift matters: without it the positions, and the logits, differ.
        let unshifted = Prefix { offset: 0, ..prefix };
        let (got, _) = logits(&m, &batch, &unshifted);
        assert!(
            masked_diff(&got, want, &mask) > 1e-2,
            "{case}: the position shift is pinned down"
        );
    }
}

/// Rows prepended to the embeddings (prompt tuning), as peft does.
struct Prompt(Tensor);

impl Hooks for Prompt {
    fn embeddings(&self, words: Tensor, mask: Tensor, _c: &mut ForwardCtx) -> Result<(Tensor, Tensor)> {
        let (b, _, d) = words.dims3()?;
        let p = self.0.dim(0)?;
        let rows = self.0.unsqueeze(0)?.broadcast_as((b, p, d))?.contiguous()?;
        let ones = Tensor::ones((b, p), mask.dtype(), mask.device())?;
        Ok((
            Tensor::cat(&[&rows, &words], 1)?,
            Tensor::cat(&[&ones, &mask], 1)?,
        ))
    }
}

#[test]
fn prompt_rows_shift_positions_like_transformers() {
    for case in ["tiny-llama", "tiny-qwen2"] {
        let m = model(case);
        let g = golden(case);
        let prompt = Prompt(g.tensors["prompt.delta0.prompt"].clone());
        let (got, mask) = logits(&m, &input(&g.json["left"]), &prompt);
        assert_eq!(got.dims(), [3, 14, 128]);
        let d = masked_diff(&got, &g.tensors["prompt.logits"], &mask);
        println!("{case} prompt rows: max |Δ logits| = {d:.2e}");
        assert!(d <= TOLERANCE, "{case}: prompt logits differ by {d}");
    }
}

/// The prompt and a prefix together, for the cache test.
struct Both<'a>(&'a Prompt, &'a Prefix);

impl Hooks for Both<'_> {
    fn embeddings(&self, w: Tensor, m: Tensor, c: &mut ForwardCtx) -> Result<(Tensor, Tensor)> {
        self.0.embeddings(w, m, c)
    }
    fn kv_prefix(&self, l: usize, s: Sublayer, b: usize, c: &mut ForwardCtx) -> Result<Option<KvPrefix>> {
        self.1.kv_prefix(l, s, b, c)
    }
    fn position_offset(&self) -> usize {
        self.1.position_offset()
    }
}

/// Appends `tokens[r]` to row `r` of a left- or right-padded batch (as real tokens).
fn extend(ids: &[Vec<u32>], mask: &[Vec<u32>], tokens: &[Vec<u32>]) -> DecoderInput {
    let rows: Vec<Vec<u32>> = ids
        .iter()
        .zip(tokens)
        .map(|(r, t)| [r.as_slice(), t].concat())
        .collect();
    let masks: Vec<Vec<u32>> = mask
        .iter()
        .zip(tokens)
        .map(|(m, t)| [m.clone(), vec![1; t.len()]].concat())
        .collect();
    let (b, s) = (rows.len(), rows[0].len());
    DecoderInput::from_host(&rows.concat(), &masks.concat(), b, s, &Device::Cpu).unwrap()
}

/// Logits of prefill + steps equal the full forward's at the same tokens, for both paddings,
/// with and without a prefix and prompt rows, and after reordering and repeating rows.
#[test]
fn cached_decoding_equals_the_full_forward() {
    let m = model("tiny-llama");
    let g = golden("tiny-llama");
    let prefix = Prefix::from_golden(&g, m.config().num_layers);
    let prompt = Prompt(g.tensors["prompt.delta0.prompt"].clone());
    let both = Both(&prompt, &prefix);
    let hooks: [(&str, &dyn Hooks); 3] = [
        ("no hooks", &NoHooks),
        ("prefix", &prefix),
        ("prompt + prefix", &both),
    ];
    let feed: [[u32; 3]; 4] = [[5, 6, 7], [100, 3, 64], [9, 9, 9], [127, 0, 42]];
    for batch in ["right", "left"] {
        let ids = ids2(&g.json[batch]["input_ids"]);
        let mask = ids2(&g.json[batch]["attention_mask"]);
        for (name, hooks) in hooks {
            let mut ctx = ForwardCtx::eval();
            let (mut cache, first) = m.prefill(&input(&g.json[batch]), hooks, &mut ctx).unwrap();
            let mut fed: Vec<Vec<u32>> = vec![Vec::new(); 3];
            let mut worst = 0f32;
            // Prefill's logits: the last real token of each row.
            let lens = [10usize, 7, 4];
            for r in 0..3 {
                let (full, _) = logits(
                    &m,
                    &extend(&[ids[r].clone()], &[mask[r].clone()], &[vec![]]),
                    hooks,
                );
                let at = if batch == "right" { lens[r] - 1 } else { 9 } + full.dim(1).unwrap() - 10;
                let want = full.get(0).unwrap().get(at).unwrap();
                worst = worst.max(max_abs_diff(&first.get(r).unwrap(), &want));
            }
            let mut check = |fed: &[Vec<u32>], got: &Tensor, rows: &[usize]| {
                let ids: Vec<Vec<u32>> = rows.iter().map(|&r| ids[r].clone()).collect();
                let mask: Vec<Vec<u32>> = rows.iter().map(|&r| mask[r].clone()).collect();
                let (full, _) = logits(&m, &extend(&ids, &mask, fed), hooks);
                let last = full
                    .narrow(1, full.dim(1).unwrap() - 1, 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap();
                worst = worst.max(max_abs_diff(got, &last));
            };
            for tokens in &feed[..2] {
                let got = m.step(&mut cache, tokens, hooks, &mut ctx).unwrap();
                fed.iter_mut().zip(tokens).for_each(|(f, &t)| f.push(t));
                check(&fed, &got, &[0, 1, 2]);
            }
            // Beam-style reorder with a repeated row, then keep decoding.
            let order = [2usize, 0, 0];
            cache.select_rows(&order).unwrap();
            let mut fed: Vec<Vec<u32>> = order.iter().map(|&r| fed[r].clone()).collect();
            for tokens in &feed[2..] {
                let got = m.step(&mut cache, tokens, hooks, &mut ctx).unwrap();
                fed.iter_mut().zip(tokens).for_each(|(f, &t)| f.push(t));
                check(&fed, &got, &order);
            }
            println!("{batch}, {name}: cached vs full max |Δ| = {worst:.2e}");
            assert!(worst <= TOLERANCE, "{batch}, {name}: cache differs by {worst}");
            assert_eq!(
                cache.len(),
                10 + 4 + if name == "prompt + prefix" { 4 } else { 0 }
            );
        }
    }
}

#[test]
fn every_hook_point_is_called_once_per_site() {
    for case in ["tiny-llama", "tiny-qwen2"] {
        let m = model(case);
        let shape = m.shape();
        let counter = Counter::default();
        let input = DecoderInput::from_host(&[1, 5, 6, 7], &[1; 4], 1, 4, &Device::Cpu).unwrap();
        let mut ctx = ForwardCtx::eval();
        let out = m.forward(&input, &counter, &mut ctx).unwrap();
        let seen = counter.take();
        let mut per_block: BTreeMap<String, usize> = BTreeMap::new();
        let layers = m.config().num_layers;
        for l in 0..layers {
            for s in [Sublayer::Attention, Sublayer::Ffn] {
                per_block.insert(format!("input {l} {s:?}"), 1);
                per_block.insert(format!("output {l} {s:?}"), 1);
            }
            for p in Proj::ALL.into_iter().filter(|&p| shape.has_proj(l, p)) {
                per_block.insert(format!("linear {l} {p:?}"), 1);
                per_block.insert(format!("linear_input {l} {p:?}"), 1);
                let w = m.weight_name(l, p).unwrap();
                per_block.insert(format!("base_linear {w}"), 1);
            }
            per_block.insert(format!("heads {l} Attention"), 1);
            for n in ["input_layernorm", "post_attention_layernorm"] {
                per_block.insert(format!("base_norm model.layers.{l}.{n}.weight"), 1);
            }
        }
        assert_eq!(shape.num_blocks(), layers);
        assert!(shape.has_proj(0, Proj::FfnGate) && !shape.has_proj(0, Proj::CrossQuery));
        let mut expected = per_block.clone();
        expected.insert("embeddings".into(), 1);
        expected.insert("base_lookup model.embed_tokens.weight".into(), 1);
        expected.insert("base_norm model.norm.weight".into(), 1);
        for l in 0..layers {
            expected.insert(format!("kv_prefix {l} Attention"), 1);
        }
        // Every parameter of the forward is read once; the head reads its own (the embedding
        // again when tied) in lm_logits.
        let head = if m.config().tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        for name in m.base_params().keys().filter(|n| *n != "lm_head.weight") {
            expected.insert(format!("param {name}"), 1);
        }
        assert_eq!(seen, expected, "{case} forward");
        m.lm_logits(&out.hidden, &counter, &mut ctx).unwrap();
        let seen = counter.take();
        let want = BTreeMap::from([(format!("param {head}"), 1), (format!("base_linear {head}"), 1)]);
        assert_eq!(seen, want, "{case} head");

        // A cached step runs the blocks and the head, but neither the embeddings hook nor
        // kv_prefix: what they add is in the cache.
        let (mut cache, _) = m.prefill(&input, &counter, &mut ctx).unwrap();
        counter.take();
        m.step(&mut cache, &[9], &counter, &mut ctx).unwrap();
        let mut expected = per_block;
        expected.insert("base_lookup model.embed_tokens.weight".into(), 1);
        expected.insert("base_norm model.norm.weight".into(), 1);
        expected.insert(format!("base_linear {head}"), 1);
        for name in m.base_params().keys() {
            expected.insert(format!("param {name}"), 1);
        }
        if m.config().tie_word_embeddings {
            expected.insert(format!("param {head}"), 2);
        }
        assert_eq!(counter.take(), expected, "{case} step");
    }
}

#[test]
fn base_model_names_every_projection_weight() {
    let m = model("tiny-qwen2");
    for l in 0..3 {
        for p in Proj::ALL {
            match m.weight_name(l, p) {
                Some(w) => {
                    assert!(m.base_params().contains_key(&w), "{w}");
                    assert_eq!(m.layer_of(&w), Some(l));
                    let (i, o) = m.shape().proj_dims(p);
                    assert_eq!(m.base_params()[&w].dims(), [o, i], "{w}");
                }
                None => assert!(p.attention() == Some(Sublayer::CrossAttention)),
            }
        }
    }
    assert!(m
        .base_params()
        .contains_key("model.layers.1.self_attn.k_proj.bias"));
    assert!(!m
        .base_params()
        .contains_key("model.layers.1.self_attn.o_proj.bias"));
    assert_eq!(m.layer_of("model.embed_tokens.weight"), None);
    assert_eq!(m.weight_name(3, Proj::Query), None);
}

#[test]
fn bad_input_and_bad_checkpoints_are_errors_not_panics() {
    let m = model("tiny-llama");
    let mut ctx = ForwardCtx::eval();
    let run = |ids: &[u32], b: usize, s: usize| {
        let input = DecoderInput::from_host(ids, &vec![1; ids.len()], b, s, &Device::Cpu).unwrap();
        m.forward(&input, &NoHooks, &mut ForwardCtx::eval())
            .unwrap_err()
            .to_string()
    };
    let e = run(&[1, 2, 128], 1, 3);
    assert!(e.contains("token id 128 is out of range"), "{e}");
    let e = run(&vec![5; 65], 1, 65);
    assert!(e.contains("needs 65 positions") && e.contains("64"), "{e}");
    let e = run(&[], 0, 3);
    assert!(e.contains("empty batch"), "{e}");
    assert!(DecoderInput::from_host(&[1, 2], &[1], 1, 2, &Device::Cpu).is_err());
    let bad_mask = DecoderInput {
        input_ids: Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap(),
        attention_mask: Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap(),
    };
    let e = m.forward(&bad_mask, &NoHooks, &mut ctx).unwrap_err().to_string();
    assert!(e.contains("attention mask has shape"), "{e}");
    let empty_row = DecoderInput::from_host(&[0, 0, 5, 6], &[0, 0, 1, 1], 2, 2, &Device::Cpu).unwrap();
    let e = m.prefill(&empty_row, &NoHooks, &mut ctx).unwrap_err().to_string();
    assert!(e.contains("row 0 of the prompt batch has no tokens"), "{e}");

    // The cache refuses what does not fit and stays usable.
    let prompt = DecoderInput::from_host(&vec![5; 63], &[1; 63], 1, 63, &Device::Cpu).unwrap();
    let (mut cache, _) = m.prefill(&prompt, &NoHooks, &mut ctx).unwrap();
    let e = m
        .step(&mut cache, &[1, 2], &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 tokens for a cache of 1 rows"), "{e}");
    let e = m
        .step(&mut cache, &[500], &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 500"), "{e}");
    m.step(&mut cache, &[7], &NoHooks, &mut ctx).unwrap();
    let e = m
        .step(&mut cache, &[7], &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs 65 positions"), "{e}");
    assert_eq!(cache.len(), 64);
    let e = cache.select_rows(&[0, 1]).unwrap_err().to_string();
    assert!(e.contains("row 1 does not exist"), "{e}");
    assert!(cache.select_rows(&[]).is_err());

    // Checkpoints: a wrong shape names the tensor; an untied config needs lm_head.weight.
    let config = DecoderConfig::from_file(&dir("tiny-llama").join("config.json")).unwrap();
    let ckpt = |edit: &dyn Fn(&mut BTreeMap<String, Tensor>)| {
        let mut t: BTreeMap<String, Tensor> = m.base_params().clone();
        edit(&mut t);
        Checkpoint::from_tensors(t, m.fingerprint().clone()).unwrap()
    };
    let wide = ckpt(&|t| {
        t.insert(
            "model.layers.2.mlp.up_proj.weight".into(),
            Tensor::zeros((97, 64), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = DecoderModel::from_checkpoint(config.clone(), wide, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.layers.2.mlp.up_proj.weight") && e.contains("[97, 64]"),
        "{e}"
    );
    let untied = DecoderConfig {
        tie_word_embeddings: false,
        ..config.clone()
    };
    let e = DecoderModel::from_checkpoint(untied, ckpt(&|_| {}), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lm_head.weight"), "{e}");
    // A sliding window petl does not implement: longer sequences are refused.
    let windowed = DecoderConfig {
        family: petl_models::DecoderFamily::Mistral,
        sliding_window: Some(8),
        ..config.clone()
    };
    let mistral = DecoderModel::from_checkpoint(windowed, ckpt(&|_| {}), &Device::Cpu).unwrap();
    let nine = DecoderInput::from_host(&[5; 9], &[1; 9], 1, 9, &Device::Cpu).unwrap();
    let e = mistral
        .forward(&nine, &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("9 keys") && e.contains("sliding window of 8"), "{e}");
    let eight = DecoderInput::from_host(&[5; 8], &[1; 8], 1, 8, &Device::Cpu).unwrap();
    let (mut cache, _) = mistral.prefill(&eight, &NoHooks, &mut ctx).unwrap();
    let e = mistral
        .step(&mut cache, &[5], &NoHooks, &mut ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sliding window"), "{e}");
    assert_eq!(cache.len(), 8, "a failed step leaves the cache as it was");
    // The same tensors through from_checkpoint are the same model.
    let again = DecoderModel::from_checkpoint(config, ckpt(&|_| {}), &Device::Cpu).unwrap();
    let g = golden("tiny-llama");
    let (a, mask) = logits(&again, &input(&g.json["right"]), &NoHooks);
    assert!(masked_diff(&a, &g.tensors["right.logits"], &mask) <= TOLERANCE);
}

/// SmolLM2-135M-Instruct against transformers' reading of the same GGUF file
/// (`tests/golden/smollm2/golden.json`), from the Hugging Face directory that
/// `make_decoder_golden.py --smollm2 FILE.gguf --smollm2-hf-out DIR` writes:
/// `PETL_SMOLLM2_DIR=DIR cargo test -p petl-models --test decoder_parity -- --ignored`.
#[test]
#[ignore = "needs PETL_SMOLLM2_DIR (see the doc comment)"]
fn smollm2_matches_transformers() {
    let dir = std::env::var("PETL_SMOLLM2_DIR").expect("PETL_SMOLLM2_DIR");
    let m = DecoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap();
    let g = golden_json("smollm2");
    let prompt: Vec<u32> = g["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let input = DecoderInput::left_padded(&[&prompt], 2, &Device::Cpu).unwrap();
    let mut ctx = ForwardCtx::eval();
    let (mut cache, logits) = m.prefill(&input, &NoHooks, &mut ctx).unwrap();
    let logits = logits.get(0).unwrap().to_vec1::<f32>().unwrap();
    let mut worst = 0f32;
    for (id, want) in g["top5_last"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["top5_last"]["logits"].as_array().unwrap())
    {
        worst = worst.max((logits[id.as_u64().unwrap() as usize] - want.as_f64().unwrap() as f32).abs());
    }
    println!("SmolLM2 top-5 logits: max |Δ| = {worst:.2e}");
    assert!(worst <= 1e-3, "SmolLM2 logits differ by {worst}");
    let want: Vec<u32> = g["greedy"]["new_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let mut got = Vec::new();
    let mut next = argmax(&logits);
    loop {
        got.push(next);
        if next == 2 || got.len() == want.len() {
            break;
        }
        let l = m.step(&mut cache, &[next], &NoHooks, &mut ctx).unwrap();
        next = argmax(&l.get(0).unwrap().to_vec1::<f32>().unwrap());
    }
    assert_eq!(got, want, "greedy continuation");
}

fn golden_json(case: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(case).join("golden.json")).unwrap()).unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
        .0 as u32
}
