//! A sparse diff served as a correction of the frozen computation rather than written into the
//! weights: `x·(W + δ)ᵀ + (b + δb) = x·Wᵀ + b + x·δᵀ + δb`,
//! `LN(x; γ + δγ, β + δβ) = LN(x; γ, β) + x̂·δγ + δβ`, `(E + δE)[ids] = E[ids] + δE[ids]`.
//!
//! The base forward is shared and each task adds its `O(nnz)` correction to its own rows, so one
//! batch can serve many diff-pruned tasks at once (see `petl_models::RowGroups`); writing the
//! diff in place ([`super::apply_diff`]) is faster for a batch of a single task. Each
//! correction is one fused pass that touches only the changed outputs.

use crate::error::{bad_input, Result};
use candle_core::{CpuStorage, CustomOp2, InplaceOp2, Layout, Shape, Tensor};
use petl_models::{BaseModel, ForwardCtx, Hooks, Sublayer};
use petl_sparse::{SparseDiff, SparseTensor};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// `(index, value)` pairs of a sparse vector.
type Entries = Vec<(u32, f32)>;

/// One matrix row's entries: columns and values.
type RowEntries<'a> = (&'a [u32], &'a [f32]);

/// A sparse diff as per-row corrections at the base-parameter hook points
/// ([`Hooks::base_linear`], [`Hooks::base_norm`], [`Hooks::base_lookup`]).
#[derive(Debug, Default)]
pub struct SparseCorrection {
    /// By linear weight name.
    linears: HashMap<String, Arc<LinearCorrection>>,
    /// By LayerNorm scale name.
    norms: HashMap<String, Arc<NormCorrection>>,
    /// By embedding table name: changed rows.
    lookups: HashMap<String, Csr>,
    nnz: usize,
}

#[derive(Debug, Default)]
struct LinearCorrection {
    in_dim: usize,
    /// `δW` `[out, in]`, by output row.
    weight: Csr,
    bias: Entries,
}

#[derive(Debug, Default)]
struct NormCorrection {
    scale: Entries,
    shift: Entries,
}

/// The rows of a matrix that have entries, in flat arrays: a thousand loaded tasks are a few
/// large allocations each, not one per row.
#[derive(Debug, Default)]
struct Csr {
    /// Row indices with entries, ascending.
    rows: Vec<u32>,
    /// `starts[i]..starts[i + 1]` are row `rows[i]`'s entries.
    starts: Vec<u32>,
    cols: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// From a row-major `[_, cols]` tensor's sorted entries.
    fn new(t: &SparseTensor, cols: usize) -> Self {
        let mut csr = Csr {
            cols: Vec::with_capacity(t.positions.len()),
            values: t.values.clone(),
            ..Csr::default()
        };
        for &p in &t.positions {
            let r = (p / cols as u64) as u32;
            if csr.rows.last() != Some(&r) {
                csr.rows.push(r);
                csr.starts.push(csr.cols.len() as u32);
            }
            csr.cols.push((p % cols as u64) as u32);
        }
        csr.starts.push(csr.cols.len() as u32);
        csr
    }

    /// Every row with entries: `(row, columns, values)`.
    fn iter(&self) -> impl Iterator<Item = (u32, &[u32], &[f32])> {
        self.rows.iter().enumerate().map(|(i, &r)| {
            let span = self.starts[i] as usize..self.starts[i + 1] as usize;
            (r, &self.cols[span.clone()], &self.values[span])
        })
    }

    /// Row `r`'s entries, if it has any.
    fn row(&self, r: u32) -> Option<RowEntries<'_>> {
        let i = self.rows.binary_search(&r).ok()?;
        let span = self.starts[i] as usize..self.starts[i + 1] as usize;
        Some((&self.cols[span.clone()], &self.values[span]))
    }
}

fn entries(t: &SparseTensor) -> Entries {
    t.positions
        .iter()
        .zip(&t.values)
        .map(|(&p, &v)| (p as u32, v))
        .collect()
}

impl SparseCorrection {
    /// The corrections for `diff` on `model`; refuses entries on a tensor the model does not
    /// have, or of a kind no hook point can correct.
    pub fn new(model: &dyn BaseModel, diff: &SparseDiff) -> Result<Self> {
        let base = model.base_params();
        let mut linears: HashMap<String, LinearCorrection> = HashMap::new();
        let mut norms: HashMap<String, NormCorrection> = HashMap::new();
        let mut out = Self::default();
        for (name, t) in &diff.tensors {
            let tensor = base.get(name).ok_or_else(|| {
                bad_input(format!(
                    "the sparse diff changes {name}, which the base model lacks"
                ))
            })?;
            if t.shape.as_slice() != tensor.dims() {
                return Err(bad_input(format!(
                    "the sparse diff's {name} has shape {:?}, the base's {:?}",
                    t.shape,
                    tensor.dims()
                )));
            }
            t.validate(name).map_err(|e| bad_input(e.to_string()))?;
            if t.positions.is_empty() {
                continue;
            }
            out.nnz += t.positions.len();
            let stem = name
                .strip_suffix(".bias")
                .or_else(|| name.strip_suffix(".weight"));
            let weight_name = stem.map(|s| format!("{s}.weight"));
            match *tensor.dims() {
                [_, cols] if name.starts_with("embeddings.") => {
                    out.lookups.insert(name.clone(), Csr::new(t, cols));
                }
                [_, cols] => {
                    let c = linears.entry(name.clone()).or_default();
                    c.in_dim = cols;
                    c.weight = Csr::new(t, cols);
                }
                [_] => match weight_name
                    .as_ref()
                    .and_then(|w| base.get(w).map(|b| (w, b.dims())))
                {
                    Some((w, &[_, cols])) if name.ends_with(".bias") => {
                        let c = linears.entry(w.clone()).or_default();
                        c.in_dim = cols;
                        c.bias = entries(t);
                    }
                    Some((w, &[_])) if name.contains("LayerNorm") => {
                        let c = norms.entry(w.clone()).or_default();
                        if name.ends_with(".bias") {
                            c.shift = entries(t);
                        } else {
                            c.scale = entries(t);
                        }
                    }
                    _ => return Err(unsupported(name)),
                },
                _ => return Err(unsupported(name)),
            }
        }
        out.linears = linears.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        out.norms = norms.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Ok(out)
    }

    /// Entries the corrections hold.
    pub fn nnz(&self) -> usize {
        self.nnz
    }

    /// Adds the changed rows of embedding table `table` for tokens `ids` to `out` (`dim` wide
    /// per token); whether any token had one.
    fn add_lookup(&self, table: &str, ids: &[u32], out: &mut [f32], dim: usize) -> bool {
        let Some(table) = self.lookups.get(table) else {
            return false;
        };
        let mut any = false;
        for (t, &id) in ids.iter().enumerate() {
            if let Some((cols, values)) = table.row(id) {
                any = true;
                for (&col, &v) in cols.iter().zip(values) {
                    out[t * dim + col as usize] += v;
                }
            }
        }
        any
    }
}

/// Several tasks' sparse corrections, each acting on its own rows of one batch, applied in one
/// pass per hook point: a batch of many diff-pruned tasks makes one call per hook point, not
/// one per task, and its tasks' rows are corrected in parallel.
pub struct CorrectionGroups<'a> {
    groups: Vec<(Range<usize>, &'a SparseCorrection)>,
}

impl std::fmt::Debug for CorrectionGroups<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.groups.iter().map(|(r, _)| r.clone()).collect();
        f.debug_struct("CorrectionGroups").field("rows", &ranges).finish()
    }
}

impl<'a> CorrectionGroups<'a> {
    /// `(rows, correction)` pairs over disjoint row ranges in ascending order; rows not in any
    /// range are left alone.
    pub fn new(groups: Vec<(Range<usize>, &'a SparseCorrection)>) -> Result<Self> {
        let mut end = 0;
        for (rows, _) in &groups {
            if rows.start < end || rows.is_empty() {
                return Err(bad_input(format!(
                    "correction row ranges must be non-empty, disjoint and ascending: {rows:?} after row {end}"
                )));
            }
            end = rows.end;
        }
        Ok(Self { groups })
    }

    /// Adds the corrections `parts` (one per task that has one at this hook point) to their
    /// rows of `output`.
    fn add_parts<C>(
        &self,
        output: Tensor,
        input: &Tensor,
        parts: Vec<(Range<usize>, C)>,
        ctx: &ForwardCtx,
    ) -> petl_models::Result<Tensor>
    where
        Grouped<C>: Correction + CustomOp2 + InplaceOp2,
    {
        if parts.is_empty() {
            return Ok(output);
        }
        let rows = self.check_rows(&output)?;
        add_correction(output, input, Grouped { parts, rows }, ctx)
    }

    fn check_rows(&self, t: &Tensor) -> petl_models::Result<usize> {
        let rows = t.dim(0)?;
        if self.groups.last().is_some_and(|(r, _)| r.end > rows) {
            return Err(petl_models::ModelError::BadInput(format!(
                "correction groups reach past the batch's {rows} rows"
            )));
        }
        Ok(rows)
    }
}

impl Hooks for CorrectionGroups<'_> {
    fn changes_heads(&self, _layer: usize, _sublayer: Sublayer) -> bool {
        false
    }

    fn base_linear(
        &self,
        weight: &str,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        let parts: Vec<_> = self
            .groups
            .iter()
            .filter_map(|(r, c)| {
                c.linears
                    .get(weight)
                    .map(|l| (r.clone(), AddLinearCorrection(l.clone())))
            })
            .collect();
        self.add_parts(output, input, parts, ctx)
    }

    fn base_norm(
        &self,
        weight: &str,
        input: &Tensor,
        eps: f64,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        let parts: Vec<_> = self
            .groups
            .iter()
            .filter_map(|(r, c)| {
                c.norms
                    .get(weight)
                    .map(|n| (r.clone(), AddNormCorrection(n.clone(), eps)))
            })
            .collect();
        self.add_parts(output, input, parts, ctx)
    }

    fn base_lookup(
        &self,
        table: &str,
        ids: &Tensor,
        output: Tensor,
        _ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        if !self.groups.iter().any(|(_, c)| c.lookups.contains_key(table)) {
            return Ok(output);
        }
        let rows = self.check_rows(&output)?;
        let ids = ids.flatten_all()?.to_vec1::<u32>()?;
        let dim = output.dims().last().copied().unwrap_or(1);
        let per_row = ids.len() / rows.max(1);
        let mut out = output.flatten_all()?.to_vec1::<f32>()?;
        let mut any = false;
        for (r, c) in &self.groups {
            let tokens = r.start * per_row..r.end * per_row;
            let span = tokens.start * dim..tokens.end * dim;
            any |= c.add_lookup(table, &ids[tokens], &mut out[span], dim);
        }
        if !any {
            return Ok(output);
        }
        Ok(Tensor::from_vec(out, output.shape(), output.device())?)
    }
}

/// One kind of correction for several row ranges of a batch `[rows, …]`, the ranges corrected
/// in parallel.
struct Grouped<C> {
    parts: Vec<(Range<usize>, C)>,
    rows: usize,
}

impl<C: Correction + Sync> Correction for Grouped<C> {
    const NAME: &'static str = C::NAME;

    fn add_into(
        &self,
        y: &mut [f32],
        y_dims: &[usize],
        x: &[f32],
        x_dims: &[usize],
    ) -> candle_core::Result<()> {
        let rows = self.rows.max(1);
        let (y_row, x_row) = (y.len() / rows, x.len() / rows);
        let sub = |dims: &[usize], n: usize| {
            let mut d = dims.to_vec();
            if let Some(first) = d.first_mut() {
                *first = n;
            }
            d
        };
        let mut work = Vec::with_capacity(self.parts.len());
        let mut rest = y;
        let mut at = 0;
        for (r, c) in &self.parts {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut((r.start - at) * y_row);
            let (mine, tail) = tail.split_at_mut(r.len() * y_row);
            rest = tail;
            at = r.end;
            work.push((mine, &x[r.start * x_row..r.end * x_row], c, r.len()));
        }
        work.into_par_iter()
            .try_for_each(|(y, x, c, n)| c.add_into(y, &sub(y_dims, n), x, &sub(x_dims, n)))
    }
}

fn unsupported(name: &str) -> crate::MethodError {
    bad_input(format!(
        "the sparse diff changes {name}, which is neither a linear, a LayerNorm nor an embedding table; \
         it cannot be served as a correction"
    ))
}

impl Hooks for SparseCorrection {
    fn changes_heads(&self, _layer: usize, _sublayer: Sublayer) -> bool {
        false
    }

    fn base_linear(
        &self,
        weight: &str,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        match self.linears.get(weight) {
            Some(c) => add_correction(output, input, AddLinearCorrection(c.clone()), ctx),
            None => Ok(output),
        }
    }

    fn base_norm(
        &self,
        weight: &str,
        input: &Tensor,
        eps: f64,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        match self.norms.get(weight) {
            Some(c) => add_correction(output, input, AddNormCorrection(c.clone(), eps), ctx),
            None => Ok(output),
        }
    }

    fn base_lookup(
        &self,
        table: &str,
        ids: &Tensor,
        output: Tensor,
        _ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        if !self.lookups.contains_key(table) {
            return Ok(output);
        }
        let ids = ids.flatten_all()?.to_vec1::<u32>()?;
        let dim = output.dims().last().copied().unwrap_or(1);
        let mut out = output.flatten_all()?.to_vec1::<f32>()?;
        if !self.add_lookup(table, &ids, &mut out, dim) {
            return Ok(output);
        }
        Ok(Tensor::from_vec(out, output.shape(), output.device())?)
    }
}

/// A correction added to `y` given the op's input `x`, both `[…, dim]` and contiguous.
trait Correction {
    const NAME: &'static str;
    fn add_into(
        &self,
        y: &mut [f32],
        y_dims: &[usize],
        x: &[f32],
        x_dims: &[usize],
    ) -> candle_core::Result<()>;
}

/// `output + correction(input)`. In evaluation passes `output` — the fresh result of a frozen
/// op, or a view of one batch's rows of it — is updated in place and returned as is, so mixing
/// many tasks in one batch copies nothing; training passes get a new tensor.
fn add_correction<C>(output: Tensor, input: &Tensor, c: C, ctx: &ForwardCtx) -> petl_models::Result<Tensor>
where
    C: Correction + CustomOp2 + InplaceOp2,
{
    if !output.device().is_cpu() {
        // The correction kernels walk sparse rows on the host. Off the CPU the activations make
        // a round trip instead: correct, and costs two copies of this op's input and output.
        let device = output.device().clone();
        let host = output.to_device(&candle_core::Device::Cpu)?;
        let host = add_correction(host, &input.to_device(&candle_core::Device::Cpu)?, c, ctx)?;
        return Ok(host.to_device(&device)?);
    }
    let input = input.contiguous()?;
    if !ctx.is_train() && output.is_contiguous() {
        output.inplace_op2(&input, &c)?;
        return Ok(output);
    }
    Ok(output.contiguous()?.apply_op2_no_bwd(&input, &c)?)
}

/// The contiguous f32 data of an op input.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("sparse correction: f32 only");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("sparse correction: inputs must be contiguous");
    };
    Ok(&v[start..end])
}

macro_rules! correction_ops {
    ($t:ty) => {
        impl CustomOp2 for $t {
            fn name(&self) -> &'static str {
                <$t as Correction>::NAME
            }

            fn cpu_fwd(
                &self,
                y: &CpuStorage,
                yl: &Layout,
                x: &CpuStorage,
                xl: &Layout,
            ) -> candle_core::Result<(CpuStorage, Shape)> {
                let mut out = f32_slice(y, yl)?.to_vec();
                self.add_into(&mut out, yl.dims(), f32_slice(x, xl)?, xl.dims())?;
                Ok((CpuStorage::F32(out), yl.shape().clone()))
            }
        }

        impl InplaceOp2 for $t {
            fn name(&self) -> &'static str {
                <$t as Correction>::NAME
            }

            fn cpu_fwd(
                &self,
                y: &mut CpuStorage,
                yl: &Layout,
                x: &CpuStorage,
                xl: &Layout,
            ) -> candle_core::Result<()> {
                let CpuStorage::F32(v) = y else {
                    candle_core::bail!("sparse correction: f32 only");
                };
                let Some((start, end)) = yl.contiguous_offsets() else {
                    candle_core::bail!("sparse correction: output must be contiguous");
                };
                self.add_into(&mut v[start..end], yl.dims(), f32_slice(x, xl)?, xl.dims())
            }
        }
    };
}

/// Below this many tokens a correction runs on the calling thread: handing a task's few rows
/// to the thread pool costs a wake-up per call, more than the work (measured: 32 one-row
/// tasks × 53 corrections added 95 ms to a 360 ms forward when every call went parallel).
const PARALLEL_TOKENS: usize = 256;

/// Tokens per block of the sparse product: one entry of `δ` then updates a whole block with
/// vector instructions.
const BLOCK: usize = 8;

/// `y + x·δᵀ + δb` for `y` `[…, out]` and `x` `[…, in]`.
struct AddLinearCorrection(Arc<LinearCorrection>);

impl Correction for AddLinearCorrection {
    const NAME: &'static str = "add-sparse-linear-correction";

    fn add_into(
        &self,
        out: &mut [f32],
        y_dims: &[usize],
        x: &[f32],
        x_dims: &[usize],
    ) -> candle_core::Result<()> {
        let c = &self.0;
        let out_dim = y_dims.last().copied().unwrap_or(1);
        let in_dim = c.in_dim;
        if x_dims.last() != Some(&in_dim) || x.len() / in_dim != out.len() / out_dim {
            candle_core::bail!("sparse correction: input {x_dims:?} does not fit output {y_dims:?}");
        }
        let block = |(out, x): (&mut [f32], &[f32])| {
            let tokens = x.len() / in_dim;
            SCRATCH.with_borrow_mut(|xt| {
                // Column-major copy of the block so each entry reads BLOCK consecutive
                // floats. The buffer is reused and never cleared (a fresh one per block
                // cost more than the product): lanes past `tokens` hold stale values whose
                // sums are never written out.
                if xt.len() < in_dim {
                    xt.resize(in_dim, [0f32; BLOCK]);
                }
                for t in 0..tokens {
                    for (i, v) in x[t * in_dim..(t + 1) * in_dim].iter().enumerate() {
                        xt[i][t] = *v;
                    }
                }
                add_block_product(&c.weight, &xt[..in_dim], out, out_dim, tokens);
            });
            for t in 0..tokens {
                for &(col, v) in &c.bias {
                    out[t * out_dim + col as usize] += v;
                }
            }
        };
        let (out_blocks, x_blocks) = (out.chunks_mut(out_dim * BLOCK), x.chunks(in_dim * BLOCK));
        if x.len() / in_dim < PARALLEL_TOKENS {
            out_blocks.zip(x_blocks).for_each(block);
        } else {
            out.par_chunks_mut(out_dim * BLOCK)
                .zip(x.par_chunks(in_dim * BLOCK))
                .for_each(block);
        }
        Ok(())
    }
}

correction_ops!(AddLinearCorrection);
correction_ops!(Grouped<AddLinearCorrection>);

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<[f32; BLOCK]>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[t, r] += Σ δ[r, c]·x[t, c]` for the `tokens` of a block held column-major in `xt`.
fn add_block_product(weight: &Csr, xt: &[[f32; BLOCK]], out: &mut [f32], out_dim: usize, tokens: usize) {
    for (r, cols, values) in weight.iter() {
        // Four independent accumulators, so consecutive entries do not wait on each other's
        // additions.
        let mut acc = [[0f32; BLOCK]; 4];
        let mut quads = cols.chunks_exact(4).zip(values.chunks_exact(4));
        for (c4, v4) in &mut quads {
            for j in 0..4 {
                let (xc, v) = (&xt[c4[j] as usize], v4[j]);
                for k in 0..BLOCK {
                    acc[j][k] += v * xc[k];
                }
            }
        }
        let tail = cols.len() - cols.len() % 4;
        for (&col, &v) in cols[tail..].iter().zip(&values[tail..]) {
            let xc = &xt[col as usize];
            for k in 0..BLOCK {
                acc[0][k] += v * xc[k];
            }
        }
        for t in 0..tokens {
            out[t * out_dim + r as usize] += (acc[0][t] + acc[1][t]) + (acc[2][t] + acc[3][t]);
        }
    }
}

/// `y + x̂·δγ + δβ` where `x̂` is `x` normalised over its last dimension.
struct AddNormCorrection(Arc<NormCorrection>, f64);

impl Correction for AddNormCorrection {
    const NAME: &'static str = "add-sparse-norm-correction";

    fn add_into(
        &self,
        out: &mut [f32],
        y_dims: &[usize],
        x: &[f32],
        x_dims: &[usize],
    ) -> candle_core::Result<()> {
        if x_dims != y_dims {
            candle_core::bail!("norm correction: input {x_dims:?} vs output {y_dims:?}");
        }
        let d = y_dims.last().copied().unwrap_or(1);
        let (c, eps) = (&self.0, self.1);
        let row = |(out, x): (&mut [f32], &[f32])| {
            if !c.scale.is_empty() {
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                let inv = 1.0 / (var + eps).sqrt();
                for &(col, v) in &c.scale {
                    out[col as usize] += ((x[col as usize] as f64 - mean) * inv) as f32 * v;
                }
            }
            for &(col, v) in &c.shift {
                out[col as usize] += v;
            }
        };
        if x.len() / d < PARALLEL_TOKENS {
            out.chunks_mut(d).zip(x.chunks(d)).for_each(row);
        } else {
            out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(row);
        }
        Ok(())
    }
}

correction_ops!(AddNormCorrection);
correction_ops!(Grouped<AddNormCorrection>);
