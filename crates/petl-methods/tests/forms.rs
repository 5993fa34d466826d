//! The functional forms and compositions, one at a time: gradients against finite differences,
//! prefix tuning against its gated-adapter form (He et al. Eq. 7–10), and LoRA/IA³ merging.

mod common;

use common::{batch, build, check_gradients, max_abs_diff, ripple, tiny};
use petl_methods::{
    merge_into, AdapterActivation, AdapterNorm, Composition, DeltaSpec, Form, InitScheme, Insertion, Method,
    PrefixActivation, Scale, Site,
};
use petl_models::BaseModel;
use petl_models::{ForwardCtx, Proj};

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
