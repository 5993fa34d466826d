use crate::cpu::{f32_slice, par_zip2};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random stream dropout masks are drawn from.
///
/// One stream is derived per optimizer step from the run seed, so a run resumed at step `k`
/// draws exactly the masks an uninterrupted run draws there, and the same seed reproduces a run
/// bit for bit. candle's CPU device cannot be seeded, which is why masks are drawn here.
#[derive(Debug, Clone)]
pub struct DropoutRng(ChaCha8Rng);

impl DropoutRng {
    /// A stream determined by `seed` alone.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The stream for optimizer step `step` of a run seeded with `seed`.
    pub fn for_step(seed: u64, step: u64) -> Self {
        // ChaCha's stream id separates steps without any chance of two steps sharing a stream.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(step);
        Self(rng)
    }

    /// `n` draws from U(0, 1), never exactly 0 or 1 (24-bit resolution, centred in each bin).
    pub fn uniform(&mut self, n: usize) -> Vec<f32> {
        const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
        (0..n)
            .map(|_| ((self.0.random::<u32>() >> 8) as f32 + 0.5) * SCALE)
            .collect()
    }

    fn keep_mask(&mut self, n: usize, p: f32) -> Vec<f32> {
        let scale = 1.0 / (1.0 - p);
        // Compare raw 24-bit draws against the threshold: uniform, cheap, platform-independent.
        let threshold = (p as f64 * (1u32 << 24) as f64) as u32;
        (0..n)
            .map(|_| {
                if (self.0.random::<u32>() >> 8) < threshold {
                    0.0
                } else {
                    scale
                }
            })
            .collect()
    }
}

/// Inverted dropout with drop probability `p`: identity at evaluation, and at training zeroes
/// each element with probability `p` and scales survivors by `1/(1−p)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// A dropout layer; `p` is clamped into `[0, 1)`.
    pub fn new(p: f32) -> Self {
        Self {
            p: if p.is_finite() { p.clamp(0.0, 0.999) } else { 0.0 },
        }
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Applies dropout when `rng` is given (training), else returns `x` unchanged.
    pub fn forward(&self, x: &Tensor, rng: Option<&mut DropoutRng>) -> Result<Tensor> {
        match rng {
            Some(rng) if self.p > 0.0 => {
                let mask = rng.keep_mask(x.elem_count(), self.p);
                let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
                if crate::norm::fused(x, &[]) {
                    x.contiguous()?.apply_op1(KeepMask(mask))
                } else {
                    x.mul(&mask)
                }
            }
            _ => Ok(x.clone()),
        }
    }
}

/// `x · mask` whose backward is `g · mask` alone: a generic multiply would also compute (and
/// keep) a gradient for the constant mask.
struct KeepMask(Tensor);

impl CustomOp1 for KeepMask {
    fn name(&self) -> &'static str {
        "petl-dropout"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let (m, ml) = self.0.storage_and_layout();
        let Storage::Cpu(m) = &*m else {
            return Err(candle_core::Error::Msg("dropout: mask on another device".into()));
        };
        let m = f32_slice(m, ml, self.name())?;
        let out = par_zip2(x, m, |x, m, o| {
            for j in 0..o.len() {
                o[j] = x[j] * m[j];
            }
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        Ok(Some(grad.mul(&self.0)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn identity_without_rng_and_reproducible_with_it() -> Result<()> {
        let x = Tensor::ones((64, 64), candle_core::DType::F32, &Device::Cpu)?;
        let d = Dropout::new(0.25);
        assert_eq!(d.forward(&x, None)?.to_vec2::<f32>()?, x.to_vec2::<f32>()?);
        let a = d.forward(&x, Some(&mut DropoutRng::for_step(7, 3)))?;
        let b = d.forward(&x, Some(&mut DropoutRng::for_step(7, 3)))?;
        let c = d.forward(&x, Some(&mut DropoutRng::for_step(7, 4)))?;
        assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
        assert_ne!(a.to_vec2::<f32>()?, c.to_vec2::<f32>()?);
        // 4096 draws at p = .25: the kept fraction is within 5 sigma (~0.034) of 0.75, and the
        // survivors carry 1/(1-p).
        let v = a.flatten_all()?.to_vec1::<f32>()?;
        let kept = v.iter().filter(|&&x| x > 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.75).abs() < 0.034, "kept {kept}");
        assert!(v.iter().all(|&x| x == 0.0 || (x - 4.0 / 3.0).abs() < 1e-6));
        Ok(())
    }
}
