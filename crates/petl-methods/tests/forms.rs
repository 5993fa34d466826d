//! The functional forms and compositions, one at a time: gradients against finite differences,
//! prefix tuning against its gated-adapter form (He et al. Eq. 7–10), and LoRA/IA³ merging.

mod common;

use candle_core::{Device, Tensor};
use common::{batch, build, max_abs_diff, tiny, Built};
use petl_methods::{
    merge_into, AdapterActivation, AdapterNorm, Composition, DeltaSpec, Form, InitScheme, Insertion, Method,
    PrefixActivation, Scale, Site,
};
use petl_models::{EncoderModel, ForwardCtx, Proj};

fn bottleneck(norm: AdapterNorm) -> Form {
    Form::Bottleneck {
        r: 3,
        activation: AdapterActivation::Gelu,
        layer_norm: norm,
    }
}

fn prefix(activation: PrefixActivation, reparam: Option<usize>, explicit_gate: bool) -> Form {
    Form::Prefix {
        length: 3,
        activation,
        reparam,
        explicit_gate,
        shift_positions: false,
    }
}

fn method(deltas: Vec<DeltaSpec>) -> Method {
    Method {
        name: "test".into(),
        deltas,
    }
}

/// Every point of the space these tests differentiate through: each form, both insertions,
/// every composition.
fn cases() -> Vec<(&'static str, Method)> {
    let gelu_seq_attn = DeltaSpec {
        insertion: Insertion::Sequential,
        composition: Composition::Scaled(Scale::Fixed(1.5)),
        ..DeltaSpec::new(bottleneck(AdapterNorm::In), Site::Attention)
    };
    let gated_ffn = DeltaSpec {
        composition: Composition::Gated,
        ..DeltaSpec::new(bottleneck(AdapterNorm::Out), Site::Ffn)
    };
    let learned = DeltaSpec {
        composition: Composition::Scaled(Scale::Learned),
        ..DeltaSpec::new(
            Form::LowRank { r: 2 },
            Site::Weights(vec![Proj::Query, Proj::FfnDown]),
        )
    };
    let ia3 = DeltaSpec::new(
        Form::Scaling {
            scale_input: vec![Proj::FfnDown],
        },
        Site::Weights(vec![Proj::Value, Proj::FfnDown]),
    );
    let prefix_gated = DeltaSpec {
        composition: Composition::Gated,
        ..DeltaSpec::new(prefix(PrefixActivation::Softmax, Some(5), false), Site::Heads)
    };
    let prefix_explicit = DeltaSpec {
        composition: Composition::Gated,
        ..DeltaSpec::new(prefix(PrefixActivation::Softmax, None, true), Site::Heads)
    };
    let mh_pa = DeltaSpec {
        composition: Composition::Scaled(Scale::Learned),
        ..DeltaSpec::new(prefix(PrefixActivation::Relu, None, false), Site::Heads)
    };
    vec![
        (
            "sequential bottleneck, LN in, fixed scale",
            method(vec![gelu_seq_attn]),
        ),
        (
            "parallel bottleneck, LN out, learned gate",
            method(vec![gated_ffn]),
        ),
        ("low-rank, learned scale", method(vec![learned])),
        ("IA3 input and output scaling", method(vec![ia3])),
        ("prefix by concatenation, MLP reparam", method(vec![prefix_gated])),
        ("prefix, explicit gate", method(vec![prefix_explicit])),
        ("multi-head PA, learned scale", method(vec![mh_pa])),
        (
            "prompt",
            method(vec![DeltaSpec::new(Form::Prompt { length: 2 }, Site::Embeddings)]),
        ),
        ("bias", method(vec![DeltaSpec::new(Form::Bias {}, Site::Params)])),
    ]
}

/// Central differences of the loss against backprop for the largest-gradient entries of each
/// delta tensor (head excluded: the foundation tests cover it).
fn check_gradients(label: &str, model: &EncoderModel, built: &Built, pick: impl Fn(&str) -> bool) -> usize {
    let grads = built.loss(model).backward().unwrap();
    let loss = || built.loss(model).to_scalar::<f32>().unwrap() as f64;
    // Small enough not to straddle a ReLU kink, large enough for f32 round-off in the loss.
    let eps = 2e-3f32;
    let mut checked = 0;
    let names: Vec<String> = built
        .store
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| pick(n))
        .collect();
    assert!(!names.is_empty(), "{label}: nothing to check");
    for name in names {
        let var = built.store.get(&name).unwrap();
        let g = grads
            .get(var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut idx: Vec<usize> = (0..g.len()).collect();
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in idx.iter().take(2) {
            let orig = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bump = |d: f32| {
                let mut v = orig.clone();
                v[i] += d;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss()
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps as f64);
            var.set(&Tensor::from_vec(orig, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let analytic = g[i] as f64;
            assert!(
                (numeric - analytic).abs() <= 2e-3 + 0.03 * analytic.abs(),
                "{label}: {name}[{i}]: backprop {analytic:.6e}, finite difference {numeric:.6e}"
            );
            checked += 1;
        }
    }
    checked
}

/// A deterministic, irregular tensor of amplitude `a`.
fn ripple(shape: &candle_core::Shape, a: f32) -> Tensor {
    let v: Vec<f32> = (0..shape.elem_count())
        .map(|i| a * (i as f32 * 0.77 + 0.3).sin())
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn gradients_match_finite_differences_for_every_form_and_composition() {
    let model = tiny();
    let mut total = 0;
    for (label, m) in cases() {
        let built = build(&model, &m, 11);
        // Move scales off their initial values and give networks O(1) weights, so every
        // gradient is generic and a LayerNorm on an adapter's output is not fed a near-zero
        // vector (whose normalisation is too curved for finite differences).
        for (name, var) in built.store.iter() {
            if name.ends_with(".scale") {
                var.set(&(var.as_tensor() * 1.3).unwrap()).unwrap();
            }
            if name.contains(".up.") || name.contains(".down.") || name.contains(".prefix.") {
                var.set(&(var.as_tensor() + ripple(var.shape(), 0.2)).unwrap())
                    .unwrap();
            }
        }
        let pick =
            |n: &str| n.starts_with("delta") || n.ends_with(".bias") && n.starts_with("encoder.layer.1");
        total += check_gradients(label, &model, &built, pick);
    }
    assert!(total >= 60, "{total} entries checked");
}

/// Full fine-tuning as a dense diff: backprop through the whole encoder (embeddings, attention,
/// GELU, LayerNorm) and the head agrees with finite differences for every kind of tensor.
#[test]
fn dense_diff_gradients_match_finite_differences() {
    let model = tiny();
    let built = build(
        &model,
        &method(vec![DeltaSpec::new(Form::Dense {}, Site::Params)]),
        5,
    );
    let names = [
        "embeddings.word_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.self.key.bias",
        "encoder.layer.1.attention.output.dense.weight",
        "encoder.layer.1.intermediate.dense.bias",
        "encoder.layer.1.output.LayerNorm.bias",
        "classifier.weight",
    ];
    let checked = check_gradients("dense", &model, &built, |n| names.contains(&n));
    assert_eq!(checked, 2 * names.len());
}

#[test]
fn prefix_tuning_equals_its_gated_adapter_form() {
    let model = tiny();
    let concat = method(vec![DeltaSpec {
        composition: Composition::Gated,
        ..DeltaSpec::new(prefix(PrefixActivation::Softmax, None, false), Site::Heads)
    }]);
    let explicit = method(vec![DeltaSpec {
        composition: Composition::Gated,
        ..DeltaSpec::new(prefix(PrefixActivation::Softmax, None, true), Site::Heads)
    }]);
    let a = build(&model, &concat, 21);
    let b = build(&model, &explicit, 99);
    // Same prefixes (and head) in both.
    b.store.assign(&a.store.to_tensors().unwrap()).unwrap();
    let base = model
        .forward(&batch(), &petl_models::NoHooks, &mut ForwardCtx::eval())
        .unwrap()
        .hidden;
    let (ha, hb) = (a.hidden(&model, &batch()), b.hidden(&model, &batch()));
    let diff = max_abs_diff(&ha, &hb);
    assert!(diff <= 1e-5, "concatenation vs Eq. 7–10: max |Δ| {diff}");
    assert!(
        max_abs_diff(&ha, &base) > 1e-2,
        "the prefix must change the output for the test to mean anything"
    );
    // Removing the gate (h + Δh) is a different function.
    let ungated = method(vec![DeltaSpec::new(
        prefix(PrefixActivation::Softmax, None, false),
        Site::Heads,
    )]);
    let c = build(&model, &ungated, 0);
    c.store.assign(&a.store.to_tensors().unwrap()).unwrap();
    assert!(max_abs_diff(&c.hidden(&model, &batch()), &ha) > 1e-3);
}

#[test]
fn merged_lora_and_ia3_compute_the_same_function_and_unmerge_exactly() {
    let model = tiny();
    let lora = DeltaSpec {
        composition: Composition::Scaled(Scale::Fixed(2.0)),
        init: InitScheme::Bert,
        ..DeltaSpec::new(
            Form::LowRank { r: 4 },
            Site::Weights(vec![Proj::Query, Proj::Value, Proj::FfnUp]),
        )
    };
    let ia3 = DeltaSpec::new(
        Form::Scaling {
            scale_input: vec![Proj::FfnDown],
        },
        Site::Weights(vec![Proj::Key, Proj::FfnDown]),
    );
    let adapter = DeltaSpec::new(bottleneck(AdapterNorm::None), Site::Ffn);
    let built = build(&model, &method(vec![lora, ia3, adapter]), 5);
    for (name, var) in built.store.iter() {
        if name.ends_with(".scale") {
            var.set(&(var.as_tensor() + ripple(var.shape(), 0.3)).unwrap())
                .unwrap();
        }
    }
    let before: Vec<Vec<f32>> = model
        .base_params()
        .values()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let unmerged = built.hidden(&model, &batch());
    let merged = built.delta.merged(&model).unwrap();
    // q, v, ffn_up by LoRA; k (weight and bias) and ffn_down by IA3; the adapter stays a hook.
    assert_eq!(merged.num_merged(), 2 * 3 + 2 + 2 + 2);
    let out = model
        .forward(&batch(), &merged, &mut ForwardCtx::eval())
        .unwrap()
        .hidden;
    let diff = max_abs_diff(&out, &unmerged);
    assert!(diff <= 1e-5, "merged vs unmerged: {diff}");

    // Exporting into a weight map and undoing restores every tensor bit for bit.
    let mut weights = model.base_params().clone();
    let undo = merge_into(&merged, &mut weights);
    assert!(weights
        .iter()
        .any(|(k, t)| max_abs_diff(t, &model.base_params()[k]) > 0.0));
    undo.restore(&mut weights);
    for (k, t) in &weights {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = model.base_params()[k]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{k} not restored exactly");
    }
    merged.unmerge();
    let again = built.hidden(&model, &batch());
    assert_eq!(max_abs_diff(&again, &unmerged), 0.0);
    let after: Vec<Vec<f32>> = model
        .base_params()
        .values()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    assert_eq!(before, after, "the base was written");
}
