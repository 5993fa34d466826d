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
