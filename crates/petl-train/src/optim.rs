use crate::Result;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// AdamW hyperparameters; defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε, added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay for parameters in the decay group.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Slot {
    var: Var,
    decay: bool,
    moments: Moments,
}

/// First and second moments, in f32.
enum Moments {
    /// For an f32 parameter on the CPU: the fused update writes them in place.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// For any other parameter (a GPU's, or not f32): on the parameter's device, updated by
    /// composed tensor ops, since the fused kernel is CPU code and a host round trip per step
    /// would copy every parameter twice.
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    fn zeros(var: &Var, fused: bool) -> Result<Self> {
        Ok(if fused {
            Self::Host {
                m: vec![0.0; var.elem_count()],
                v: vec![0.0; var.elem_count()],
            }
        } else {
            let zeros = Tensor::zeros(var.shape(), DType::F32, var.device())?;
            Self::Device {
                m: zeros.clone(),
                v: zeros,
            }
        })
    }
}

/// Whether the fused CPU update applies to `var`.
fn fused(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == DType::F32
}

/// AdamW with decoupled weight decay (Loshchilov & Hutter), step for step the arithmetic of
/// `torch.optim.AdamW`. Only the parameters it is given get state: frozen weights get none.
pub struct AdamW {
    config: AdamWConfig,
    slots: BTreeMap<String, Slot>,
    step: u64,
}

/// Whether a parameter is exempt from weight decay: biases and LayerNorm weights, the usual
/// BERT recipe (and the one `train_glue_torch.py` uses).
pub fn exempt_from_decay(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("LayerNorm") || name.contains("layer_norm")
}

impl AdamW {
    /// An optimizer over `params` (name → variable); decay applies where `exempt_from_decay` is false.
    pub fn new<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a Var)>,
        config: AdamWConfig,
    ) -> Result<Self> {
        Self::with_update(params, config, fused)
    }

    /// `new`, with `use_fused` choosing per parameter between the fused CPU update and the
    /// composed one (tests run both on the CPU).
    fn with_update<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a Var)>,
        config: AdamWConfig,
        use_fused: impl Fn(&Var) -> bool,
    ) -> Result<Self> {
        let mut slots = BTreeMap::new();
        for (name, var) in params {
            slots.insert(
                name.to_string(),
                Slot {
                    var: var.clone(),
                    decay: !exempt_from_decay(name),
                    moments: Moments::zeros(var, use_fused(var))?,
                },
            );
        }
        Ok(Self {
            config,
            slots,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Applies one update with learning rate `lr` from `grads` (name → gradient). A parameter
    /// with no gradient this step is left untouched, as PyTorch skips `p.grad is None`.
    pub fn step(&mut self, grads: &BTreeMap<String, Tensor>, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (name, slot) in self.slots.iter_mut() {
            let Some(g) = grads.get(name) else { continue };
            if g.dims() != slot.var.dims() {
                return Err(crate::TrainError::Config {
                    field: "optimizer",
                    reason: format!(
                        "gradient of `{name}` has shape {:?}, the parameter {:?}",
                        g.dims(),
                        slot.var.dims()
                    ),
                });
            }
            let keep = if slot.decay {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            let g = g.to_dtype(DType::F32)?.contiguous()?;
            match &mut slot.moments {
                Moments::Host { m, v } => {
                    let update = FusedAdamW {
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                        keep: keep as f32,
                        beta1: c.beta1 as f32,
                        beta2: c.beta2 as f32,
                        eps: c.eps as f32,
                        step_size: (lr / bc1) as f32,
                        inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                    };
                    slot.var.as_tensor().inplace_op2(&g, &update)?;
                }
                Moments::Device { m, v } => {
                    // A gradient can carry the graph that computed it; the moments must not
                    // keep every step's graph alive.
                    let g = g.detach();
                    // FusedAdamW's arithmetic, in its order, as tensor ops.
                    *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let denom = v.sqrt()?.affine(1.0 / bc2.sqrt(), c.eps)?;
                    let p = slot.var.as_tensor().to_dtype(DType::F32)?;
                    let p = ((p * keep)? - ((&*m * (lr / bc1))? / denom)?)?;
                    slot.var.set(&p.to_dtype(slot.var.dtype())?)?;
                }
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`m.<name>`, `v.<name>`) plus the step count,
    /// for checkpoints.
    pub fn state(&self) -> Result<(BTreeMap<String, Tensor>, u64)> {
        let mut out = BTreeMap::new();
        for (name, s) in &self.slots {
            let (m, v) = match &s.moments {
                Moments::Host { m, v } => {
                    let shape = s.var.shape();
                    (
                        Tensor::from_slice(m, shape, s.var.device())?,
                        Tensor::from_slice(v, shape, s.var.device())?,
                    )
                }
                Moments::Device { m, v } => (m.clone(), v.clone()),
            };
            out.insert(format!("m.{name}"), m);
            out.insert(format!("v.{name}"), v);
        }
        Ok((out, self.step))
    }

    /// Restores state saved by [`AdamW::state`].
    pub fn restore(&mut self, state: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        for (name, s) in self.slots.iter_mut() {
            let load = |key: String| -> Result<Tensor> {
                let t = state.get(&key).ok_or_else(|| crate::TrainError::Resume {
                    path: "optimizer state".into(),
                    reason: format!("missing `{key}`"),
                })?;
                if t.dims() != s.var.dims() {
                    return Err(crate::TrainError::Resume {
                        path: "optimizer state".into(),
                        reason: format!("`{key}` has shape {:?}, expected {:?}", t.dims(), s.var.dims()),
                    });
                }
                Ok(t.to_dtype(DType::F32)?)
            };
            let (m, v) = (load(format!("m.{name}"))?, load(format!("v.{name}"))?);
            s.moments = match &s.moments {
                Moments::Host { .. } => Moments::Host {
                    m: m.flatten_all()?.to_vec1::<f32>()?,
                    v: v.flatten_all()?.to_vec1::<f32>()?,
                },
                Moments::Device { .. } => Moments::Device {
                    m: m.to_device(s.var.device())?.detach(),
                    v: v.to_device(s.var.device())?.detach(),
                },
            };
        }
        self.step = step;
        Ok(())
    }
}

/// One AdamW update written into the parameter's storage, with the moments updated in place:
/// a dozen elementwise tensor ops would each stream and allocate a parameter-sized buffer.
/// The arithmetic is `torch.optim.AdamW`'s, in the same order.
struct FusedAdamW<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    /// `1 − lr·weight_decay`, or 1 for exempt parameters.
    keep: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    step_size: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    inv_sqrt_bc2: f32,
}

impl InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        lp: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (p, g) else {
            candle_core::bail!("AdamW updates f32 parameters");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (lp.contiguous_offsets(), lg.contiguous_offsets()) else {
            candle_core::bail!("AdamW updates contiguous parameters");
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != g.len() || p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!("AdamW: parameter, gradient and moments differ in length");
        }
        const CHUNK: usize = 1 << 15;
        let (b1, b2, eps, keep, step, inv) = (
            self.beta1,
            self.beta2,
            self.eps,
            self.keep,
            self.step_size,
            self.inv_sqrt_bc2,
        );
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    let gi = g[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    let denom = v[i].sqrt() * inv + eps;
                    p[i] = p[i] * keep - step * m[i] / denom;
                }
            });
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (`clip_grad_norm_`); returns
/// the norm before clipping.
pub fn clip_grad_norm(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.values() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        // PyTorch's clip coefficient, including its 1e-6 guard.
        let coef = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_torch_adamw_by_hand() -> Result<()> {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.5) with p=[1,-2], grad=[0.5,0.5], two steps:
        // step 1: p *= 1-0.05 → [.95,-1.9]; m=[.05,.05], v=[.00025,.00025]; m̂/ (√v̂+eps) = 1 → p=[.85,-2.0]
        // step 2 (same grad): p *= .95 → [.8075,-1.9]; m̂/√v̂ = 1 again → [.7075,-2.0]
        let p = Var::new(&[1f32, -2.], &Device::Cpu)?;
        let cfg = AdamWConfig {
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new([("w", &p)], cfg)?;
        let g = BTreeMap::from([("w".to_string(), Tensor::new(&[0.5f32, 0.5], &Device::Cpu)?)]);
        opt.step(&g, 0.1)?;
        opt.step(&g, 0.1)?;
        let got = p.to_vec1::<f32>()?;
        for (a, e) in got.iter().zip([0.7075f32, -2.0]) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
        Ok(())
    }

    /// The composed update (what a GPU parameter gets) follows the fused one step for step,
    /// through a checkpoint round trip.
    #[test]
    fn composed_update_matches_fused() -> Result<()> {
        let init: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let grad = |step: usize| -> Result<BTreeMap<String, Tensor>> {
            let g: Vec<f32> = (0..37).map(|i| ((i * 7 + step) as f32 * 0.11).cos()).collect();
            Ok(BTreeMap::from([("w".to_string(), Tensor::new(g, &Device::Cpu)?)]))
        };
        let cfg = AdamWConfig::default();
        let (pf, pc) = (
            Var::new(init.clone(), &Device::Cpu)?,
            Var::new(init, &Device::Cpu)?,
        );
        let mut fused = AdamW::with_update([("w", &pf)], cfg, |_| true)?;
        let mut composed = AdamW::with_update([("w", &pc)], cfg, |_| false)?;
        for step in 0..3 {
            fused.step(&grad(step)?, 1e-2)?;
            composed.step(&grad(step)?, 1e-2)?;
        }
        let (state, steps) = composed.state()?;
        let mut resumed = AdamW::with_update([("w", &pc)], cfg, |_| false)?;
        resumed.restore(&state, steps)?;
        for step in 3..5 {
            fused.step(&grad(step)?, 1e-2)?;
            resumed.step(&grad(step)?, 1e-2)?;
        }
        for (a, b) in pf.to_vec1::<f32>()?.iter().zip(pc.to_vec1::<f32>()?) {
            assert!((a - b).abs() < 1e-6, "fused {a} vs composed {b}");
        }
        let (fs, _) = fused.state()?;
        let (rs, _) = resumed.state()?;
        for key in ["m.w", "v.w"] {
            let d = (&fs[key] - &rs[key])?.abs()?.max(0)?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "{key} differs by {d}");
        }
        Ok(())
    }

    #[test]
    fn biases_and_layernorm_skip_decay() {
        assert!(exempt_from_decay("encoder.layer.0.output.dense.bias"));
        assert!(exempt_from_decay("embeddings.LayerNorm.weight"));
        assert!(!exempt_from_decay("classifier.weight"));
    }

    #[test]
    fn clipping_rescales_to_the_bound() -> Result<()> {
        let mut g = BTreeMap::from([("a".to_string(), Tensor::new(&[3f32, 4.], &Device::Cpu)?)]);
        let n = clip_grad_norm(&mut g, 1.0)?;
        assert_eq!(n, 5.0);
        let v = g["a"].to_vec1::<f32>()?;
        assert!((v[0] - 0.6).abs() < 1e-5 && (v[1] - 0.8).abs() < 1e-5);
        Ok(())
    }
}
