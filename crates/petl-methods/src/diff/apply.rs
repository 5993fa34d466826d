//! Applying a sparse diff to a loaded base in place, and removing it again, in O(nnz).
//!
//! Serving many tasks from one base means switching diffs without reloading: apply writes
//! `θ₀[p] + δ[p]` into the base tensors at the diff's positions and keeps the overwritten
//! `θ₀[p]`; remove writes those back. Subtracting δ again would not restore θ₀ bit for bit
//! (`(a + b) − b ≠ a` in floating point), so the originals are what is kept.

use super::delta::{base_tensor_for, to_index_tensor};
use crate::error::{bad_input, Result};
use candle_core::Tensor;
use petl_models::BaseModel;
use petl_sparse::SparseDiff;

/// A diff currently written into a base model; [`AppliedDiff::remove`] restores the base.
#[must_use = "a diff left applied changes the base for every later task"]
#[derive(Debug)]
pub struct AppliedDiff {
    undo: Vec<(String, Tensor, Tensor)>,
    nnz: usize,
}

impl AppliedDiff {
    /// Entries the diff changed.
    pub fn nnz(&self) -> usize {
        self.nnz
    }

    /// Writes the saved base values back; afterwards every base tensor is bitwise what it was
    /// before [`apply_diff`].
    pub fn remove(self, model: &dyn BaseModel) -> Result<()> {
        for (name, positions, original) in self.undo.iter().rev() {
            let flat = flat_base(model, name)?;
            flat.scatter_set(positions, original, 0)?;
        }
        Ok(())
    }
}

/// Adds `diff` to `model`'s base tensors in place. Every tensor is checked before any is
/// written, so a diff that does not fit leaves the base untouched.
pub fn apply_diff(model: &dyn BaseModel, diff: &SparseDiff) -> Result<AppliedDiff> {
    let mut planned = Vec::with_capacity(diff.tensors.len());
    for (name, t) in &diff.tensors {
        let base = base_tensor_for(model, name, t)?;
        if t.positions.is_empty() {
            continue;
        }
        let positions = to_index_tensor(&t.positions, base.elem_count(), name, base.device())?;
        let values = Tensor::from_slice(&t.values, t.values.len(), base.device())?.to_dtype(base.dtype())?;
        planned.push((name.clone(), positions, values));
    }
    let mut undo = Vec::with_capacity(planned.len());
    let mut nnz = 0;
    for (name, positions, values) in planned {
        let flat = flat_base(model, &name)?;
        let original = flat.index_select(&positions, 0)?;
        let updated = (&original + &values)?;
        flat.scatter_set(&positions, &updated, 0)?;
        nnz += positions.elem_count();
        undo.push((name, positions, original));
    }
    Ok(AppliedDiff { undo, nnz })
}

/// A flat view of base tensor `name` sharing its storage, so writes reach the model.
fn flat_base(model: &dyn BaseModel, name: &str) -> Result<Tensor> {
    let base = model
        .base_params()
        .get(name)
        .ok_or_else(|| bad_input(format!("base tensor {name} is missing")))?;
    if !base.is_contiguous() {
        return Err(bad_input(format!(
            "base tensor {name} is not contiguous; cannot write a diff into it"
        )));
    }
    Ok(base.flatten_all()?)
}
