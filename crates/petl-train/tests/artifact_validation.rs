//! Every field of `artifact.json` is checked when an artifact loads (docs/artifact-format.md):
//! each test corrupts one field (or one tensor) of a real saved artifact and expects an error
//! that names it.

use candle_core::{DType, Device, Tensor};
use petl_data::{TaskKind, TaskSpec};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ModelDir, Pooling};
use petl_train::TaskModel;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// A saved LoRA artifact (r = 4) and a saved sparse-diff artifact.
struct Saved {
    _dir: tempfile::TempDir,
    lora: PathBuf,
    sparse: PathBuf,
    prefix: PathBuf,
}

fn saved(base: &EncoderModel) -> Saved {
    let dir = tempfile::tempdir().unwrap();
    let mut lora = petl_methods::preset("lora").unwrap();
    lora.deltas[0].form.set_bottleneck(4);
    let tm = TaskModel::new(base, &lora, spec(), Pooling::Cls, 1).unwrap();
    let lora_dir = dir.path().join("lora");
    tm.save_artifact(&lora_dir).unwrap();

    let mut prefix = petl_methods::preset("prefix").unwrap();
    prefix.deltas[0].form.set_bottleneck(3);
    let tm = TaskModel::new(base, &prefix, spec(), Pooling::Cls, 1).unwrap();
    let prefix_dir = dir.path().join("prefix");
    tm.save_artifact(&prefix_dir).unwrap();

    use petl_methods::diff::{project, Projection};
    let stage1 = TaskModel::new(
        base,
        &petl_methods::preset("diff-pruning").unwrap(),
        spec(),
        Pooling::Cls,
        3,
    )
    .unwrap();
    for (i, (_, var)) in stage1.params().iter().enumerate() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|k| 0.05 * ((k + 3 * i) as f32 * 0.37).sin()).collect();
        let bump = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
        var.set(&(var.as_tensor() + bump).unwrap()).unwrap();
    }
    let diffs = stage1.delta().dense_diffs(base).unwrap().unwrap();
    let sparse = project(
        &diffs,
        Projection::default().keep_count(base.num_base_params()) * 20,
    )
    .unwrap();
    let method = petl_train::diff_pipeline::sparse_method(stage1.method());
    let tm = TaskModel::with_sparse_diff(base, &method, spec(), Pooling::Cls, 0, Some(&sparse)).unwrap();
    let sparse_dir = dir.path().join("sparse");
    tm.save_artifact(&sparse_dir).unwrap();
    Saved {
        _dir: dir,
        lora: lora_dir,
        sparse: sparse_dir,
        prefix: prefix_dir,
    }
}

/// A copy of artifact `src` with `artifact.json` edited by `edit`.
fn corrupted(src: &Path, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join("artifact.json");
    let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut meta);
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
    dir
}

fn load_err(base: &EncoderModel, dir: &Path) -> String {
    match TaskModel::from_artifact(base, dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Asserts that loading `src` with `edit` applied fails with a message holding every `needle`.
fn refused(base: &EncoderModel, src: &Path, edit: impl FnOnce(&mut Value), needles: &[&str]) {
    let dir = corrupted(src, edit);
    let e = load_err(base, dir.path());
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in: {e}");
    }
}

fn bump(v: &mut Value, key: &str, by: i64) {
    let n = v[key].as_i64().unwrap();
    v[key] = json!(n + by);
}

#[test]
fn the_saved_artifacts_load() {
    let base = model("tiny-bert");
    let s = saved(&base);
    for dir in [&s.lora, &s.sparse, &s.prefix] {
        TaskModel::from_artifact(&base, dir).unwrap();
        // Untouched JSON rewritten by the test helper still loads.
        let same = corrupted(dir, |_| {});
        TaskModel::from_artifact(&base, same.path()).unwrap();
    }
}

#[test]
fn every_field_is_validated() {
    let base = model("tiny-bert");
    let s = saved(&base);
    let lora = s.lora.as_path();

    // format_version
    refused(
        &base,
        lora,
        |m| m["format_version"] = json!(0),
        &["format version 0"],
    );
    refused(
        &base,
        lora,
        |m| m["format_version"] = json!(4),
        &["format version 4"],
    );
    refused(
        &base,
        lora,
        |m| m["format_version"] = json!("3"),
        &["format_version"],
    );
    // petl_version
    refused(
        &base,
        lora,
        |m| m["petl_version"] = json!(" "),
        &["`petl_version` is empty"],
    );
    // method: kind per version, unknown keys, a configuration that does not fit the weights
    refused(
        &base,
        lora,
        |m| m["method"] = json!(7),
        &["`method` must be a method configuration"],
    );
    refused(
        &base,
        lora,
        |m| m["method"] = json!("lora"),
        &["`method` must be a method configuration"],
    );
    refused(
        &base,
        lora,
        |m| {
            m["format_version"] = json!(1);
            m["method"]["name"] = json!("x")
        },
        &["must be a preset name in format version 1"],
    );
    refused(
        &base,
        lora,
        |m| m["method"]["delta"][0]["form"]["rank"] = json!(4),
        &["unusable method", "rank"],
    );
    refused(
        &base,
        lora,
        |m| m["method"]["delta"][0]["form"]["r"] = json!(8),
        &[
            "weights.safetensors",
            "delta0.layer0.query.down.weight",
            "[4, 32]",
            "[8, 32]",
        ],
    );
    refused(
        &base,
        lora,
        |m| m["method"]["delta"][0]["layers"] = json!([5]),
        &["layer 5 does not exist"],
    );
    // task
    refused(
        &base,
        lora,
        |m| m["task"] = json!("sst2"),
        &["`task` must be an object"],
    );
    refused(
        &base,
        lora,
        |m| m["task"]["kind"] = json!("clustering"),
        &["unreadable task"],
    );
    refused(
        &base,
        lora,
        |m| m["task"]["kind"]["classification"]["labels"] = json!(["a", "b", "a"]),
        &["label \"a\" twice"],
    );
    refused(
        &base,
        lora,
        |m| m["task"]["kind"]["classification"]["labels"] = json!(["a", "b"]),
        &["`num_outputs` is 3", "`t` has 2 outputs"],
    );
    // num_outputs
    refused(
        &base,
        lora,
        |m| m["num_outputs"] = json!(2),
        &["`num_outputs` is 2"],
    );
    refused(
        &base,
        lora,
        |m| m["num_outputs"] = json!(0),
        &["`num_outputs` is 0"],
    );
    refused(&base, lora, |m| m["num_outputs"] = json!(-1), &["num_outputs"]);
    // pooling
    refused(
        &base,
        lora,
        |m| m["pooling"] = json!("max"),
        &["unknown variant `max`"],
    );
    // base_fingerprint, base_model_type, base_params
    refused(
        &base,
        lora,
        |m| m["base_fingerprint"] = json!("0123"),
        &["trained on base model 0123"],
    );
    refused(
        &base,
        lora,
        |m| m["base_fingerprint"] = json!(""),
        &["`base_fingerprint` is empty"],
    );
    refused(
        &base,
        lora,
        |m| m["base_model_type"] = json!("roberta"),
        &["`base_model_type` is \"roberta\""],
    );
    refused(
        &base,
        lora,
        |m| m["base_model_type"] = json!(""),
        &["`base_model_type` is empty"],
    );
    refused(&base, lora, |m| bump(m, "base_params", 1), &["`base_params` is"]);
    refused(
        &base,
        lora,
        |m| m["base_params"] = json!(0),
        &["`base_params` is 0"],
    );
    // trainable_params and stored_params
    refused(
        &base,
        lora,
        |m| m["trainable_params"] = json!(10),
        &["exceeds `trainable_params` 10"],
    );
    refused(
        &base,
        lora,
        |m| {
            bump(m, "stored_params", 1);
            bump(m, "trainable_params", 1)
        },
        &["`stored_params` is", "but the files hold"],
    );
    refused(
        &base,
        lora,
        |m| bump(m, "stored_params", -1),
        &["`stored_params` is", "but the files hold"],
    );
    refused(
        &base,
        lora,
        |m| m["stored_params"] = json!(0),
        &["`stored_params` is 0"],
    );
    refused(
        &base,
        lora,
        |m| {
            bump(m, "trainable_params", -1);
            bump(m, "stored_params", -1)
        },
        &["stored_params"],
    );
    // unknown and missing fields
    refused(&base, lora, |m| m["extra"] = json!(1), &["unknown field `extra`"]);
    refused(
        &base,
        lora,
        |m| {
            m.as_object_mut().unwrap().remove("num_outputs");
        },
        &["missing field `num_outputs`"],
    );
    // A prefix artifact must hold the generated prefixes, not a generator.
    refused(
        &base,
        &s.prefix,
        |m| m["method"]["delta"][0]["form"]["reparam"] = json!(16),
        &["prefix generator"],
    );
    // Another model type is refused by fingerprint before anything else.
    let e = load_err(&model("tiny-roberta"), lora);
    assert!(e.contains("trained on base model"), "{e}");
}

#[test]
fn the_sparse_diff_record_must_match_its_file() {
    let base = model("tiny-bert");
    let s = saved(&base);
    let sparse = s.sparse.as_path();
    let nnz = {
        let meta = petl_artifact::load_meta(sparse).unwrap();
        meta.sparse_diff.unwrap().nnz as i64
    };
    let both = |m: &mut Value, by: i64| {
        bump(&mut m["sparse_diff"], "nnz", by);
        bump(m, "stored_params", by);
        bump(m, "trainable_params", by);
    };
    refused(
        &base,
        sparse,
        |m| both(m, 1),
        &["`sparse_diff.nnz` is", "diff.sparse holds"],
    );
    refused(
        &base,
        sparse,
        |m| bump(&mut m["sparse_diff"], "nnz", 1),
        &["`stored_params` is"],
    );
    refused(
        &base,
        sparse,
        |m| m["sparse_diff"]["value_dtype"] = json!("f16"),
        &["`sparse_diff.value_dtype` is f16"],
    );
    refused(
        &base,
        sparse,
        |m| m["sparse_diff"]["value_dtype"] = json!("f64"),
        &["value_dtype"],
    );
    refused(
        &base,
        sparse,
        |m| bump(&mut m["sparse_diff"], "bytes", 1),
        &["`sparse_diff.bytes` is"],
    );
    refused(
        &base,
        sparse,
        |m| m["sparse_diff"]["bytes"] = json!(0),
        &["`sparse_diff.bytes` is 0"],
    );
    refused(
        &base,
        sparse,
        |m| m["sparse_diff"]["file"] = json!("../diff.sparse"),
        &["not a plain file name"],
    );
    refused(
        &base,
        sparse,
        |m| m["sparse_diff"]["file"] = json!("gone.sparse"),
        &["gone.sparse"],
    );
    refused(
        &base,
        sparse,
        |m| m["format_version"] = json!(2),
        &["format version 3"],
    );
    refused(
        &base,
        sparse,
        |m| {
            m.as_object_mut().unwrap().remove("sparse_diff");
            bump(m, "stored_params", -nnz);
        },
        &["sparse_diff delta but `sparse_diff` names no file"],
    );
    // A sparse diff attached to a method without one.
    let lora_meta = petl_artifact::load_meta(&s.lora).unwrap();
    let dir = corrupted(&s.lora, |m| {
        m["sparse_diff"] =
            serde_json::to_value(petl_artifact::load_meta(sparse).unwrap().sparse_diff).unwrap();
        m["stored_params"] = json!(lora_meta.stored_params as i64 + nnz);
        m["trainable_params"] = json!(lora_meta.trainable_params as i64 + nnz);
    });
    std::fs::copy(sparse.join("diff.sparse"), dir.path().join("diff.sparse")).unwrap();
    let e = load_err(&base, dir.path());
    assert!(e.contains("the method has no sparse_diff delta"), "{e}");
}

#[test]
fn missing_extra_and_mis_shaped_tensors_are_named() {
    let base = model("tiny-bert");
    let s = saved(&base);
    let edit = |f: &dyn Fn(&mut BTreeMap<String, Tensor>)| {
        let dir = corrupted(&s.lora, |_| {});
        let path = dir.path().join("weights.safetensors");
        let mut t = petl_artifact::load_tensors(&path, &Device::Cpu).unwrap();
        let before: usize = t.values().map(Tensor::elem_count).sum();
        f(&mut t);
        let after: usize = t.values().map(Tensor::elem_count).sum();
        petl_artifact::write_safetensors_atomic(&path, &t).unwrap();
        // Keep stored_params consistent, so the tensor check itself is what fails.
        let meta_path = dir.path().join("artifact.json");
        let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
        bump(&mut meta, "stored_params", after as i64 - before as i64);
        bump(
            &mut meta,
            "trainable_params",
            (after as i64 - before as i64).max(0),
        );
        std::fs::write(&meta_path, meta.to_string()).unwrap();
        load_err(&base, dir.path())
    };
    let e = edit(&|t| {
        t.remove("delta0.layer1.value.up.weight");
    });
    assert!(
        e.contains("`delta0.layer1.value.up.weight` [32, 4]") && e.contains("is missing"),
        "{e}"
    );
    let e = edit(&|t| {
        t.insert(
            "delta0.layer1.key.up.weight".into(),
            Tensor::zeros((32, 4), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(
        e.contains("`delta0.layer1.key.up.weight` is not a parameter"),
        "{e}"
    );
    let e = edit(&|t| {
        t.insert(
            "classifier.weight".into(),
            Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap(),
        );
        t.insert(
            "classifier.bias".into(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(
        e.contains("`classifier.bias` has shape [4]") || e.contains("`classifier.weight` has shape [2, 32]"),
        "{e}"
    );
    let e = edit(&|t| {
        t.insert(
            "classifier.bias".into(),
            Tensor::zeros(3, DType::U32, &Device::Cpu).unwrap(),
        );
    });
    assert!(e.contains("`classifier.bias` has dtype U32"), "{e}");
}
