use crate::cpu::{f32_slice, par_rows, simd_kernel};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};

/// Numerically stable softmax over the last dimension.
///
/// Contiguous f32 on the CPU runs petl's fused kernel (one pass forward; backward
/// `dx = y · (g − Σ g·y)` in one pass over `y` and `g`, without keeping `exp(x − max)`);
/// otherwise candle ops compose it.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if crate::norm::fused(x, &[]) {
        return x.contiguous()?.apply_op1(Softmax);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

#[derive(Debug, Clone, Copy)]
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "petl-softmax"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let d = *xl.dims().last().unwrap_or(&1);
        let out = par_rows(x, d, |xs, ys| softmax_rows(xs, ys, d));
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward)?))
    }
}

/// `dx = y · (g − Σ g·y)` row by row.
struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "petl-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        yl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_slice(y, yl, self.name())?;
        let g = f32_slice(g, gl, self.name())?;
        let d = *yl.dims().last().unwrap_or(&1);
        let block = crate::cpu::rows_per_task(d) * d;
        let out = crate::cpu::par_filled(y.len(), block, |i, os| {
            let at = i * block;
            softmax_grad_rows(&y[at..][..os.len()], &g[at..][..os.len()], os, d)
        });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }
}

#[inline(always)]
fn softmax_rows_body(xs: &[f32], ys: &mut [f32], d: usize) {
    for (xr, yr) in xs.chunks_exact(d).zip(ys.chunks_exact_mut(d)) {
        let max = lane_max(xr);
        for (y, &v) in yr.iter_mut().zip(xr) {
            *y = crate::cpu::exp(v - max);
        }
        let inv = 1.0 / crate::norm::lane_sum(yr, |v| v);
        for y in yr.iter_mut() {
            *y *= inv;
        }
    }
}

/// The largest element, with eight independent running maxima: a single `fold` is a serial
/// dependency chain the compiler cannot vectorise (f32 max is not associative under NaN).
#[inline(always)]
pub(crate) fn lane_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

#[inline(always)]
fn softmax_grad_rows_body(ys: &[f32], gs: &[f32], os: &mut [f32], d: usize) {
    for ((or, yr), gr) in os
        .chunks_exact_mut(d)
        .zip(ys.chunks_exact(d))
        .zip(gs.chunks_exact(d))
    {
        let dot = crate::norm::lane_dot(yr, gr);
        for j in 0..d {
            or[j] = yr[j] * (gr[j] - dot);
        }
    }
}

simd_kernel!(fn softmax_rows(xs: &[f32], ys: &mut [f32], d: usize) => softmax_rows_body);
simd_kernel!(fn softmax_grad_rows(ys: &[f32], gs: &[f32], os: &mut [f32], d: usize) => softmax_grad_rows_body);

/// `log Σ exp(x)` over the last dimension, keeping it (`[.., 1]`), stabilised like
/// [`softmax_last_dim`].
pub fn logsumexp_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)
}

/// The logistic function `1 / (1 + e^(−x))`, composed so it is differentiable.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn logsumexp_and_sigmoid_match_closed_forms() -> Result<()> {
        let x = Tensor::new(&[[1000f32, 1000.], [0., 0.]], &Device::Cpu)?;
        let l = logsumexp_last_dim(&x)?.to_vec2::<f32>()?;
        assert!((l[0][0] - (1000.0 + 2f32.ln())).abs() < 1e-3);
        assert!((l[1][0] - 2f32.ln()).abs() < 1e-6);
        let s = sigmoid(&Tensor::new(&[0f32, 2.], &Device::Cpu)?)?.to_vec1::<f32>()?;
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[1] - 0.880_797_1).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn rows_sum_to_one_and_survive_large_logits() -> Result<()> {
        let x = Tensor::new(&[[1000f32, 1001., 1002.]], &Device::Cpu)?;
        let y = softmax_last_dim(&x)?.to_vec2::<f32>()?;
        // e^0, e^1, e^2 normalised: 0.0900, 0.2447, 0.6652
        let expect = [0.090_030_57f32, 0.244_728_47, 0.665_240_94];
        for (a, e) in y[0].iter().zip(expect) {
            assert!((a - e).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_the_analytic_jacobian() -> Result<()> {
        // d/dx_j sum_i w_i p_i = p_j (w_j - sum_i w_i p_i)
        let x = Var::new(&[0.2f32, -0.5, 1.0], &Device::Cpu)?;
        let w = [1f32, 2., -1.];
        let p = softmax_last_dim(x.as_tensor())?;
        let wt = Tensor::new(&w, &Device::Cpu)?;
        let g = p.mul(&wt)?.sum_all()?.backward()?;
        let got = g.get(&x).unwrap().to_vec1::<f32>()?;
        let pv = p.to_vec1::<f32>()?;
        let dot: f32 = pv.iter().zip(w).map(|(a, b)| a * b).sum();
        for j in 0..3 {
            let expect = pv[j] * (w[j] - dot);
            assert!((got[j] - expect).abs() < 1e-6, "{j}: {} vs {expect}", got[j]);
        }
        Ok(())
    }
}
