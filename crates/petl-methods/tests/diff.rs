//! Diff pruning on a real (tiny) BERT: gate gradients against finite differences, the
//! expected-L0 penalty against its closed form, exact projection, fixed-mask training, and
//! applying a sparse diff in place and removing it bit for bit.

mod common;

use candle_core::Device;
use common::{batch, build, check_gradients, max_abs_diff, ripple, tiny, Built};
use petl_methods::diff::{apply_diff, project, EvalGate, GroupGates, L0Gates, Projection};
use petl_methods::{Delta, DeltaSpec, Form, Method, Site};
use petl_models::BaseModel;
use petl_models::{ClassificationHead, EncoderModel, ParamStore, Pooling};
use std::collections::BTreeMap;

fn l0_method(gates: L0Gates) -> Method {
    Method {
        name: "dp".into(),
        deltas: vec![DeltaSpec::new(
            Form::Diff {
                l0: Some(gates),
                projection: Some(Projection::default()),
            },
            Site::Params,
        )],
    }
}

/// Moves log-alphas into the region where gates are strictly between 0 and 1, and gives the
/// diff nonzero values, so every gradient is generic.
fn open_gates(built: &Built) {
    for (name, var) in built.store.iter() {
        let moved = if name.contains("log_alpha") {
            (ripple(var.shape(), 0.4) + 0.8).unwrap()
        } else if name.contains(".diff.") {
            ripple(var.shape(), 0.05)
        } else {
            continue;
        };
        var.set(&moved).unwrap();
    }
}

#[test]
fn gate_and_diff_gradients_match_finite_differences() {
    let model = tiny();
    for groups in [GroupGates::None, GroupGates::Product] {
        let method = l0_method(L0Gates {
            groups,
            eval_gate: EvalGate::Expected,
            temperature: 0.9,
            ..L0Gates::default()
        });
        let built = build(&model, &method, 4);
        open_gates(&built);
        let pick = |n: &str| {
            n.starts_with("delta")
                && (n.contains("layer.1.attention.self.query.weight")
                    || n.contains("layer.0.intermediate.dense.bias")
                    || n.contains("embeddings.LayerNorm.weight"))
        };
        let checked = check_gradients(&format!("{groups:?}"), &model, &built, pick);
        // Two entries of each diff and element-gate tensor, the one entry of each group gate.
        let expected = if groups == GroupGates::None { 12 } else { 15 };
        assert_eq!(checked, expected, "{groups:?}");
    }
}

#[test]
fn penalty_is_the_closed_form_for_every_group_form() {
    let model = tiny();
    let buckets = model.config().num_layers + 2;
    let per_layer: Vec<f64> = (0..buckets).map(|b| 1e-3 * (b + 1) as f64).collect();
    for groups in [GroupGates::None, GroupGates::Product, GroupGates::Additive] {
        let gates = L0Gates {
            groups,
            lambda_per_layer: per_layer.clone(),
            lower: -0.5,
            upper: 1.2,
            ..L0Gates::default()
        };
        let built = build(&model, &l0_method(gates.clone()), 1);
        open_gates(&built);
        let shift = (0.5f64 / 1.2).ln();
        let sig = |a: f64| 1.0 / (1.0 + (-(a - shift)).exp());
        let mut expected = 0.0;
        for (name, base) in model.base_params() {
            let alpha = built.store.get(&format!("delta0.log_alpha.{name}")).unwrap();
            let p: f64 = alpha
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|&a| sig(a as f64))
                .sum();
            let bucket = match model.layer_of(name) {
                Some(l) => l + 1,
                None if name.starts_with("embeddings.") => 0,
                None => buckets - 1,
            };
            let pg = built
                .store
                .get(&format!("delta0.group_log_alpha.{name}"))
                .map(|g| sig(g.to_vec1::<f32>().unwrap()[0] as f64));
            let term = match (groups, pg) {
                (GroupGates::Product, Some(pg)) => p * pg,
                (GroupGates::Additive, Some(pg)) => p + pg,
                _ => p,
            };
            expected += per_layer[bucket] * term;
            let _ = base;
        }
        let got = built
            .delta
            .penalty()
            .unwrap()
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!(
            (got - expected).abs() <= 1e-4 * expected,
            "{groups:?}: penalty {got} vs closed form {expected}"
        );
    }
}

fn sparse_from_projection(model: &EncoderModel, built: &Built, keep: usize) -> petl_sparse::SparseDiff {
    let diffs = built.delta.dense_diffs(model).unwrap().unwrap();
    project(&diffs, keep).unwrap()
}

fn sparse_built(model: &EncoderModel, diff: &petl_sparse::SparseDiff) -> Built {
    let method = Method {
        name: "sparse".into(),
        deltas: vec![DeltaSpec::new(Form::SparseDiff {}, Site::Params)],
    };
    let mut store = ParamStore::new(&Device::Cpu, 3);
    let delta = Delta::build_with_diff(&method, model, &mut store, Some(diff)).unwrap();
    let head = ClassificationHead::create(model, 3, Pooling::Mean, &mut store).unwrap();
    Built { store, delta, head }
}

#[test]
fn projection_keeps_exactly_the_target_count_of_a_model_diff() {
    let model = tiny();
    let built = build(&model, &l0_method(L0Gates::default()), 2);
    open_gates(&built);
    let total = model.num_base_params();
    for density in [0.001, 0.005, 0.01, 0.5] {
        let keep = Projection {
            density,
            ..Projection::default()
        }
        .keep_count(total);
        let sparse = sparse_from_projection(&model, &built, keep);
        assert_eq!(sparse.nnz() as usize, keep, "density {density}");
        // Every kept entry is at least as large as every dropped one.
        let diffs = built.delta.dense_diffs(&model).unwrap().unwrap();
        let mut kept_min = f32::INFINITY;
        let mut dropped_max = 0f32;
        for (name, d) in &diffs {
            let positions = &sparse.tensors[name].positions;
            for (i, v) in d.values.iter().enumerate() {
                if positions.binary_search(&(i as u64)).is_ok() {
                    kept_min = kept_min.min(v.abs());
                } else {
                    dropped_max = dropped_max.max(v.abs());
                }
            }
        }
        assert!(
            kept_min >= dropped_max,
            "{density}: kept {kept_min} < dropped {dropped_max}"
        );
    }
}

#[test]
fn fixed_mask_training_never_moves_a_masked_out_position() {
    let model = tiny();
    let dense = build(&model, &l0_method(L0Gates::default()), 2);
    open_gates(&dense);
    let sparse = sparse_from_projection(&model, &dense, 500);
    let built = sparse_built(&model, &sparse);
    let trainable: Vec<String> = built.store.iter().map(|(n, _)| n.to_string()).collect();
    assert!(
        trainable
            .iter()
            .all(|n| n.starts_with("delta0.sparse.") || n.starts_with("classifier.")),
        "only values and head train: {trainable:?}"
    );
    let sparse_params: usize = built
        .store
        .iter()
        .filter(|(n, _)| n.starts_with("delta0.sparse."))
        .map(|(_, v)| v.elem_count())
        .sum();
    assert_eq!(sparse_params, 500);
    // Three gradient steps with a large rate.
    for _ in 0..3 {
        let grads = built.loss(&model).backward().unwrap();
        // (Tensors that keep no entry are empty; there is nothing to step.)
        for (_, var) in built.store.iter().filter(|(_, v)| v.elem_count() > 0) {
            if let Some(g) = grads.get(var) {
                var.set(&(var.as_tensor().detach() - (g.detach() * 10.0).unwrap()).unwrap())
                    .unwrap();
            }
        }
    }
    let after = built.delta.dense_diffs(&model).unwrap().unwrap();
    let mut moved = 0;
    for (name, d) in &after {
        let t = &sparse.tensors[name];
        for (i, v) in d.values.iter().enumerate() {
            match t.positions.binary_search(&(i as u64)) {
                Ok(k) => moved += usize::from(*v != t.values[k]),
                Err(_) => assert_eq!(*v, 0.0, "{name}[{i}] is outside the mask but changed"),
            }
        }
    }
    // Kept entries in position/type-embedding rows the batch never uses, and in the pooler
    // (mean pooling skips it), get no gradient; everything else moves.
    assert!(moved > 250, "only {moved} of 500 kept entries trained");
}

#[test]
fn applying_then_removing_a_diff_restores_the_base_bit_for_bit() {
    let model = tiny();
    let dense = build(&model, &l0_method(L0Gates::default()), 2);
    open_gates(&dense);
    let sparse = sparse_from_projection(&model, &dense, 2_000);
    let built = sparse_built(&model, &sparse);
    let snapshot = |m: &EncoderModel| -> BTreeMap<String, Vec<u32>> {
        m.base_params()
            .iter()
            .map(|(k, t)| {
                let bits = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (k.clone(), bits.into_iter().map(f32::to_bits).collect())
            })
            .collect()
    };
    let before = snapshot(&model);
    let hooked = built.hidden(&model, &batch());

    let applied = apply_diff(&model, &sparse).unwrap();
    assert_eq!(applied.nnz(), 2_000);
    // The base now computes what the hooks compute, bit for bit.
    let plain = model
        .forward(
            &batch(),
            &petl_models::NoHooks,
            &mut petl_models::ForwardCtx::eval(),
        )
        .unwrap()
        .hidden;
    let same = hooked
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .zip(plain.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "in-place diff and hook path disagree");
    assert_ne!(snapshot(&model), before, "applying changed nothing");
    applied.remove(&model).unwrap();
    assert_eq!(snapshot(&model), before, "removing did not restore the base");

    // A diff that does not fit is refused before anything is written.
    let mut bad = sparse.clone();
    bad.tensors.insert(
        "encoder.layer.9.output.dense.weight".into(),
        petl_sparse::SparseTensor::new(vec![4], vec![1], vec![1.0]).unwrap(),
    );
    let e = apply_diff(&model, &bad).unwrap_err().to_string();
    assert!(e.contains("encoder.layer.9.output.dense.weight"), "{e}");
    assert_eq!(snapshot(&model), before);
}

/// A sparse diff served as per-row corrections computes what the diff written into the base
/// computes, and two tasks' corrections in one batch each act on their own rows only.
#[test]
fn sparse_corrections_equal_the_applied_diff_row_by_row() {
    use petl_methods::diff::{CorrectionGroups, SparseCorrection};
    use petl_models::{EncoderInput, ForwardCtx, Hooks, NoHooks, RowGroups};
    let model = tiny();
    let diff_of = |seed: u64| {
        let dense = build(&model, &l0_method(L0Gates::default()), seed);
        open_gates(&dense);
        sparse_from_projection(&model, &dense, 3_000)
    };
    let (a, b) = (diff_of(2), diff_of(5));
    let kinds = |d: &petl_sparse::SparseDiff| -> Vec<String> {
        d.tensors
            .iter()
            .filter(|(_, t)| t.nnz() > 0)
            .map(|(n, _)| n.clone())
            .collect()
    };
    // The diffs reach embeddings, LayerNorms, weights and biases.
    for needle in [
        "word_embeddings",
        "LayerNorm.weight",
        "LayerNorm.bias",
        "dense.weight",
        "dense.bias",
    ] {
        assert!(
            kinds(&a).iter().any(|n| n.contains(needle)),
            "no entry on {needle}"
        );
    }
    let run = |input: &EncoderInput, hooks: &dyn Hooks| {
        model
            .forward(input, hooks, &mut ForwardCtx::eval())
            .unwrap()
            .hidden
    };
    let applied = |diff: &petl_sparse::SparseDiff, input: &EncoderInput| {
        let applied = apply_diff(&model, diff).unwrap();
        let h = run(input, &NoHooks);
        applied.remove(&model).unwrap();
        h
    };
    let input = batch();
    let (ca, cb) = (
        SparseCorrection::new(&model, &a).unwrap(),
        SparseCorrection::new(&model, &b).unwrap(),
    );
    assert_eq!(ca.nnz(), 3_000);
    let base = run(&input, &NoHooks);
    let want_a = applied(&a, &input);
    assert!(
        max_abs_diff(&want_a, &base) > 1e-2,
        "the diff barely changes the output"
    );
    assert!(max_abs_diff(&run(&input, &ca), &want_a) <= 1e-5);

    // Row 0 is task a, row 1 task b: each row equals its own task's applied diff.
    let groups = RowGroups::new(vec![(0..1, &ca as &dyn Hooks), (1..2, &cb as &dyn Hooks)]).unwrap();
    let mixed = run(&input, &groups);
    let want_b = applied(&b, &input);
    let row = |t: &candle_core::Tensor, r: usize| t.narrow(0, r, 1).unwrap();
    assert!(max_abs_diff(&row(&mixed, 0), &row(&want_a, 0)) <= 1e-5);
    assert!(max_abs_diff(&row(&mixed, 1), &row(&want_b, 1)) <= 1e-5);

    // The same through one pass per hook point for both tasks.
    let grouped = CorrectionGroups::new(vec![(0..1, &ca), (1..2, &cb)]).unwrap();
    let fused = run(&input, &grouped);
    assert!(max_abs_diff(&fused, &mixed) <= 1e-6);
    assert!(CorrectionGroups::new(vec![(1..2, &ca), (0..1, &cb)]).is_err());

    // A diff on a tensor the model lacks is refused with its name.
    let mut bad = a.clone();
    bad.tensors.insert(
        "encoder.layer.9.output.dense.weight".into(),
        petl_sparse::SparseTensor::new(vec![4], vec![1], vec![1.0]).unwrap(),
    );
    let e = SparseCorrection::new(&model, &bad).unwrap_err().to_string();
    assert!(e.contains("encoder.layer.9.output.dense.weight"), "{e}");
}
