//! Shared fixtures: the tiny random BERT of petl-models' parity tests and small batches.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use petl_methods::{Delta, Form, Method};
use petl_models::{
    ClassificationHead, EncoderInput, EncoderModel, ForwardCtx, ModelDir, ParamStore, Pooling,
};
use std::path::Path;

pub fn tiny() -> EncoderModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-bert");
    EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap()
}

pub fn batch() -> EncoderInput {
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

/// A preset at a size the tiny model can hold: bottlenecks of 4, prompts of 3, prefix
/// generators 8 wide.
pub fn shrink(mut m: Method) -> Method {
    for d in &mut m.deltas {
        let n = if matches!(d.form, Form::Prompt { .. }) {
            3
        } else {
            4
        };
        d.form.set_bottleneck(n);
        if let Form::Prefix { reparam: Some(h), .. } = &mut d.form {
            *h = 8;
        }
    }
    m
}

/// A method built on `model` with a 3-way classification head over the mean of all tokens, so
/// every position of the last layer reaches the loss.
pub struct Built {
    pub store: ParamStore,
    pub delta: Delta,
    pub head: ClassificationHead,
}

pub fn build(model: &EncoderModel, method: &Method, seed: u64) -> Built {
    let mut store = ParamStore::new(&Device::Cpu, seed);
    let delta = Delta::build(method, model, &mut store).unwrap();
    let head = ClassificationHead::create(model, 3, Pooling::Mean, &mut store).unwrap();
    Built { store, delta, head }
}

impl Built {
    pub fn hidden(&self, model: &EncoderModel, input: &EncoderInput) -> Tensor {
        model
            .forward(input, &self.delta, &mut ForwardCtx::eval())
            .unwrap()
            .hidden
    }

    pub fn loss(&self, model: &EncoderModel) -> Tensor {
        let input = batch();
        let mut ctx = ForwardCtx::eval();
        let out = model.forward(&input, &self.delta, &mut ctx).unwrap();
        let logits = self
            .head
            .forward(model, &out.hidden, &out.mask, &self.delta, &mut ctx)
            .unwrap();
        petl_ops::cross_entropy(&logits, &Tensor::new(&[0u32, 2], &Device::Cpu).unwrap()).unwrap()
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b)
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

/// Central differences of the loss against backprop for the largest-gradient entries of each
/// delta tensor (head excluded: the foundation tests cover it).
pub fn check_gradients(
    label: &str,
    model: &EncoderModel,
    built: &Built,
    pick: impl Fn(&str) -> bool,
) -> usize {
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
pub fn ripple(shape: &candle_core::Shape, a: f32) -> Tensor {
    let v: Vec<f32> = (0..shape.elem_count())
        .map(|i| a * (i as f32 * 0.77 + 0.3).sin())
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Asserts that two runs of one training pass agree: the loss to 1e-5, and every parameter of
/// `store` that has a gradient on either side the same gradient to 1e-4 of its scale.
pub fn assert_same_pass(
    label: &str,
    store: &ParamStore,
    (loss_a, grads_a): (f32, &candle_core::backprop::GradStore),
    (loss_b, grads_b): (f32, &candle_core::backprop::GradStore),
) {
    assert!(
        (loss_a - loss_b).abs() < 1e-5,
        "{label}: loss {loss_a} vs {loss_b}"
    );
    for (name, var) in store.iter() {
        let (Some(a), Some(b)) = (grads_a.get(var), grads_b.get(var)) else {
            assert!(
                grads_a.get(var).is_none() && grads_b.get(var).is_none(),
                "{label}: {name} has a gradient on one side only"
            );
            continue;
        };
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1e-3);
        let d = max_abs_diff(a, b) / scale;
        assert!(d < 1e-4, "{label}: gradient of {name} differs by {d} (relative)");
    }
}
