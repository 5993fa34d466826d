//! Shared helpers: a tiny seeded PRNG (no dev-dependency) and hand-built files.
#![allow(dead_code)]

use petl_sparse::{SparseDiff, SparseTensor};

/// splitmix64: small, seedable and good enough to place random positions.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// A value in about ±0.01 like a fine-tuning update.
    pub fn small_value(&mut self) -> f32 {
        ((self.unit_open0() - 0.5) * 0.02) as f32
    }
}

/// Each of `numel` positions kept independently with probability `density` (a Bernoulli
/// mask, i.e. a uniformly random subset given its size), drawn gap by gap from the geometric
/// distribution so the cost is O(nnz), not O(numel).
pub fn random_positions(rng: &mut SplitMix64, numel: u64, density: f64) -> Vec<u64> {
    let mut out = Vec::new();
    if density >= 1.0 {
        return (0..numel).collect();
    }
    let ln_q = (1.0 - density).ln();
    let mut p: u64 = 0;
    loop {
        let gap = (rng.unit_open0().ln() / ln_q).floor();
        if gap.is_nan() || gap >= (numel - p) as f64 {
            return out;
        }
        p += gap as u64;
        out.push(p);
        p += 1;
        if p >= numel {
            return out;
        }
    }
}

/// A random sparse tensor of the given shape and density.
pub fn random_tensor(rng: &mut SplitMix64, shape: Vec<usize>, density: f64) -> SparseTensor {
    let numel = shape.iter().product::<usize>() as u64;
    let positions = random_positions(rng, numel, density);
    let values = positions.iter().map(|_| rng.small_value()).collect();
    SparseTensor::new(shape, positions, values).expect("generated tensor is valid")
}

/// A small diff with every encoding: a Rice-coded matrix, a bitmap-coded dense vector and an
/// empty tensor.
pub fn small_diff() -> SparseDiff {
    let mut d = SparseDiff::new();
    d.insert(
        "encoder.layer.0.attention.self.query.weight",
        SparseTensor::new(
            vec![16, 16],
            vec![3, 17, 18, 100, 255],
            vec![0.5, -0.25, 1e-3, -0.0, 7.0],
        )
        .unwrap(),
    );
    d.insert(
        "encoder.layer.0.output.LayerNorm.bias",
        SparseTensor::new(
            vec![12],
            vec![0, 2, 3, 5, 6, 7, 9, 11],
            vec![0.1, 0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8],
        )
        .unwrap(),
    );
    d.insert(
        "pooler.dense.bias",
        SparseTensor::new(vec![8], vec![], vec![]).unwrap(),
    );
    d
}

/// A file with the given header text and data section, correctly framed and checksummed, so
/// the decoder's checks beyond the CRC are what is tested.
pub fn build_file(header: &str, data: &[u8]) -> Vec<u8> {
    build_file_version(1, header.as_bytes(), data)
}

pub fn build_file_version(version: u32, header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"PETLSDIF");
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(header.len() as u32).to_le_bytes());
    b.extend_from_slice(header);
    b.extend_from_slice(data);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Re-computes the trailing CRC after a test edited the body.
pub fn fix_crc(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Brute-force exact Rice cost over all k and the bitmap cost; the encoder must hit the min.
pub fn cheapest_position_bits(positions: &[u64], numel: u64) -> u64 {
    if positions.is_empty() {
        return 0;
    }
    let mut best = numel as u128;
    for k in 0..=63u32 {
        let mut prev: Option<u64> = None;
        let mut bits: u128 = 0;
        for &p in positions {
            let g = match prev {
                None => p,
                Some(q) => p - q - 1,
            };
            bits += u128::from(g >> k) + 1 + u128::from(k);
            prev = Some(p);
        }
        best = best.min(bits);
    }
    best as u64
}
