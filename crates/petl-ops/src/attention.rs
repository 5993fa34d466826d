use crate::cpu::{f32_slice, simd_kernel};
use crate::dropout::KeepMask;
use crate::norm::{lane_dot, lane_sum};
use crate::softmax::lane_max;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;

/// What [`attention`] computes besides the three projections.
#[derive(Debug, Clone)]
pub struct AttentionSpec<'a> {
    /// Heads the projections' last dimension is split into.
    pub heads: usize,
    /// The logits' factor, usually `1/√head_dim`.
    pub scale: f64,
    /// An additive bias per key, `[batch, keys]` or `[batch, 1, 1, keys]` (a padding mask,
    /// prefix positions included); `None` attends everywhere.
    pub bias: Option<&'a Tensor>,
    /// Dropout on the attention probabilities: a mask over `[batch, heads, queries, keys]`.
    pub dropout: Option<&'a KeepMask>,
}

/// Multi-head scaled dot-product attention over token-major projections:
/// `q` `[batch, queries, heads·d]`, `k` and `v` `[batch, keys, heads·d]` (keys may include
/// prefix rows), returning the heads' outputs `[batch, queries, heads·d]`, ready for W_o.
///
/// Per head: `dropout(softmax(q·kᵀ·scale + bias))·v`. On contiguous f32 CPU tensors this is one
/// op: each (batch, head) pair is a task that computes its scores, softmax, dropout and value
/// product in a cache-sized tile, reading the heads in place (no split or merge copies), and
/// keeps only each probability row's log normaliser. The backward pass recomputes a tile's
/// probabilities from its logits (flash attention's trade: one small product per tile instead
/// of keeping `[batch, heads, queries, keys]`) and computes `dq`, `dk` and `dv` in one pass per
/// tile. The composed form is five graph nodes over `[batch, heads, queries, keys]`,
/// each of which candle's backward accumulates through a zero-filled buffer. Elsewhere (other
/// dtypes, devices, or a bias that trains) the same function is composed from candle ops.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec<'_>) -> Result<Tensor> {
    let (batch, queries, width) = q.dims3()?;
    let (kb, keys, kw) = k.dims3()?;
    if spec.heads == 0 || width % spec.heads != 0 || (kb, kw) != (batch, width) || v.dims() != k.dims() {
        return Err(candle_core::Error::Msg(format!(
            "attention: queries {:?}, keys {:?}, values {:?} do not make {} heads",
            q.dims(),
            k.dims(),
            v.dims(),
            spec.heads
        )));
    }
    let bias = match spec.bias {
        Some(b) if b.elem_count() == batch * keys && matches!(b.dims().last(), Some(&t) if t == keys) => {
            Some(b.reshape((batch, keys))?)
        }
        Some(b) => {
            return Err(candle_core::Error::Msg(format!(
                "attention: a bias {:?} for {batch} rows of {keys} keys",
                b.dims()
            )))
        }
        None => None,
    };
    if let Some(mask) = spec.dropout {
        let want = batch * spec.heads * queries * keys;
        if mask.len() != want {
            return Err(candle_core::Error::Msg(format!(
                "attention: a dropout mask of {} elements for {want} probabilities",
                mask.len()
            )));
        }
    }
    let consts: Vec<&Tensor> = bias.iter().collect();
    let fusable = crate::norm::fused(q, &[k, v])
        && crate::norm::fused(q, &consts)
        && !bias.as_ref().is_some_and(|b| b.track_op());
    if !fusable {
        return composed(q, k, v, spec, bias.as_ref());
    }
    let bias = bias.map(|b| b.contiguous()).transpose()?;
    let op = FusedAttention {
        heads: spec.heads,
        scale: spec.scale as f32,
        bias,
        dropout: spec.dropout.cloned(),
        log_norms: OnceLock::new(),
    };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// The same function from candle's differentiable ops.
fn composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spec: &AttentionSpec<'_>,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (batch, _, _) = q.dims3()?;
    let keys = k.dim(1)?;
    let (q, k, v) = (
        crate::split_heads(q, spec.heads)?,
        crate::split_heads(k, spec.heads)?,
        crate::split_heads(v, spec.heads)?,
    );
    let logits = q.matmul(&k.t()?)?;
    let scores = match bias {
        Some(b) => crate::scale_add_mask(&logits, spec.scale, &b.reshape((batch, 1, 1, keys))?)?,
        None => (logits * spec.scale)?,
    };
    let probs = crate::softmax_last_dim(&scores)?;
    let probs = match spec.dropout {
        Some(mask) => mask.apply(&probs)?,
        None => probs,
    };
    crate::merge_heads(&probs.matmul(&v)?)
}

struct FusedAttention {
    heads: usize,
    scale: f32,
    /// `[batch, keys]`, contiguous.
    bias: Option<Tensor>,
    dropout: Option<KeepMask>,
    /// Each probability row's log normaliser `log Σ exp(logits)` `[batch, heads, queries]`,
    /// from the forward pass: the backward recomputes the probabilities from the logits with
    /// it (one small product per tile) instead of keeping `[batch, heads, queries, keys]`.
    log_norms: OnceLock<Vec<f32>>,
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
}

impl Dims {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of one (batch, head) probability tile.
    fn tile(&self) -> usize {
        self.queries * self.keys
    }

    /// Where task `task`'s head starts in the `[batch, queries, width]` buffers.
    fn query_at(&self, task: usize) -> usize {
        let (n, h) = (task / self.heads, task % self.heads);
        n * self.queries * self.width() + h * self.head_dim
    }

    /// Where task `task`'s head starts in the `[batch, keys, width]` buffers.
    fn key_at(&self, task: usize) -> usize {
        let (n, h) = (task / self.heads, task % self.heads);
        n * self.keys * self.width() + h * self.head_dim
    }
}

impl FusedAttention {
    fn dims(&self, q: &Layout, k: &Layout) -> Result<Dims> {
        let (batch, queries, width) = q.shape().dims3()?;
        let keys = k.shape().dims3()?.1;
        Ok(Dims {
            batch,
            heads: self.heads,
            queries,
            keys,
            head_dim: width / self.heads,
        })
    }

    /// Task `task`'s scaled logits `scale · q_h·k_hᵀ`, into `tile`.
    fn logits(&self, d: &Dims, q: &[f32], k: &[f32], task: usize, tile: &mut [f32]) {
        let qh = Mat::rows(q, d.query_at(task), d.width());
        let kh = Mat::rows(k, d.key_at(task), d.width());
        // SAFETY: both views lie inside their buffers and `tile` holds queries·keys elements.
        unsafe {
            matmul(
                d.queries,
                d.keys,
                d.head_dim,
                Mat::tile(tile, d.keys),
                qh,
                kh.t(),
                self.scale,
            )
        };
    }

    fn bias_values(&self) -> Result<Option<Vec<f32>>> {
        self.bias
            .as_ref()
            .map(|b| b.flatten_all()?.to_vec1::<f32>())
            .transpose()
    }
}

/// Batch row `n`'s key bias, or an empty slice without a bias.
fn row_bias(bias: &[f32], n: usize, keys: usize) -> &[f32] {
    if bias.is_empty() {
        bias
    } else {
        &bias[n * keys..][..keys]
    }
}

/// A matrix inside a buffer: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Mat {
    /// Row-major rows of `row_stride` elements starting at `data[offset]`.
    fn rows(data: &[f32], offset: usize, row_stride: usize) -> Self {
        Self {
            ptr: data[offset..].as_ptr(),
            rs: row_stride as isize,
            cs: 1,
        }
    }

    /// A scratch tile the product writes: row-major rows of `row_stride`, derived from a
    /// mutable borrow so writes through it are allowed.
    fn tile(data: &mut [f32], row_stride: usize) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            rs: row_stride as isize,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        Self {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// A shared output buffer that (batch, head) tasks write disjoint column blocks of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: tasks write disjoint elements (each its own head's columns of its own batch rows),
// and the buffer outlives the parallel loop that writes it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl SharedOut {
    /// Elements `[offset, offset + len)`.
    ///
    /// # Safety
    /// The range lies inside the buffer and no other task touches it while the slice lives.
    unsafe fn slice_mut<'a>(self, offset: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(offset), len)
    }

    /// Rows of `row_stride` elements from element `offset`.
    fn rows(self, offset: usize, row_stride: usize) -> Mat {
        Mat {
            // SAFETY: `offset` lies inside the buffer (callers index whole tiles of it).
            ptr: unsafe { self.0.add(offset) },
            rs: row_stride as isize,
            cs: 1,
        }
    }
}

/// `dst = scale · lhs · rhs` for `lhs` m×k and `rhs` k×n, on the calling thread.
///
/// # Safety
/// The three views must address valid, non-overlapping memory of their extents, and nothing
/// else may write `dst` meanwhile.
unsafe fn matmul(m: usize, n: usize, k: usize, dst: Mat, lhs: Mat, rhs: Mat, scale: f32) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr as *mut f32,
        dst.cs,
        dst.rs,
        false,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        0.0,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// Adds the key bias to each row of logits and turns the rows into probabilities, in place,
/// writing each row's log normaliser to `log_norms`.
#[inline(always)]
fn softmax_tile_body(tile: &mut [f32], bias: &[f32], keys: usize, log_norms: &mut [f32]) {
    for (row, log_norm) in tile.chunks_exact_mut(keys).zip(log_norms) {
        if !bias.is_empty() {
            for (s, &b) in row.iter_mut().zip(bias) {
                *s += b;
            }
        }
        let max = lane_max(row);
        for s in row.iter_mut() {
            *s = crate::cpu::exp(*s - max);
        }
        let sum = lane_sum(row, |v| v);
        let inv = 1.0 / sum;
        for s in row.iter_mut() {
            *s *= inv;
        }
        *log_norm = max + sum.ln();
    }
}

simd_kernel!(fn softmax_tile(tile: &mut [f32], bias: &[f32], keys: usize, log_norms: &mut [f32]) => softmax_tile_body);

/// The probabilities again from the logits: `exp(logit + bias − log_norm)` row by row, in place.
#[inline(always)]
fn probs_again_body(tile: &mut [f32], bias: &[f32], keys: usize, log_norms: &[f32]) {
    for (row, &log_norm) in tile.chunks_exact_mut(keys).zip(log_norms) {
        if bias.is_empty() {
            for s in row.iter_mut() {
                *s = crate::cpu::exp(*s - log_norm);
            }
        } else {
            for (s, &b) in row.iter_mut().zip(bias) {
                *s = crate::cpu::exp(*s + b - log_norm);
            }
        }
    }
}

simd_kernel!(fn probs_again(tile: &mut [f32], bias: &[f32], keys: usize, log_norms: &[f32]) => probs_again_body);

/// `dp ← p ⊙ (dp − Σ_row dp·p) · scale`: the logits' gradient from the probabilities'.
#[inline(always)]
fn softmax_grad_tile_body(dp: &mut [f32], p: &[f32], keys: usize, scale: f32) {
    for (g, y) in dp.chunks_exact_mut(keys).zip(p.chunks_exact(keys)) {
        let dot = lane_dot(g, y);
        for (g, &y) in g.iter_mut().zip(y) {
            *g = y * (*g - dot) * scale;
        }
    }
}

simd_kernel!(fn softmax_grad_tile(dp: &mut [f32], p: &[f32], keys: usize, scale: f32) => softmax_grad_tile_body);

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "petl-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        k: &CpuStorage,
        kl: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            f32_slice(q, ql, self.name())?,
            f32_slice(k, kl, self.name())?,
            f32_slice(v, vl, self.name())?,
        );
        let d = self.dims(ql, kl)?;
        let bias = self.bias_values()?.unwrap_or_default();
        let w = d.width();
        let mut out = vec![0f32; d.batch * d.queries * w];
        let mut log_norms = vec![0f32; d.batch * d.heads * d.queries];
        let shared_out = SharedOut(out.as_mut_ptr());
        let shared_norms = SharedOut(log_norms.as_mut_ptr());
        (0..d.batch * d.heads).into_par_iter().for_each_init(
            || (vec![0f32; d.tile()], vec![0f32; d.tile()]),
            |(tile, dropped), task| {
                let n = task / d.heads;
                self.logits(&d, q, k, task, tile);
                // SAFETY: task `task` alone owns these rows of the normalisers.
                let norms = unsafe { shared_norms.slice_mut(task * d.queries, d.queries) };
                softmax_tile(tile, row_bias(&bias, n, d.keys), d.keys, norms);
                let used: &[f32] = match &self.dropout {
                    Some(mask) => {
                        dropped.copy_from_slice(tile);
                        KeepMask::scale_in_place(&mask.bytes()[task * d.tile()..], mask.scale(), dropped);
                        dropped
                    }
                    None => tile,
                };
                let vh = Mat::rows(v, d.key_at(task), w);
                let dst = shared_out.rows(d.query_at(task), w);
                // SAFETY: the views lie inside their buffers, and this task alone writes its
                // head's columns of its batch entry's rows.
                unsafe {
                    matmul(
                        d.queries,
                        d.head_dim,
                        d.keys,
                        dst,
                        Mat::rows(used, 0, d.keys),
                        vh,
                        1.0,
                    )
                };
            },
        );
        // A second forward of the same op value cannot happen: candle builds one per call.
        let _ = self.log_norms.set(log_norms);
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(log_norms) = self.log_norms.get() else {
            return Err(candle_core::Error::Msg(
                "attention: backward before the forward pass".into(),
            ));
        };
        let bias = self.bias_values()?.unwrap_or_default();
        let want = (q.track_op(), k.track_op(), v.track_op());
        let grad = grad.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(gs)) =
            (&*qs, &*ks, &*vs, &*gs)
        else {
            return Err(candle_core::Error::Msg("attention: backward off the CPU".into()));
        };
        let (qv, kv, vv, g) = (
            f32_slice(qs, ql, self.name())?,
            f32_slice(ks, kl, self.name())?,
            f32_slice(vs, vl, self.name())?,
            f32_slice(gs, gl, self.name())?,
        );
        let d = self.dims(ql, kl)?;
        let w = d.width();
        let alloc = |wanted: bool, rows: usize| {
            if wanted {
                vec![0f32; d.batch * rows * w]
            } else {
                Vec::new()
            }
        };
        let (mut dq, mut dk, mut dv) = (
            alloc(want.0, d.queries),
            alloc(want.1, d.keys),
            alloc(want.2, d.keys),
        );
        let (out_q, out_k, out_v) = (
            SharedOut(dq.as_mut_ptr()),
            SharedOut(dk.as_mut_ptr()),
            SharedOut(dv.as_mut_ptr()),
        );
        (0..d.batch * d.heads).into_par_iter().for_each_init(
            || (vec![0f32; d.tile()], vec![0f32; d.tile()], vec![0f32; d.tile()]),
            |(p, dp, dropped), task| {
                let n = task / d.heads;
                let (q_at, kv_at) = (d.query_at(task), d.key_at(task));
                let (qh, kh, vh, gh) = (
                    Mat::rows(qv, q_at, w),
                    Mat::rows(kv, kv_at, w),
                    Mat::rows(vv, kv_at, w),
                    Mat::rows(g, q_at, w),
                );
                // The forward's probabilities, recomputed from the logits and normalisers.
                self.logits(&d, qv, kv, task, p);
                let norms = &log_norms[task * d.queries..][..d.queries];
                probs_again(p, row_bias(&bias, n, d.keys), d.keys, norms);
                let p: &[f32] = p;
                let dp_mat = Mat::tile(dp, d.keys);
                // The gradient of the dropped probabilities: g·vᵀ.
                // SAFETY (all products below): views lie inside their buffers, scratch tiles are
                // this task's, and each output block (its head of its batch entry) is its alone.
                unsafe { matmul(d.queries, d.keys, d.head_dim, dp_mat, gh, vh.t(), 1.0) };
                let used: &[f32] = match &self.dropout {
                    Some(mask) => {
                        dropped.copy_from_slice(p);
                        let keep = &mask.bytes()[task * d.tile()..];
                        KeepMask::scale_in_place(keep, mask.scale(), dropped);
                        KeepMask::scale_in_place(keep, mask.scale(), dp);
                        dropped
                    }
                    None => p,
                };
                if want.2 {
                    let used = Mat::rows(used, 0, d.keys);
                    unsafe {
                        matmul(
                            d.keys,
                            d.head_dim,
                            d.queries,
                            out_v.rows(kv_at, w),
                            used.t(),
                            gh,
                            1.0,
                        )
                    };
                }
                softmax_grad_tile(dp, p, d.keys, self.scale);
                let ds = Mat::rows(dp, 0, d.keys);
                if want.0 {
                    unsafe { matmul(d.queries, d.head_dim, d.keys, out_q.rows(q_at, w), ds, kh, 1.0) };
                }
                if want.1 {
                    unsafe {
                        matmul(
                            d.keys,
                            d.head_dim,
                            d.queries,
                            out_k.rows(kv_at, w),
                            ds.t(),
                            qh,
                            1.0,
                        )
                    };
                }
            },
        );
        let wrap = |wanted: bool, data: Vec<f32>, like: &Tensor| -> Result<Option<Tensor>> {
            wanted
                .then(|| Tensor::from_vec(data, like.shape(), like.device()))
                .transpose()
        };
        Ok((wrap(want.0, dq, q)?, wrap(want.1, dk, k)?, wrap(want.2, dv, v)?))
    }
}
