//! Mixed precision on real MiniLM: frozen linears in f16, LoRA trained in f32 through them.

use candle_core::{DType, Device, Tensor};
use petl_data::{collate, Encoded, Label, TaskKind, TaskSpec};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ForwardCtx, ModelDir, Pooling, Precision};
use petl_train::TaskModel;

fn examples() -> Vec<Encoded> {
    (0..8)
        .map(|i| Encoded {
            input_ids: std::iter::once(101)
                .chain((1..32).map(|j| 1000 + ((i * 131 + j * 17) % 20000) as u32))
                .collect(),
            type_ids: vec![0; 32],
            label: Label::Class(i % 2),
        })
        .collect()
}

/// Loss and LoRA gradients of one batch, with B moved off zero so A gets a gradient too.
fn loss_and_grads(model: &EncoderModel) -> (f32, Vec<(String, Vec<f32>)>) {
    let spec = TaskSpec::default_for(
        "t",
        TaskKind::Classification {
            labels: vec!["a".into(), "b".into()],
        },
    );
    let tm = TaskModel::new(
        model,
        &petl_methods::preset("lora").unwrap(),
        spec,
        Pooling::Cls,
        3,
    )
    .unwrap();
    for (i, (_, var)) in tm.params().iter().enumerate() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|k| 0.02 * ((k + 5 * i) as f32 * 0.61).sin()).collect();
        var.set(&(var.as_tensor() + Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap())
            .unwrap();
    }
    let data = examples();
    let batch = collate(&data.iter().collect::<Vec<_>>(), 0).unwrap();
    let loss = tm.loss(&batch, &mut ForwardCtx::eval()).unwrap();
    assert_eq!(loss.dtype(), DType::F32);
    let store = loss.backward().unwrap();
    let grads = tm
        .params()
        .iter()
        .map(|(name, var)| {
            let g = store.get(var).unwrap_or_else(|| panic!("{name} has no gradient"));
            assert_eq!(g.dtype(), DType::F32, "{name}: master gradients are f32");
            (
                name.to_string(),
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), grads)
}

#[test]
fn f16_linears_give_the_f32_loss_and_gradients_to_half_precision_accuracy() {
    let dir = ModelDir::open(petl_hub::ensure("minilm").unwrap()).unwrap();
    let full = EncoderModel::load(&dir, &Device::Cpu).unwrap();
    let half = EncoderModel::load_with_precision(&dir, &Device::Cpu, Precision::F16).unwrap();
    let q = |m: &EncoderModel| m.base_params()["encoder.layer.0.attention.self.query.weight"].dtype();
    assert_eq!((q(&full), q(&half)), (DType::F32, DType::F16));

    let (l32, g32) = loss_and_grads(&full);
    let (l16, g16) = loss_and_grads(&half);
    assert!(
        (l32 - l16).abs() / l32.abs() < 5e-3,
        "loss {l32} (f32) vs {l16} (f16)"
    );
    for ((name, a), (_, b)) in g32.iter().zip(&g16) {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!(na > 0.0, "{name}: zero gradient");
        let cosine = dot / (na * nb);
        assert!(
            cosine > 0.999,
            "{name}: cosine {cosine} between f32 and f16 gradients"
        );
        assert!((na - nb).abs() / na < 2e-2, "{name}: norm {na} vs {nb}");
    }
}

#[test]
fn bf16_is_refused_on_the_cpu_with_a_reason() {
    let dir = ModelDir::open(petl_hub::ensure("minilm").unwrap()).unwrap();
    let e = EncoderModel::load_with_precision(&dir, &Device::Cpu, Precision::Bf16).unwrap_err();
    assert!(e.to_string().contains("bf16 needs a CUDA device"), "{e}");
}
