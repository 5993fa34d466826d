//! Every method leaves the base untouched, starts from the base model's outputs, and gives every
//! trainable parameter a finite, nonzero gradient.

use candle_core::{DType, Device, Tensor};
use petl_methods::Method;
use petl_models::{
    ClassificationHead, EncoderInput, EncoderModel, ForwardCtx, ModelDir, NoHooks, ParamStore, Pooling,
};
use std::path::Path;

fn tiny() -> EncoderModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-bert");
    EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap()
}

fn batch() -> EncoderInput {
    EncoderInput::from_host(
        &[5, 6, 7, 8, 9, 10, 11, 0],
        &[0, 0, 1, 1, 0, 0, 0, 0],
        &[1, 1, 1, 1, 1, 1, 1, 0],
        2,
        4,
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn methods_start_at_the_base_output_and_train_what_they_claim() {
    let model = tiny();
    let base_before: Vec<(String, Vec<f32>)> = model
        .base_params()
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    let reference = model
        .forward(&batch(), &NoHooks, &mut ForwardCtx::eval())
        .unwrap();
    for method in Method::ALL {
        let mut store = ParamStore::new(&Device::Cpu, 1);
        let delta = method.build(&model, &mut store).unwrap();
        let head = ClassificationHead::create(&model, 3, Pooling::Cls, &mut store).unwrap();
        let hidden = model.forward(&batch(), &delta, &mut ForwardCtx::eval()).unwrap();
        // Copies of the base compute exactly what the base computes.
        let diff = hidden
            .sub(&reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{method}: output moved at init");

        let logits = head
            .forward(
                &model,
                &hidden,
                &batch().attention_mask,
                &delta,
                &mut ForwardCtx::eval(),
            )
            .unwrap();
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let loss = petl_ops::cross_entropy(&logits, &targets).unwrap();
        let grads = loss.backward().unwrap();
        let expected_trainable: usize = model
            .base_params()
            .iter()
            .filter(|(k, _)| method.trains(k))
            .map(|(_, t)| t.elem_count())
            .sum();
        assert_eq!(delta.num_elements(), expected_trainable, "{method}");
        for (name, var) in store.iter() {
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{method}: no gradient for {name}"));
            let g = g
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{method}: non-finite gradient for {name}"
            );
            // Position and type embeddings of unused rows legitimately get zero gradient.
            if !name.contains("embeddings") {
                assert!(g.iter().any(|v| *v != 0.0), "{method}: zero gradient for {name}");
            }
        }
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

/// Central finite differences of the loss agree with backprop through the whole encoder
/// (embeddings, attention, GELU, LayerNorm, pooler, head) for sampled entries of every kind of
/// trainable tensor.
#[test]
fn gradients_match_finite_differences() {
    let model = tiny();
    let mut store = ParamStore::new(&Device::Cpu, 5);
    let delta = Method::Full.build(&model, &mut store).unwrap();
    let head = ClassificationHead::create(&model, 3, Pooling::Cls, &mut store).unwrap();
    let targets = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
    let loss_tensor = || -> Tensor {
        let input = batch();
        let mut ctx = ForwardCtx::eval();
        let hidden = model.forward(&input, &delta, &mut ctx).unwrap();
        let logits = head
            .forward(&model, &hidden, &input.attention_mask, &delta, &mut ctx)
            .unwrap();
        petl_ops::cross_entropy(&logits, &targets).unwrap()
    };
    let loss = || loss_tensor().to_scalar::<f32>().unwrap() as f64;
    let grads = loss_tensor().backward().unwrap();
    let names = [
        "embeddings.word_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.self.key.bias",
        "encoder.layer.1.attention.output.dense.weight",
        "encoder.layer.1.intermediate.dense.bias",
        "encoder.layer.1.output.LayerNorm.bias",
        "pooler.dense.weight",
        "classifier.weight",
    ];
    let eps = 1e-2f32;
    let mut checked = 0;
    for name in names {
        let var = store.get(name).unwrap();
        let g = grads
            .get(var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // The entries with the largest gradients: well above f32 round-off in the loss.
        let mut idx: Vec<usize> = (0..g.len()).collect();
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in idx.iter().take(3) {
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
            let err = (numeric - analytic).abs();
            assert!(
                err <= 2e-3 + 0.02 * analytic.abs(),
                "{name}[{i}]: backprop {analytic:.6e}, finite difference {numeric:.6e}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 27);
}
