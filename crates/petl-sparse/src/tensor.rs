//! The in-memory diff: per tensor, sorted flat positions and their values.

use crate::error::{invalid, Result};
use std::collections::BTreeMap;

/// The change to one base tensor: `values[i]` is added at flat (row-major) index
/// `positions[i]`.
///
/// The fields are public for cheap construction and destructuring; [`SparseTensor::new`]
/// checks the invariants, and [`crate::encode`] re-checks them, so an unchecked value can never
/// reach disk.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseTensor {
    /// Shape of the base tensor (not of the diff).
    pub shape: Vec<usize>,
    /// Flat row-major positions, strictly increasing, each `< numel`.
    pub positions: Vec<u64>,
    /// One finite value per position.
    pub values: Vec<f32>,
}

impl SparseTensor {
    /// Builds a tensor after checking its invariants, so mistakes surface where they are made
    /// rather than at encode time.
    pub fn new(shape: Vec<usize>, positions: Vec<u64>, values: Vec<f32>) -> Result<Self> {
        let t = SparseTensor {
            shape,
            positions,
            values,
        };
        t.validate("(unnamed)")?;
        Ok(t)
    }

    /// Number of elements of the base tensor (1 for a scalar shape `[]`); saturates at
    /// `u64::MAX` for a shape whose product overflows (which [`SparseTensor::validate`] rejects).
    pub fn numel(&self) -> u64 {
        checked_numel(&self.shape).unwrap_or(u64::MAX)
    }

    /// Number of stored (changed) entries.
    pub fn nnz(&self) -> u64 {
        self.positions.len() as u64
    }

    /// Checks the invariants, naming the tensor `name` in the error.
    pub fn validate(&self, name: &str) -> Result<()> {
        let numel = checked_numel(&self.shape).ok_or_else(|| {
            invalid(
                name,
                format!("shape {:?} overflows: numel exceeds 2^64", self.shape),
            )
        })?;
        if self.values.len() != self.positions.len() {
            return Err(invalid(
                name,
                format!(
                    "length mismatch: {} positions but {} values",
                    self.positions.len(),
                    self.values.len()
                ),
            ));
        }
        let mut prev: Option<u64> = None;
        for (i, (&p, &v)) in self.positions.iter().zip(&self.values).enumerate() {
            if p >= numel {
                return Err(invalid(
                    name,
                    format!("position {p} (index {i}) is out of range for {numel} elements"),
                ));
            }
            if let Some(q) = prev {
                if p <= q {
                    return Err(invalid(
                        name,
                        format!(
                            "positions must be strictly increasing (no duplicates): index {i} has {p} after {q}"
                        ),
                    ));
                }
            }
            if !v.is_finite() {
                return Err(invalid(
                    name,
                    format!("value at position {p} is not finite ({v})"),
                ));
            }
            prev = Some(p);
        }
        Ok(())
    }
}

/// Product of `shape` as u64, `None` on overflow.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

/// A whole task diff: base-tensor name → its change. Ordered by name so encoding is
/// deterministic (same diff, same bytes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseDiff {
    /// Changed tensors by base-tensor name.
    pub tensors: BTreeMap<String, SparseTensor>,
}

impl SparseDiff {
    /// An empty diff.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the change to tensor `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: SparseTensor) -> Option<SparseTensor> {
        self.tensors.insert(name.into(), tensor)
    }

    /// Total stored entries.
    pub fn nnz(&self) -> u64 {
        self.tensors.values().map(SparseTensor::nnz).sum()
    }

    /// Total elements of the touched base tensors (saturating).
    pub fn numel(&self) -> u64 {
        self.tensors
            .values()
            .fold(0u64, |acc, t| acc.saturating_add(t.numel()))
    }
}
