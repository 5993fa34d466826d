//! `petl peft export|import` and `petl predict --logits` end to end on the real MiniLM: an
//! artifact exported to peft's format and imported back predicts the same logits bit for bit;
//! what peft cannot hold fails with exit code 2 and a message naming it.

mod common;

use candle_core::{Device, Tensor};
use common::minilm;
use petl::data::{TaskKind, TaskSpec};
use petl::models::{EncoderModel, ModelDir, Pooling};
use petl::train::TaskModel;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn petl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petl"))
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "petl failed ({:?}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A LoRA artifact on MiniLM with every tensor moved off its initial value.
fn artifact(model: &EncoderModel, dir: &Path, pooling: Pooling) {
    let spec = TaskSpec::default_for(
        "mine",
        TaskKind::Classification {
            labels: vec!["neg".into(), "pos".into()],
        },
    );
    let mut lora = petl::methods::preset("lora").unwrap();
    lora.deltas[0].form.set_bottleneck(4);
    let tm = TaskModel::new(model, &lora, spec, pooling, 2).unwrap();
    for (i, (_, var)) in tm.params().iter().enumerate() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|k| 0.05 * ((k + 3 * i) as f32 * 0.37).sin()).collect();
        let bump = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
        var.set(&(var.as_tensor() + bump).unwrap()).unwrap();
    }
    tm.save_artifact(dir).unwrap();
}

fn logits(model: &Path, artifact: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_petl"))
        .args(["--quiet", "predict", "--logits", "--json", "--model"])
        .arg(model)
        .arg("--artifact")
        .arg(artifact)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a gorgeous, witty film\nA man plays.\tSomeone makes music.\n")
        .unwrap();
    String::from_utf8(ok(child.wait_with_output().unwrap()).stdout).unwrap()
}

#[test]
fn export_then_import_predicts_the_same_logits() {
    let m = minilm();
    let model = EncoderModel::load(&ModelDir::open(&m).unwrap(), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (art, peft, back) = (
        dir.path().join("art"),
        dir.path().join("peft"),
        dir.path().join("back"),
    );
    artifact(&model, &art, Pooling::Cls);
    let s = |p: &Path| p.display().to_string();
    let ms = s(&m);
    ok(petl(&[
        "peft",
        "export",
        &s(&art),
        "--model",
        &ms,
        "--out",
        &s(&peft),
        "--base-name",
        "my/minilm",
    ]));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["base_model_name_or_path"], "my/minilm");
    let out = ok(petl(&[
        "peft",
        "import",
        &s(&peft),
        "--model",
        &ms,
        "--out",
        &s(&back),
        "--task",
        "mine",
        "--task-labels",
        "neg,pos",
    ]));
    assert!(out.stdout.is_empty(), "--quiet prints nothing");

    let (a, b) = (logits(&m, &art), logits(&m, &back));
    assert_eq!(a.lines().count(), 2, "{a}");
    let first: serde_json::Value = serde_json::from_str(a.lines().next().unwrap()).unwrap();
    assert_eq!(first["logits"].as_array().unwrap().len(), 2, "{a}");
    assert_eq!(a, b, "logits differ after export and import");

    // A label count that does not fit the classifier, and a non-GLUE task without labels.
    let e = petl(&[
        "peft",
        "import",
        &s(&peft),
        "--model",
        &ms,
        "--out",
        &s(&back),
        "--task-labels",
        "a,b,c",
    ]);
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("2 outputs"));
    let e = petl(&[
        "peft",
        "import",
        &s(&peft),
        "--model",
        &ms,
        "--out",
        &s(&back),
        "--task",
        "mine",
    ]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("--task-labels"));
}

#[test]
fn what_peft_cannot_hold_is_a_clear_error() {
    let m = minilm();
    let model = EncoderModel::load(&ModelDir::open(&m).unwrap(), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("mean");
    artifact(&model, &art, Pooling::Mean);
    let s = |p: &Path| p.display().to_string();
    let out = dir.path().join("peft");
    let e = petl(&["peft", "export", &s(&art), "--model", &s(&m), "--out", &s(&out)]);
    assert_eq!(e.status.code(), Some(2));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("mean pooling") && err.contains("--without-head"),
        "{err}"
    );
    ok(petl(&[
        "peft",
        "export",
        &s(&art),
        "--model",
        &s(&m),
        "--out",
        &s(&out),
        "--without-head",
    ]));
    let config = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    assert!(config.contains("FEATURE_EXTRACTION"), "{config}");
}
