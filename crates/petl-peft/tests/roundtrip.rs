//! petl artifact → peft adapter → petl gives the same logits bit for bit, for LoRA, IA³,
//! prefix tuning and prompt tuning; what peft cannot hold is refused by name, on export and
//! on import.

use candle_core::{Device, Tensor};
use petl_data::{collate, Encoded, Label, TaskKind, TaskSpec};
use petl_methods::{preset, Method};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ForwardCtx, ModelDir, Pooling};
use petl_peft::{export, import, ExportOptions, PeftError, TaskType, CONFIG_FILE, WEIGHTS_FILE};
use petl_train::TaskModel;
use std::collections::BTreeMap;
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

/// Four rows of different lengths, two of them sentence pairs (token type 1).
fn examples() -> Vec<Encoded> {
    (0..4)
        .map(|i| {
            let n = 4 + 2 * i;
            Encoded {
                input_ids: (0..n).map(|j| (7 * i + 3 * j) as u32 % 90 + 3).collect(),
                type_ids: (0..n).map(|j| u32::from(i % 2 == 1 && j >= n / 2)).collect(),
                label: Label::Class(i % 3),
            }
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
        let v: Vec<f32> = (0..n).map(|k| 0.3 * ((k + 3 * i) as f32 * 0.37).sin()).collect();
        let bump = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
        var.set(&(var.as_tensor() + bump).unwrap()).unwrap();
    }
}

fn method(json: serde_json::Value) -> Method {
    serde_json::from_value(json).unwrap()
}

/// The methods peft can hold, in the forms petl trains them.
fn cases() -> Vec<(&'static str, Method)> {
    let mut lora = preset("lora").unwrap();
    lora.deltas[0].form.set_bottleneck(4);
    let mut prefix = preset("prefix").unwrap();
    prefix.deltas[0].form = petl_methods::Form::Prefix {
        length: 4,
        activation: petl_methods::PrefixActivation::Softmax,
        reparam: Some(16),
        explicit_gate: false,
        shift_positions: true,
    };
    let mut prompt = preset("prompt").unwrap();
    prompt.deltas[0].form.set_bottleneck(3);
    vec![
        ("lora", lora),
        (
            "lora-sparse-sites",
            method(serde_json::json!({"name": "x", "delta": [
                {"form": {"kind": "low_rank", "r": 3}, "site": {"weights": ["key", "ffn_down"]}, "layers": [1], "init": "lora"},
                {"form": {"kind": "low_rank", "r": 3}, "site": {"weights": ["attn_out"]}, "init": "lora"}
            ]})),
        ),
        ("ia3", preset("ia3").unwrap()),
        (
            "ia3-attn-out-input",
            method(serde_json::json!({"name": "x", "delta": [
                {"form": {"kind": "scaling", "scale_input": ["attn_out"]}, "site": {"weights": ["query", "attn_out", "ffn_up"]}}
            ]})),
        ),
        ("prefix-mlp-ejected", prefix),
        ("prompt", prompt),
    ]
}

#[test]
fn artifacts_export_to_peft_and_import_back_bit_for_bit() {
    let base = model("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    for (name, method) in cases() {
        let tm = TaskModel::new(&base, &method, spec(), Pooling::Cls, 7).unwrap();
        perturb(&tm);
        let art = dir.path().join(name).join("artifact");
        tm.save_artifact(&art).unwrap();
        let saved = TaskModel::from_artifact(&base, &art).unwrap();
        let before = logits(&saved);

        let peft_dir = dir.path().join(name).join("peft");
        let opts = ExportOptions {
            base_model_name_or_path: Some("tiny-bert".into()),
            without_head: false,
        };
        let report = export(&saved, &peft_dir, &opts).unwrap();
        assert_eq!(report.config.task_type, Some(TaskType::SeqCls), "{name}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(peft_dir.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(json["base_model_name_or_path"], "tiny-bert", "{name}");
        assert_eq!(
            json["modules_to_save"],
            serde_json::json!(["classifier"]),
            "{name}"
        );
        let keys: Vec<String> = candle_core::safetensors::load(peft_dir.join(WEIGHTS_FILE), &Device::Cpu)
            .unwrap()
            .into_keys()
            .collect();
        let head = if name.starts_with("prefix") || name.starts_with("prompt") {
            "base_model.classifier.weight"
        } else {
            "base_model.model.classifier.weight"
        };
        assert!(keys.iter().any(|k| k == head), "{name}: {keys:?}");

        let imported = import(&base, &peft_dir, Some(spec())).unwrap();
        assert_eq!(
            before,
            logits(&imported.task_model),
            "{name}: imported logits differ"
        );
        assert!(imported.config.unknown_keys.is_empty(), "{name}");

        // Saved as a petl artifact, the import records the base it was read onto.
        let back_dir = dir.path().join(name).join("back");
        imported.task_model.save_artifact(&back_dir).unwrap();
        let meta = petl_artifact::load_meta(&back_dir).unwrap();
        assert_eq!(&meta.base_fingerprint, base.fingerprint());
        let back = TaskModel::from_artifact(&base, &back_dir).unwrap();
        assert_eq!(before, logits(&back), "{name}: re-saved logits differ");
    }
}

#[test]
fn lora_on_part_of_the_model_keeps_its_sites_and_scales() {
    let base = model("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let (_, method) = cases().swap_remove(1);
    let tm = TaskModel::new(&base, &method, spec(), Pooling::Cls, 3).unwrap();
    perturb(&tm);
    let report = export(&tm, dir.path(), &ExportOptions::default()).unwrap();
    let petl_peft::MethodConfig::Lora(l) = &report.config.method else {
        panic!("not lora")
    };
    assert_eq!((l.r, l.lora_alpha), (3, 3.0));
    // One regex naming exactly the five wrapped modules (output.dense alone would also match
    // attention.output.dense).
    let petl_peft::TargetModules::Regex(re) = &l.target_modules else {
        panic!("{:?}", l.target_modules)
    };
    assert!(
        re.contains("(?:1)\\.attention\\.self\\.key") && re.contains("(?:1)\\.output\\.dense"),
        "{re}"
    );
    let imported = import(&base, dir.path(), Some(spec())).unwrap();
    assert_eq!(logits(&tm), logits(&imported.task_model));
    // Regrouped by layer set: key and ffn_down on layer 1, attn_out everywhere.
    assert_eq!(imported.task_model.method().deltas.len(), 2);
}

fn export_err(base: &EncoderModel, method: &Method, pooling: Pooling, opts: &ExportOptions) -> String {
    let tm = TaskModel::new(base, method, spec(), pooling, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = export(&tm, dir.path(), opts).unwrap_err();
    assert!(matches!(e, PeftError::NotRepresentable { .. }), "{e}");
    assert!(!dir.path().join(CONFIG_FILE).exists());
    e.to_string()
}

#[test]
fn methods_peft_has_no_format_for_are_refused_by_name() {
    let base = model("tiny-bert");
    let opts = ExportOptions::default();
    let err = |name: &str| export_err(&base, &preset(name).unwrap(), Pooling::Cls, &opts);
    assert!(err("houlsby").contains("bottleneck adapters"));
    assert!(err("scaled-pa").contains("bottleneck adapters"));
    let mam = err("mam-glue");
    assert!(mam.contains("combines prefix with bottleneck"), "{mam}");
    assert!(err("bitfit").contains("BitFit"));
    assert!(err("full").contains("full fine-tuning"));
    assert!(err("sparse-diff").contains("diff pruning"));
    assert!(err("head-only").contains("head only"));
    assert!(err("mh-pa").contains("multi-head parallel adapters"));
    assert!(err("prefix-nogate").contains("gated"));
    // petl's own prefix numbers positions from 0; peft's cached prefix shifts them.
    assert!(err("prefix-flat").contains("shift_positions"));
    assert!(err("scaled-pa-learned").contains("bottleneck"));
    let mut learned = preset("lora").unwrap();
    learned.deltas[0].composition = petl_methods::Composition::Scaled(petl_methods::Scale::Learned);
    let e = export_err(&base, &learned, Pooling::Cls, &opts);
    assert!(e.contains("learned scale"), "{e}");
    let sublayer = method(serde_json::json!({"name": "x", "delta": [
        {"form": {"kind": "low_rank", "r": 2}, "site": "ffn"}]}));
    assert!(export_err(&base, &sublayer, Pooling::Cls, &opts).contains("sub-layer"));
    let two_r = method(serde_json::json!({"name": "x", "delta": [
        {"form": {"kind": "low_rank", "r": 2}, "site": {"weights": ["query"]}},
        {"form": {"kind": "low_rank", "r": 4}, "site": {"weights": ["value"]}}]}));
    assert!(export_err(&base, &two_r, Pooling::Cls, &opts).contains("one r"));
}

#[test]
fn a_mean_pooling_head_is_refused_unless_left_out() {
    let base = model("tiny-bert");
    let lora = preset("lora").unwrap();
    let e = export_err(&base, &lora, Pooling::Mean, &ExportOptions::default());
    assert!(e.contains("mean pooling") && e.contains("--without-head"), "{e}");
    let tm = TaskModel::new(&base, &lora, spec(), Pooling::Mean, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        without_head: true,
        ..ExportOptions::default()
    };
    let report = export(&tm, dir.path(), &opts).unwrap();
    assert_eq!(report.config.task_type, Some(TaskType::FeatureExtraction));
    assert!(report.config.modules_to_save.is_empty());
    let keys: Vec<String> = candle_core::safetensors::load(dir.path().join(WEIGHTS_FILE), &Device::Cpu)
        .unwrap()
        .into_keys()
        .collect();
    // The bare encoder (BertModel): no `bert.` and no classifier.
    assert!(
        keys.iter()
            .all(|k| k.starts_with("base_model.model.encoder.layer.")),
        "{keys:?}"
    );
    // Without a head there is nothing to classify with: import says so.
    let e = import(&base, dir.path(), None).err().unwrap().to_string();
    assert!(e.contains("classifier.weight") && e.contains("SEQ_CLS"), "{e}");
}

/// A valid exported LoRA adapter to damage.
fn lora_adapter(base: &EncoderModel, dir: &Path) {
    let mut lora = preset("lora").unwrap();
    lora.deltas[0].form.set_bottleneck(2);
    let tm = TaskModel::new(base, &lora, spec(), Pooling::Cls, 5).unwrap();
    perturb(&tm);
    export(&tm, dir, &ExportOptions::default()).unwrap();
}

fn set_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join(CONFIG_FILE);
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(&path, json.to_string()).unwrap();
}

fn edit_weights(dir: &Path, f: impl FnOnce(&mut BTreeMap<String, Tensor>)) {
    let path = dir.join(WEIGHTS_FILE);
    let mut t: BTreeMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect();
    f(&mut t);
    petl_artifact::write_safetensors_atomic(&path, &t).unwrap();
}

#[test]
fn adapters_petl_cannot_represent_are_refused_by_name() {
    let base = model("tiny-bert");
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        lora_adapter(&base, d.path());
        d
    };
    let err = |d: &tempfile::TempDir| import(&base, d.path(), Some(spec())).err().unwrap().to_string();

    // Keys from a newer peft are tolerated (and reported).
    let d = fresh();
    set_config(d.path(), "some_future_option", serde_json::json!({"a": 1}));
    let ok = import(&base, d.path(), Some(spec())).unwrap();
    assert_eq!(ok.config.unknown_keys, vec!["some_future_option"]);

    let d = fresh();
    set_config(d.path(), "use_dora", serde_json::json!(true));
    let e = err(&d);
    assert!(e.contains("use_dora") && e.contains("DoRA"), "{e}");

    let d = fresh();
    set_config(d.path(), "peft_type", serde_json::json!("LOHA"));
    assert!(err(&d).contains("peft_type LOHA"));

    // rsLoRA is representable: only the scale changes.
    let d = fresh();
    let before = logits(&import(&base, d.path(), Some(spec())).unwrap().task_model);
    set_config(d.path(), "use_rslora", serde_json::json!(true));
    let rs = import(&base, d.path(), Some(spec())).unwrap();
    assert_ne!(before, logits(&rs.task_model));
    let scale = rs.task_model.method().deltas[0].composition;
    assert_eq!(
        scale,
        petl_methods::Composition::Scaled(petl_methods::Scale::Fixed(4.0 / 2f64.sqrt()))
    );

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.insert(
            "base_model.model.bert.encoder.layer.0.attention.self.query.lora_magnitude_vector".into(),
            Tensor::ones(32, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(err(&d).contains("DoRA magnitude"));

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.insert(
            "base_model.model.bert.embeddings.word_embeddings.weight".into(),
            Tensor::ones((99, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(err(&d).contains("word_embeddings"));

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.remove("base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight");
    });
    assert!(err(&d).contains("lora_B.weight"));

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.insert(
            "base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight".into(),
            Tensor::ones((2, 31), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = err(&d);
    assert!(
        e.contains("layer.1.attention.self.value.lora_A.weight") && e.contains("[2, 31]"),
        "{e}"
    );

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.remove("base_model.model.classifier.weight");
        t.remove("base_model.model.classifier.bias");
    });
    assert!(err(&d).contains("modules_to_save"));

    let d = fresh();
    let two = TaskSpec::default_for(
        "two",
        TaskKind::Classification {
            labels: vec!["x".into(), "y".into()],
        },
    );
    let e = import(&base, d.path(), Some(two)).err().unwrap().to_string();
    assert!(e.contains("3 outputs") && e.contains("`two` has 2"), "{e}");

    let d = fresh();
    std::fs::remove_file(d.path().join(WEIGHTS_FILE)).unwrap();
    std::fs::write(d.path().join("adapter_model.bin"), b"pickle").unwrap();
    assert!(err(&d).contains("petl reads safetensors only"));

    // Another base: the adapter's shapes do not fit.
    let d = fresh();
    let roberta = model("tiny-roberta");
    assert!(import(&roberta, d.path(), None).is_err());
}
