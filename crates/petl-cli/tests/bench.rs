//! `petl bench` end to end on a tiny random BERT: one child process per measurement, the table,
//! the JSON lines. With `PETL_TEST_PYTHON` set to an interpreter that has torch, transformers
//! and peft (`scripts/python-env.sh`), the PyTorch twin runs too.

use petl::train::bench::{write_random_bert, BenchResult, RandomBert};
use std::process::Command;

#[test]
fn bench_runs_each_method_in_a_child_and_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-bert");
    write_random_bert(&RandomBert::tiny(), 1, &model).unwrap();
    let json = dir.path().join("out/bench.jsonl");
    let python = std::env::var_os("PETL_TEST_PYTHON");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_petl"));
    cmd.args(["bench", "--model"])
        .arg(&model)
        .args(["--methods", "bitfit,lora,prefix", "--batch", "2", "--seq", "8"])
        .args(["--warmup", "0", "--steps", "2", "--threads", "1", "--json"])
        .arg(&json);
    if let Some(py) = &python {
        cmd.arg("--torch").arg(py);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "petl bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| method") && stdout.contains("| prefix"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&json).unwrap();
    let results: Vec<BenchResult> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sides = if python.is_some() { 2 } else { 1 };
    assert_eq!(results.len(), 3 * sides, "{text}");
    for r in &results {
        assert!(r.trainable_params > 0 && r.step_ms_median > 0.0 && r.infer_ms_median > 0.0);
        assert_eq!((r.batch, r.seq, r.steps, r.threads), (2, 8, 2, 1), "{r:?}");
        assert!(r.peak_rss_mb.is_some_and(|m| m > 0.0));
    }
    // Both implementations train exactly the same parameters.
    for method in ["bitfit", "lora", "prefix"] {
        let counts: Vec<usize> = results
            .iter()
            .filter(|r| r.method == method)
            .map(|r| r.trainable_params)
            .collect();
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "{method}: {counts:?}");
    }
}

#[test]
fn bench_refuses_unknown_methods_before_measuring() {
    let out = Command::new(env!("CARGO_BIN_EXE_petl"))
        .args([
            "bench",
            "--methods",
            "lora,no-such-method",
            "--model",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-method"), "{err}");
}

/// A decoder-only model is measured as a causal language model: on a tiny Llama (no tokenizer
/// needed), LoRA runs on both sides with the same trainable count and — LoRA's B starting at
/// zero, the same weights and the same ids — the same first loss; BitFit, which has no bias to
/// train on a Llama, fails with the reason while the other method's row stands.
#[test]
fn bench_measures_a_decoder_as_a_language_model() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.jsonl");
    let python = std::env::var_os("PETL_TEST_PYTHON");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_petl"));
    cmd.args(["bench", "--model"])
        .arg(&model)
        .args(["--methods", "lora,bitfit", "--batch", "2", "--seq", "8"])
        .args(["--warmup", "0", "--steps", "1", "--threads", "1", "--json"])
        .arg(&json);
    if let Some(py) = &python {
        cmd.arg("--torch").arg(py);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "bitfit should have failed:\n{stdout}");
    assert!(stdout.contains("causal language model"), "{stdout}");
    assert!(stdout.contains("no biases"), "{stdout}");

    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sides = if python.is_some() { 2 } else { 1 };
    assert_eq!(lines.len(), 2 * sides, "{text}");
    let lora: Vec<BenchResult> = lines
        .iter()
        .filter(|l| l["method"] == "lora")
        .map(|l| serde_json::from_value(l.clone()).unwrap())
        .collect();
    assert_eq!(lora.len(), sides);
    for r in &lora {
        assert!(r.trainable_params > 0 && r.loss_first.is_finite(), "{r:?}");
    }
    if let [petl, torch] = lora.as_slice() {
        assert_eq!(petl.trainable_params, torch.trainable_params);
        assert!(
            (petl.loss_first - torch.loss_first).abs() < 1e-4,
            "first losses differ: petl {} torch {}",
            petl.loss_first,
            torch.loss_first
        );
    }
    for l in lines.iter().filter(|l| l["method"] == "bitfit") {
        assert!(l["error"].as_str().is_some_and(|e| e.contains("bias")), "{l}");
    }
}
