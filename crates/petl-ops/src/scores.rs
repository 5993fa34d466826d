use crate::cpu::f32_slice;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// Attention logits `x · scale + bias`, where `bias` is an additive mask over the last
/// dimension, either shared by every query (`[b, 1, …, 1, t]`, or `[t]`: padding masks) or
/// one row per query (`[b, 1, …, 1, s, t]` against `x` `[b, …, n·s, t]`: causal masks, whose
/// rows cycle through the `s` queries, so grouped-query attention may stack a key head's `n`
/// query heads along the rows); its first dimension is 1 or `x`'s.
///
/// On contiguous f32 CPU tensors with a constant mask this is one pass forward and backward
/// (`dx = g · scale`); the composed form would also compute, and keep until the end of the
/// backward pass, a full-size gradient for the broadcast mask.
pub fn scale_add_mask(x: &Tensor, scale: f64, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let bdims = bias.dims();
    let t = *dims.last().unwrap_or(&1);
    let queries = if dims.len() >= 2 { dims[dims.len() - 2] } else { 1 };
    let batch_ok = |first: usize| first == 1 || Some(&first) == dims.first();
    // Mask rows per batch entry: 1 (shared by every query) or one per query.
    let per_batch = match bdims {
        [n] if *n == t => Some(1),
        [first, middle @ .., last] if *last == t && batch_ok(*first) && bdims.len() <= dims.len() => {
            match middle {
                [ones @ .., q] if *q > 1 && queries % *q == 0 && bdims.len() == dims.len() => {
                    ones.iter().all(|&m| m == 1).then_some(*q)
                }
                _ => middle.iter().all(|&m| m == 1).then_some(1),
            }
        }
        _ => None,
    };
    let Some(per_batch) = per_batch else {
        return (x * scale)?.broadcast_add(bias);
    };
    if !crate::norm::fused(x, &[bias]) || bias.track_op() {
        if per_batch > 1 && per_batch != queries {
            // Query groups stacked along the rows: broadcast the mask over a group dimension.
            let mut split = dims.to_vec();
            let rows = split.len() - 2;
            split[rows] = queries / per_batch;
            split.insert(rows + 1, per_batch);
            let mut bshape = bdims.to_vec();
            bshape.insert(bshape.len() - 2, 1);
            return (x.reshape(split)? * scale)?
                .broadcast_add(&bias.reshape(bshape)?)?
                .reshape(dims);
        }
        return (x * scale)?.broadcast_add(bias);
    }
    x.contiguous()?.apply_op1(ScaleMask {
        scale: scale as f32,
        bias: bias.contiguous()?,
        per_batch,
    })
}

struct ScaleMask {
    scale: f32,
    bias: Tensor,
    /// Mask rows per batch entry: 1, or the number of queries (one row each).
    per_batch: usize,
}

impl CustomOp1 for ScaleMask {
    fn name(&self) -> &'static str {
        "petl-scale-add-mask"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let (b, bl) = self.bias.storage_and_layout();
        let Storage::Cpu(b) = &*b else {
            return Err(candle_core::Error::Msg("attention mask on another device".into()));
        };
        let b = f32_slice(b, bl, self.name())?;
        let t = *xl.dims().last().unwrap_or(&1);
        let rows = x.len() / t.max(1);
        let q = self.per_batch;
        // The mask's batch entries: 1 (shared by all) or one per entry of x's first dimension.
        let batches = b.len() / t.max(1) / q.max(1);
        let rows_per_batch = rows / batches.max(1);
        let scale = self.scale;
        let chunk = crate::cpu::rows_per_task(t) * t;
        let out = crate::cpu::par_filled(x.len(), chunk, |i, os| {
            let first = i * (chunk / t.max(1));
            let xs = &x[i * chunk..][..os.len()];
            for (k, (or, xr)) in os.chunks_exact_mut(t).zip(xs.chunks_exact(t)).enumerate() {
                let r = first + k;
                let m = r / rows_per_batch.max(1) * q + r % q;
                let mask = &b[m * t..(m + 1) * t];
                for j in 0..t {
                    or[j] = xr[j] * scale + mask[j];
                }
            }
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        Ok(Some((grad * self.scale as f64)?))
    }
}
