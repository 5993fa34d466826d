//! The language-modelling loss: cross-entropy of each target token with label smoothing.

use crate::cpu::{f32_slice, par_filled, rows_per_task};
use crate::norm::lane_sum;
use crate::softmax::lane_max;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

/// Per-token cross-entropy `[N]` of `logits` `[N, V]` against `targets` `[N]` (u32), with
/// label smoothing `ε` as PyTorch's `cross_entropy(label_smoothing=ε)` and Hugging Face's
/// `LabelSmoother` define it: `(1−ε)·(−log p_t) + ε·mean_c(−log p_c)`, which is
/// `lse(x) − (1−ε)·x_t − ε·mean(x)`.
///
/// The caller picks the target positions first (prompt and padding never reach the vocabulary
/// projection) and sums or weights the result, which is how a step normalises by its number of
/// target tokens. Contiguous f32 on the CPU runs one fused pass forward and one backward,
/// `dx = g·(softmax(x) − (1−ε)·onehot(t) − ε/V)`, without keeping `[N, V]` probabilities.
pub fn token_cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if targets.dims() != [n] {
        candle_core::bail!(
            "token_cross_entropy: {n} rows of logits but targets {:?}",
            targets.dims()
        );
    }
    if !(0.0..1.0).contains(&smoothing) {
        candle_core::bail!("token_cross_entropy: label smoothing {smoothing} is not in [0, 1)");
    }
    let targets = targets.to_dtype(DType::U32)?;
    if crate::norm::fused(logits, &[]) && targets.device().is_cpu() {
        return logits.contiguous()?.apply_op2(
            &targets.contiguous()?,
            TokenCrossEntropy {
                smoothing: smoothing as f32,
            },
        );
    }
    // Half-precision logits are summed in f32; f64 stays f64 (the reference the tests use).
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32)?,
        _ => logits.clone(),
    };
    let lse = crate::logsumexp_last_dim(&logits)?.squeeze(1)?;
    let picked = logits.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let mean = (logits.sum(D::Minus1)? / v as f64)?;
    (lse - (picked * (1.0 - smoothing))?)? - (mean * smoothing)?
}

#[derive(Debug, Clone, Copy)]
struct TokenCrossEntropy {
    smoothing: f32,
}

impl TokenCrossEntropy {
    fn targets<'a>(&self, t: &'a CpuStorage, l: &Layout, v: usize) -> Result<&'a [u32]> {
        let CpuStorage::U32(all) = t else {
            candle_core::bail!("{}: targets must be u32", self.name())
        };
        let t = match l.contiguous_offsets() {
            Some((a, b)) => &all[a..b],
            None => candle_core::bail!("{}: targets must be contiguous", self.name()),
        };
        if let Some(bad) = t.iter().find(|&&id| id as usize >= v) {
            candle_core::bail!(
                "{}: target id {bad} is outside the vocabulary of {v}",
                self.name()
            )
        }
        Ok(t)
    }
}

/// `(max, log Σ exp(x − max))` of one row.
fn row_stats(row: &[f32]) -> (f32, f32) {
    let max = lane_max(row);
    (max, lane_sum(row, |x| crate::cpu::exp(x - max)).ln())
}

impl CustomOp2 for TokenCrossEntropy {
    fn name(&self) -> &'static str {
        "petl-token-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        t: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let (n, v) = xl.shape().dims2()?;
        let t = self.targets(t, tl, v)?;
        let eps = self.smoothing;
        let rows = rows_per_task(v);
        let losses = par_filled(n, rows, |chunk, out| {
            for (k, loss) in out.iter_mut().enumerate() {
                let i = chunk * rows + k;
                let row = &x[i * v..][..v];
                let (max, log_z) = row_stats(row);
                let mean = lane_sum(row, |x| x) / v as f32;
                *loss = max + log_z - (1.0 - eps) * row[t[i] as usize] - eps * mean;
            }
        });
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        t: &Tensor,
        _loss: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !x.track_op() {
            return Ok((None, None));
        }
        let g = grad.contiguous()?.unsqueeze(1)?;
        let targets = t.contiguous()?.unsqueeze(1)?.to_dtype(DType::F32)?;
        // The targets travel as f32 beside the upstream gradient: exact for ids below 2^24.
        let packed = Tensor::cat(&[&g, &targets], 1)?;
        let dx = x.apply_op2_no_bwd(
            &packed,
            &TokenCrossEntropyBackward {
                smoothing: self.smoothing,
            },
        )?;
        Ok((Some(dx), None))
    }
}

/// `dx = g·(softmax(x) − (1−ε)·onehot(t) − ε/V)`, from the logits and `[g, t]` per row.
struct TokenCrossEntropyBackward {
    smoothing: f32,
}

impl CustomOp2 for TokenCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "petl-token-cross-entropy-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        p: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let packed = f32_slice(p, pl, self.name())?;
        let (_, v) = xl.shape().dims2()?;
        let eps = self.smoothing;
        let rows = rows_per_task(v);
        let out = par_filled(x.len(), rows * v, |chunk, out| {
            for (k, o) in out.chunks_exact_mut(v).enumerate() {
                let i = chunk * rows + k;
                let row = &x[i * v..][..v];
                let (g, target) = (packed[2 * i], packed[2 * i + 1] as usize);
                let (max, log_z) = row_stats(row);
                let shift = max + log_z;
                let floor = eps / v as f32;
                for (o, &x) in o.iter_mut().zip(row) {
                    *o = g * (crate::cpu::exp(x - shift) - floor);
                }
                o[target] -= g * (1.0 - eps);
            }
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// PyTorch 2.15: `F.cross_entropy(x, t, label_smoothing=0.1, reduction="none")` for
    /// x = [[1, 2, 3, 4], [0.5, -1, 2, 0]], t = [2, 0].
    #[test]
    fn matches_torch_values_and_the_composed_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[1f32, 2., 3., 4.], [0.5, -1., 2., 0.]], &dev)?;
        let t = Tensor::new(&[2u32, 0], &dev)?;
        let fused = token_cross_entropy(x.as_tensor(), &t, 0.1)?;
        let want = [1.490_189_7f32, 1.854_849_6];
        for (a, b) in fused.to_vec1::<f32>()?.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let w = Tensor::new(&[0.7f32, -1.3], &dev)?;
        let g_fused = (&fused * &w)?
            .sum_all()?
            .backward()?
            .get(&x)
            .unwrap()
            .to_vec2::<f32>()?;
        let x64 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F64)?)?;
        let composed = token_cross_entropy(x64.as_tensor(), &t, 0.1)?;
        let g_comp = (composed * w.to_dtype(DType::F64)?)?.sum_all()?.backward()?;
        let g_comp = g_comp.get(&x64).unwrap().to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for (a, b) in g_fused.iter().flatten().zip(g_comp.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn out_of_vocabulary_targets_are_refused() {
        let x = Tensor::zeros((1, 3), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[3u32], &Device::Cpu).unwrap();
        let err = token_cross_entropy(&x, &t, 0.0).unwrap_err().to_string();
        assert!(err.contains("outside the vocabulary"), "{err}");
    }
}
