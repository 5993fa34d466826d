//! Dynamic loss scaling for f16 mixed precision.

/// Multiplies the loss before backward so small gradients survive f16's narrow exponent, and
/// adapts the factor: a step whose gradients overflow is skipped and the scale halved; after
/// `growth_interval` clean steps in a row it doubles (PyTorch's `GradScaler` policy).
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    scale: f64,
    clean_steps: u64,
    growth_interval: u64,
}

/// What the scaler made of one step's gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaledStep {
    /// Finite gradients: unscale them and step.
    Apply,
    /// Overflowed gradients: skip the optimizer step (the scale was halved).
    Skip,
}

impl LossScaler {
    /// PyTorch's defaults: start at 2¹⁶, double after 2000 clean steps.
    pub fn new() -> Self {
        Self {
            scale: 65536.0,
            clean_steps: 0,
            growth_interval: 2000,
        }
    }

    /// The current factor.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Records whether the step's (scaled) gradient norm was finite.
    pub fn update(&mut self, grad_norm: f64) -> ScaledStep {
        if !grad_norm.is_finite() {
            // Never below 1: a scale that small means the loss itself is broken, which the
            // trainer's non-finite loss check reports.
            self.scale = (self.scale / 2.0).max(1.0);
            self.clean_steps = 0;
            return ScaledStep::Skip;
        }
        self.clean_steps += 1;
        if self.clean_steps >= self.growth_interval {
            self.scale = (self.scale * 2.0).min(f32::MAX as f64 / 4.0);
            self.clean_steps = 0;
        }
        ScaledStep::Apply
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_overflow_and_grows_after_clean_steps() {
        let mut s = LossScaler {
            growth_interval: 3,
            ..LossScaler::new()
        };
        assert_eq!(s.update(f64::INFINITY), ScaledStep::Skip);
        assert_eq!(s.scale(), 32768.0);
        assert_eq!(s.update(f64::NAN), ScaledStep::Skip);
        assert_eq!(s.scale(), 16384.0);
        for _ in 0..2 {
            assert_eq!(s.update(1.0), ScaledStep::Apply);
            assert_eq!(s.scale(), 16384.0);
        }
        assert_eq!(s.update(1.0), ScaledStep::Apply);
        assert_eq!(s.scale(), 32768.0);
        for _ in 0..40 {
            s.update(f64::INFINITY);
        }
        assert_eq!(s.scale(), 1.0);
    }
}
