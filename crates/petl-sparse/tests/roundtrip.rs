//! Encode → decode preserves the diff; every position code is used and is the cheapest.

mod common;

use common::{cheapest_position_bits, random_tensor, small_diff, SplitMix64};
use petl_sparse::{decode, encode, PositionEncoding, SparseDiff, SparseTensor, ValueDType};

fn assert_bit_exact(a: &SparseDiff, b: &SparseDiff) {
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, x) in &a.tensors {
        let y = &b.tensors[name];
        assert_eq!(x.shape, y.shape, "{name}: shape");
        assert_eq!(x.positions, y.positions, "{name}: positions");
        let xb: Vec<u32> = x.values.iter().map(|v| v.to_bits()).collect();
        let yb: Vec<u32> = y.values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(xb, yb, "{name}: value bits");
    }
}

fn tricky_values_diff() -> SparseDiff {
    let values = vec![
        -0.0f32,
        0.0,
        f32::from_bits(1),            // smallest subnormal
        -f32::from_bits(0x007F_FFFF), // largest subnormal, negative
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        1.0e30,
        -3.5e-20,
        std::f32::consts::PI,
        1.0 / 3.0,
    ];
    let positions: Vec<u64> = (0..values.len() as u64).map(|i| i * 1000 + 7).collect();
    let mut d = small_diff();
    d.insert(
        "weird.values",
        SparseTensor::new(vec![11, 1000], positions, values).unwrap(),
    );
    d.insert("scalar", SparseTensor::new(vec![], vec![0], vec![-1.5]).unwrap());
    d.insert(
        "zero.sized",
        SparseTensor::new(vec![0, 768], vec![], vec![]).unwrap(),
    );
    d.insert("", SparseTensor::new(vec![3], vec![1], vec![2.0]).unwrap());
    d.insert(
        "ünïcödé \"name\" \\ with\nnewline",
        SparseTensor::new(vec![4, 5, 6], vec![119], vec![9.0]).unwrap(),
    );
    d
}

#[test]
fn f32_round_trip_is_bit_exact_with_names_and_shapes() {
    let d = tricky_values_diff();
    let enc = encode(&d, ValueDType::F32).unwrap();
    let dec = decode(&enc.bytes).unwrap();
    assert_eq!(dec.dtype, ValueDType::F32);
    assert_bit_exact(&d, &dec.diff);
    assert_eq!(
        dec.report, enc.report,
        "decoder reconstructs the encoder's size report"
    );
    assert_eq!(enc.report.file_bytes, enc.bytes.len() as u64);
    assert_eq!(
        enc.report.file_bytes,
        enc.report.header_bytes + enc.report.position_bytes + enc.report.value_bytes + 4
    );
}

#[test]
fn encoding_is_deterministic() {
    let d = tricky_values_diff();
    assert_eq!(
        encode(&d, ValueDType::F32).unwrap().bytes,
        encode(&d, ValueDType::F32).unwrap().bytes
    );
}

#[test]
fn half_precision_round_trip_equals_half_conversion() {
    let mut rng = SplitMix64(7);
    let mut d = SparseDiff::new();
    d.insert("a", random_tensor(&mut rng, vec![300, 40], 0.05));
    let mut vals = vec![-0.0f32, 1e-8, -6.0e-5, 65504.0, -65519.0, 1.0009766, 0.1, 3.0e38];
    vals.truncate(8);
    for dtype in [ValueDType::F16, ValueDType::Bf16] {
        let mut dd = d.clone();
        let v: Vec<f32> = if dtype == ValueDType::F16 {
            vals[..7].to_vec()
        } else {
            vals.clone()
        };
        let n = v.len() as u64;
        dd.insert(
            "b",
            SparseTensor::new(vec![64], (0..n).map(|i| i * 3).collect(), v).unwrap(),
        );
        let enc = encode(&dd, dtype).unwrap();
        let dec = decode(&enc.bytes).unwrap();
        assert_eq!(dec.dtype, dtype);
        for (name, t) in &dd.tensors {
            let got = &dec.diff.tensors[name];
            assert_eq!(got.positions, t.positions);
            for (&a, &b) in t.values.iter().zip(&got.values) {
                let want = match dtype {
                    ValueDType::F16 => half::f16::from_f32(a).to_f32(),
                    _ => half::bf16::from_f32(a).to_f32(),
                };
                assert_eq!(b.to_bits(), want.to_bits(), "{dtype} {a}");
                assert_eq!(dtype.round_trip(a).to_bits(), want.to_bits());
            }
        }
        let per_value = enc.report.value_bytes / dd.nnz();
        assert_eq!(per_value, 2);
    }
}

#[test]
fn f16_overflow_is_an_error_not_infinity() {
    let mut d = SparseDiff::new();
    d.insert("w", SparseTensor::new(vec![4], vec![1], vec![1.0e5]).unwrap());
    let err = encode(&d, ValueDType::F16).unwrap_err().to_string();
    assert!(err.contains("overflows f16") && err.contains("\"w\""), "{err}");
    assert!(encode(&d, ValueDType::Bf16).is_ok());
}

/// Sets the last element (value 1.0) if it is not set yet.
fn with_last(mut t: SparseTensor) -> SparseTensor {
    let last = t.numel() - 1;
    if t.positions.last() != Some(&last) {
        t.positions.push(last);
        t.values.push(1.0);
    }
    t
}

#[test]
fn every_encoding_is_used_and_is_the_cheapest() {
    let mut rng = SplitMix64(42);
    let mut d = small_diff();
    d.insert("sparse.matrix", random_tensor(&mut rng, vec![768, 768], 0.002));
    // Rice k=0 costs p_last + 1 bits, so a bitmap (numel bits) is chosen exactly when it ties:
    // dense data whose last element changed.
    d.insert(
        "dense.layernorm",
        with_last(random_tensor(&mut rng, vec![768], 0.5)),
    );
    d.insert("very.dense", with_last(random_tensor(&mut rng, vec![1000], 0.97)));
    let mut untouched = random_tensor(&mut rng, vec![700], 0.5);
    if untouched.positions.last() == Some(&699) {
        untouched.positions.pop();
        untouched.values.pop();
    }
    d.insert("dense.but.last.untouched", untouched);
    d.insert("medium", random_tensor(&mut rng, vec![3072], 0.1));
    d.insert(
        "one.at.end",
        SparseTensor::new(vec![1 << 20], vec![(1 << 20) - 1], vec![1.0]).unwrap(),
    );
    d.insert(
        "full",
        SparseTensor::new(vec![9], (0..9).collect(), vec![1.0; 9]).unwrap(),
    );
    let enc = encode(&d, ValueDType::F32).unwrap();
    let mut seen = [false; 3];
    for ts in &enc.report.tensors {
        let t = &d.tensors[&ts.name];
        assert_eq!(
            ts.position_bits,
            cheapest_position_bits(&t.positions, t.numel()),
            "{}",
            ts.name
        );
        let slot = match ts.encoding {
            PositionEncoding::Empty => 0,
            PositionEncoding::Rice { .. } => 1,
            PositionEncoding::Bitmap => 2,
        };
        seen[slot] = true;
        println!(
            "{:<45} numel {:>7} nnz {:>6} {:<10} {} bits",
            ts.name, ts.numel, ts.nnz, ts.encoding, ts.position_bits
        );
    }
    assert_eq!(seen, [true; 3], "empty, rice and bitmap all exercised");
    let by_name = |n: &str| enc.report.tensors.iter().find(|t| t.name == n).unwrap().encoding;
    assert_eq!(by_name("pooler.dense.bias"), PositionEncoding::Empty);
    assert_eq!(by_name("dense.layernorm"), PositionEncoding::Bitmap);
    assert_eq!(by_name("very.dense"), PositionEncoding::Bitmap);
    assert_eq!(by_name("full"), PositionEncoding::Bitmap);
    assert!(matches!(
        by_name("dense.but.last.untouched"),
        PositionEncoding::Rice { k: 0 }
    ));
    assert!(matches!(by_name("sparse.matrix"), PositionEncoding::Rice { k } if (7..=10).contains(&k)));
    assert_bit_exact(&d, &decode(&enc.bytes).unwrap().diff);
}

#[test]
fn rice_parameter_extremes_round_trip() {
    // Consecutive positions (k = 0, gaps 0) and a huge tensor with few far-apart positions
    // (large k, long remainders), including positions near 2^40.
    let mut d = SparseDiff::new();
    d.insert(
        "run",
        SparseTensor::new(vec![1 << 16], (100..5000).collect(), vec![0.5; 4900]).unwrap(),
    );
    let far: Vec<u64> = vec![0, 1 << 30, (1 << 38) + 5, (1 << 40) - 1];
    d.insert(
        "far",
        SparseTensor::new(vec![1 << 20, 1 << 20], far, vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
    );
    let enc = encode(&d, ValueDType::F32).unwrap();
    for ts in &enc.report.tensors {
        let t = &d.tensors[&ts.name];
        assert_eq!(ts.position_bits, cheapest_position_bits(&t.positions, t.numel()));
        println!("{}: {} ({} bits)", ts.name, ts.encoding, ts.position_bits);
    }
    assert_bit_exact(&d, &decode(&enc.bytes).unwrap().diff);
}

#[test]
fn unknown_header_keys_are_ignored() {
    let enc = encode(&small_diff(), ValueDType::F32).unwrap();
    let h = u32::from_le_bytes(enc.bytes[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&enc.bytes[16..16 + h]).unwrap();
    let extended = header
        .replacen('{', "{\"writer\":\"petl 9.9\",\"extra\":{\"nested\":[1,2]},", 1)
        .replace("\"nnz\":", "\"checksum_sha\":\"abc\",\"nnz\":")
        .replace("\"kind\":\"rice\"", "\"kind\":\"rice\",\"note\":1");
    assert_ne!(extended, header);
    let data = &enc.bytes[16 + h..enc.bytes.len() - 4];
    let file = common::build_file(&extended, data);
    let dec = decode(&file).unwrap();
    assert_bit_exact(&small_diff(), &dec.diff);
}

/// Shape, positions, values, and a word the error message must contain.
type BadCase = (Vec<usize>, Vec<u64>, Vec<f32>, &'static str);

#[test]
fn sparse_tensor_new_rejects_bad_input() {
    let cases: Vec<BadCase> = vec![
        (vec![10], vec![3, 2], vec![1.0, 1.0], "strictly increasing"),
        (vec![10], vec![2, 2], vec![1.0, 1.0], "strictly increasing"),
        (vec![10], vec![2, 10], vec![1.0, 1.0], "out of range"),
        (vec![2, 5], vec![u64::MAX], vec![1.0], "out of range"),
        (vec![10], vec![1, 2], vec![1.0], "length mismatch"),
        (vec![10], vec![1], vec![1.0, 2.0], "length mismatch"),
        (vec![usize::MAX, 3], vec![], vec![], "overflows"),
        (vec![10], vec![1], vec![f32::NAN], "not finite"),
        (vec![10], vec![1], vec![f32::INFINITY], "not finite"),
        (vec![0], vec![0], vec![1.0], "out of range"),
    ];
    for (shape, pos, val, key) in cases {
        let err = SparseTensor::new(shape.clone(), pos.clone(), val).unwrap_err();
        assert!(matches!(err, petl_sparse::SparseError::Invalid { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(key),
            "{shape:?} {pos:?}: {msg:?} should mention {key:?}"
        );
    }
    // encode re-validates tensors built without `new`.
    let mut d = SparseDiff::new();
    d.insert(
        "bad",
        SparseTensor {
            shape: vec![4],
            positions: vec![5],
            values: vec![1.0],
        },
    );
    let msg = encode(&d, ValueDType::F32).unwrap_err().to_string();
    assert!(msg.contains("\"bad\"") && msg.contains("out of range"), "{msg}");
}

#[test]
fn dtype_names_parse_and_print() {
    for (s, d) in [
        ("f32", ValueDType::F32),
        ("F16", ValueDType::F16),
        (" bf16", ValueDType::Bf16),
    ] {
        let parsed: ValueDType = s.parse().unwrap();
        assert_eq!(parsed, d);
        assert_eq!(parsed.to_string(), s.trim().to_ascii_lowercase());
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d));
    }
    assert_eq!(ValueDType::F32.bytes(), 4);
    assert_eq!(ValueDType::Bf16.bytes(), 2);
    let err = "fp8".parse::<ValueDType>().unwrap_err().to_string();
    assert!(err.contains("fp8") && err.contains("bf16"), "{err}");
}

#[test]
fn report_serialises_to_json() {
    let enc = encode(&small_diff(), ValueDType::F32).unwrap();
    let v = serde_json::to_value(&enc.report).unwrap();
    assert_eq!(v["tensors"][0]["encoding"]["kind"], "rice");
    let s = serde_json::to_value(enc.report.summary()).unwrap();
    assert_eq!(s["nnz"], 13);
    assert!(s["bytes_per_nnz"].as_f64().unwrap() > 0.0);
    // An empty diff: ratios are undefined, printed as null.
    let empty = encode(&SparseDiff::new(), ValueDType::F32).unwrap();
    assert!(empty.report.bytes_per_nnz().is_nan());
    assert!(serde_json::to_value(empty.report.summary()).unwrap()["bytes_per_nnz"].is_null());
    assert!(decode(&empty.bytes).unwrap().diff.tensors.is_empty());
}

#[test]
fn documented_worked_example_encodes_to_the_documented_bytes() {
    // docs/sparse-diff-format.md: positions 3, 4, 10, 25 of 32 → gaps 3, 0, 5, 14 → k = 2,
    // 16 bits → bytes 0x46 0x9D; then the four f32 values.
    let mut d = SparseDiff::new();
    d.insert(
        "t",
        SparseTensor::new(vec![4, 8], vec![3, 4, 10, 25], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
    );
    let enc = encode(&d, ValueDType::F32).unwrap();
    let ts = &enc.report.tensors[0];
    assert_eq!(ts.encoding, PositionEncoding::Rice { k: 2 });
    assert_eq!(ts.position_bits, 16);
    let h = u32::from_le_bytes(enc.bytes[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&enc.bytes[16..16 + h]).unwrap();
    assert_eq!(
        header,
        r#"{"value_dtype":"f32","tensors":[{"name":"t","shape":[4,8],"nnz":4,"encoding":{"kind":"rice","k":2},"positions_offset":0,"positions_bytes":2,"values_offset":2,"values_bytes":16}]}"#
    );
    let data = &enc.bytes[16 + h..enc.bytes.len() - 4];
    assert_eq!(&data[..2], &[0x46, 0x9D]);
    assert_eq!(&data[2..6], &1.0f32.to_le_bytes());
    assert_eq!(enc.bytes.len(), 16 + h + 18 + 4);
    let crc = u32::from_le_bytes(enc.bytes[enc.bytes.len() - 4..].try_into().unwrap());
    println!(
        "worked example: header {h} bytes, file {} bytes, crc {crc:#010x}",
        enc.bytes.len()
    );
}
