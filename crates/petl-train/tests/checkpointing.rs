//! Activation checkpointing recomputes each block in the backward from its saved input and
//! random stream: the loss and every gradient equal the plain backward's, dropout included.

use candle_core::Device;
use petl_data::{collate, Encoded, Label, TaskKind, TaskSpec};
use petl_models::{EncoderModel, ForwardCtx, ModelDir, Pooling};
use petl_ops::DropoutRng;
use petl_train::TaskModel;
use std::path::Path;

fn model() -> EncoderModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-bert");
    EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap()
}

fn batch() -> petl_data::Batch {
    let data: Vec<Encoded> = (0..4)
        .map(|i| Encoded {
            input_ids: (0..(5 + i)).map(|j| (7 * i + 3 * j) as u32 % 90 + 3).collect(),
            type_ids: vec![0; 5 + i],
            label: Label::Class(i % 2),
        })
        .collect();
    collate(&data.iter().collect::<Vec<_>>(), 0).unwrap()
}

#[test]
fn checkpointed_gradients_equal_the_plain_backward_for_every_site() {
    let model = model();
    let spec = TaskSpec::default_for(
        "t",
        TaskKind::Classification {
            labels: vec!["a".into(), "b".into()],
        },
    );
    let batch = batch();
    // Every kind of site: weights (LoRA), heads + FFN (MAM: prefix generator shared by all
    // layers), embeddings (prompt), base parameters (BitFit), sequential adapters.
    for name in ["lora", "mam", "prompt", "bitfit", "houlsby"] {
        let mut method = petl_methods::preset(name).unwrap();
        if let petl_methods::Form::Prompt { length } = &mut method.deltas[0].form {
            // The tiny model has 64 positions.
            *length = 6;
        }
        let tm = TaskModel::new(&model, &method, spec.clone(), Pooling::Cls, 5).unwrap();
        // Move every parameter off its initial value (LoRA's B starts at zero).
        for (i, (_, var)) in tm.params().iter().enumerate() {
            let n = var.elem_count();
            let v: Vec<f32> = (0..n).map(|k| 0.03 * ((k + 7 * i) as f32 * 0.41).sin()).collect();
            let bump = candle_core::Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
            var.set(&(var.as_tensor() + bump).unwrap()).unwrap();
        }
        let mut ctx = ForwardCtx::train(DropoutRng::for_step(9, 2));
        let loss = tm.loss(&batch, &mut ctx).unwrap();
        let store = loss.backward().unwrap();
        let mut ctx = ForwardCtx::train(DropoutRng::for_step(9, 2));
        let (ck_loss, ck_grads) = tm.loss_and_grads_checkpointed(&batch, 1.0, &mut ctx).unwrap();
        let (a, b) = (
            loss.to_scalar::<f32>().unwrap(),
            ck_loss.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{name}: loss {a} vs {b}");
        let mut compared = 0;
        for (pname, var) in tm.params().iter() {
            let plain = store
                .get(var)
                .unwrap_or_else(|| panic!("{name}/{pname}: no plain gradient"));
            let ck = ck_grads
                .get(pname)
                .unwrap_or_else(|| panic!("{name}/{pname}: no checkpointed gradient"));
            let scale = plain
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1e-6);
            let d = (plain - ck)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                d / scale < 1e-4,
                "{name}/{pname}: gradients differ by {d} (scale {scale})"
            );
            compared += 1;
        }
        assert_eq!(compared, tm.params().len(), "{name}");
    }
}
