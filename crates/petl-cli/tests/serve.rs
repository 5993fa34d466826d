//! `petl serve` as a user runs it: train two tasks, serve their artifacts, classify over HTTP,
//! stop with SIGTERM.

mod common;

use common::{minilm, write_table};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn petl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petl"))
}

fn train(dir: &Path, method: &str, out: &Path) {
    let out = petl()
        .args(["--quiet", "train", "--model", &minilm().display().to_string()])
        .args(["--train-file", &dir.join("train.csv").display().to_string()])
        .args(["--dev-file", &dir.join("dev.csv").display().to_string()])
        .args([
            "--method",
            method,
            "--lr",
            "1e-3",
            "--epochs",
            "1",
            "--batch-size",
            "8",
        ])
        .args([
            "--max-len",
            "24",
            "--no-progress",
            "--out",
            &out.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// One HTTP/1.1 request on a fresh connection.
fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = response.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(json).unwrap())
}

#[test]
fn serve_answers_for_trained_artifacts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write_table(&dir.path().join("train.csv"), 32, 0);
    write_table(&dir.path().join("dev.csv"), 16, 1000);
    train(dir.path(), "lora", &dir.path().join("run-lora"));
    train(dir.path(), "pa-ffn", &dir.path().join("run-pa"));
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::rename(
        dir.path().join("run-lora/artifact"),
        served.join("sentiment-lora"),
    )
    .unwrap();
    std::fs::rename(dir.path().join("run-pa/artifact"), served.join("sentiment-pa")).unwrap();

    let mut child = petl()
        .args(["serve", "--model", &minilm().display().to_string()])
        .args([
            "--artifacts",
            &served.display().to_string(),
            "--addr",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let inputs = [
        "the story was wonderful, really wonderful",
        "the plot was awful, really awful",
    ];
    for task in ["sentiment-lora", "sentiment-pa"] {
        let (status, answer) = post(&addr, "/v1/classify", &json!({"task": task, "inputs": inputs}));
        assert_eq!(status, 200, "{answer}");
        let preds = answer["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 2);
        for p in preds {
            let sum: f64 = p["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "{p}");
            assert!(p["label"] == "0" || p["label"] == "1", "{p}");
        }
    }
    let (status, answer) = post(
        &addr,
        "/v1/classify",
        &json!({"task": "missing", "inputs": ["x"]}),
    );
    assert_eq!(status, 404, "{answer}");

    // SIGTERM: graceful shutdown, exit status 0.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert!(status.success(), "exit {status:?}: {rest}");
}
