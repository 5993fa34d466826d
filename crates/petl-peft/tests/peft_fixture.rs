//! Adapters written by Hugging Face peft 0.21.2 (LoRA, IA3, prefix tuning with and without
//! `prefix_projection`, prompt tuning; task SEQ_CLS, classifier in `modules_to_save`) on the
//! tiny random BERT import into petl and give peft's logits. The fixture and the script that
//! wrote it: `tests/golden/peft-fixture/`, `scripts/peft_roundtrip.py --make-fixture`.

use candle_core::{DType, Device, Tensor};
use petl_data::{Batch, BatchLabels};
use petl_methods::{Composition, Form, Scale};
use petl_models::{EncoderModel, ForwardCtx, ModelDir};
use petl_peft::import;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-4;

fn tiny_bert() -> EncoderModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-bert");
    EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft-fixture")
}

fn batch(g: &HashMap<String, Tensor>) -> Batch {
    let flat = |k: &str| -> Vec<u32> {
        g[k].to_dtype(DType::U32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (batch_size, seq_len) = g["input_ids"].dims2().unwrap();
    Batch {
        input_ids: flat("input_ids"),
        type_ids: flat("token_type_ids"),
        attention_mask: flat("attention_mask"),
        batch_size,
        seq_len,
        labels: BatchLabels::None,
    }
}

#[test]
fn peft_written_adapters_give_peft_logits() {
    let base = tiny_bert();
    let g = candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap();
    let batch = batch(&g);
    // Row 0 is a pair: the token types must reach the model.
    assert!(batch.type_ids.contains(&1));
    for case in ["lora", "ia3", "prefix", "prefix-projection", "prompt"] {
        let imported = import(&base, &fixture().join(case), None).unwrap();
        let tm = &imported.task_model;
        let ours = tm.logits(&batch, &mut ForwardCtx::eval()).unwrap();
        let theirs = &g[&format!("logits.{case}")];
        let diff = (&ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!("{case}: max |Δ logits| = {diff:.2e}");
        assert!(diff <= TOLERANCE, "{case}: max |Δ logits| {diff} against peft");
        assert_eq!(tm.spec().labels().unwrap(), ["LABEL_0", "LABEL_1", "LABEL_2"]);
        let d = &tm.method().deltas;
        match case {
            "lora" => {
                assert_eq!(d.len(), 1);
                assert_eq!(d[0].form, Form::LowRank { r: 4 });
                assert_eq!(d[0].composition, Composition::Scaled(Scale::Fixed(2.0)));
            }
            // peft's "output.dense" also matched attention.output.dense: both inputs scaled.
            "ia3" => assert_eq!(
                d[0].form,
                Form::Scaling {
                    scale_input: vec![petl_models::Proj::AttnOut, petl_models::Proj::FfnDown]
                }
            ),
            "prefix" | "prefix-projection" => assert!(matches!(
                d[0].form,
                Form::Prefix {
                    length: 5,
                    reparam: None,
                    shift_positions: true,
                    ..
                }
            )),
            _ => assert_eq!(d[0].form, Form::Prompt { length: 3 }),
        }
        // Saved as a petl artifact it records tiny-bert and reloads to the same logits.
        let dir = tempfile::tempdir().unwrap();
        tm.save_artifact(dir.path()).unwrap();
        let back = petl_train::TaskModel::from_artifact(&base, dir.path()).unwrap();
        let again = back.logits(&batch, &mut ForwardCtx::eval()).unwrap();
        assert_eq!(
            ours.to_vec2::<f32>().unwrap(),
            again.to_vec2::<f32>().unwrap(),
            "{case}: artifact"
        );
    }
}
