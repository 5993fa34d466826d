//! Encoding and decoding of the file format (version 1; see `docs/sparse-diff-format.md`).
//!
//! ```text
//! "PETLSDIF" | u32 version | u32 H | H bytes JSON header | data section | u32 CRC-32
//! ```
//! Section offsets in the header are relative to the first byte of the data section.

use crate::binom::log2_binomial;
use crate::bits::{low_mask, BitReader, BitWriter};
use crate::dtype::ValueDType;
use crate::error::{invalid, Result, SparseError};
use crate::report::{PositionEncoding, SizeReport, TensorSize};
use crate::tensor::{SparseDiff, SparseTensor};
use serde::{Deserialize, Serialize};

/// The first eight bytes of every file.
pub const MAGIC: [u8; 8] = *b"PETLSDIF";

/// The format version this build writes and the only one it reads. Bumped only for changes
/// old readers cannot ignore; additive changes go into new header keys instead.
pub const FORMAT_VERSION: u32 = 1;

/// Largest Rice parameter: gaps are u64, and `k = 63` already bounds every unary part to one
/// bit, so larger `k` can never be cheaper.
pub const MAX_RICE_K: u8 = 63;

/// Magic + version + header length.
const PREFIX_BYTES: usize = 16;
/// Trailing CRC-32.
const CRC_BYTES: usize = 4;

/// The JSON header. No `deny_unknown_fields`: newer writers may add keys old readers skip.
#[derive(Serialize, Deserialize)]
struct Header {
    value_dtype: ValueDType,
    tensors: Vec<HeaderTensor>,
}

#[derive(Serialize, Deserialize)]
struct HeaderTensor {
    name: String,
    shape: Vec<u64>,
    nnz: u64,
    encoding: PositionEncoding,
    positions_offset: u64,
    positions_bytes: u64,
    values_offset: u64,
    values_bytes: u64,
}

/// An encoded diff and what it cost.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The complete file.
    pub bytes: Vec<u8>,
    /// Its size breakdown.
    pub report: SizeReport,
}

/// A decoded diff.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The diff, values widened to f32.
    pub diff: SparseDiff,
    /// The precision the values were stored in.
    pub dtype: ValueDType,
    /// The file's size breakdown.
    pub report: SizeReport,
}

/// Encodes `diff` with values stored as `dtype`.
///
/// Every tensor is validated first (the fields are public, so an unchecked tensor could
/// otherwise reach disk), and each tensor's positions get whichever code is exactly cheapest.
/// Fails if a value is not finite or overflows `dtype` (e.g. 1e5 in f16): a silent infinity
/// would poison the model the diff is applied to.
pub fn encode(diff: &SparseDiff, dtype: ValueDType) -> Result<Encoded> {
    let mut data = Vec::new();
    let mut entries = Vec::with_capacity(diff.tensors.len());
    let mut sizes = Vec::with_capacity(diff.tensors.len());
    let (mut position_bits, mut position_bytes, mut value_bytes) = (0u64, 0u64, 0u64);

    for (name, t) in &diff.tensors {
        t.validate(name)?;
        let numel = t.numel();
        let (encoding, bits) = choose_encoding(&t.positions, numel);
        let pos = encode_positions(name, &t.positions, numel, encoding)?;
        let vals = encode_values(name, t, dtype)?;

        let positions_offset = data.len() as u64;
        data.extend_from_slice(&pos);
        let values_offset = data.len() as u64;
        data.extend_from_slice(&vals);

        entries.push(HeaderTensor {
            name: name.clone(),
            shape: t.shape.iter().map(|&d| d as u64).collect(),
            nnz: t.nnz(),
            encoding,
            positions_offset,
            positions_bytes: pos.len() as u64,
            values_offset,
            values_bytes: vals.len() as u64,
        });
        sizes.push(TensorSize {
            name: name.clone(),
            numel,
            nnz: t.nnz(),
            encoding,
            position_bits: bits,
            value_bits: vals.len() as u64 * 8,
            bound_bits: log2_binomial(numel, t.nnz()),
        });
        position_bits += bits;
        position_bytes += pos.len() as u64;
        value_bytes += vals.len() as u64;
    }

    let header = serde_json::to_vec(&Header {
        value_dtype: dtype,
        tensors: entries,
    })
    .map_err(|e| SparseError::BadHeader(format!("cannot serialise header: {e}")))?;
    let header_len = u32::try_from(header.len())
        .map_err(|_| SparseError::BadHeader(format!("header of {} bytes exceeds 4 GiB", header.len())))?;

    let mut bytes = Vec::with_capacity(PREFIX_BYTES + header.len() + data.len() + CRC_BYTES);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());

    let report = SizeReport {
        value_dtype: dtype,
        tensors: sizes,
        file_bytes: bytes.len() as u64,
        header_bytes: (PREFIX_BYTES + header.len()) as u64,
        position_bytes,
        value_bytes,
        position_bits,
        value_bits: value_bytes * 8,
    };
    Ok(Encoded { bytes, report })
}

/// Decodes a file produced by [`encode`], trusting nothing in it.
///
/// Order of checks: magic, version (before the CRC, since a future version may lay the file
/// out differently), framing lengths, CRC-32 over everything before it, then the header, and
/// per tensor every count and section bound before anything is allocated from it.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let len = bytes.len() as u64;
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(SparseError::BadMagic);
    }
    let min_len = (PREFIX_BYTES + CRC_BYTES) as u64;
    let version = read_u32(bytes, 8).ok_or(SparseError::Truncated { needed: min_len, len })?;
    if version != FORMAT_VERSION {
        return Err(SparseError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = read_u32(bytes, 12).ok_or(SparseError::Truncated { needed: min_len, len })?;
    let needed = min_len + u64::from(header_len);
    if len < needed {
        return Err(SparseError::Truncated { needed, len });
    }
    // `needed <= len`, so these conversions and slices are in range.
    let body_end = bytes.len() - CRC_BYTES;
    let stored = read_u32(bytes, body_end).ok_or(SparseError::Truncated { needed, len })?;
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(SparseError::ChecksumMismatch { stored, computed });
    }
    let header_end = PREFIX_BYTES + header_len as usize;
    let header_text = std::str::from_utf8(&bytes[PREFIX_BYTES..header_end])
        .map_err(|e| SparseError::BadHeader(format!("header is not UTF-8: {e}")))?;
    let header: Header = serde_json::from_str(header_text)
        .map_err(|e| SparseError::BadHeader(format!("header is not valid JSON of the expected form: {e}")))?;
    let data = &bytes[header_end..body_end];
    let dtype = header.value_dtype;

    let mut diff = SparseDiff::new();
    let mut sizes = Vec::with_capacity(header.tensors.len());
    let (mut position_bits, mut position_bytes, mut value_bytes) = (0u64, 0u64, 0u64);
    for entry in &header.tensors {
        let (tensor, bits) = decode_tensor(entry, data, dtype)?;
        if diff.tensors.contains_key(&entry.name) {
            return Err(SparseError::BadHeader(format!(
                "tensor {:?} appears twice",
                entry.name
            )));
        }
        sizes.push(TensorSize {
            name: entry.name.clone(),
            numel: tensor.numel(),
            nnz: tensor.nnz(),
            encoding: entry.encoding,
            position_bits: bits,
            value_bits: entry.values_bytes * 8,
            bound_bits: log2_binomial(tensor.numel(), tensor.nnz()),
        });
        position_bits += bits;
        position_bytes += entry.positions_bytes;
        value_bytes += entry.values_bytes;
        diff.tensors.insert(entry.name.clone(), tensor);
    }
    let report = SizeReport {
        value_dtype: dtype,
        tensors: sizes,
        file_bytes: len,
        header_bytes: header_end as u64,
        position_bytes,
        value_bytes,
        position_bits,
        value_bits: value_bytes * 8,
    };
    Ok(Decoded { diff, dtype, report })
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks one header entry against the data section and decodes it; returns the tensor and
/// its exact position-code bits.
fn decode_tensor(e: &HeaderTensor, data: &[u8], dtype: ValueDType) -> Result<(SparseTensor, u64)> {
    let name = e.name.as_str();
    let shape = e
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            invalid(
                name,
                format!("shape {:?} does not fit this platform's usize", e.shape),
            )
        })?;
    let numel = crate::tensor::checked_numel(&shape)
        .ok_or_else(|| invalid(name, format!("shape {:?} overflows: numel exceeds 2^64", e.shape)))?;
    let nnz = e.nnz;
    if nnz > numel {
        return Err(invalid(name, format!("nnz {nnz} exceeds numel {numel}")));
    }
    let width = dtype.bytes() as u64;
    if nnz.checked_mul(width) != Some(e.values_bytes) {
        return Err(invalid(
            name,
            format!(
                "values section has {} bytes but nnz {nnz} × {width} bytes are needed",
                e.values_bytes
            ),
        ));
    }
    let positions = section(name, "positions", data, e.positions_offset, e.positions_bytes)?;
    let values = section(name, "values", data, e.values_offset, e.values_bytes)?;
    // nnz × width == values.len() <= data.len(): allocations below are bounded by the file.
    let nnz_usize = values.len() / dtype.bytes();

    let (positions, bits) = match e.encoding {
        PositionEncoding::Empty => {
            if nnz != 0 || !positions.is_empty() {
                return Err(invalid(
                    name,
                    "encoding \"empty\" requires nnz 0 and no position bytes",
                ));
            }
            (Vec::new(), 0)
        }
        PositionEncoding::Rice { k } => decode_rice(name, positions, nnz_usize, numel, k)?,
        PositionEncoding::Bitmap => {
            if numel.div_ceil(8) != positions.len() as u64 {
                return Err(invalid(
                    name,
                    format!(
                        "bitmap of {numel} elements needs {} bytes but the section has {}",
                        numel.div_ceil(8),
                        positions.len()
                    ),
                ));
            }
            (decode_bitmap(name, positions, nnz_usize, numel)?, numel)
        }
    };
    let values = decode_values(name, values, &positions, dtype)?;
    Ok((
        SparseTensor {
            shape,
            positions,
            values,
        },
        bits,
    ))
}

/// The `[offset, offset + len)` slice of the data section, or an error naming the section.
fn section<'a>(name: &str, what: &str, data: &'a [u8], offset: u64, len: u64) -> Result<&'a [u8]> {
    let end = offset.checked_add(len);
    match end {
        Some(end) if end <= data.len() as u64 => Ok(&data[offset as usize..end as usize]),
        _ => Err(invalid(
            name,
            format!(
                "{what} section at offset {offset} with {len} bytes lies outside the data section of {} bytes",
                data.len()
            ),
        )),
    }
}

/// The cheapest code for sorted, distinct `positions` in a tensor of `numel` elements, and its
/// exact bit count.
///
/// Rice with k = 0 spends Σ(gᵢ + 1) = p_last + 1 <= numel bits, so a bitmap can tie with the
/// best Rice code but never beat it. On a tie (k = 0 optimal and the last element changed:
/// dense vectors such as LayerNorm parameters) the bitmap wins, because it decodes without a
/// sequential dependency and is what a reader expects for dense data.
fn choose_encoding(positions: &[u64], numel: u64) -> (PositionEncoding, u64) {
    if positions.is_empty() {
        return (PositionEncoding::Empty, 0);
    }
    let (k, rice_bits) = best_rice(positions);
    if u128::from(numel) <= rice_bits {
        (PositionEncoding::Bitmap, numel)
    } else {
        // rice_bits < numel here, so it fits in u64.
        (PositionEncoding::Rice { k }, rice_bits as u64)
    }
}

/// Gaps g₀ = p₀, gᵢ = pᵢ − pᵢ₋₁ − 1 of strictly increasing positions.
fn gaps(positions: &[u64]) -> impl Iterator<Item = u64> + '_ {
    positions
        .first()
        .copied()
        .into_iter()
        .chain(positions.windows(2).map(|w| w[1] - w[0] - 1))
}

/// Exact Rice cost in bits: Σ (gᵢ >> k) + nnz·(1 + k).
fn rice_cost(gaps: &[u64], k: u8) -> u128 {
    let unary: u128 = gaps.iter().map(|&g| u128::from(g >> k)).sum();
    unary + gaps.len() as u128 * (1 + u128::from(k))
}

/// The `k` with the exactly smallest Rice cost.
///
/// The cost is convex in `k`: its step f(k+1) − f(k) = nnz − Σ ⌈⌊gᵢ/2ᵏ⌋/2⌉ never decreases,
/// because ⌊gᵢ/2ᵏ⌋ shrinks with k. So walking from a guess (log2 of the mean gap) in the
/// improving direction and stopping at the first non-improvement finds the global minimum in
/// a couple of passes instead of 64.
fn best_rice(positions: &[u64]) -> (u8, u128) {
    let g: Vec<u64> = gaps(positions).collect();
    let mean = g.iter().map(|&x| u128::from(x)).sum::<u128>() / g.len() as u128;
    let guess = (128 - mean.leading_zeros())
        .saturating_sub(1)
        .min(u32::from(MAX_RICE_K)) as u8;
    let mut k = guess;
    let mut cost = rice_cost(&g, k);
    if k > 0 && rice_cost(&g, k - 1) < cost {
        while k > 0 {
            let c = rice_cost(&g, k - 1);
            if c >= cost {
                break;
            }
            k -= 1;
            cost = c;
        }
    } else {
        while k < MAX_RICE_K {
            let c = rice_cost(&g, k + 1);
            if c >= cost {
                break;
            }
            k += 1;
            cost = c;
        }
    }
    (k, cost)
}

fn encode_positions(
    name: &str,
    positions: &[u64],
    numel: u64,
    encoding: PositionEncoding,
) -> Result<Vec<u8>> {
    match encoding {
        PositionEncoding::Empty => Ok(Vec::new()),
        PositionEncoding::Rice { k } => {
            let k32 = u32::from(k);
            let mut w = BitWriter::with_capacity_bits(rice_cost_hint(positions.len(), k));
            for g in gaps(positions) {
                w.write_ones(g >> k32);
                w.write_bits(0, 1);
                w.write_bits(g & low_mask(k32), k32);
            }
            Ok(w.finish().0)
        }
        PositionEncoding::Bitmap => {
            let len = usize::try_from(numel.div_ceil(8))
                .map_err(|_| invalid(name, format!("bitmap of {numel} bits does not fit in memory")))?;
            let mut bytes = vec![0u8; len];
            for &p in positions {
                // p < numel (validated), so the index is in range.
                bytes[(p / 8) as usize] |= 1 << (p % 8);
            }
            Ok(bytes)
        }
    }
}

/// A lower bound on the Rice stream length, for pre-sizing its buffer.
fn rice_cost_hint(nnz: usize, k: u8) -> u64 {
    (nnz as u64).saturating_mul(1 + u64::from(k))
}

fn encode_values(name: &str, t: &SparseTensor, dtype: ValueDType) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(t.values.len() * dtype.bytes());
    for (&v, &p) in t.values.iter().zip(&t.positions) {
        let overflow = || invalid(name, format!("value {v} at position {p} overflows {dtype}"));
        match dtype {
            ValueDType::F32 => out.extend_from_slice(&v.to_le_bytes()),
            ValueDType::F16 => {
                let h = half::f16::from_f32(v);
                if !h.is_finite() {
                    return Err(overflow());
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
            ValueDType::Bf16 => {
                let h = half::bf16::from_f32(v);
                if !h.is_finite() {
                    return Err(overflow());
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// Decodes `nnz` Rice-coded gaps; the section must end exactly at the last gap's byte, with
/// zero padding bits, so every valid diff has exactly one byte representation.
fn decode_rice(name: &str, section: &[u8], nnz: usize, numel: u64, k: u8) -> Result<(Vec<u64>, u64)> {
    if k > MAX_RICE_K {
        return Err(invalid(
            name,
            format!("rice parameter k = {k} exceeds the maximum {MAX_RICE_K}"),
        ));
    }
    let k32 = u32::from(k);
    let mut r = BitReader::new(section);
    let mut positions = Vec::with_capacity(nnz);
    let mut next = 0u64; // smallest position the next gap can reach
    for i in 0..nnz {
        let ends = || invalid(name, format!("rice stream ends inside gap {i} of {nnz}"));
        let q = r.read_unary().ok_or_else(ends)?;
        let low = r.read_bits(k32).ok_or_else(ends)?;
        if k32 > 0 && q > (u64::MAX >> k32) {
            return Err(invalid(name, format!("gap {i} overflows 64 bits")));
        }
        let gap = (q << k32) | low;
        let p = next.checked_add(gap).filter(|&p| p < numel).ok_or_else(|| {
            invalid(
                name,
                format!("position at index {i} is out of range for {numel} elements"),
            )
        })?;
        positions.push(p);
        next = p + 1; // p < numel <= u64::MAX
    }
    let bits = r.position();
    if bits.div_ceil(8) != section.len() as u64 {
        return Err(invalid(
            name,
            format!(
                "rice stream of {bits} bits is followed by unused bytes (section has {})",
                section.len()
            ),
        ));
    }
    if bits % 8 != 0 && r.read_bits((8 - bits % 8) as u32) != Some(0) {
        return Err(invalid(name, "nonzero padding bits after the rice stream"));
    }
    Ok((positions, bits))
}

fn decode_bitmap(name: &str, section: &[u8], nnz: usize, numel: u64) -> Result<Vec<u64>> {
    let mut positions = Vec::with_capacity(nnz);
    for (i, &byte) in section.iter().enumerate() {
        let mut b = byte;
        while b != 0 {
            let p = i as u64 * 8 + u64::from(b.trailing_zeros());
            if p >= numel {
                return Err(invalid(
                    name,
                    format!("bitmap padding bit {p} is set (numel {numel})"),
                ));
            }
            if positions.len() == nnz {
                return Err(invalid(name, format!("bitmap has more set bits than nnz {nnz}")));
            }
            positions.push(p);
            b &= b - 1;
        }
    }
    if positions.len() != nnz {
        return Err(invalid(
            name,
            format!("bitmap has {} set bits but nnz is {nnz}", positions.len()),
        ));
    }
    Ok(positions)
}

fn decode_values(name: &str, section: &[u8], positions: &[u64], dtype: ValueDType) -> Result<Vec<f32>> {
    let values: Vec<f32> = match dtype {
        ValueDType::F32 => section
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        ValueDType::F16 => section
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        ValueDType::Bf16 => section
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    };
    if let Some((v, p)) = values.iter().zip(positions).find(|(v, _)| !v.is_finite()) {
        return Err(invalid(
            name,
            format!("value at position {p} is not finite ({v})"),
        ));
    }
    Ok(values)
}
