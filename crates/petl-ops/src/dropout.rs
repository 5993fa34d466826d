use crate::cpu::f32_slice;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

/// Draws per parallel task. A task seeks its own position in the call's stream, so the draws
/// do not depend on how many threads share the work.
const DRAW_CHUNK: usize = 1 << 16;

/// The random stream dropout masks are drawn from.
///
/// One stream is derived per optimizer step from the run seed, so a run resumed at step `k`
/// draws exactly the masks an uninterrupted run draws there, and the same seed reproduces a run
/// bit for bit. candle's CPU device cannot be seeded, which is why masks are drawn here.
///
/// Each call (a mask, a batch of uniforms) takes one 64-bit key from the stream and expands it
/// with a ChaCha8 stream of its own in parallel chunks: what a call draws depends only on the
/// stream's position, never on the thread count.
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
        let words = self.words(n);
        let mut out = vec![0f32; n];
        out.par_chunks_mut(DRAW_CHUNK).enumerate().for_each(|(i, o)| {
            let w = words.chunk(i, o.len());
            for (o, w) in o.iter_mut().zip(w) {
                *o = ((w >> 8) as f32 + 0.5) * SCALE;
            }
        });
        out
    }

    /// A keep mask for `n` elements at drop probability `p` (16-bit resolution: the drop rate
    /// is within 2⁻¹⁷ of `p`), two decisions per 32-bit draw.
    pub fn keep_mask(&mut self, n: usize, p: f32) -> KeepMask {
        let threshold = (f64::from(p) * 65_536.0).round() as u32;
        let words = self.words(n.div_ceil(2));
        let mut keep = vec![0u8; n];
        keep.par_chunks_mut(2 * DRAW_CHUNK)
            .enumerate()
            .for_each(|(i, k)| {
                let w = words.chunk(i, k.len().div_ceil(2));
                let (pairs, tail) = k.split_at_mut(k.len() / 2 * 2);
                for (pair, w) in pairs.chunks_exact_mut(2).zip(&w) {
                    pair[0] = u8::from(w & 0xffff >= threshold);
                    pair[1] = u8::from(w >> 16 >= threshold);
                }
                if let (Some(t), Some(w)) = (tail.first_mut(), w.last()) {
                    *t = u8::from(w & 0xffff >= threshold);
                }
            });
        KeepMask {
            keep: Arc::new(keep),
            scale: 1.0 / (1.0 - p),
        }
    }

    /// A fresh keyed stream of `n` 32-bit words, read back in chunks of [`DRAW_CHUNK`].
    fn words(&mut self, n: usize) -> KeyedWords {
        KeyedWords {
            key: self.0.next_u64(),
            n,
        }
    }
}

/// The 32-bit words of one call's stream, drawn chunk by chunk by whichever thread needs them.
struct KeyedWords {
    key: u64,
    n: usize,
}

impl KeyedWords {
    /// Words `[i·DRAW_CHUNK, i·DRAW_CHUNK + len)`.
    fn chunk(&self, i: usize, len: usize) -> Vec<u32> {
        let start = i * DRAW_CHUNK;
        let len = len.min(self.n.saturating_sub(start));
        let mut rng = ChaCha8Rng::seed_from_u64(self.key);
        rng.set_word_pos(start as u128);
        let mut out = vec![0u32; len];
        rng.fill(&mut out[..]);
        out
    }
}

/// A drawn dropout mask: which elements survive, and the factor `1/(1−p)` survivors carry.
///
/// One byte per element, a quarter of an `f32` mask; the fused kernels read it directly, other
/// devices and dtypes get it as a tensor.
#[derive(Debug, Clone)]
pub struct KeepMask {
    keep: Arc<Vec<u8>>,
    scale: f32,
}

impl KeepMask {
    /// Elements the mask covers.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// Whether the mask covers no element.
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// Which elements survive (1) or are dropped (0).
    #[cfg(test)]
    fn bytes(&self) -> &[u8] {
        &self.keep
    }

    /// `x[i] ← x[i] · factor[at + i]`: the mask from element `at` on, applied in place to a
    /// block of the tensor it was drawn for.
    pub(crate) fn apply_from(&self, at: usize, x: &mut [f32]) {
        for (x, &k) in x.iter_mut().zip(&self.keep[at..]) {
            *x *= f32::from(k) * self.scale;
        }
    }

    /// `x ⊙ mask`, differentiable in `x` only; `x` must have as many elements as the mask.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if x.elem_count() != self.len() {
            return Err(candle_core::Error::Msg(format!(
                "dropout: a mask of {} elements applied to {:?}",
                self.len(),
                x.dims()
            )));
        }
        if crate::norm::fused(x, &[]) {
            return x.contiguous()?.apply_op1(self.clone());
        }
        x.mul(&self.to_tensor(x)?)
    }

    /// The mask as factors, shaped, typed and placed as `like`.
    fn to_tensor(&self, like: &Tensor) -> Result<Tensor> {
        let factors: Vec<f32> = self.keep.iter().map(|&k| f32::from(k) * self.scale).collect();
        Tensor::from_vec(factors, like.shape(), like.device())?.to_dtype(like.dtype())
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

    /// The mask this layer draws for `n` elements in a training pass (`rng` given), or `None`
    /// where it is the identity (evaluation, or `p` = 0).
    pub fn mask(&self, n: usize, rng: Option<&mut DropoutRng>) -> Option<KeepMask> {
        match rng {
            Some(rng) if self.p > 0.0 => Some(rng.keep_mask(n, self.p)),
            _ => None,
        }
    }

    /// Applies dropout when `rng` is given (training), else returns `x` unchanged.
    pub fn forward(&self, x: &Tensor, rng: Option<&mut DropoutRng>) -> Result<Tensor> {
        match self.mask(x.elem_count(), rng) {
            Some(mask) => mask.apply(x),
            None => Ok(x.clone()),
        }
    }
}

/// `x · mask`, whose backward is `g · mask` alone: a generic multiply would also compute (and
/// keep) a gradient for the constant mask.
impl CustomOp1 for KeepMask {
    fn name(&self) -> &'static str {
        "petl-dropout"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let chunk = 1 << 14;
        let out = crate::cpu::par_filled(x.len(), chunk, |i, o| {
            o.copy_from_slice(&x[i * chunk..][..o.len()]);
            self.apply_from(i * chunk, o);
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        if crate::norm::fused(&grad, &[]) {
            return Ok(Some(grad.apply_op1_no_bwd(self)?));
        }
        Ok(Some(grad.mul(&self.to_tensor(&grad)?)?))
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

    #[test]
    fn draws_do_not_depend_on_the_thread_count() {
        // Several chunks and an odd length, so chunk seeking and the tail are both exercised.
        let n = 5 * DRAW_CHUNK + 3;
        let draw = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut rng = DropoutRng::for_step(11, 2);
                let mask = rng.keep_mask(n, 0.1);
                (mask.bytes().to_vec(), rng.uniform(n))
            })
        };
        let (one, three) = (draw(1), draw(3));
        assert_eq!(one.0, three.0);
        assert_eq!(one.1, three.1);
        let dropped = one.0.iter().filter(|&&k| k == 0).count() as f64 / n as f64;
        // 327,683 draws at p = 0.1: 5 sigma is 0.0026.
        assert!((dropped - 0.1).abs() < 0.0026, "dropped {dropped}");
        let mean = one.1.iter().map(|&u| f64::from(u)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.0026, "mean {mean}");
        // Consecutive calls take different keys.
        let mut rng = DropoutRng::new(1);
        assert_ne!(rng.uniform(8), rng.uniform(8));
    }
}
