//! Every preset on a real (tiny) model: it starts at the base output when its up-projections
//! start at zero, it trains exactly the parameters it counts, every one of them gets a finite
//! nonzero gradient, and the base is never written.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{batch, build, max_abs_diff, shrink, tiny};
use petl_methods::{Form, InitScheme, Method, PRESETS};
use petl_models::BaseModel;
use petl_models::{ForwardCtx, NoHooks};

/// Presets whose output length or attention pattern changes by construction (a prompt adds
/// positions; prefixes take part of the softmax), so "unchanged at init" does not apply.
fn changes_output_by_construction(m: &Method) -> bool {
    m.deltas.iter().any(|d| {
        matches!(d.form, Form::Prompt { .. })
            || matches!(d.form, Form::Prefix { .. }) && d.composition == petl_methods::Composition::Gated
    })
}

#[test]
fn zero_initialised_up_projections_leave_the_output_unchanged() {
    let model = tiny();
    let reference = model
        .forward(&batch(), &NoHooks, &mut ForwardCtx::eval())
        .unwrap()
        .hidden;
    let mut checked = 0;
    for p in PRESETS {
        let mut method = shrink(p.method());
        if changes_output_by_construction(&method) {
            continue;
        }
        for d in &mut method.deltas {
            // Zero up-projections (for a prefix form, zero values P_v, generated or not):
            // Δh = 0 whatever the gate or scale.
            d.init = InitScheme::Lora;
        }
        let built = build(&model, &method, 1);
        let diff = max_abs_diff(&built.hidden(&model, &batch()), &reference);
        assert_eq!(diff, 0.0, "{}: output moved at init", p.name);
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} presets checked");
}

#[test]
fn counts_match_what_is_built_and_stored() {
    let model = tiny();
    let shape = model.shape();
    for p in PRESETS {
        let method = shrink(p.method());
        let built = build(&model, &method, 2);
        let head: usize = built
            .store
            .iter()
            .filter(|(n, _)| n.starts_with("classifier.") || n.starts_with("pooler."))
            .filter(|(n, _)| !model.base_params().contains_key(*n))
            .map(|(_, v)| v.elem_count())
            .sum();
        let count = method.count(&shape);
        assert_eq!(
            count.trainable + head,
            built.store.num_elements(),
            "{}: trainable",
            p.name
        );
        let stored: usize = built
            .delta
            .stored_tensors(&built.store)
            .unwrap()
            .values()
            .map(Tensor::elem_count)
            .sum();
        // A projected diff stores its kept entries, not the dense state it trains first.
        let projected = method.deltas.iter().find_map(|d| match &d.form {
            Form::Diff {
                projection: Some(p), ..
            } => Some(p.keep_count(shape.base_params)),
            _ => None,
        });
        match projected {
            Some(keep) => assert_eq!(count.stored, keep, "{}: stored", p.name),
            None => assert_eq!(count.stored + head, stored, "{}: stored", p.name),
        }
        assert_eq!(
            count.trainable == count.stored,
            !method.has_reparam() && projected.is_none(),
            "{}",
            p.name
        );
    }
}

#[test]
fn every_trainable_parameter_gets_a_gradient_and_the_base_never_moves() {
    let model = tiny();
    let base_before: Vec<(String, Vec<f32>)> = model
        .base_params()
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    for p in PRESETS {
        let mut method = shrink(p.method());
        for d in &mut method.deltas {
            // Non-zero up-projections, so the down-projections see a gradient too.
            d.init = InitScheme::Bert;
        }
        let built = build(&model, &method, 3);
        let grads = built.loss(&model).backward().unwrap();
        // Mean pooling skips BERT's pooler, which full fine-tuning copies.
        for (name, var) in built.store.iter().filter(|(n, _)| !n.contains("pooler.")) {
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
            // Position and type embeddings of unused rows legitimately get zero gradient, and
            // so do L0 gates clamped at exactly 0 or 1 (checked in `tests/diff.rs`).
            if !name.contains("embeddings") && !name.contains("log_alpha") {
                assert!(
                    g.iter().any(|v| *v != 0.0),
                    "{}: zero gradient for {name}",
                    p.name
                );
            }
        }
        // A training step moves only the delta and head.
        for (_, var) in built.store.iter() {
            let moved = (var.as_tensor() + 0.5).unwrap();
            var.set(&moved).unwrap();
        }
        built.loss(&model);
    }
    for (k, before) in base_before {
        let after = model.base_params()[&k]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(before, after, "base parameter {k} changed");
    }
}

#[test]
fn prompt_tuning_prepends_positions_and_mask() {
    let model = tiny();
    let built = build(&model, &shrink(petl_methods::preset("prompt").unwrap()), 4);
    let out = model
        .forward(&batch(), &built.delta, &mut ForwardCtx::eval())
        .unwrap();
    assert_eq!(out.hidden.dims(), &[2, 7, 32]);
    let mask = out.mask.to_vec2::<u32>().unwrap();
    assert_eq!(mask[1], vec![1, 1, 1, 1, 1, 1, 0]);
    // Too long for the 64 positions once the prompt is added: a clear error, not a panic.
    let long =
        petl_models::EncoderInput::from_host(&[5; 62], &[0; 62], &[1; 62], 1, 62, &Device::Cpu).unwrap();
    let err = model
        .forward(&long, &built.delta, &mut ForwardCtx::eval())
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds"), "{err}");
}

#[test]
fn a_config_that_does_not_fit_the_model_is_refused() {
    let model = tiny();
    let mut method = petl_methods::preset("lora").unwrap();
    method.deltas[0].layers = petl_methods::Layers::Only(vec![0, 5]);
    let mut store = petl_models::ParamStore::new(&Device::Cpu, 0);
    let err = petl_methods::Delta::build(&method, &model, &mut store)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 5") && err.contains("2 blocks"), "{err}");
    // Layer selection restricts where the delta acts.
    method.deltas[0].layers = petl_methods::Layers::Only(vec![1]);
    let built = build(&model, &method, 0);
    assert!(built.store.iter().all(|(n, _)| !n.contains("layer0")));
    assert!(built.store.iter().any(|(n, _)| n.contains("layer1")));
}

/// Identity hooks that claim to change the attention heads and every projection (the trait's
/// defaults), so the model takes its composed attention and feed-forward network instead of
/// the fused ops.
struct Composed;

impl petl_models::Hooks for Composed {}

#[test]
fn fused_attention_and_feed_forward_give_the_composed_loss_and_gradients_in_training() {
    let model = tiny();
    let input = batch();
    let labels = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    for p in PRESETS {
        let mut method = shrink(p.method());
        for d in &mut method.deltas {
            d.init = InitScheme::Bert;
        }
        let built = build(&model, &method, 3);
        let composed = petl_models::Chain(&built.delta, &Composed);
        // Dropout on (probabilities included), from the same point of the same stream.
        let run = |hooks: &dyn petl_models::Hooks| {
            let mut ctx = ForwardCtx::train(petl_ops::DropoutRng::for_step(5, 1));
            let out = model.forward(&input, hooks, &mut ctx).unwrap();
            let logits = built
                .head
                .forward(&model, &out.hidden, &out.mask, hooks, &mut ctx)
                .unwrap();
            let loss = petl_ops::cross_entropy(&logits, &labels).unwrap();
            (loss.to_scalar::<f32>().unwrap(), loss.backward().unwrap())
        };
        let (fused_loss, fused) = run(&built.delta);
        let (composed_loss, reference) = run(&composed);
        common::assert_same_pass(
            p.name,
            &built.store,
            (fused_loss, &fused),
            (composed_loss, &reference),
        );
    }
}
