use crate::cpu::{f32_slice, par_rows, rows_per_task};
use crate::rows::as_vector;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · γ + β`, biased variance.
///
/// Contiguous f32 input on the CPU runs petl's fused kernel with a hand-written backward (one
/// pass each way); other dtypes and devices compose candle ops, which candle differentiates.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x, &[gamma, beta]) {
        let d = x.dim(D::Minus1)?;
        return x
            .contiguous()?
            .apply_op3(&as_vector(gamma, d)?, &as_vector(beta, d)?, Norm::layer(eps));
    }
    let in_dtype = x.dtype();
    let x = match in_dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed
        .to_dtype(in_dtype)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · γ` (Llama's).
pub fn rms_norm(x: &Tensor, gamma: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x, &[gamma]) {
        let d = x.dim(D::Minus1)?;
        return x.contiguous()?.apply_op2(&as_vector(gamma, d)?, Norm::rms(eps));
    }
    let in_dtype = x.dtype();
    let xf = match in_dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_div(&(ms + eps)?.sqrt()?)?;
    normed.to_dtype(in_dtype)?.broadcast_mul(gamma)
}

/// Whether the fused CPU kernel applies: f32 on the CPU throughout.
pub(crate) fn fused(x: &Tensor, params: &[&Tensor]) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && params
            .iter()
            .all(|p| p.dtype() == DType::F32 && p.device().is_cpu())
}

/// A normalisation over the last dimension; `centre` distinguishes LayerNorm from RMSNorm.
#[derive(Debug, Clone, Copy)]
struct Norm {
    eps: f32,
    centre: bool,
}

impl Norm {
    fn layer(eps: f64) -> Self {
        Self {
            eps: eps as f32,
            centre: true,
        }
    }

    fn rms(eps: f64) -> Self {
        Self {
            eps: eps as f32,
            centre: false,
        }
    }

    /// Mean (0 for RMSNorm) and 1/σ of a row, two-pass for accuracy.
    #[inline]
    fn stats(&self, row: &[f32]) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = if self.centre {
            lane_sum(row, |v| v) / n
        } else {
            0.0
        };
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }

    fn forward(&self, x: &[f32], gamma: &[f32], beta: Option<&[f32]>) -> Vec<f32> {
        let d = gamma.len();
        par_rows(x, d, |xs, ys| {
            for (xr, yr) in xs.chunks_exact(d).zip(ys.chunks_exact_mut(d)) {
                let (mean, rstd) = self.stats(xr);
                match beta {
                    Some(beta) => {
                        for j in 0..d {
                            yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
                        }
                    }
                    None => {
                        for j in 0..d {
                            yr[j] = (xr[j] - mean) * rstd * gamma[j];
                        }
                    }
                }
            }
        })
    }

    /// Gradients packed as `[rows + 2, d]`: `dx` rows, then `dγ`, then `dβ` (zero for RMSNorm).
    fn backward(&self, x: &[f32], gamma: &[f32], grad: &[f32], params: bool) -> Vec<f32> {
        let d = gamma.len();
        let rows = x.len() / d;
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, dparams) = out.split_at_mut(rows * d);
        let block = rows_per_task(d) * d;
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(grad.par_chunks(block)))
            .map(|(dxs, (xs, gs))| {
                let mut acc = if params { vec![0f32; 2 * d] } else { Vec::new() };
                let mut xhat = vec![0f32; d];
                for ((dxr, xr), gr) in dxs
                    .chunks_exact_mut(d)
                    .zip(xs.chunks_exact(d))
                    .zip(gs.chunks_exact(d))
                {
                    let (mean, rstd) = self.stats(xr);
                    // dx = rstd · (g·γ − mean(g·γ) − x̂ · mean(g·γ·x̂)); the mean term is LayerNorm's.
                    let (mut sum_gy, mut sum_gy_xhat) = (0f32, 0f32);
                    for j in 0..d {
                        xhat[j] = (xr[j] - mean) * rstd;
                        let gy = gr[j] * gamma[j];
                        sum_gy += gy;
                        sum_gy_xhat += gy * xhat[j];
                    }
                    let inv_d = 1.0 / d as f32;
                    let mean_gy = if self.centre { sum_gy * inv_d } else { 0.0 };
                    let mean_gy_xhat = sum_gy_xhat * inv_d;
                    for j in 0..d {
                        dxr[j] = rstd * (gr[j] * gamma[j] - mean_gy - xhat[j] * mean_gy_xhat);
                    }
                    if params {
                        for j in 0..d {
                            acc[j] += gr[j] * xhat[j];
                            acc[d + j] += gr[j];
                        }
                    }
                }
                acc
            })
            .collect();
        if params {
            for p in partials {
                for (o, v) in dparams.iter_mut().zip(p) {
                    *o += v;
                }
            }
        }
        out
    }

    /// Unpacks [`Norm::backward`]'s output into `(dx, dγ, dβ)`, each only where wanted.
    fn unpack(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: Option<&Tensor>,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let params = gamma.track_op() || beta.is_some_and(Tensor::track_op);
        if !x.track_op() && !params {
            return Ok((None, None, None));
        }
        let packed = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &NormBackward { norm: *self, params })?;
        let d = gamma.dim(0)?;
        let rows = x.elem_count() / d;
        let dx = x
            .track_op()
            .then(|| packed.narrow(0, 0, rows)?.reshape(x.shape()))
            .transpose()?;
        let dgamma = gamma
            .track_op()
            .then(|| packed.narrow(0, rows, 1)?.reshape(d))
            .transpose()?;
        let dbeta = beta
            .filter(|b| b.track_op())
            .map(|_| packed.narrow(0, rows + 1, 1)?.reshape(d))
            .transpose()?;
        Ok((dx, dgamma, dbeta))
    }
}

impl CustomOp3 for Norm {
    fn name(&self) -> &'static str {
        "petl-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const NAME: &str = "petl-layer-norm";
        let x = f32_slice(x, xl, NAME)?;
        let g = f32_slice(g, gl, NAME)?;
        let b = f32_slice(b, bl, NAME)?;
        Ok((CpuStorage::F32(self.forward(x, g, Some(b))), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.unpack(x, gamma, Some(beta), grad)
    }
}

impl CustomOp2 for Norm {
    fn name(&self) -> &'static str {
        "petl-rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const NAME: &str = "petl-rms-norm";
        let x = f32_slice(x, xl, NAME)?;
        let g = f32_slice(g, gl, NAME)?;
        Ok((CpuStorage::F32(self.forward(x, g, None)), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dgamma, _) = self.unpack(x, gamma, None, grad)?;
        Ok((dx, dgamma))
    }
}

/// The fused backward kernel: `x`, `γ` and the output gradient in, packed gradients out.
struct NormBackward {
    norm: Norm,
    params: bool,
}

impl CustomOp3 for NormBackward {
    fn name(&self) -> &'static str {
        "petl-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        dy: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let gamma = f32_slice(g, gl, self.name())?;
        let grad = f32_slice(dy, dyl, self.name())?;
        let d = gamma.len();
        let out = self.norm.backward(x, gamma, grad, self.params);
        Ok((CpuStorage::F32(out), Shape::from((x.len() / d + 2, d))))
    }
}

/// `Σ f(v)` over a row with eight independent accumulators, which the compiler vectorises
/// (a single running sum is a serial dependency chain).
#[inline]
pub(crate) fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += f(c[k]);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|&v| f(v)).sum::<f32>()
}

/// `Σ a·b` over two rows with eight independent accumulators (vectorised, as [`lane_sum`]).
#[inline]
pub(crate) fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn normalises_rows() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 3.]], &dev)?;
        let g = Tensor::new(&[1f32, 1., 2.], &dev)?;
        let b = Tensor::new(&[0f32, 1., 0.], &dev)?;
        let y = layer_norm(&x, &g, &b, 0.0)?.to_vec2::<f32>()?;
        let expect = [-1.224_744_9f32, 1.0, 2.449_489_7];
        for (a, e) in y[0].iter().zip(expect) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
        Ok(())
    }

    #[test]
    fn every_operand_gets_a_finite_nonzero_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[0.3f32, -1.2, 2.0, 0.7]], &dev)?;
        let g = Var::new(&[1.1f32, 0.9, 1.0, 1.2], &dev)?;
        let b = Var::new(&[0.1f32, 0.0, -0.1, 0.2], &dev)?;
        let w = Tensor::new(&[[1f32, -2., 3., 0.5]], &dev)?;
        let y = layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5)?;
        let grads = y.mul(&w)?.sum_all()?.backward()?;
        for v in [&x, &g, &b] {
            let gr = grads
                .get(v)
                .expect("gradient present")
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert!(gr.iter().all(|v| v.is_finite()));
            assert!(gr.iter().any(|v| v.abs() > 1e-6));
        }
        Ok(())
    }
}
