//! Methods on BART, mBART and Marian (the tiny goldens of petl-models, written by
//! `crates/petl-models/tests/golden/gen/make_seq2seq_golden.py`): LoRA on q/v acts on
//! self- and cross-attention as peft does, prefix tuning has one generator per attention kind
//! (He et al.'s three), both match PyTorch in value and gradient, and every preset builds,
//! counts what it builds and trains.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{max_abs_diff, shrink};
use petl_methods::{
    preset, Composition, Delta, DeltaSpec, Form, InitScheme, Method, PrefixActivation, Scale, Site, PRESETS,
};
use petl_models::{
    BaseModel, ForwardCtx, Hooks, ModelDir, NoHooks, ParamStore, Proj, Seq2SeqInput, Seq2SeqModel,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The parity bound of petl-models' tests; gradients are held to it relative to their size.
const TOLERANCE: f32 = 1e-4;
const CASES: [&str; 3] = ["tiny-bart", "tiny-mbart", "tiny-marian"];

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../petl-models/tests/golden")
        .join(case)
}

fn load(case: &str) -> (Seq2SeqModel, HashMap<String, Tensor>) {
    let model = Seq2SeqModel::load(&ModelDir::open(dir(case)).unwrap(), &Device::Cpu).unwrap();
    let g = candle_core::safetensors::load(dir(case).join("golden.safetensors"), &Device::Cpu).unwrap();
    (model, g)
}

fn input(g: &HashMap<String, Tensor>) -> Seq2SeqInput {
    let u32s = |k: &str| g[k].to_dtype(DType::U32).unwrap();
    Seq2SeqInput {
        input_ids: u32s("input_ids"),
        attention_mask: u32s("attention_mask"),
        decoder_input_ids: u32s("decoder_input_ids"),
        decoder_attention_mask: Some(u32s("decoder_attention_mask")),
    }
}

/// Logits `[batch, t, vocab]` and the mean cross-entropy over real (non-pad) label tokens, as
/// the golden script's `lm_loss`.
fn logits_and_loss(model: &Seq2SeqModel, hooks: &dyn Hooks, g: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    let mut ctx = ForwardCtx::eval();
    let (_, hidden) = model.forward(&input(g), hooks, &mut ctx).unwrap();
    let logits = model.lm_logits(&hidden, hooks, &mut ctx).unwrap();
    let labels: Vec<u32> = g["labels"]
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let pad = model.config().pad_token_id;
    let keep: Vec<u32> = (0..labels.len() as u32)
        .filter(|&i| labels[i as usize] != pad)
        .collect();
    let targets: Vec<u32> = keep.iter().map(|&i| labels[i as usize]).collect();
    let keep = Tensor::new(keep.as_slice(), &Device::Cpu).unwrap();
    let vocab = logits.dim(2).unwrap();
    let rows = logits
        .reshape(((), vocab))
        .unwrap()
        .index_select(&keep, 0)
        .unwrap();
    let loss =
        petl_ops::cross_entropy(&rows, &Tensor::new(targets.as_slice(), &Device::Cpu).unwrap()).unwrap();
    (logits, loss)
}

/// Sets every parameter of `store` from the golden tensor of the same name.
fn assign_from_golden(store: &ParamStore, g: &HashMap<String, Tensor>) {
    let values: BTreeMap<String, Tensor> = store.iter().map(|(n, _)| (n.to_string(), g[n].clone())).collect();
    store.assign(&values).unwrap();
}

/// Max |Δ| between petl's gradient and torch's, relative to the largest torch gradient.
fn check_grads(case: &str, store: &ParamStore, loss: &Tensor, g: &HashMap<String, Tensor>) {
    let grads = loss.backward().unwrap();
    let vars: Vec<(&str, &Var)> = store.iter().collect();
    let scale = vars
        .iter()
        .map(|(n, _)| {
            g[&format!("grad.{n}")]
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0f32, f32::max);
    assert!(scale > 1e-3, "{case}: golden gradients are all tiny ({scale})");
    let mut worst = 0f32;
    for (name, var) in vars {
        let mine = grads
            .get(var)
            .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        worst = worst.max(max_abs_diff(mine, &g[&format!("grad.{name}")]) / scale);
    }
    println!(
        "{case}: max relative |Δ grad| = {worst:.2e} over {} tensors",
        store.len()
    );
    assert!(
        worst <= TOLERANCE,
        "{case}: gradients differ by {worst} (relative)"
    );
}

fn lora_method() -> Method {
    Method {
        name: "lora-qv".into(),
        deltas: vec![DeltaSpec {
            composition: Composition::Scaled(Scale::Fixed(2.0)),
            init: InitScheme::Lora,
            ..DeltaSpec::new(
                Form::LowRank { r: 4 },
                Site::Weights(vec![Proj::Query, Proj::Value]),
            )
        }],
    }
}

fn prefix_method(shift_positions: bool, explicit_gate: bool, reparam: Option<usize>) -> Method {
    Method {
        name: "prefix".into(),
        deltas: vec![DeltaSpec {
            composition: Composition::Gated,
            ..DeltaSpec::new(
                Form::Prefix {
                    length: 3,
                    activation: PrefixActivation::Softmax,
                    reparam,
                    explicit_gate,
                    shift_positions,
                },
                Site::Heads,
            )
        }],
    }
}

#[test]
fn lora_on_query_and_value_matches_peft_in_value_and_gradient() {
    for case in CASES {
        let (model, g) = load(case);
        let mut store = ParamStore::new(&Device::Cpu, 0);
        let delta = Delta::build(&lora_method(), &model, &mut store).unwrap();
        // peft's q_proj/v_proj: encoder self-attention, decoder self- and cross-attention.
        assert_eq!(store.len(), 2 * (2 * 2 + 4 * 2), "{case}");
        assert!(store.get("delta0.layer3.cross_value.up.weight").is_some());
        assert_eq!(
            lora_method().count(&model.shape()).trainable,
            store.num_elements(),
            "{case}"
        );
        assign_from_golden(&store, &g);
        let (logits, loss) = logits_and_loss(&model, &delta, &g);
        let d = max_abs_diff(&logits, &g["logits_lora"]);
        let dl = max_abs_diff(&loss.reshape(1).unwrap(), &g["loss_lora"]);
        println!("{case}: LoRA max |Δ logits| = {d:.2e}, |Δ loss| = {dl:.2e}");
        assert!(d <= TOLERANCE && dl <= TOLERANCE, "{case}: {d} {dl}");
        check_grads(case, &store, &loss, &g);
    }
}

#[test]
fn prefixes_in_all_three_attentions_match_pytorch_in_value_and_gradient() {
    for case in CASES {
        let (model, g) = load(case);
        for (shift, explicit, key) in [
            (false, false, "logits_prefix"),
            (false, true, "logits_prefix"),
            (true, false, "logits_prefix_pkv"),
        ] {
            let mut store = ParamStore::new(&Device::Cpu, 0);
            let method = prefix_method(shift, explicit, None);
            let delta = Delta::build(&method, &model, &mut store).unwrap();
            // Encoder self-attention (blocks 0, 1), decoder self- and cross-attention (2, 3).
            assert_eq!(store.len(), 2 * (4 + 2), "{case}");
            assert!(store.get("delta0.layer2.cross_prefix.keys").is_some());
            assert_eq!(method.count(&model.shape()).trainable, store.num_elements());
            assign_from_golden(&store, &g);
            let (logits, loss) = logits_and_loss(&model, &delta, &g);
            let d = max_abs_diff(&logits, &g[key]);
            println!("{case} shift={shift} explicit_gate={explicit}: max |Δ logits| = {d:.2e}");
            assert!(d <= TOLERANCE, "{case} {key}: {d}");
            if !shift {
                let dl = max_abs_diff(&loss.reshape(1).unwrap(), &g["loss_prefix"]);
                assert!(dl <= TOLERANCE, "{case}: loss {dl}");
                check_grads(case, &store, &loss, &g);
            }
        }
    }
}

#[test]
fn an_encoder_decoder_prefix_trains_three_generators_and_stores_their_prefixes() {
    let (model, g) = load("tiny-bart");
    let method = prefix_method(false, false, Some(8));
    let mut store = ParamStore::new(&Device::Cpu, 5);
    let delta = Delta::build(&method, &model, &mut store).unwrap();
    let names: Vec<&str> = store.iter().map(|(n, _)| n).collect();
    for generator in ["encoder_prefix_mlp", "decoder_prefix_mlp", "cross_prefix_mlp"] {
        let own: Vec<&&str> = names
            .iter()
            .filter(|n| n.starts_with(&format!("delta0.{generator}.")))
            .collect();
        assert_eq!(own.len(), 5, "{generator}: {own:?}");
    }
    assert_eq!(names.len(), 15);
    // Each generator's output layer makes 2·d rows per layer of its own attention only.
    assert_eq!(
        store.get("delta0.encoder_prefix_mlp.out.weight").unwrap().dims(),
        &[2 * 2 * 32, 8]
    );
    assert_eq!(
        store.get("delta0.cross_prefix_mlp.out.weight").unwrap().dims(),
        &[2 * 2 * 32, 8]
    );
    let count = method.count(&model.shape());
    assert_eq!(count.trainable, store.num_elements());
    let stored = delta.stored_tensors(&store).unwrap();
    let mut expected: Vec<String> = Vec::new();
    for l in 0..4 {
        expected.push(format!("delta0.layer{l}.prefix.keys"));
        expected.push(format!("delta0.layer{l}.prefix.values"));
    }
    for l in 2..4 {
        expected.push(format!("delta0.layer{l}.cross_prefix.keys"));
        expected.push(format!("delta0.layer{l}.cross_prefix.values"));
    }
    expected.sort();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(
        stored.values().map(Tensor::elem_count).sum::<usize>(),
        count.stored
    );
    // The ejected method loads the stored prefixes and computes the same function.
    let ejected = method.ejected();
    let mut flat_store = ParamStore::new(&Device::Cpu, 0);
    let flat = Delta::build(&ejected, &model, &mut flat_store).unwrap();
    flat_store.assign(&stored).unwrap();
    let (generated, _) = logits_and_loss(&model, &delta, &g);
    let (reloaded, _) = logits_and_loss(&model, &flat, &g);
    assert_eq!(max_abs_diff(&generated, &reloaded), 0.0);
    assert!(max_abs_diff(&generated, &g["logits"]) > 1e-3);
}

#[test]
fn every_preset_builds_counts_and_trains_on_bart_and_marian() {
    for case in ["tiny-bart", "tiny-marian"] {
        every_preset_builds_counts_and_trains(case);
    }
}

fn every_preset_builds_counts_and_trains(case: &str) {
    let (model, g) = load(case);
    let shape = model.shape();
    let (reference, _) = logits_and_loss(&model, &NoHooks, &g);
    for p in PRESETS {
        let method = shrink(p.method());
        let mut store = ParamStore::new(&Device::Cpu, 7);
        let delta = Delta::build(&method, &model, &mut store).unwrap();
        let count = method.count(&shape);
        assert_eq!(
            count.trainable,
            store.num_elements(),
            "{case} {}: trainable",
            p.name
        );
        let projected = method.deltas.iter().any(|d| {
            matches!(
                d.form,
                Form::Diff {
                    projection: Some(_),
                    ..
                }
            )
        });
        if !projected {
            let stored: usize = delta
                .stored_tensors(&store)
                .unwrap()
                .values()
                .map(Tensor::elem_count)
                .sum();
            assert_eq!(count.stored, stored, "{case} {}: stored", p.name);
        }

        // Zero up-projections leave the model where it was (where the method promises it).
        let changes = method.deltas.iter().any(|d| {
            matches!(d.form, Form::Prompt { .. })
                || matches!(d.form, Form::Prefix { .. }) && d.composition == Composition::Gated
        });
        if !changes {
            let mut zero = method.clone();
            for d in &mut zero.deltas {
                d.init = InitScheme::Lora;
            }
            let mut s = ParamStore::new(&Device::Cpu, 8);
            let at_init = Delta::build(&zero, &model, &mut s).unwrap();
            let (logits, _) = logits_and_loss(&model, &at_init, &g);
            assert_eq!(
                max_abs_diff(&logits, &reference),
                0.0,
                "{case} {}: moved at init",
                p.name
            );
        }

        // Non-zero up-projections: every trainable tensor gets a finite, non-zero gradient.
        let mut trained = method.clone();
        for d in &mut trained.deltas {
            d.init = InitScheme::Bert;
        }
        let mut s = ParamStore::new(&Device::Cpu, 9);
        let delta = Delta::build(&trained, &model, &mut s).unwrap();
        let (_, loss) = logits_and_loss(&model, &delta, &g);
        let grads = loss.backward().unwrap();
        for (name, var) in s.iter() {
            let grad = grads
                .get(var)
                .unwrap_or_else(|| panic!("{case} {}: no gradient for {name}", p.name));
            let v = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                v.iter().all(|x| x.is_finite()),
                "{case} {}: non-finite gradient for {name}",
                p.name
            );
            if !name.contains("log_alpha") {
                assert!(
                    v.iter().any(|x| *x != 0.0),
                    "{case} {}: zero gradient for {name}",
                    p.name
                );
            }
        }
    }
    // Attention-site adapters act on cross-attention too (He et al.'s Table 9: 3 attentions).
    let mut store = ParamStore::new(&Device::Cpu, 0);
    Delta::build(&shrink(preset("pa-attn").unwrap()), &model, &mut store).unwrap();
    assert!(store
        .iter()
        .any(|(n, _)| n.starts_with("delta0.layer3.cross_attention.")));
    assert!(!store
        .iter()
        .any(|(n, _)| n.starts_with("delta0.layer1.cross_attention.")));
}
