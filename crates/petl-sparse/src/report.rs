//! What a diff costs on disk, and how that compares with the information-theoretic bound.

use crate::binom::log2_binomial;
use crate::dtype::ValueDType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How one tensor's positions are coded; serialised as in the file header, e.g.
/// `{"kind":"rice","k":7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PositionEncoding {
    /// No positions (nnz = 0); the section is empty.
    Empty,
    /// Golomb–Rice code of the gaps between positions with parameter `k` (0..=63).
    Rice {
        /// Number of low bits stored verbatim per gap.
        k: u8,
    },
    /// One bit per element of the tensor.
    Bitmap,
}

impl fmt::Display for PositionEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PositionEncoding::Empty => f.write_str("empty"),
            PositionEncoding::Rice { k } => write!(f, "rice(k={k})"),
            PositionEncoding::Bitmap => f.write_str("bitmap"),
        }
    }
}

/// Cost of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSize {
    /// Base-tensor name.
    pub name: String,
    /// Elements of the base tensor.
    pub numel: u64,
    /// Stored entries.
    pub nnz: u64,
    /// The position code used.
    pub encoding: PositionEncoding,
    /// Exact bits of the position code, before padding to a byte.
    pub position_bits: u64,
    /// Bits of the values (nnz × dtype width).
    pub value_bits: u64,
    /// `log2 C(numel, nnz)`: the fewest bits any code could spend on these positions.
    pub bound_bits: f64,
}

/// Cost of a whole encoded diff, broken down so a user can see whether positions, values or
/// the header dominate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeReport {
    /// The stored value precision.
    pub value_dtype: ValueDType,
    /// Per tensor, in file order.
    pub tensors: Vec<TensorSize>,
    /// Total file size.
    pub file_bytes: u64,
    /// Magic, version, header length and JSON header.
    pub header_bytes: u64,
    /// Position sections on disk (each padded to a byte).
    pub position_bytes: u64,
    /// Value sections on disk.
    pub value_bytes: u64,
    /// Exact position-code bits over all tensors (no padding).
    pub position_bits: u64,
    /// Value bits over all tensors.
    pub value_bits: u64,
}

/// [`SizeReport`]'s derived figures in one serialisable record, for a CLI's JSON output.
/// Undefined ratios (nothing stored, or a zero bound) are NaN, which serde_json writes as
/// `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeSummary {
    /// Stored entries.
    pub nnz: u64,
    /// Elements of the touched base tensors.
    pub numel: u64,
    /// Total file size.
    pub file_bytes: u64,
    /// File bytes per stored entry.
    pub bytes_per_nnz: f64,
    /// Position-code bits per stored entry.
    pub position_bits_per_nnz: f64,
    /// `log2 C(Σ numel, Σ nnz)`.
    pub bound_global_bits: f64,
    /// `Σ log2 C(numel_t, nnz_t)`.
    pub bound_per_tensor_bits: f64,
    /// Position bits over the global bound.
    pub ratio_to_bound: f64,
}

impl SizeReport {
    /// Stored entries.
    pub fn nnz(&self) -> u64 {
        self.tensors.iter().map(|t| t.nnz).sum()
    }

    /// Elements of the touched base tensors (saturating).
    pub fn numel(&self) -> u64 {
        self.tensors.iter().fold(0u64, |a, t| a.saturating_add(t.numel))
    }

    /// File bytes per stored entry — the figure to compare against a dense delta's 4 bytes per
    /// parameter. NaN when nothing is stored.
    pub fn bytes_per_nnz(&self) -> f64 {
        ratio(self.file_bytes as f64, self.nnz() as f64)
    }

    /// Position-code bits per stored entry. NaN when nothing is stored.
    pub fn position_bits_per_nnz(&self) -> f64 {
        ratio(self.position_bits as f64, self.nnz() as f64)
    }

    /// `log2 C(Σ numel, Σ nnz)`: the bound for the positions of the whole diff, treating all
    /// touched tensors as one flat vector. This is the bound a single global mask would face,
    /// and the one our per-tensor codes are judged against.
    pub fn bound_global_bits(&self) -> f64 {
        log2_binomial(self.numel(), self.nnz())
    }

    /// `Σ log2 C(numel_t, nnz_t)`: the bound when each tensor's nnz is known (it is, from the
    /// header). Never above [`SizeReport::bound_global_bits`] (Vandermonde's identity).
    pub fn bound_per_tensor_bits(&self) -> f64 {
        self.tensors.iter().map(|t| t.bound_bits).sum()
    }

    /// `position_bits / bound_global_bits`: 1.0 is optimal; below 1.0 is possible when
    /// densities differ between tensors. NaN (0/0) or infinite when the bound is 0 bits.
    pub fn ratio_to_bound(&self) -> f64 {
        self.position_bits as f64 / self.bound_global_bits()
    }

    /// The derived figures as one serialisable record.
    pub fn summary(&self) -> SizeSummary {
        SizeSummary {
            nnz: self.nnz(),
            numel: self.numel(),
            file_bytes: self.file_bytes,
            bytes_per_nnz: self.bytes_per_nnz(),
            position_bits_per_nnz: self.position_bits_per_nnz(),
            bound_global_bits: self.bound_global_bits(),
            bound_per_tensor_bits: self.bound_per_tensor_bits(),
            ratio_to_bound: self.ratio_to_bound(),
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}
