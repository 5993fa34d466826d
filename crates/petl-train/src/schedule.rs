use serde::{Deserialize, Serialize};

/// Learning-rate schedule after linear warmup, as in `transformers`' schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Schedule {
    /// Linear decay from the peak to 0 at the last step (`get_linear_schedule_with_warmup`).
    Linear,
    /// `(lr − lr_end)·(1 − progress)^power + lr_end` (`get_polynomial_decay_schedule_with_warmup`).
    Polynomial {
        /// Exponent; 1 is linear.
        power: f64,
        /// Final learning rate.
        lr_end: f64,
    },
    /// Constant after warmup.
    Constant,
}

impl Schedule {
    /// Learning rate for optimizer step `step` (0-based) of `total`, with `warmup` warmup steps
    /// and peak `lr`.
    pub fn lr_at(&self, step: u64, total: u64, warmup: u64, lr: f64) -> f64 {
        if step < warmup {
            return lr * step as f64 / warmup.max(1) as f64;
        }
        let decay_steps = total.saturating_sub(warmup).max(1) as f64;
        let progress = ((step - warmup) as f64 / decay_steps).min(1.0);
        match *self {
            Self::Linear => lr * (1.0 - progress),
            Self::Polynomial { power, lr_end } => {
                if lr <= lr_end {
                    lr_end
                } else {
                    (lr - lr_end) * (1.0 - progress).powf(power) + lr_end
                }
            }
            Self::Constant => lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_matches_transformers() {
        // transformers: warmup 2 of 10 steps, peak 1: [0, .5, 1, .875, .75, ...]
        let s = Schedule::Linear;
        let got: Vec<f64> = (0..5).map(|t| s.lr_at(t, 10, 2, 1.0)).collect();
        assert_eq!(got, vec![0.0, 0.5, 1.0, 0.875, 0.75]);
        assert_eq!(s.lr_at(10, 10, 2, 1.0), 0.0);
        let p = Schedule::Polynomial {
            power: 2.0,
            lr_end: 0.1,
        };
        // halfway through decay: 0.9·0.25 + 0.1
        assert!((p.lr_at(6, 10, 2, 1.0) - 0.325).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr_at(9, 10, 2, 3.0), 3.0);
    }
}
