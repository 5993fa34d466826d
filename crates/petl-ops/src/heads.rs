use crate::cpu::{f32_slice, rows_per_task};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// A projection's output `[batch, seq, heads·d]` as per-head rows `[batch, heads, seq, d]`,
/// contiguous: attention's reshape → transpose → contiguous as one op. Its backward is one
/// pass too: the composed form costs three graph nodes, each of which candle's backward
/// accumulates through a zero-filled buffer, one of them with strided reads.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, seq, width) = x.dims3()?;
    if heads == 0 || width % heads != 0 {
        return Err(candle_core::Error::Msg(format!(
            "split_heads: width {width} is not {heads} heads"
        )));
    }
    let d = width / heads;
    if crate::norm::fused(x, &[]) {
        return x.contiguous()?.apply_op1(SwapMiddle::split(heads));
    }
    x.reshape((batch, seq, heads, d))?.transpose(1, 2)?.contiguous()
}

/// Per-head rows `[batch, heads, seq, d]` back to `[batch, seq, heads·d]` (attention's
/// transpose → contiguous → reshape before W_o), as one op with a one-pass backward.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (batch, heads, seq, d) = x.dims4()?;
    if crate::norm::fused(x, &[]) {
        return x.contiguous()?.apply_op1(SwapMiddle::merge(heads));
    }
    x.transpose(1, 2)?.contiguous()?.reshape((batch, seq, heads * d))
}

/// `[b, A, B, d]` → `[b, B, A, d]` for a 3-D `[b, s, h·d]` (split) or 4-D `[b, h, s, d]`
/// (merge) input.
#[derive(Debug, Clone, Copy)]
struct SwapMiddle {
    heads: usize,
    split: bool,
}

impl SwapMiddle {
    fn split(heads: usize) -> Self {
        Self { heads, split: true }
    }

    fn merge(heads: usize) -> Self {
        Self { heads, split: false }
    }

    /// `(b, A, B, d)` of the input and the output shape.
    fn dims(&self, l: &Layout) -> Result<((usize, usize, usize, usize), Shape)> {
        if self.split {
            let (b, s, w) = l.shape().dims3()?;
            let d = w / self.heads;
            Ok(((b, s, self.heads, d), Shape::from((b, self.heads, s, d))))
        } else {
            let (b, h, s, d) = l.shape().dims4()?;
            Ok(((b, h, s, d), Shape::from((b, s, h * d))))
        }
    }

    fn inverse(self) -> Self {
        Self {
            heads: self.heads,
            split: !self.split,
        }
    }
}

/// `x` `[b, A, B, d]` → `[b, B, A, d]`.
fn swap_middle(x: &[f32], (b, a, bb, d): (usize, usize, usize, usize)) -> Vec<f32> {
    // Output rows of `d` are produced in order; each reads one input row.
    let chunk = rows_per_task(d) * d;
    crate::cpu::par_filled(b * a * bb * d, chunk, |i, o| {
        let first = i * (chunk / d.max(1));
        for (k, row) in o.chunks_exact_mut(d).enumerate() {
            let r = first + k;
            let (n, rest) = (r / (bb * a), r % (bb * a));
            let (j, t) = (rest / a, rest % a);
            row.copy_from_slice(&x[((n * a + t) * bb + j) * d..][..d]);
        }
    })
}

impl CustomOp1 for SwapMiddle {
    fn name(&self) -> &'static str {
        if self.split {
            "petl-split-heads"
        } else {
            "petl-merge-heads"
        }
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let (dims, shape) = self.dims(xl)?;
        Ok((CpuStorage::F32(swap_middle(x, dims)), shape))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&self.inverse())?))
    }
}
