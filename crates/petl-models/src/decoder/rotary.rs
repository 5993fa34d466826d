//! Rotary position embedding tables: the angle of every (position, frequency) pair.

use super::config::{RopeConfig, RopeScaling};
use crate::Result;
use candle_core::{Device, Tensor};

/// The inverse frequencies of one head, computed in f32 as `transformers` computes them.
#[derive(Debug, Clone)]
pub(super) struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    pub(super) fn new(rope: &RopeConfig, head_dim: usize) -> Self {
        let base = rope.theta as f32;
        let mut inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        if let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = rope.scaling
        {
            // `_compute_llama3_parameters` of transformers' modeling_rope_utils.py.
            let old = original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f64::consts::PI / *f as f64;
                let scaled = if wavelen > low_wavelen {
                    (*f as f64 / factor) as f32
                } else {
                    *f
                };
                let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                *f = if medium {
                    let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    ((1.0 - smooth) * scaled as f64 / factor + smooth * scaled as f64) as f32
                } else {
                    scaled
                };
            }
        }
        Self { inv_freq }
    }

    /// `cos` and `sin` `[batch, seq, head_dim/2]` of the angles `position · inv_freq` for
    /// `positions` (row-major `[batch, seq]`).
    pub(super) fn tables(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                // The angle is rounded to f32 as in transformers; its cosine and sine are then
                // taken exactly.
                let angle = (p as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok((
            Tensor::from_vec(cos, (batch, seq, half), device)?,
            Tensor::from_vec(sin, (batch, seq, half), device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_divides_low_and_blends_between() {
        let plain = RopeConfig {
            theta: 500_000.0,
            scaling: RopeScaling::None,
        };
        let scaled = RopeConfig {
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            ..plain
        };
        let (a, b) = (Rotary::new(&plain, 128), Rotary::new(&scaled, 128));
        // Highest frequency (wavelength 2π) untouched; lowest divided by the factor.
        assert_eq!(a.inv_freq[0], b.inv_freq[0]);
        let last = a.inv_freq.len() - 1;
        assert!((b.inv_freq[last] * 8.0 - a.inv_freq[last]).abs() <= 1e-6 * a.inv_freq[last]);
        // Everything in between lies between the two.
        for (x, y) in a.inv_freq.iter().zip(&b.inv_freq) {
            assert!(*y <= *x && *y >= *x / 8.0 * (1.0 - 1e-6));
        }
    }
}
