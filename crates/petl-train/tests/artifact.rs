//! A trained delta of every design-space form saves only what it must (prefix generators
//! ejected, the resolved configuration and the base fingerprint alongside) and reloads to the
//! same logits bit for bit; another base model refuses it.

use candle_core::{Device, Tensor};
use petl_data::{collate, Encoded, Label, TaskKind, TaskSpec};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ForwardCtx, ModelDir, Pooling};
use petl_train::TaskModel;
use std::path::Path;

fn model(name: &str) -> EncoderModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../petl-models/tests/golden")
        .join(name);
    EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap()
}

fn spec() -> TaskSpec {
    TaskSpec::default_for(
        "t",
        TaskKind::Classification {
            labels: vec!["a".into(), "b".into(), "c".into()],
        },
    )
}

fn examples() -> Vec<Encoded> {
    (0..4)
        .map(|i| Encoded {
            input_ids: (0..(4 + i)).map(|j| (7 * i + j) as u32 % 90 + 3).collect(),
            type_ids: vec![0; 4 + i],
            label: Label::Class(i % 3),
        })
        .collect()
}

fn logits(tm: &TaskModel<'_>) -> Vec<Vec<f32>> {
    let data = examples();
    let batch = collate(&data.iter().collect::<Vec<_>>(), 0).unwrap();
    tm.logits(&batch, &mut ForwardCtx::eval())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

/// Moves every trainable tensor off its initial value, as training would.
fn perturb(tm: &TaskModel<'_>) {
    for (i, (_, var)) in tm.params().iter().enumerate() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|k| 0.05 * ((k + 3 * i) as f32 * 0.37).sin()).collect();
        let bump = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
        var.set(&(var.as_tensor() + bump).unwrap()).unwrap();
    }
}

#[test]
fn every_preset_round_trips_bit_for_bit() {
    let base = model("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    for preset in petl_methods::PRESETS {
        let mut method = preset.method();
        for d in &mut method.deltas {
            let n = if matches!(d.form, petl_methods::Form::Prompt { .. }) {
                3
            } else {
                4
            };
            d.form.set_bottleneck(n);
        }
        let tm = TaskModel::new(&base, &method, spec(), Pooling::Cls, 7).unwrap();
        perturb(&tm);
        let before = logits(&tm);
        let path = dir.path().join(preset.name);
        tm.save_artifact(&path).unwrap();
        let meta = petl_artifact::load_meta(&path).unwrap();
        // The artifact records the method it can rebuild: generators ejected.
        let stored: petl_methods::Method = serde_json::from_value(meta.method.clone()).unwrap();
        assert_eq!(stored, method.ejected(), "{}", preset.name);
        assert!(meta.stored_params <= meta.trainable_params, "{}", preset.name);
        if method.has_reparam() {
            assert!(
                meta.stored_params < meta.trainable_params,
                "{}: generator stored",
                preset.name
            );
        }
        let back = TaskModel::from_artifact(&base, &path).unwrap();
        assert_eq!(before, logits(&back), "{}: reloaded logits differ", preset.name);
    }
}

#[test]
fn an_artifact_for_another_base_is_refused() {
    let bert = model("tiny-bert");
    let roberta = model("tiny-roberta");
    let dir = tempfile::tempdir().unwrap();
    let tm = TaskModel::new(
        &bert,
        &petl_methods::preset("mam-glue").unwrap(),
        spec(),
        Pooling::Cls,
        1,
    )
    .unwrap();
    tm.save_artifact(dir.path()).unwrap();
    let err = TaskModel::from_artifact(&roberta, dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("trained on base model"), "{err}");
}

/// A diff-pruning artifact: a real sparse diff (a projection of a perturbed first stage)
/// saved with its head reloads to the same logits bit for bit, in f32; half-precision values
/// reload as their rounding; a damaged sparse file and another base are clear errors.
#[test]
fn a_sparse_diff_artifact_round_trips_and_damage_is_named() {
    use petl_methods::diff::{project, Projection};
    let base = model("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let stage1 = TaskModel::new(
        &base,
        &petl_methods::preset("diff-pruning").unwrap(),
        spec(),
        Pooling::Cls,
        3,
    )
    .unwrap();
    perturb(&stage1);
    let diffs = stage1.delta().dense_diffs(&base).unwrap().unwrap();
    let keep = Projection::default().keep_count(base.num_base_params()) * 20;
    let sparse = project(&diffs, keep).unwrap();
    let method = petl_train::diff_pipeline::sparse_method(stage1.method());
    let mut tm = TaskModel::with_sparse_diff(&base, &method, spec(), Pooling::Cls, 0, Some(&sparse)).unwrap();
    tm.copy_head_from(&stage1).unwrap();
    let before = logits(&tm);
    let path = dir.path().join("f32");
    tm.save_artifact(&path).unwrap();
    let meta = petl_artifact::load_meta(&path).unwrap();
    let sd = meta.sparse_diff.clone().unwrap();
    assert_eq!(sd.nnz as usize, keep);
    let report = petl_sparse::decode(&std::fs::read(path.join(petl_artifact::SPARSE_FILE)).unwrap())
        .unwrap()
        .report;
    assert_eq!(report.file_bytes, sd.bytes);
    assert!(
        report.ratio_to_bound() <= 1.2,
        "positions {:.3}× the bound",
        report.ratio_to_bound()
    );
    let back = TaskModel::from_artifact(&base, &path).unwrap();
    assert_eq!(before, logits(&back), "reloaded logits differ");
    assert_eq!(back.delta().sparse_diff().unwrap().unwrap(), sparse);

    // f16 values: what reloads is each value rounded to half precision.
    tm.set_value_dtype(petl_sparse::ValueDType::F16);
    let half = dir.path().join("f16");
    tm.save_artifact(&half).unwrap();
    let back = TaskModel::from_artifact(&base, &half).unwrap();
    let got = back.delta().sparse_diff().unwrap().unwrap();
    for (name, t) in &sparse.tensors {
        let rounded: Vec<f32> = t
            .values
            .iter()
            .map(|v| petl_sparse::ValueDType::F16.round_trip(*v))
            .collect();
        assert_eq!(got.tensors[name].values, rounded, "{name}");
    }

    // Damage: truncated, one flipped byte, missing.
    let file = path.join(petl_artifact::SPARSE_FILE);
    let bytes = std::fs::read(&file).unwrap();
    for damaged in [bytes[..bytes.len() / 2].to_vec(), {
        let mut b = bytes.clone();
        b[bytes.len() / 2] ^= 0x40;
        b
    }] {
        std::fs::write(&file, &damaged).unwrap();
        let e = TaskModel::from_artifact(&base, &path).err().unwrap().to_string();
        assert!(
            e.contains("invalid sparse diff") && e.contains("diff.sparse"),
            "{e}"
        );
    }
    std::fs::remove_file(&file).unwrap();
    let e = TaskModel::from_artifact(&base, &path).err().unwrap().to_string();
    assert!(e.contains("diff.sparse"), "{e}");

    // Another base model is refused before the diff is read.
    std::fs::write(&file, &bytes).unwrap();
    let roberta = model("tiny-roberta");
    let e = TaskModel::from_artifact(&roberta, &path)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("trained on base model"), "{e}");
}

/// Any run that changes base parameters projects to a sparse diff — BitFit as well as full
/// fine-tuning: kept whole (density 1), the projected artifact computes what the run did.
#[test]
fn a_bitfit_run_projects_to_the_same_function() {
    use petl_methods::diff::Projection;
    let base = model("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let tm = TaskModel::new(
        &base,
        &petl_methods::preset("bitfit").unwrap(),
        spec(),
        Pooling::Cls,
        2,
    )
    .unwrap();
    perturb(&tm);
    let before = logits(&tm);
    tm.save_artifact(&dir.path().join("bitfit")).unwrap();
    let projection = Projection {
        density: 1.0,
        ..Projection::default()
    };
    let out = dir.path().join("projected");
    let summary =
        petl_train::diff_pipeline::project_artifact(&base, &dir.path().join("bitfit"), &projection, &out)
            .unwrap();
    assert_eq!(summary.kept, summary.total, "every bias entry is kept");
    let back = TaskModel::from_artifact(&base, &out).unwrap();
    assert_eq!(
        back.delta().sparse_diff().unwrap().unwrap().nnz() as usize,
        summary.kept
    );
    for (a, b) in before.iter().flatten().zip(logits(&back).iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "projected logit {b} vs BitFit's {a}");
    }
}
