//! Position bits against the information-theoretic bound log2 C(n, k).
//! Run with `--nocapture` to see the measured ratios.

mod common;

use common::{random_tensor, SplitMix64};
use petl_sparse::{encode, log2_binomial, PositionEncoding, SparseDiff, ValueDType};

#[test]
fn uniform_random_positions_in_22m_elements_are_within_20_percent_of_the_bound() {
    let shape = vec![28_672, 768]; // 22,020,096 elements
    for (seed, density) in [(1u64, 0.001), (2, 0.005), (3, 0.01)] {
        let mut rng = SplitMix64(seed);
        let mut d = SparseDiff::new();
        d.insert("w", random_tensor(&mut rng, shape.clone(), density));
        let enc = encode(&d, ValueDType::F32).unwrap();
        let r = &enc.report;
        let t = &r.tensors[0];
        let bound = log2_binomial(t.numel, t.nnz);
        let ratio = t.position_bits as f64 / bound;
        println!(
            "density {:>5.1}%: nnz {:>7}, {}, position bits {:>9}, bound {:>11.1}, ratio {:.4}, \
             {:.3} bits/nnz, {:.3} file bytes/nnz",
            density * 100.0,
            t.nnz,
            t.encoding,
            t.position_bits,
            bound,
            ratio,
            r.position_bits_per_nnz(),
            r.bytes_per_nnz()
        );
        assert!(matches!(t.encoding, PositionEncoding::Rice { .. }));
        // The bound is on the average over all subsets of this size; one sample may dip a
        // little below it, far less than 1%.
        assert!(ratio >= 0.99, "suspiciously below the bound: {ratio}");
        assert!(ratio <= 1.2, "density {density}: ratio {ratio} > 1.2");
        assert!((r.ratio_to_bound() - ratio).abs() < 1e-12);
    }
}

/// A BERT-base-like diff with 6 layers: tensors from 384 to 11M elements, densities from
/// 0.1% (embeddings) to 50% (LayerNorm vectors).
fn bert_like_diff(rng: &mut SplitMix64) -> SparseDiff {
    let mut d = SparseDiff::new();
    let mut add = |d: &mut SparseDiff, name: String, shape: Vec<usize>, density: f64| {
        d.insert(name, random_tensor(rng, shape, density));
    };
    add(
        &mut d,
        "embeddings.word_embeddings.weight".into(),
        vec![14_336, 768],
        0.001,
    );
    add(
        &mut d,
        "embeddings.position_embeddings.weight".into(),
        vec![512, 768],
        0.005,
    );
    add(
        &mut d,
        "embeddings.token_type_embeddings.weight".into(),
        vec![2, 768],
        0.05,
    );
    add(&mut d, "embeddings.LayerNorm.weight".into(), vec![768], 0.5);
    add(&mut d, "embeddings.LayerNorm.bias".into(), vec![768], 0.5);
    let mat_densities = [0.002, 0.005, 0.01];
    for l in 0..6 {
        let p = format!("encoder.layer.{l}");
        for (i, m) in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ]
        .iter()
        .enumerate()
        {
            add(
                &mut d,
                format!("{p}.{m}.weight"),
                vec![768, 768],
                mat_densities[(i + l) % 3],
            );
            add(&mut d, format!("{p}.{m}.bias"), vec![768], 0.05);
        }
        add(
            &mut d,
            format!("{p}.intermediate.dense.weight"),
            vec![3072, 768],
            0.003,
        );
        add(&mut d, format!("{p}.intermediate.dense.bias"), vec![3072], 0.02);
        add(&mut d, format!("{p}.output.dense.weight"), vec![768, 3072], 0.003);
        add(&mut d, format!("{p}.output.dense.bias"), vec![768], 0.05);
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(&mut d, format!("{p}.{ln}.weight"), vec![768], 0.5);
            add(&mut d, format!("{p}.{ln}.bias"), vec![768], 0.3);
        }
    }
    add(&mut d, "pooler.dense.weight".into(), vec![768, 768], 0.01);
    add(&mut d, "pooler.dense.bias".into(), vec![768], 0.1);
    add(&mut d, "classifier.dense.bias".into(), vec![384], 0.2);
    d
}

#[test]
fn bert_like_multi_tensor_diff_is_within_20_percent_of_the_global_bound() {
    let mut rng = SplitMix64(2021);
    let d = bert_like_diff(&mut rng);
    assert!(d.tensors.len() >= 100, "{} tensors", d.tensors.len());
    let enc = encode(&d, ValueDType::F32).unwrap();
    let r = &enc.report;
    let global = r.bound_global_bits();
    let per_tensor = r.bound_per_tensor_bits();
    let encodings = |f: fn(&PositionEncoding) -> bool| r.tensors.iter().filter(|t| f(&t.encoding)).count();
    println!(
        "BERT-like: {} tensors ({} rice, {} bitmap), numel {}, nnz {} ({:.3}%), position bits {}, \
         global bound {:.0} (ratio {:.4}), per-tensor bound {:.0} (ratio {:.4}), {:.3} bits/nnz, \
         {:.3} file bytes/nnz, header {} bytes",
        r.tensors.len(),
        encodings(|e| matches!(e, PositionEncoding::Rice { .. })),
        encodings(|e| matches!(e, PositionEncoding::Bitmap)),
        r.numel(),
        r.nnz(),
        100.0 * r.nnz() as f64 / r.numel() as f64,
        r.position_bits,
        global,
        r.ratio_to_bound(),
        per_tensor,
        r.position_bits as f64 / per_tensor,
        r.position_bits_per_nnz(),
        r.bytes_per_nnz(),
        r.header_bytes
    );
    assert!(
        per_tensor <= global + 1e-6,
        "Vandermonde: per-tensor bound never exceeds the global one"
    );
    assert!(r.ratio_to_bound() <= 1.2, "ratio {} > 1.2", r.ratio_to_bound());
    assert!(r.position_bits as f64 / per_tensor <= 1.2);
    assert_eq!(petl_sparse::decode(&enc.bytes).unwrap().diff, d);
}
