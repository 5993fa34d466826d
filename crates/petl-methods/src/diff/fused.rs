//! Fused CPU kernels for the gated diff: diff pruning touches every base parameter on every
//! step, so composing `z`, `dz/dα`, `z ⊙ w` and `θ₀ + δ` from generic tensor ops would
//! allocate and stream a model-sized buffer per op. One parallel pass forward (which keeps the
//! gates and their derivatives for the backward pass) and one backward keep the L0 stage
//! within a small factor of full fine-tuning.

use super::gates::HardConcrete;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Elements per parallel work item.
const CHUNK: usize = 1 << 15;

/// `δ = z ⊙ z_g ⊙ w` for element log-alphas α (and optionally one group log-alpha), with
/// gates drawn from fixed logistic noise (`None`: the median gate). Backward gives
/// `∂w = g·z·z_g`, `∂α = g·w·z_g·dz/dα` and `∂α_g = Σ g·w·z·dz_g/dα_g`, the reference code's
/// hand-written gradients.
#[derive(Debug)]
pub(crate) struct GatedDiff {
    family: HardConcrete,
    noise: Option<Arc<Vec<f32>>>,
    group_noise: f32,
    /// `(z, dz/dα)` from the forward pass, for the backward pass.
    saved: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl GatedDiff {
    pub(crate) fn new(family: HardConcrete, noise: Option<Arc<Vec<f32>>>, group_noise: f32) -> Self {
        Self {
            family,
            noise,
            group_noise,
            saved: Mutex::new(None),
        }
    }

    fn gates(&self, alpha: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        if let Some(n) = &self.noise {
            if n.len() != alpha.len() {
                candle_core::bail!("gated diff: {} noise draws for {} gates", n.len(), alpha.len());
            }
        }
        let mut z = vec![0f32; alpha.len()];
        let mut dz = vec![0f32; alpha.len()];
        z.par_chunks_mut(CHUNK)
            .zip(dz.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (z, dz))| {
                let start = c * CHUNK;
                for i in 0..z.len() {
                    let noise = self.noise.as_ref().map_or(0.0, |n| n[start + i]);
                    (z[i], dz[i]) = self.family.gate_from_noise(alpha[start + i], noise);
                }
            });
        Ok((z, dz))
    }

    /// The same `δ` from differentiable tensor ops, for tensors the CPU kernels cannot read
    /// (a GPU's): slower and keeps more intermediates, but trains the same parameters.
    pub(crate) fn composed(&self, w: &Tensor, alpha: &Tensor, group: Option<&Tensor>) -> Result<Tensor> {
        let logits = match &self.noise {
            Some(n) => {
                if n.len() != alpha.elem_count() {
                    candle_core::bail!(
                        "gated diff: {} noise draws for {} gates",
                        n.len(),
                        alpha.elem_count()
                    );
                }
                (alpha + Tensor::from_slice(n.as_slice(), alpha.shape(), alpha.device())?)?
            }
            None => alpha.clone(),
        };
        let delta = (w * self.family.gate_tensor(&logits)?)?;
        match group {
            Some(g) => {
                let noise = if self.noise.is_some() {
                    self.group_noise
                } else {
                    0.0
                };
                delta.broadcast_mul(&self.family.gate_tensor(&(g + noise as f64)?)?)
            }
            None => Ok(delta),
        }
    }

    fn group_gate(&self, alpha_g: f32) -> (f32, f32) {
        let noise = if self.noise.is_some() {
            self.group_noise
        } else {
            0.0
        };
        self.family.gate_from_noise(alpha_g, noise)
    }

    fn forward(&self, w: &[f32], alpha: &[f32], group: f32) -> Result<Vec<f32>> {
        if w.len() != alpha.len() {
            candle_core::bail!("gated diff: w and α differ in length");
        }
        let (z, dz) = self.gates(alpha)?;
        let mut out = vec![0f32; w.len()];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            let start = c * CHUNK;
            for (i, o) in out.iter_mut().enumerate() {
                *o = w[start + i] * z[start + i] * group;
            }
        });
        if let Ok(mut saved) = self.saved.lock() {
            *saved = Some((z, dz));
        }
        Ok(out)
    }

    /// Gradients for w and α, and `Σ g·w·z` (the group gate's gradient before `dz_g/dα_g`).
    fn backward(
        &self,
        w: &[f32],
        alpha: &[f32],
        grad: &[f32],
        group: f32,
    ) -> Result<(Vec<f32>, Vec<f32>, f32)> {
        let saved = self.saved.lock().ok().and_then(|mut s| s.take());
        let (z, dz) = match saved {
            Some(s) => s,
            None => self.gates(alpha)?,
        };
        let mut gw = vec![0f32; w.len()];
        let mut ga = vec![0f32; w.len()];
        let gg: f64 = gw
            .par_chunks_mut(CHUNK)
            .zip(ga.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(c, (gw, ga))| {
                let start = c * CHUNK;
                let mut acc = 0f64;
                for i in 0..gw.len() {
                    let k = start + i;
                    gw[i] = grad[k] * z[k] * group;
                    ga[i] = grad[k] * w[k] * group * dz[k];
                    acc += (grad[k] * w[k] * z[k]) as f64;
                }
                acc
            })
            .sum();
        Ok((gw, ga, gg as f32))
    }
}

impl CustomOp2 for GatedDiff {
    fn name(&self) -> &'static str {
        "gated-diff"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = self.forward(slice(s1, l1)?, slice(s2, l2)?, 1.0)?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        w: &Tensor,
        alpha: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gw, ga, _) = with_host(w, |w| {
            with_host(alpha, |a| with_host(grad, |g| self.backward(w, a, g, 1.0)))
        })?;
        Ok((
            Some(Tensor::from_vec(gw, w.shape(), w.device())?),
            Some(Tensor::from_vec(ga, alpha.shape(), alpha.device())?),
        ))
    }
}

impl CustomOp3 for GatedDiff {
    fn name(&self) -> &'static str {
        "gated-diff-group"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (zg, _) = self.group_gate(scalar(slice(s3, l3)?)?);
        let out = self.forward(slice(s1, l1)?, slice(s2, l2)?, zg)?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        w: &Tensor,
        alpha: &Tensor,
        alpha_g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (zg, dzg) = self.group_gate(with_host(alpha_g, scalar)?);
        let (gw, ga, gg) = with_host(w, |w| {
            with_host(alpha, |a| with_host(grad, |g| self.backward(w, a, g, zg)))
        })?;
        Ok((
            Some(Tensor::from_vec(gw, w.shape(), w.device())?),
            Some(Tensor::from_vec(ga, alpha.shape(), alpha.device())?),
            Some(Tensor::from_vec(
                vec![gg * dzg],
                alpha_g.shape(),
                alpha_g.device(),
            )?),
        ))
    }
}

/// `Σ σ(α − shift)` (the expected number of nonzero gates), with gradient `σ(1 − σ)`, kept
/// from the forward pass.
#[derive(Debug)]
pub(crate) struct ExpectedNonzero {
    shift: f32,
    slopes: Mutex<Option<Vec<f32>>>,
}

impl ExpectedNonzero {
    pub(crate) fn new(shift: f32) -> Self {
        Self {
            shift,
            slopes: Mutex::new(None),
        }
    }
}

impl ExpectedNonzero {
    /// `Σ σ(α − shift)` from differentiable tensor ops, for tensors off the CPU.
    pub(crate) fn composed(&self, alpha: &Tensor) -> Result<Tensor> {
        petl_ops::sigmoid(&(alpha - self.shift as f64)?)?.sum_all()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp1 for ExpectedNonzero {
    fn name(&self) -> &'static str {
        "expected-nonzero"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let alpha = slice(s, l)?;
        let mut slopes = vec![0f32; alpha.len()];
        let sum: f64 = slopes
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, slopes)| {
                let start = c * CHUNK;
                let mut acc = 0f64;
                for (i, d) in slopes.iter_mut().enumerate() {
                    let p = sigmoid(alpha[start + i] - self.shift);
                    *d = p * (1.0 - p);
                    acc += p as f64;
                }
                acc
            })
            .sum();
        if let Ok(mut s) = self.slopes.lock() {
            *s = Some(slopes);
        }
        Ok((CpuStorage::F32(vec![sum as f32]), Shape::from(())))
    }

    fn bwd(&self, alpha: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.to_scalar::<f32>()?;
        let slopes = match self.slopes.lock().ok().and_then(|mut s| s.take()) {
            Some(s) => s,
            None => with_host(alpha, |a| {
                Ok(a.iter()
                    .map(|&a| {
                        let p = sigmoid(a - self.shift);
                        p * (1.0 - p)
                    })
                    .collect())
            })?,
        };
        let out: Vec<f32> = slopes.par_iter().map(|d| g * d).collect();
        Ok(Some(Tensor::from_vec(out, alpha.shape(), alpha.device())?))
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("diff pruning kernels take f32 tensors");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("diff pruning kernels take contiguous tensors");
    };
    Ok(&v[start..end])
}

fn scalar(v: &[f32]) -> Result<f32> {
    match v {
        [x] => Ok(*x),
        _ => candle_core::bail!("a group log-alpha is one number, got {}", v.len()),
    }
}

/// Runs `f` on the f32 contents of a contiguous CPU tensor without copying them out.
fn with_host<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<T>) -> Result<T> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(s, layout)?),
        _ => candle_core::bail!("diff pruning kernels run on the CPU"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::gates::logistic_noise;
    use crate::diff::L0Gates;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
        let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "{what}: fused and composed differ by {d}");
        Ok(())
    }

    /// The composed form (what a GPU runs) gives the fused kernels' values and gradients,
    /// with drawn and median gates, with and without a group gate.
    #[test]
    fn composed_matches_fused() -> Result<()> {
        let dev = Device::Cpu;
        let n = 64;
        // Spread α so some gates clamp at 0, some at 1 and some are in between; α = 0 puts the
        // median gate exactly on the boundary s̄ = 0.
        let w = Var::new((0..n).map(|i| (i as f32 * 0.7).sin()).collect::<Vec<_>>(), &dev)?;
        let alpha = Var::new((0..n).map(|i| i as f32 * 0.25 - 8.0).collect::<Vec<_>>(), &dev)?;
        let group = Var::new(&[0.3f32], &dev)?;
        let family = HardConcrete::new(&L0Gates::default());
        let noise: Vec<f32> = (0..n)
            .map(|i| logistic_noise((i as f32 + 0.5) / n as f32))
            .collect();
        let upstream = Tensor::new((0..n).map(|i| 1.0 + i as f32 * 0.01).collect::<Vec<_>>(), &dev)?;
        for noise in [Some(Arc::new(noise)), None] {
            for with_group in [false, true] {
                let op = || GatedDiff::new(family, noise.clone(), 0.4);
                let fused = if with_group {
                    w.apply_op3(&alpha, &group, op())?
                } else {
                    w.apply_op2(&alpha, op())?
                };
                let composed = op().composed(&w, &alpha, with_group.then_some(group.as_tensor()))?;
                close(&fused, &composed, "δ")?;
                let gf = (&fused * &upstream)?.sum_all()?.backward()?;
                let gc = (&composed * &upstream)?.sum_all()?.backward()?;
                let vars = [("w", &w), ("α", &alpha), ("α_g", &group)];
                for (name, v) in vars.iter().take(if with_group { 3 } else { 2 }) {
                    let (Some(a), Some(b)) = (gf.get(v), gc.get(v)) else {
                        panic!("no gradient for {name}");
                    };
                    close(a, b, name)?;
                }
            }
        }
        let op = ExpectedNonzero::new(family.log_ratio() as f32);
        let fused = alpha.apply_op1(ExpectedNonzero::new(family.log_ratio() as f32))?;
        let composed = op.composed(&alpha)?;
        close(&fused, &composed, "E‖z‖₀")?;
        close(
            fused.backward()?.get(&alpha).expect("fused gradient"),
            composed.backward()?.get(&alpha).expect("composed gradient"),
            "∂E‖z‖₀/∂α",
        )?;
        Ok(())
    }
}
