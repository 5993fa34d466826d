//! Writes a small example diff (one tensor per position code) so other readers, such as
//! `scripts/read_sparse_diff.py`, can be checked against this implementation.
//!
//! ```text
//! cargo run -p petl-sparse --example write_example -- example.petlsd [f32|f16|bf16]
//! ```
//! Prints the size report as JSON and the expected content, one tensor per line.

use petl_sparse::{decode, encode, SparseDiff, SparseTensor, ValueDType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "example.petlsd".to_owned());
    let dtype: ValueDType = args.next().as_deref().unwrap_or("f32").parse()?;

    let mut diff = SparseDiff::new();
    // Rice: the worked example of docs/sparse-diff-format.md (gaps 3, 0, 5, 14 → k = 2).
    diff.insert(
        "example.rice",
        SparseTensor::new(vec![4, 8], vec![3, 4, 10, 25], vec![0.5, -0.25, 1e-3, -0.0])?,
    );
    // Bitmap: a dense vector whose last entry changed.
    diff.insert(
        "example.bitmap",
        SparseTensor::new(
            vec![12],
            vec![0, 2, 3, 5, 6, 7, 9, 11],
            vec![0.1, 0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8],
        )?,
    );
    // Empty: a tensor listed with no change.
    diff.insert("example.empty", SparseTensor::new(vec![8], vec![], vec![])?);
    // A larger Rice tensor with a bigger parameter.
    let positions: Vec<u64> = (0..50u64).map(|i| i * 977 + (i * i) % 13).collect();
    let values: Vec<f32> = (0..50).map(|i| (i as f32 - 25.0) / 64.0).collect();
    diff.insert(
        "encoder.layer.0.attention.self.query.weight",
        SparseTensor::new(vec![384, 384], positions, values)?,
    );

    let enc = encode(&diff, dtype)?;
    std::fs::write(&path, &enc.bytes)?;
    let back = decode(&enc.bytes)?;
    println!("{}", serde_json::to_string_pretty(&enc.report)?);
    println!("{}", serde_json::to_string_pretty(&enc.report.summary())?);
    for (name, t) in &back.diff.tensors {
        println!(
            "{name} shape={:?} nnz={} positions={:?} values={:?}",
            t.shape,
            t.nnz(),
            t.positions,
            t.values
        );
    }
    eprintln!("wrote {} bytes to {path}", enc.bytes.len());
    Ok(())
}
