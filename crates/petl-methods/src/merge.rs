//! Folding linear deltas (LoRA, IA³) into the weights they modify, for the fastest single-task
//! inference: `W' = W + s·B·A`, or `diag(l)·W`.
//!
//! The base is never written: a merge is an overlay of new tensors that [`Merged`] hands to the
//! model in place of the base's, so "unmerging" is dropping the overlay and restores the base
//! bit for bit — unlike subtracting `s·B·A` again, which rounds. Exporting a merged checkpoint
//! goes through [`merge_into`] and [`MergeUndo`], which keep the originals for the same reason.

use crate::delta::{into_model, Delta};
use crate::error::Result;
use candle_core::Tensor;
use petl_models::{BaseModel, ForwardCtx, HeadsSite, Hooks, KvPrefix, Proj, Sublayer};
use std::collections::BTreeMap;

/// A delta with its linear parts folded into weights; other parts (adapters, prefixes) still
/// act through their hooks.
#[derive(Debug)]
pub struct Merged<'d> {
    delta: &'d Delta,
    weights: BTreeMap<String, Tensor>,
    folded: BTreeMap<(usize, Proj), bool>,
}

impl Delta {
    /// This delta with its LoRA and IA³ parts folded into the weights of `model`.
    pub fn merged(&self, model: &dyn BaseModel) -> Result<Merged<'_>> {
        let weights = self.mergeable(model)?;
        let mut folded = BTreeMap::new();
        for layer in 0..model.shape().num_blocks() {
            for proj in Proj::ALL {
                folded.insert((layer, proj), self.linear_is_mergeable(layer, proj)?);
            }
        }
        Ok(Merged {
            delta: self,
            weights,
            folded,
        })
    }
}

impl Merged<'_> {
    /// Number of base tensors the merge replaces.
    pub fn num_merged(&self) -> usize {
        self.weights.len()
    }

    /// Drops the overlay: the delta computes through its hooks again.
    pub fn unmerge(self) {}

    fn is_folded(&self, layer: usize, proj: Proj) -> bool {
        self.folded.get(&(layer, proj)).copied().unwrap_or(false)
    }
}

impl Hooks for Merged<'_> {
    fn param(&self, name: &str, base: &Tensor, ctx: &mut ForwardCtx) -> petl_models::Result<Option<Tensor>> {
        match self.weights.get(name) {
            Some(w) => Ok(Some(w.clone())),
            None => self.delta.param(name, base, ctx),
        }
    }

    fn embeddings(
        &self,
        words: Tensor,
        mask: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<(Tensor, Tensor)> {
        self.delta.embeddings(words, mask, ctx)
    }

    fn position_offset(&self) -> usize {
        self.delta.position_offset()
    }

    fn linear_input(
        &self,
        layer: usize,
        proj: Proj,
        input: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        // Input scalings are always folded into the weight.
        let _ = (layer, proj, ctx);
        Ok(input)
    }

    fn linear(
        &self,
        layer: usize,
        proj: Proj,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        if self.is_folded(layer, proj) {
            return Ok(output);
        }
        self.delta
            .apply_linear(layer, proj, input, output, ctx)
            .map_err(into_model)
    }

    fn kv_prefix(
        &self,
        layer: usize,
        sublayer: Sublayer,
        batch: usize,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Option<KvPrefix>> {
        self.delta.kv_prefix(layer, sublayer, batch, ctx)
    }

    fn changes_heads(&self, layer: usize, sublayer: Sublayer) -> bool {
        self.delta.changes_heads(layer, sublayer)
    }

    fn heads(
        &self,
        layer: usize,
        site: HeadsSite<'_>,
        heads: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        self.delta.heads(layer, site, heads, ctx)
    }

    fn output(
        &self,
        layer: usize,
        sublayer: Sublayer,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        self.delta.output(layer, sublayer, input, output, ctx)
    }
}

/// The original tensors a [`merge_into`] replaced.
#[derive(Debug)]
#[must_use = "restore() puts the original weights back"]
pub struct MergeUndo {
    originals: BTreeMap<String, Tensor>,
}

/// Writes the merged weights of `merged` into a weight map (e.g. to export a merged checkpoint)
/// and returns what restores it exactly.
pub fn merge_into(merged: &Merged<'_>, weights: &mut BTreeMap<String, Tensor>) -> MergeUndo {
    let mut originals = BTreeMap::new();
    for (name, w) in &merged.weights {
        if let Some(old) = weights.insert(name.clone(), w.clone()) {
            originals.insert(name.clone(), old);
        }
    }
    MergeUndo { originals }
}

impl MergeUndo {
    /// Puts the original tensors back.
    pub fn restore(self, weights: &mut BTreeMap<String, Tensor>) {
        weights.extend(self.originals);
    }
}
