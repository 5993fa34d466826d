//! The hard-concrete distribution (Louizos et al. 2018) as diff pruning uses it: samples with
//! their pathwise derivative, the evaluation gate, and the probability of a nonzero gate.
//!
//! The derivative is computed here rather than left to autograd because `clamp` has a zero
//! gradient exactly where the reference code's hand-written `dz/dα` is zero too, but a
//! composed graph over 20M+ entries per tensor costs several extra passes; one fused loop
//! gives `z` and `dz/dα` together.

use super::config::L0Gates;
use candle_core::Tensor;

/// The stretch interval and temperature of one gate family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HardConcrete {
    lower: f32,
    upper: f32,
    temperature: f32,
}

impl HardConcrete {
    /// The distribution configured by `cfg`.
    pub fn new(cfg: &L0Gates) -> Self {
        Self {
            lower: cfg.lower as f32,
            upper: cfg.upper as f32,
            temperature: cfg.temperature as f32,
        }
    }

    /// Gates `z` and their derivatives `dz/dα` for log-alphas `alpha` and uniform draws `u`
    /// (clamped to [1e-4, 1 − 1e-4] as the reference code does, so the logistic noise stays
    /// bounded):
    /// `s = σ((log u − log(1−u) + α)/β)`, `s̄ = s(r−l) + l`, `z = min(1, max(0, s̄))`,
    /// `dz/dα = 1[0 < s̄ < 1]·(r−l)·s(1−s)/β`.
    pub fn sample(&self, alpha: &[f32], u: &[f32]) -> (Vec<f32>, Vec<f32>) {
        alpha
            .iter()
            .zip(u)
            .map(|(&a, &u)| self.gate_from_noise(a, logistic_noise(u)))
            .unzip()
    }

    /// The gate and its derivative for log-alpha `alpha` and logistic noise
    /// `log u − log(1−u)` (0 for the median gate).
    pub fn gate_from_noise(&self, alpha: f32, noise: f32) -> (f32, f32) {
        self.gate((noise + alpha) / self.temperature)
    }

    /// The median gate (u = ½): `min(1, max(0, σ(α/β)(r−l) + l))`, deterministic, with its
    /// derivative.
    pub fn median(&self, alpha: &[f32]) -> (Vec<f32>, Vec<f32>) {
        alpha.iter().map(|&a| self.gate(a / self.temperature)).unzip()
    }

    pub(crate) fn gate(&self, logit: f32) -> (f32, f32) {
        let s = 1.0 / (1.0 + (-logit).exp());
        let width = self.upper - self.lower;
        let stretched = s * width + self.lower;
        if stretched <= 0.0 {
            (0.0, 0.0)
        } else if stretched >= 1.0 {
            (1.0, 0.0)
        } else {
            (stretched, width * s * (1.0 - s) / self.temperature)
        }
    }

    /// `z` for a tensor of `α + noise`, composed from differentiable tensor ops (for tensors
    /// off the CPU), with [`Self::gate`]'s derivative: zero wherever `s̄` is clamped, the
    /// boundaries included (autograd's `clamp` would pass half the gradient at `s̄ = 0`).
    pub(crate) fn gate_tensor(&self, alpha_plus_noise: &Tensor) -> candle_core::Result<Tensor> {
        let s = petl_ops::sigmoid(&(alpha_plus_noise / self.temperature as f64)?)?;
        let stretched = s.affine((self.upper - self.lower) as f64, self.lower as f64)?;
        let inside = (stretched.gt(0f32)? * stretched.lt(1f32)?)?;
        inside.where_cond(&stretched, &stretched.clamp(0f32, 1f32)?.detach())
    }

    /// The shift in `P(z ≠ 0) = σ(α − β·log(−l/r))`.
    pub fn log_ratio(&self) -> f64 {
        self.temperature as f64 * (-(self.lower as f64) / self.upper as f64).ln()
    }

    /// `P(z ≠ 0)` for log-alpha `alpha`, the closed form the penalty sums.
    pub fn prob_nonzero(&self, alpha: f64) -> f64 {
        1.0 / (1.0 + (-(alpha - self.log_ratio())).exp())
    }
}

/// `log u − log(1−u)` for a uniform draw, with u clamped to [1e-4, 1 − 1e-4] as the reference
/// code does.
pub fn logistic_noise(u: f32) -> f32 {
    let u = u.clamp(1e-4, 1.0 - 1e-4);
    (u / (1.0 - u)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use petl_ops::DropoutRng;

    fn family(lower: f64, upper: f64, temperature: f64) -> HardConcrete {
        HardConcrete::new(&L0Gates {
            lower,
            upper,
            temperature,
            ..L0Gates::default()
        })
    }

    /// The closed form of P(z ≠ 0) matches the frequency of nonzero samples, for the paper's
    /// symmetric interval and for an asymmetric one with a temperature (where log(−l/r) ≠ 0).
    #[test]
    fn expected_l0_closed_form_matches_monte_carlo() {
        let n = 200_000;
        let mut rng = DropoutRng::new(7);
        for hc in [family(-1.5, 1.5, 1.0), family(-0.1, 1.1, 2.0 / 3.0)] {
            for alpha in [-3.0f32, -0.5, 0.0, 1.0, 5.0] {
                let u = rng.uniform(n);
                let (z, _) = hc.sample(&vec![alpha; n], &u);
                let freq = z.iter().filter(|&&g| g > 0.0).count() as f64 / n as f64;
                let exact = hc.prob_nonzero(alpha as f64);
                // 4.5 standard errors of a binomial frequency (plus the u clamp's tiny bias).
                let tol = 4.5 * (exact * (1.0 - exact) / n as f64).sqrt() + 2e-4;
                assert!(
                    (freq - exact).abs() < tol,
                    "{hc:?} α={alpha}: Monte Carlo {freq} vs closed form {exact}"
                );
            }
        }
    }

    /// The pathwise derivative dz/dα equals a central finite difference of z at fixed u,
    /// inside the unclamped region, and is exactly 0 where the gate is clamped.
    #[test]
    fn pathwise_gradient_matches_finite_differences() {
        let mut rng = DropoutRng::new(3);
        let hc = family(-1.5, 1.5, 0.8);
        let alphas: Vec<f32> = (0..400).map(|i| -4.0 + i as f32 * 0.02).collect();
        let u = rng.uniform(alphas.len());
        let (z, dz) = hc.sample(&alphas, &u);
        let h = 1e-3f64;
        let z64 = |a: f64, u: f64| {
            let u = u.clamp(1e-4, 1.0 - 1e-4);
            let s = 1.0 / (1.0 + (-((u.ln() - (1.0 - u).ln() + a) / 0.8)).exp());
            (s * 3.0 - 1.5).clamp(0.0, 1.0)
        };
        let (mut inside, mut clamped) = (0, 0);
        for i in 0..alphas.len() {
            let (a, ui) = (alphas[i] as f64, u[i] as f64);
            let fd = (z64(a + h, ui) - z64(a - h, ui)) / (2.0 * h);
            if z[i] > 0.01 && z[i] < 0.99 {
                inside += 1;
                assert!(
                    (fd - dz[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                    "α={} u={}: dz/dα {} vs finite difference {fd}",
                    alphas[i],
                    u[i],
                    dz[i]
                );
            } else if z[i] == 0.0 || z[i] == 1.0 {
                clamped += 1;
                assert_eq!(dz[i], 0.0, "a clamped gate has no gradient");
            }
        }
        assert!(inside > 50 && clamped > 50, "{inside} inside, {clamped} clamped");
    }

    #[test]
    fn paper_defaults_open_almost_every_gate() {
        let hc = HardConcrete::new(&L0Gates::default());
        assert_eq!(hc.log_ratio(), 0.0);
        assert!((hc.prob_nonzero(5.0) - 0.99331).abs() < 1e-5);
        // σ(5)·3 − 1.5 > 1 and σ(−5)·3 − 1.5 < 0 clamp; σ(0)·3 − 1.5 is exactly 0.
        let (z, _) = hc.median(&[5.0, -5.0, 0.0, 1.0]);
        assert_eq!(&z[..3], &[1.0, 0.0, 0.0]);
        assert!((z[3] - (3.0 / (1.0 + (-1f32).exp()) - 1.5)).abs() < 1e-6);
    }
}
