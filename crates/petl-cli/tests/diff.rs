//! Diff pruning end to end on the real all-MiniLM-L6-v2: the three-stage pipeline in one
//! command, projection alone, fixed-mask training from a projection, inspection, and serving
//! several diffs from one base with in-place switching.

mod common;

use common::{minilm, write_table};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn petl(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_petl"))
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "petl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn diff_pruning_runs_all_stages_and_serves_from_one_base() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_table(&d.join("train.csv"), 24, 0);
    write_table(&d.join("dev.csv"), 16, 1000);
    let model = minilm().display().to_string();
    let (train, dev) = (d.join("train.csv"), d.join("dev.csv"));
    let (train, dev) = (train.to_str().unwrap(), dev.to_str().unwrap());
    let run = d.join("run");
    let common = [
        "--model",
        &model,
        "--train-file",
        train,
        "--dev-file",
        dev,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-len",
        "24",
        "--lr",
        "1e-4",
        "--no-progress",
    ];
    let mut args = vec!["train"];
    args.extend(common);
    args.extend([
        "--method",
        "diff-pruning-struct",
        "--set",
        "method.delta.0.form.projection.density=0.001",
        "--out",
        run.to_str().unwrap(),
    ]);
    petl(&args);
    for stage in ["stage1", "projected", "stage3", "artifact"] {
        assert!(run.join(stage).is_dir(), "{stage} missing");
    }
    let keep = (22_713_216f64 * 0.001).round() as u64;
    let meta = json(&run.join("artifact/artifact.json"));
    assert_eq!(meta["sparse_diff"]["nnz"], keep);
    let report = json(&run.join("diff-pruning.json"));
    assert_eq!(report["projection"]["kept"], keep);
    assert!(report["stage1"]["train_examples_per_s"].as_f64().unwrap() > 0.0);
    let log = std::fs::read_to_string(run.join("stage1/log.jsonl")).unwrap();
    assert!(
        log.contains("\"expected_density\""),
        "the L0 stage logs its density"
    );
    // The artifact is the sparse diff and the head: 4 value bytes, ~11.5 position bits at
    // 0.1% density and a ~20 kB header per kept entry.
    let bytes = std::fs::metadata(run.join("artifact/diff.sparse")).unwrap().len();
    assert!(bytes < keep * 7, "{bytes} bytes for {keep} entries");

    // Inspection.
    let stats: Value =
        serde_json::from_slice(&petl(&["diff", "stats", run.to_str().unwrap(), "--json"]).stdout).unwrap();
    assert_eq!(stats["nnz"], keep);
    assert!(stats["size"]["ratio_to_bound"].as_f64().unwrap() <= 1.2);
    let per_layer: u64 = stats["by_layer"]
        .as_object()
        .unwrap()
        .values()
        .map(|b| b["nnz"].as_u64().unwrap())
        .sum();
    assert_eq!(per_layer, keep);
    let stage1_stats: Value = serde_json::from_slice(
        &petl(&[
            "diff",
            "stats",
            run.join("stage1").to_str().unwrap(),
            "--model",
            &model,
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    // One group per base tensor: 5 embedding tensors, 16 per block, 2 of the pooler.
    assert_eq!(
        stage1_stats["group_gates"].as_object().unwrap().len(),
        5 + 16 * 6 + 2
    );

    // Projection alone, at another density, and fixed-mask training from it.
    let projected = d.join("projected");
    petl(&[
        "diff",
        "project",
        run.join("stage1").to_str().unwrap(),
        "--model",
        &model,
        "--density",
        "0.002",
        "--value-dtype",
        "bf16",
        "--out",
        projected.to_str().unwrap(),
    ]);
    let meta = json(&projected.join("artifact.json"));
    assert_eq!(meta["sparse_diff"]["nnz"], (22_713_216f64 * 0.002).round() as u64);
    assert_eq!(meta["sparse_diff"]["value_dtype"], "bf16");
    let fixed = d.join("fixed");
    let mut args = vec!["train"];
    args.extend(common);
    args.extend([
        "--method",
        "sparse-diff",
        "--init",
        projected.to_str().unwrap(),
        "--out",
        fixed.to_str().unwrap(),
    ]);
    petl(&args);
    assert_eq!(
        json(&fixed.join("metrics.json"))["delta_params"],
        (22_713_216f64 * 0.002).round() as u64
    );
    // The wrong method for an --init artifact is refused.
    let mut args = vec!["train"];
    args.extend(common);
    let bad = d.join("bad");
    args.extend([
        "--method",
        "bitfit",
        "--init",
        projected.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_petl"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("init"));

    // Three tasks served from one base: diffs written in and taken out in place; the base
    // is restored bit for bit and metrics equal the hook path's.
    let served: Value = serde_json::from_slice(
        &petl(&[
            "eval",
            "--model",
            &model,
            "--artifact",
            run.to_str().unwrap(),
            "--artifact",
            fixed.to_str().unwrap(),
            "--artifact",
            projected.to_str().unwrap(),
            "--train-file",
            train,
            "--dev-file",
            dev,
            "--max-len",
            "24",
            "--rounds",
            "2",
            "--check",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(served["base_restored_bitwise"], true);
    let tasks = served["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0]["nnz"], keep);
    assert!(tasks.iter().all(|t| t["apply_ms"].as_f64().unwrap() >= 0.0));
}
