//! Every method leaves the base untouched, starts from the base model's outputs, and gives every
//! trainable parameter a finite, nonzero gradient.

use candle_core::{DType, Device, Tensor};
use petl_methods::Method;
use petl_models::{
    ClassificationHead, EncoderInput, EncoderModel, ForwardCtx, ModelDir, NoHooks, ParamStore,
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
        let head = ClassificationHead::create(&model, 3, &mut store).unwrap();
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
            .forward(&model, &hidden, &delta, &mut ForwardCtx::eval())
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
