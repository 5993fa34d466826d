use crate::cpu::{f32_slice, simd_kernel};
use crate::dropout::KeepMask;
use crate::norm::{lane_dot, lane_sum};
use crate::softmax::lane_max;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;

/// What [`attention`] and [`attention_heads`] compute besides the three projections.
#[derive(Debug, Clone)]
pub struct AttentionSpec<'a> {
    /// Query heads. Keys and values may have fewer heads that groups of query heads share
    /// (grouped-query attention; head-major inputs only).
    pub heads: usize,
    /// The logits' factor, usually `1/√head_dim`.
    pub scale: f64,
    /// An additive bias: per key, `[batch, keys]` or `[batch, 1, 1, keys]` (a padding mask,
    /// prefix positions included), or per query row, `[batch or 1, 1, queries, keys]` (a
    /// causal mask); `None` attends everywhere.
    pub bias: Option<&'a Tensor>,
    /// Dropout on the attention probabilities: a mask over `[batch, heads, queries, keys]`.
    pub dropout: Option<&'a KeepMask>,
}

/// Multi-head scaled dot-product attention over token-major projections:
/// `q` `[batch, queries, heads·d]`, `k` and `v` `[batch, keys, heads·d]` (keys may include
/// prefix rows), returning the heads' outputs `[batch, queries, heads·d]`, ready for W_o.
///
/// Per head: `dropout(softmax(q·kᵀ·scale + bias))·v`. On contiguous f32 CPU tensors this is one
/// op: each (batch, key head) pair is a task that computes its query heads' scores, softmax,
/// dropout and value product in a cache-sized tile, reading the heads in place (no split or
/// merge copies), and keeps only each probability row's log normaliser. The backward pass
/// recomputes a tile's probabilities from its logits (flash attention's trade: one small
/// product per tile instead of keeping `[batch, heads, queries, keys]`) and computes `dq`, `dk`
/// and `dv` in one pass per tile. The composed form is five graph nodes over
/// `[batch, heads, queries, keys]`, each of which candle's backward accumulates through a
/// zero-filled buffer. Elsewhere (other dtypes, devices, or a bias that trains) the same
/// function is composed from candle ops.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec<'_>) -> Result<Tensor> {
    let (batch, queries, width) = q.dims3()?;
    let (kb, keys, kw) = k.dims3()?;
    if spec.heads == 0 || width % spec.heads != 0 || (kb, kw) != (batch, width) || v.dims() != k.dims() {
        return Err(shape_error(q, k, v, spec.heads));
    }
    let head_dim = width / spec.heads;
    let geometry = Geometry {
        batch,
        heads: spec.heads,
        kv_heads: spec.heads,
        queries,
        keys,
        head_dim,
        q: Strides {
            batch: queries * width,
            head: head_dim,
            row: width,
        },
        kv: Strides {
            batch: keys * width,
            head: head_dim,
            row: width,
        },
    };
    run(q, k, v, spec, geometry)
}

/// [`attention`] over head-major inputs: `q` `[batch, heads, queries, d]` (as rotary position
/// embeddings leave them), `k` and `v` `[batch, kv_heads, keys, d]` with `kv_heads` dividing
/// `heads` (grouped-query attention: query head `h` reads key head `h / (heads / kv_heads)`),
/// returning `[batch, queries, heads·d]`.
pub fn attention_heads(q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec<'_>) -> Result<Tensor> {
    let (batch, heads, queries, head_dim) = q.dims4()?;
    let (kb, kv_heads, keys, kd) = k.dims4()?;
    if heads != spec.heads
        || kv_heads == 0
        || heads % kv_heads != 0
        || (kb, kd) != (batch, head_dim)
        || v.dims() != k.dims()
    {
        return Err(shape_error(q, k, v, spec.heads));
    }
    let geometry = Geometry {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        head_dim,
        q: Strides {
            batch: heads * queries * head_dim,
            head: queries * head_dim,
            row: head_dim,
        },
        kv: Strides {
            batch: kv_heads * keys * head_dim,
            head: keys * head_dim,
            row: head_dim,
        },
    };
    run(q, k, v, spec, geometry)
}

/// Queries, keys and values whose shapes do not fit together.
fn shape_error(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "attention: queries {:?}, keys {:?}, values {:?} do not make {heads} heads",
        q.dims(),
        k.dims(),
        v.dims()
    ))
}

/// Checks the bias and dropout mask against the geometry, then runs the fused op or the
/// composed form.
fn run(q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec<'_>, g: Geometry) -> Result<Tensor> {
    let bias = match spec.bias {
        None => None,
        Some(b) => Some(Bias::of(b, &g)?),
    };
    if let Some(mask) = spec.dropout {
        let want = g.batch * g.heads * g.queries * g.keys;
        if mask.len() != want {
            return Err(candle_core::Error::Msg(format!(
                "attention: a dropout mask of {} elements for {want} probabilities",
                mask.len()
            )));
        }
    }
    let consts: Vec<&Tensor> = bias.iter().map(|b| &b.values).collect();
    let fusable = crate::norm::fused(q, &[k, v])
        && crate::norm::fused(q, &consts)
        && !consts.iter().any(|b| b.track_op());
    if !fusable {
        return composed(q, k, v, spec, &g);
    }
    let op = FusedAttention {
        geometry: g,
        scale: spec.scale as f32,
        bias,
        dropout: spec.dropout.cloned(),
        log_norms: OnceLock::new(),
    };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// The same function from candle's differentiable ops.
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec<'_>, g: &Geometry) -> Result<Tensor> {
    let (q, k, v) = if g.q.row == g.head_dim {
        (q.clone(), k.clone(), v.clone())
    } else {
        (
            crate::split_heads(q, g.heads)?,
            crate::split_heads(k, g.kv_heads)?,
            crate::split_heads(v, g.kv_heads)?,
        )
    };
    // Grouped-query heads stacked along the rows, `[batch, kv_heads, group·queries, d]`: the
    // per-query mask's rows cycle through the queries (see `scale_add_mask`).
    let group = g.heads / g.kv_heads;
    let q = q.reshape((g.batch, g.kv_heads, group * g.queries, g.head_dim))?;
    let logits = q.matmul(&k.t()?)?;
    let scores = match spec.bias {
        Some(b) => {
            let b = if b.rank() == 2 {
                b.reshape((g.batch, 1, 1, g.keys))?
            } else {
                b.clone()
            };
            crate::scale_add_mask(&logits, spec.scale, &b)?
        }
        None => (logits * spec.scale)?,
    };
    let probs = crate::softmax_last_dim(&scores)?;
    let probs = match spec.dropout {
        Some(mask) => mask.apply(&probs)?,
        None => probs,
    };
    let heads = probs
        .matmul(&v)?
        .reshape((g.batch, g.heads, g.queries, g.head_dim))?;
    crate::merge_heads(&heads)
}

/// An additive attention bias as the fused op reads it.
#[derive(Debug, Clone)]
struct Bias {
    /// Contiguous values.
    values: Tensor,
    /// Elements between the bias rows of consecutive queries: 0 (one row per batch entry,
    /// shared by its queries) or `keys`.
    query_stride: usize,
    /// Elements between consecutive batch entries' rows: 0 (shared by the batch) or more.
    batch_stride: usize,
}

impl Bias {
    fn of(b: &Tensor, g: &Geometry) -> Result<Self> {
        let dims = b.dims();
        let (t, s, n) = (g.keys, g.queries, g.batch);
        let strides = match *dims {
            [bn, bt] if (bn, bt) == (n, t) => Some((0, t)),
            [bn, 1, 1, bt] if (bn, bt) == (n, t) => Some((0, t)),
            [bn, 1, bs, bt] if (bn == n || bn == 1) && (bs, bt) == (s, t) => {
                Some((t, if bn == 1 { 0 } else { s * t }))
            }
            _ => None,
        };
        let Some((query_stride, batch_stride)) = strides else {
            return Err(candle_core::Error::Msg(format!(
                "attention: a bias {dims:?} for {n} rows of {s} queries and {t} keys"
            )));
        };
        Ok(Self {
            values: b.contiguous()?,
            query_stride,
            batch_stride,
        })
    }
}

struct FusedAttention {
    geometry: Geometry,
    scale: f32,
    bias: Option<Bias>,
    dropout: Option<KeepMask>,
    /// Each probability row's log normaliser `log Σ exp(logits)` `[batch, heads, queries]`,
    /// from the forward pass: the backward recomputes the probabilities from the logits with
    /// it (one small product per tile) instead of keeping `[batch, heads, queries, keys]`.
    log_norms: OnceLock<Vec<f32>>,
}

/// Element strides of a projection buffer.
#[derive(Debug, Clone, Copy)]
struct Strides {
    batch: usize,
    head: usize,
    row: usize,
}

/// The sizes of one call and where each head's rows lie.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
    q: Strides,
    /// Keys and values (one layout).
    kv: Strides,
}

impl Geometry {
    /// Elements of one (batch, head) probability tile.
    fn tile(&self) -> usize {
        self.queries * self.keys
    }

    /// Query heads per key head.
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Tasks: one per (batch entry, key head), each over its group of query heads.
    fn tasks(&self) -> usize {
        self.batch * self.kv_heads
    }

    /// Query head `h` of batch entry `n`, in the query (and query gradient) buffer.
    fn query_at(&self, n: usize, h: usize) -> usize {
        n * self.q.batch + h * self.q.head
    }

    /// Key head `kh` of batch entry `n`, in the key and value buffers.
    fn key_at(&self, n: usize, kh: usize) -> usize {
        n * self.kv.batch + kh * self.kv.head
    }

    /// Query head `h` of batch entry `n` in the `[batch, queries, heads·d]` output.
    fn out_at(&self, n: usize, h: usize) -> usize {
        (n * self.queries * self.heads + h) * self.head_dim
    }

    /// Row width of the output.
    fn out_row(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Index of (batch entry, query head) among the `[batch, heads]` tiles.
    fn tile_index(&self, n: usize, h: usize) -> usize {
        n * self.heads + h
    }
}

impl FusedAttention {
    /// Query head `h`'s scaled logits against key head `kh`, batch entry `n`, into `tile`.
    fn logits(&self, q: &[f32], k: &[f32], (n, h, kh): (usize, usize, usize), tile: &mut [f32]) {
        let g = &self.geometry;
        let qh = Mat::rows(q, g.query_at(n, h), g.q.row);
        let kt = Mat::rows(k, g.key_at(n, kh), g.kv.row);
        // SAFETY: both views lie inside their buffers and `tile` holds queries·keys elements.
        unsafe {
            matmul(
                g.queries,
                g.keys,
                g.head_dim,
                Mat::tile(tile, g.keys),
                qh,
                kt.t(),
                self.scale,
                false,
            )
        };
    }

    /// Batch entry `n`'s bias rows (empty without a bias) and their query stride.
    fn bias_rows<'a>(&self, values: &'a [f32], n: usize) -> (&'a [f32], usize) {
        match &self.bias {
            None => (&[], 0),
            Some(b) => (&values[n * b.batch_stride..], b.query_stride),
        }
    }

    fn bias_values(&self) -> Result<Vec<f32>> {
        match &self.bias {
            Some(b) => b.values.flatten_all()?.to_vec1::<f32>(),
            None => Ok(Vec::new()),
        }
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

/// `dst = scale · lhs · rhs` (or `dst += …` when `accumulate`) for `lhs` m×k and `rhs` k×n, on
/// the calling thread.
///
/// # Safety
/// The three views must address valid, non-overlapping memory of their extents, and nothing
/// else may touch `dst` meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(m: usize, n: usize, k: usize, dst: Mat, lhs: Mat, rhs: Mat, scale: f32, accumulate: bool) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr as *mut f32,
        dst.cs,
        dst.rs,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        1.0,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// The bias row of query `i`: rows `query_stride` apart (0: one row for every query).
#[inline(always)]
fn bias_row(bias: &[f32], i: usize, query_stride: usize, keys: usize) -> &[f32] {
    if bias.is_empty() {
        bias
    } else {
        &bias[i * query_stride..][..keys]
    }
}

/// Adds the bias to each row of logits and turns the rows into probabilities, in place,
/// writing each row's log normaliser to `log_norms`.
#[inline(always)]
fn softmax_tile_body(
    tile: &mut [f32],
    bias: &[f32],
    query_stride: usize,
    keys: usize,
    log_norms: &mut [f32],
) {
    for (i, (row, log_norm)) in tile.chunks_exact_mut(keys).zip(log_norms).enumerate() {
        for (s, &b) in row.iter_mut().zip(bias_row(bias, i, query_stride, keys)) {
            *s += b;
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

simd_kernel!(fn softmax_tile(tile: &mut [f32], bias: &[f32], query_stride: usize, keys: usize, log_norms: &mut [f32]) => softmax_tile_body);

/// The probabilities again from the logits: `exp(logit + bias − log_norm)` row by row, in place.
#[inline(always)]
fn probs_again_body(tile: &mut [f32], bias: &[f32], query_stride: usize, keys: usize, log_norms: &[f32]) {
    for (i, (row, &log_norm)) in tile.chunks_exact_mut(keys).zip(log_norms).enumerate() {
        let b = bias_row(bias, i, query_stride, keys);
        if b.is_empty() {
            for s in row.iter_mut() {
                *s = crate::cpu::exp(*s - log_norm);
            }
        } else {
            for (s, &b) in row.iter_mut().zip(b) {
                *s = crate::cpu::exp(*s + b - log_norm);
            }
        }
    }
}

simd_kernel!(fn probs_again(tile: &mut [f32], bias: &[f32], query_stride: usize, keys: usize, log_norms: &[f32]) => probs_again_body);

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
        let g = self.geometry;
        let bias = self.bias_values()?;
        let mut out = vec![0f32; g.batch * g.queries * g.out_row()];
        let mut log_norms = vec![0f32; g.batch * g.heads * g.queries];
        let shared_out = SharedOut(out.as_mut_ptr());
        let shared_norms = SharedOut(log_norms.as_mut_ptr());
        (0..g.tasks()).into_par_iter().for_each_init(
            || (vec![0f32; g.tile()], vec![0f32; g.tile()]),
            |(tile, dropped), task| {
                let (n, kh) = (task / g.kv_heads, task % g.kv_heads);
                let (bias, query_stride) = self.bias_rows(&bias, n);
                let vh = Mat::rows(v, g.key_at(n, kh), g.kv.row);
                for h in kh * g.group()..(kh + 1) * g.group() {
                    let index = g.tile_index(n, h);
                    self.logits(q, k, (n, h, kh), tile);
                    // SAFETY: only this task handles query head `h` of batch entry `n`.
                    let norms = unsafe { shared_norms.slice_mut(index * g.queries, g.queries) };
                    softmax_tile(tile, bias, query_stride, g.keys, norms);
                    let used: &[f32] = match &self.dropout {
                        Some(mask) => {
                            dropped.copy_from_slice(tile);
                            mask.apply_from(index * g.tile(), dropped);
                            dropped
                        }
                        None => tile,
                    };
                    let dst = shared_out.rows(g.out_at(n, h), g.out_row());
                    // SAFETY: the views lie inside their buffers, and only this task writes
                    // query head `h`'s columns of batch entry `n`'s rows.
                    unsafe {
                        matmul(
                            g.queries,
                            g.head_dim,
                            g.keys,
                            dst,
                            Mat::rows(used, 0, g.keys),
                            vh,
                            1.0,
                            false,
                        )
                    };
                }
            },
        );
        // A second forward of the same op value cannot happen: candle builds one per call.
        let _ = self.log_norms.set(log_norms);
        let shape = Shape::from((g.batch, g.queries, g.out_row()));
        Ok((CpuStorage::F32(out), shape))
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
        let bias = self.bias_values()?;
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
        let (qv, kv, vv, gr) = (
            f32_slice(qs, ql, self.name())?,
            f32_slice(ks, kl, self.name())?,
            f32_slice(vs, vl, self.name())?,
            f32_slice(gs, gl, self.name())?,
        );
        let g = self.geometry;
        let alloc = |wanted: bool, len: usize| if wanted { vec![0f32; len] } else { Vec::new() };
        let (mut dq, mut dk, mut dv) = (
            alloc(want.0, qv.len()),
            alloc(want.1, kv.len()),
            alloc(want.2, vv.len()),
        );
        let (out_q, out_k, out_v) = (
            SharedOut(dq.as_mut_ptr()),
            SharedOut(dk.as_mut_ptr()),
            SharedOut(dv.as_mut_ptr()),
        );
        (0..g.tasks()).into_par_iter().for_each_init(
            || (vec![0f32; g.tile()], vec![0f32; g.tile()], vec![0f32; g.tile()]),
            |(p, dp, dropped), task| {
                let (n, kh) = (task / g.kv_heads, task % g.kv_heads);
                let (bias, query_stride) = self.bias_rows(&bias, n);
                let kv_at = g.key_at(n, kh);
                let (kh_mat, vh) = (Mat::rows(kv, kv_at, g.kv.row), Mat::rows(vv, kv_at, g.kv.row));
                for (i, h) in (kh * g.group()..(kh + 1) * g.group()).enumerate() {
                    let index = g.tile_index(n, h);
                    // The key head's gradients sum over its group of query heads.
                    let accumulate = i > 0;
                    let q_at = g.query_at(n, h);
                    let qh = Mat::rows(qv, q_at, g.q.row);
                    let gh = Mat::rows(gr, g.out_at(n, h), g.out_row());
                    // The forward's probabilities, recomputed from the logits and normalisers.
                    self.logits(qv, kv, (n, h, kh), p);
                    probs_again(
                        p,
                        bias,
                        query_stride,
                        g.keys,
                        &log_norms[index * g.queries..][..g.queries],
                    );
                    let p: &[f32] = p;
                    // SAFETY (all products below): views lie inside their buffers, scratch tiles
                    // are this task's, dq's block is query head `h`'s alone and dk's and dv's
                    // blocks belong to this task's key head alone.
                    // The gradient of the dropped probabilities: g·vᵀ.
                    unsafe {
                        matmul(
                            g.queries,
                            g.keys,
                            g.head_dim,
                            Mat::tile(dp, g.keys),
                            gh,
                            vh.t(),
                            1.0,
                            false,
                        )
                    };
                    let used: &[f32] = match &self.dropout {
                        Some(mask) => {
                            dropped.copy_from_slice(p);
                            mask.apply_from(index * g.tile(), dropped);
                            mask.apply_from(index * g.tile(), dp);
                            dropped
                        }
                        None => p,
                    };
                    if want.2 {
                        let used = Mat::rows(used, 0, g.keys);
                        let dst = out_v.rows(kv_at, g.kv.row);
                        unsafe { matmul(g.keys, g.head_dim, g.queries, dst, used.t(), gh, 1.0, accumulate) };
                    }
                    softmax_grad_tile(dp, p, g.keys, self.scale);
                    let ds = Mat::rows(dp, 0, g.keys);
                    if want.0 {
                        let dst = out_q.rows(q_at, g.q.row);
                        unsafe { matmul(g.queries, g.head_dim, g.keys, dst, ds, kh_mat, 1.0, false) };
                    }
                    if want.1 {
                        let dst = out_k.rows(kv_at, g.kv.row);
                        unsafe { matmul(g.keys, g.head_dim, g.queries, dst, ds.t(), qh, 1.0, accumulate) };
                    }
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
