use crate::cpu::f32_slice;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// Attention logits `x · scale + bias`, where `bias` is an additive mask over the last
/// dimension shared by everything but the first: `[b, 1, …, 1, t]` (or `[t]`) against `x`
/// `[b, …, t]`.
///
/// On contiguous f32 CPU tensors with a constant mask this is one pass forward and backward
/// (`dx = g · scale`); the composed form would also compute, and keep until the end of the
/// backward pass, a full-size gradient for the broadcast mask.
pub fn scale_add_mask(x: &Tensor, scale: f64, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let bdims = bias.dims();
    let t = *dims.last().unwrap_or(&1);
    let rows_shared = match bdims {
        [n] => *n == t,
        [first, middle @ .., last] => {
            *last == t && (*first == 1 || Some(first) == dims.first()) && middle.iter().all(|&m| m == 1)
        }
        [] => false,
    };
    if !crate::norm::fused(x, &[bias]) || bias.track_op() || !rows_shared || bdims.len() > dims.len() {
        return (x * scale)?.broadcast_add(bias);
    }
    x.contiguous()?.apply_op1(ScaleMask {
        scale: scale as f32,
        bias: bias.contiguous()?,
    })
}

struct ScaleMask {
    scale: f32,
    bias: Tensor,
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
        let masks = b.len() / t.max(1);
        // Rows of x per mask row: x's first dimension indexes the masks (or one mask for all).
        let rows_per_mask = x.len() / t.max(1) / masks.max(1);
        let scale = self.scale;
        let block = rows_per_mask * t;
        let out = crate::cpu::par_filled(x.len(), block, |m, os| {
            let xs = &x[m * block..][..os.len()];
            let mask = &b[(m % masks) * t..(m % masks + 1) * t];
            for (or, xr) in os.chunks_exact_mut(t).zip(xs.chunks_exact(t)) {
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
