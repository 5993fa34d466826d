//! Fused CPU kernels for the gated diff: diff pruning touches every base parameter on every
//! step, so composing `z`, `dz/dα`, `z ⊙ w` and `θ₀ + δ` from generic tensor ops would
//! allocate and stream a model-sized buffer per op. One pass forward and one backward keep
//! the L0 stage within a small factor of full fine-tuning.

use super::gates::HardConcrete;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use std::sync::Arc;

/// `δ = z ⊙ z_g ⊙ w` for element log-alphas α (and optionally one group log-alpha), with
/// gates drawn from fixed uniforms (`None`: the median gate). Backward gives `∂w = g·z·z_g`,
/// `∂α = g·w·z_g·dz/dα` and `∂α_g = Σ g·w·z·dz_g/dα_g`, the reference code's hand-written
/// gradients.
#[derive(Debug, Clone)]
pub(crate) struct GatedDiff {
    pub(crate) family: HardConcrete,
    pub(crate) uniforms: Option<Arc<Vec<f32>>>,
    pub(crate) group_uniform: Option<f32>,
}

impl GatedDiff {
    fn gates(&self, alpha: &[f32]) -> (Vec<f32>, Vec<f32>) {
        match &self.uniforms {
            Some(u) => self.family.sample(alpha, u),
            None => self.family.median(alpha),
        }
    }

    fn group_gate(&self, alpha_g: f32) -> (f32, f32) {
        let (z, dz) = match self.group_uniform {
            Some(u) => self.family.sample(&[alpha_g], &[u]),
            None => self.family.median(&[alpha_g]),
        };
        (z[0], dz[0])
    }

    fn forward(&self, w: &[f32], alpha: &[f32], group: f32) -> Result<Vec<f32>> {
        if w.len() != alpha.len() || self.uniforms.as_ref().is_some_and(|u| u.len() != w.len()) {
            candle_core::bail!("gated diff: w, α and u differ in length");
        }
        let (z, _) = self.gates(alpha);
        Ok(w.iter().zip(&z).map(|(w, z)| w * z * group).collect())
    }

    /// Gradients for w and α, and `Σ g·w·z` (the group gate's gradient before `dz_g/dα_g`).
    fn backward(&self, w: &[f32], alpha: &[f32], grad: &[f32], group: f32) -> (Vec<f32>, Vec<f32>, f32) {
        let (z, dz) = self.gates(alpha);
        let mut gw = Vec::with_capacity(w.len());
        let mut ga = Vec::with_capacity(w.len());
        let mut gg = 0f64;
        for i in 0..w.len() {
            gw.push(grad[i] * z[i] * group);
            ga.push(grad[i] * w[i] * group * dz[i]);
            gg += (grad[i] * w[i] * z[i]) as f64;
        }
        (gw, ga, gg as f32)
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
        let grad = grad.contiguous()?;
        let (gw, ga, _) = with_host(w, |w| {
            with_host(alpha, |a| with_host(&grad, |g| Ok(self.backward(w, a, g, 1.0))))
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
        let grad = grad.contiguous()?;
        let (zg, dzg) = self.group_gate(
            alpha_g
                .flatten_all()?
                .to_vec1::<f32>()?
                .first()
                .copied()
                .unwrap_or(0.0),
        );
        let (gw, ga, gg) = with_host(w, |w| {
            with_host(alpha, |a| with_host(&grad, |g| Ok(self.backward(w, a, g, zg))))
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

/// `Σ σ(α − shift)` (the expected number of nonzero gates), with gradient `σ(1 − σ)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpectedNonzero {
    pub(crate) shift: f32,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp1 for ExpectedNonzero {
    fn name(&self) -> &'static str {
        "expected-nonzero"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let sum: f64 = slice(s, l)?.iter().map(|&a| sigmoid(a - self.shift) as f64).sum();
        Ok((CpuStorage::F32(vec![sum as f32]), Shape::from(())))
    }

    fn bwd(&self, alpha: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.to_scalar::<f32>()?;
        let out = with_host(alpha, |a| {
            Ok(a.iter()
                .map(|&a| {
                    let s = sigmoid(a - self.shift);
                    g * s * (1.0 - s)
                })
                .collect::<Vec<f32>>())
        })?;
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
