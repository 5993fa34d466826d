//! Hostile and damaged input: always an `Err` naming the problem, never a panic or a huge
//! allocation.

mod common;

use common::{build_file, build_file_version, fix_crc, small_diff, SplitMix64};
use petl_sparse::{decode, encode, SparseError, ValueDType};

fn small_file() -> Vec<u8> {
    encode(&small_diff(), ValueDType::F32).unwrap().bytes
}

fn header_len(file: &[u8]) -> usize {
    u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize
}

#[test]
fn bad_magic() {
    let mut f = small_file();
    f[0] = b'X';
    let err = decode(&f).unwrap_err();
    assert!(matches!(err, SparseError::BadMagic), "{err:?}");
    assert!(err.to_string().contains("not a petl sparse diff"));
    assert!(matches!(
        decode(b"PK\x03\x04 a zip file, not a diff"),
        Err(SparseError::BadMagic)
    ));
    assert!(
        matches!(decode(b"PETLS"), Err(SparseError::Truncated { .. })),
        "magic prefix, cut short"
    );
}

#[test]
fn future_version_is_rejected_before_the_checksum() {
    let f = build_file_version(2, br#"{"value_dtype":"f32","tensors":[]}"#, &[]);
    let err = decode(&f).unwrap_err();
    assert!(
        matches!(
            err,
            SparseError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 2"), "{err}");
    // Even with a broken CRC, the version is what gets reported.
    let mut g = f.clone();
    *g.last_mut().unwrap() ^= 1;
    assert!(matches!(decode(&g), Err(SparseError::UnsupportedVersion { .. })));
    let zero = build_file_version(0, br#"{"value_dtype":"f32","tensors":[]}"#, &[]);
    assert!(matches!(
        decode(&zero),
        Err(SparseError::UnsupportedVersion { found: 0, .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let f = small_file();
    let h = header_len(&f);
    for cut in 0..f.len() {
        let err = decode(&f[..cut]).expect_err("truncated file must not decode");
        if cut < 20 + h {
            assert!(matches!(err, SparseError::Truncated { .. }), "cut {cut}: {err:?}");
            assert!(err.to_string().contains("truncated"));
        } else {
            assert!(
                matches!(err, SparseError::ChecksumMismatch { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }
    assert!(decode(&f).is_ok());
}

#[test]
fn every_single_byte_flip_is_an_error() {
    let f = small_file();
    for i in 0..f.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut g = f.clone();
            g[i] ^= mask;
            let err = decode(&g).expect_err("corrupted file must not decode");
            match i {
                0..=7 => assert!(matches!(err, SparseError::BadMagic), "byte {i}: {err:?}"),
                8..=11 => assert!(
                    matches!(err, SparseError::UnsupportedVersion { .. }),
                    "byte {i}: {err:?}"
                ),
                12..=15 => assert!(
                    matches!(
                        err,
                        SparseError::Truncated { .. } | SparseError::ChecksumMismatch { .. }
                    ),
                    "byte {i}: {err:?}"
                ),
                _ => {
                    assert!(
                        matches!(err, SparseError::ChecksumMismatch { .. }),
                        "byte {i}: {err:?}"
                    );
                    assert!(err.to_string().contains("checksum mismatch"));
                }
            }
        }
    }
}

/// Decodes a hand-built (correctly checksummed) file and checks the error kind and message.
fn expect_err(header: &str, data: &[u8], is_kind: fn(&SparseError) -> bool, words: &[&str]) {
    let err = decode(&build_file(header, data)).expect_err(header);
    assert!(is_kind(&err), "{header}: wrong kind {err:?}");
    let msg = err.to_string();
    for w in words {
        assert!(msg.contains(w), "{header}: message {msg:?} lacks {w:?}");
    }
}

fn is_invalid(e: &SparseError) -> bool {
    matches!(e, SparseError::Invalid { .. })
}

fn is_bad_header(e: &SparseError) -> bool {
    matches!(e, SparseError::BadHeader(_))
}

/// One tensor entry with the given fields spliced in.
fn one(fields: &str) -> String {
    format!(r#"{{"value_dtype":"f32","tensors":[{{"name":"t",{fields}}}]}}"#)
}

#[test]
fn hostile_headers_with_valid_checksums() {
    let rice = r#""encoding":{"kind":"rice","k":2}"#;
    // Sanity: the worked example of the format doc decodes (positions 3,4,10,25; k = 2).
    let ok = one(&format!(
        r#""shape":[32],"nnz":4,{rice},"positions_offset":0,"positions_bytes":2,"values_offset":2,"values_bytes":16"#
    ));
    let mut data = vec![0x46, 0x9D];
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    let dec = decode(&build_file(&ok, &data)).unwrap();
    assert_eq!(dec.diff.tensors["t"].positions, vec![3, 4, 10, 25]);

    // nnz > numel
    expect_err(
        &one(&format!(
            r#""shape":[3],"nnz":4,{rice},"positions_offset":0,"positions_bytes":2,"values_offset":2,"values_bytes":16"#
        )),
        &data,
        is_invalid,
        &["\"t\"", "nnz 4 exceeds numel 3"],
    );
    // Section past the end of the data.
    expect_err(
        &one(&format!(
            r#""shape":[32],"nnz":4,{rice},"positions_offset":0,"positions_bytes":2,"values_offset":3,"values_bytes":16"#
        )),
        &data,
        is_invalid,
        &["values section", "outside the data section"],
    );
    // Offset + length overflowing u64.
    expect_err(
        &one(&format!(
            r#""shape":[32],"nnz":4,{rice},"positions_offset":18446744073709551615,"positions_bytes":2,"values_offset":2,"values_bytes":16"#
        )),
        &data,
        is_invalid,
        &["positions section", "outside"],
    );
    // Shape product overflow.
    expect_err(
        &one(
            r#""shape":[4294967296,4294967296,2],"nnz":0,"encoding":{"kind":"empty"},"positions_offset":0,"positions_bytes":0,"values_offset":0,"values_bytes":0"#,
        ),
        &[],
        is_invalid,
        &["shape", "overflow"],
    );
    // An absurd nnz: rejected from the lengths, without allocating.
    expect_err(
        &one(
            r#""shape":[100000000,100000000],"nnz":1000000000000000,"encoding":{"kind":"rice","k":3},"positions_offset":0,"positions_bytes":0,"values_offset":0,"values_bytes":4000000000000000"#,
        ),
        &[],
        is_invalid,
        &["outside the data section"],
    );
    expect_err(
        &one(
            r#""shape":[100000000,100000000],"nnz":1000000000000000,"encoding":{"kind":"rice","k":3},"positions_offset":0,"positions_bytes":0,"values_offset":0,"values_bytes":8"#,
        ),
        &[0; 8],
        is_invalid,
        &["values section has 8 bytes"],
    );
    // Rice streams: runs past the end, positions out of range, trailing bytes, dirty padding,
    // parameter too large.
    let rice_case = |shape: u64, nnz: u64, k: u32, pos: &[u8]| {
        let mut d = pos.to_vec();
        d.extend(std::iter::repeat_n(0u8, 4 * nnz as usize));
        let h = one(&format!(
            r#""shape":[{shape}],"nnz":{nnz},"encoding":{{"kind":"rice","k":{k}}},"positions_offset":0,"positions_bytes":{},"values_offset":{},"values_bytes":{}"#,
            pos.len(),
            pos.len(),
            4 * nnz
        ));
        (h, d)
    };
    let (h, d) = rice_case(1000, 2, 0, &[0xFF, 0xFF, 0xFF]);
    expect_err(&h, &d, is_invalid, &["rice stream ends inside gap 0"]);
    let (h, d) = rice_case(10, 1, 0, &[0xFF, 0x0F]); // gap 12 in a tensor of 10
    expect_err(&h, &d, is_invalid, &["out of range"]);
    let (h, d) = rice_case(10, 1, 2, &[0x00, 0x00]); // 3 bits used, 2 bytes present
    expect_err(&h, &d, is_invalid, &["unused bytes"]);
    let (h, d) = rice_case(10, 1, 2, &[0x80]); // 3 bits used, padding bit 7 set
    expect_err(&h, &d, is_invalid, &["padding"]);
    let (h, d) = rice_case(10, 1, 64, &[0x00; 9]);
    expect_err(&h, &d, is_invalid, &["k = 64", "exceeds"]);
    let (h, d) = rice_case(10, 1, 300, &[0x00]);
    expect_err(&h, &d, is_bad_header, &["header"]);
    let (h, d) = rice_case(u64::MAX, 1, 0, &[0xFF; 40]); // unary run longer than 64 bits → still ends
    expect_err(&h, &d, is_invalid, &["ends inside gap"]);
    let (h, d) = rice_case(u64::MAX, 1, 63, &[0x03, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect_err(&h, &d, is_invalid, &["gap 0 overflows"]);

    // Bitmaps: wrong size, padding bits, count mismatch.
    let bitmap = |shape: u64, nnz: u64, bits: &[u8]| {
        let mut d = bits.to_vec();
        d.extend(std::iter::repeat_n(0u8, 4 * nnz as usize));
        let h = one(&format!(
            r#""shape":[{shape}],"nnz":{nnz},"encoding":{{"kind":"bitmap"}},"positions_offset":0,"positions_bytes":{},"values_offset":{},"values_bytes":{}"#,
            bits.len(),
            bits.len(),
            4 * nnz
        ));
        (h, d)
    };
    let (h, d) = bitmap(12, 2, &[0x03]);
    expect_err(&h, &d, is_invalid, &["bitmap of 12 elements needs 2 bytes"]);
    let (h, d) = bitmap(12, 2, &[0x01, 0x10]);
    expect_err(&h, &d, is_invalid, &["padding bit 12"]);
    let (h, d) = bitmap(12, 2, &[0x07, 0x00]);
    expect_err(&h, &d, is_invalid, &["more set bits than nnz 2"]);
    let (h, d) = bitmap(12, 3, &[0x03, 0x00]);
    expect_err(&h, &d, is_invalid, &["2 set bits but nnz is 3"]);

    // Empty encoding claiming entries.
    expect_err(
        &one(
            r#""shape":[4],"nnz":1,"encoding":{"kind":"empty"},"positions_offset":0,"positions_bytes":0,"values_offset":0,"values_bytes":4"#,
        ),
        &[0; 4],
        is_invalid,
        &["empty"],
    );
    // A NaN value.
    let mut nan = vec![0x46, 0x9D];
    for v in [1.0f32, f32::NAN, 3.0, 4.0] {
        nan.extend_from_slice(&v.to_le_bytes());
    }
    expect_err(&ok, &nan, is_invalid, &["not finite", "position 4"]);
}

#[test]
fn malformed_headers() {
    let entry = r#"{"name":"t","shape":[4],"nnz":0,"encoding":{"kind":"empty"},"positions_offset":0,"positions_bytes":0,"values_offset":0,"values_bytes":0}"#;
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not valid JSON"),
        ("not json".into(), "not valid JSON"),
        ("[]".into(), "not valid JSON"),
        (r#"{"tensors":[]}"#.into(), "value_dtype"),
        (r#"{"value_dtype":"f64","tensors":[]}"#.into(), "f64"),
        (
            format!(r#"{{"value_dtype":"f32","tensors":[{entry},{entry}]}}"#),
            "appears twice",
        ),
        (
            r#"{"value_dtype":"f32","tensors":[{"name":"t","shape":[4],"nnz":-1}]}"#.into(),
            "not valid JSON",
        ),
        (
            entry
                .replace("empty", "zstd")
                .replace("{\"name\"", "{\"value_dtype\":\"f32\",\"tensors\":[{\"name\"")
                + "]}",
            "zstd",
        ),
    ];
    for (h, word) in cases {
        expect_err(&h, &[], is_bad_header, &["bad sparse diff header", word]);
    }
    // Not UTF-8.
    let f = build_file_version(1, &[0xFF, 0xFE, b'{', b'}'], &[]);
    let err = decode(&f).unwrap_err();
    assert!(
        matches!(err, SparseError::BadHeader(ref m) if m.contains("UTF-8")),
        "{err:?}"
    );
    // Header length pointing past the end.
    let mut f = build_file(r#"{"value_dtype":"f32","tensors":[]}"#, &[]);
    f[12..16].copy_from_slice(&1_000_000u32.to_le_bytes());
    fix_crc(&mut f);
    let err = decode(&f).unwrap_err();
    assert!(
        matches!(
            err,
            SparseError::Truncated {
                needed: 1_000_020,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn random_mutations_with_fixed_checksum_never_panic() {
    // The CRC stops accidental damage; this checks the parser behind it against deliberate
    // (re-checksummed) damage to the header and data.
    let base = small_file();
    let h = header_len(&base);
    let mut rng = SplitMix64(99);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..4000 {
        let mut f = base.clone();
        let edits = 1 + rng.next_u64() % 4;
        for _ in 0..edits {
            // Mostly the data section, sometimes the header's digits/bytes.
            let body = f.len() - 4;
            let i = if rng.next_u64() % 3 == 0 {
                16 + (rng.next_u64() as usize % h)
            } else {
                16 + h + (rng.next_u64() as usize % (body - 16 - h))
            };
            f[i] = if rng.next_u64() % 2 == 0 {
                rng.next_u64() as u8
            } else {
                f[i] ^ (1 << (rng.next_u64() % 8))
            };
        }
        fix_crc(&mut f);
        match decode(&f) {
            Ok(d) => {
                ok += 1;
                // Whatever decodes must re-encode to a valid diff.
                for (name, t) in &d.diff.tensors {
                    t.validate(name).unwrap();
                }
            }
            Err(_) => err += 1,
        }
    }
    println!("mutations: {ok} decoded, {err} rejected");
    assert!(err > 0);
}

#[test]
fn random_structured_headers_never_panic() {
    let mut rng = SplitMix64(7);
    let kinds = [
        r#"{"kind":"empty"}"#,
        r#"{"kind":"bitmap"}"#,
        r#"{"kind":"rice","k":K}"#,
    ];
    for _ in 0..3000 {
        let mut pick = |choices: &[u64]| choices[(rng.next_u64() % choices.len() as u64) as usize];
        let shape = pick(&[0, 1, 7, 64, 1000, u64::MAX, 1 << 40]);
        let nnz = pick(&[0, 1, 2, 5, 100, u64::MAX / 4]);
        let po = pick(&[0, 1, 3, 40, u64::MAX]);
        let pb = pick(&[0, 1, 2, 8, 64]);
        let vo = pick(&[0, 4, 8, 60, u64::MAX - 1]);
        let vb = pick(&[0, 4, 8, 20, 400]);
        let k = pick(&[0, 1, 5, 63, 64, 255]);
        let kind = kinds[(pick(&[0, 1, 2])) as usize].replace('K', &k.to_string());
        let dtype = ["f32", "f16", "bf16"][pick(&[0, 1, 2]) as usize];
        let h = format!(
            r#"{{"value_dtype":"{dtype}","tensors":[{{"name":"t","shape":[{shape}],"nnz":{nnz},"encoding":{kind},"positions_offset":{po},"positions_bytes":{pb},"values_offset":{vo},"values_bytes":{vb}}}]}}"#
        );
        let len = pick(&[0, 3, 16, 72]) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if let Ok(d) = decode(&build_file(&h, &data)) {
            for (name, t) in &d.diff.tensors {
                t.validate(name).unwrap();
            }
        }
    }
}
