//! Diff pruning's settings (Guo et al. 2021, §3): the L0 gates of the first stage and the
//! projection plus fixed-mask fine-tuning that follow. Defaults are the paper's.

use petl_sparse::ValueDType;
use serde::{Deserialize, Serialize};

/// Hard-concrete gates z on every diff entry, trained through the expected-L0 penalty.
///
/// `s = σ((log u − log(1−u) + α)/β)`, `z = min(1, max(0, s·(r−l) + l))`, and the penalty is
/// `λ Σ σ(α − β·log(−l/r))`, the probability that each gate is nonzero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L0Gates {
    /// Lower end l of the stretch interval (l < 0 gives gates an exact 0).
    #[serde(default = "default_lower")]
    pub lower: f64,
    /// Upper end r of the stretch interval (r > 1 gives gates an exact 1).
    #[serde(default = "default_upper")]
    pub upper: f64,
    /// Temperature β. The paper's formulas and code use 1.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Initial log-α of every gate; 5 opens all gates at the start (P(z > 0) ≈ 0.993).
    #[serde(default = "default_alpha_init")]
    pub alpha_init: f64,
    /// Weight λ of the expected-L0 penalty.
    #[serde(default = "default_lambda")]
    pub lambda: f64,
    /// λ per bucket — embeddings, each block, then everything after the blocks (the pooler) —
    /// overriding `lambda`; empty for one λ everywhere (the reference code's
    /// `--sparsity_penalty_per_layer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lambda_per_layer: Vec<f64>,
    /// Learning rate of the gates' own AdamW, held constant (0.1 in the reference code).
    #[serde(default = "default_alpha_lr")]
    pub alpha_lr: f64,
    /// One extra gate per tensor (structured diff pruning, §3.3).
    #[serde(default)]
    pub groups: GroupGates,
    /// Which gate value evaluation, saving and projection use.
    #[serde(default)]
    pub eval_gate: EvalGate,
}

/// How group gates (one per parameter tensor) enter the penalty. Both multiply the gates in
/// the diff: `δᵢ = zᵢ · z_g(i) · wᵢ`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupGates {
    /// No group gates: every entry is gated alone.
    #[default]
    None,
    /// The paper's expectation: `Σ_g P(z_g ≠ 0) · Σ_{i∈g} P(zᵢ ≠ 0)`.
    Product,
    /// The reference code's: `Σᵢ P(zᵢ ≠ 0) + Σ_g P(z_g ≠ 0)`, one group term per tensor.
    Additive,
}

/// The gate used outside training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalGate {
    /// One fixed draw of u (seed 0), as the paper samples z once after training.
    #[default]
    Sample,
    /// The deterministic `min(1, max(0, σ(α)·(r−l) + l))` (Louizos et al.'s test-time gate).
    Expected,
}

/// Magnitude projection onto the L0 ball, then fine-tuning with the mask fixed (§3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Projection {
    /// Fraction of the base parameters the diff keeps (0.005 = 0.5%). The count is exact.
    #[serde(default = "default_density")]
    pub density: f64,
    /// Learning rate of the fixed-mask fine-tuning stage.
    #[serde(default = "default_finetune_lr")]
    pub finetune_lr: f64,
    /// Epochs of that stage; absent for as many as the first stage (the paper: 3, or 5 for
    /// MRPC, STS-B and RTE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune_epochs: Option<u64>,
    /// Precision of the stored diff values.
    #[serde(default = "default_value_dtype")]
    pub value_dtype: ValueDType,
}

impl Default for L0Gates {
    fn default() -> Self {
        Self {
            lower: default_lower(),
            upper: default_upper(),
            temperature: 1.0,
            alpha_init: default_alpha_init(),
            lambda: default_lambda(),
            lambda_per_layer: Vec::new(),
            alpha_lr: default_alpha_lr(),
            groups: GroupGates::None,
            eval_gate: EvalGate::Sample,
        }
    }
}

impl Default for Projection {
    fn default() -> Self {
        Self {
            density: default_density(),
            finetune_lr: default_finetune_lr(),
            finetune_epochs: None,
            value_dtype: default_value_dtype(),
        }
    }
}

impl L0Gates {
    /// Checks the ranges the relaxation needs; `buckets` is the number of λ buckets the model
    /// has (blocks + 2).
    pub(crate) fn validate(&self, buckets: usize) -> Result<(), String> {
        if !(self.lower < 0.0 && self.upper > 1.0) {
            return Err(format!(
                "the stretch interval ({}, {}) must contain [0, 1] strictly (lower < 0 < 1 < upper)",
                self.lower, self.upper
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("temperature {} must be positive", self.temperature));
        }
        if !self.alpha_init.is_finite() {
            return Err("alpha_init must be finite".into());
        }
        let lambdas = std::iter::once(self.lambda).chain(self.lambda_per_layer.iter().copied());
        if let Some(bad) = lambdas.into_iter().find(|l| !(l.is_finite() && *l >= 0.0)) {
            return Err(format!("λ {bad} must be a non-negative number"));
        }
        if !self.lambda_per_layer.is_empty() && self.lambda_per_layer.len() != buckets {
            return Err(format!(
                "lambda_per_layer has {} values; this model needs {buckets} (embeddings, each block, the rest)",
                self.lambda_per_layer.len()
            ));
        }
        if !(self.alpha_lr.is_finite() && self.alpha_lr > 0.0) {
            return Err(format!("alpha_lr {} must be positive", self.alpha_lr));
        }
        Ok(())
    }

    /// λ of `bucket` (0 = embeddings, 1..=blocks, blocks + 1 = the rest).
    pub fn lambda_of(&self, bucket: usize) -> f64 {
        self.lambda_per_layer.get(bucket).copied().unwrap_or(self.lambda)
    }
}

impl Projection {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.density > 0.0 && self.density <= 1.0) {
            return Err(format!("density {} is not in (0, 1]", self.density));
        }
        if !(self.finetune_lr.is_finite() && self.finetune_lr > 0.0) {
            return Err(format!("finetune_lr {} must be positive", self.finetune_lr));
        }
        if self.finetune_epochs == Some(0) {
            return Err("finetune_epochs must be at least 1".into());
        }
        Ok(())
    }

    /// The exact number of entries kept out of `total`: `round(density · total)`, at least 1.
    pub fn keep_count(&self, total: usize) -> usize {
        ((self.density * total as f64).round() as usize).clamp(1, total.max(1))
    }
}

fn default_lower() -> f64 {
    -1.5
}
fn default_upper() -> f64 {
    1.5
}
fn one() -> f64 {
    1.0
}
fn default_alpha_init() -> f64 {
    5.0
}
fn default_lambda() -> f64 {
    1.25e-7
}
fn default_alpha_lr() -> f64 {
    0.1
}
fn default_density() -> f64 {
    0.005
}
fn default_finetune_lr() -> f64 {
    5e-5
}
fn default_value_dtype() -> ValueDType {
    ValueDType::F32
}
