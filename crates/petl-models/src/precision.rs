//! The precision the frozen base computes in.

use crate::{ModelError, Result};
use candle_core::{DType, Device};

/// Mixed precision the way autocast does it: the frozen projection weights (every linear of
/// the encoder, and the pooler) are stored and multiplied in half precision, while
/// embeddings, LayerNorms, softmax, the residual stream and every trainable parameter stay in
/// f32 (trainable parameters are their own f32 master copies). Halves the memory of the
/// frozen weights and, on a GPU, runs the matmuls on tensor cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Frozen linears in IEEE half precision; training needs loss scaling.
    F16,
    /// Frozen linears in bfloat16 (CUDA only: candle's CPU matmul has no bf16 kernel).
    Bf16,
}

impl Precision {
    /// The dtype frozen linear weights are stored in.
    pub fn linear_dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    /// Whether training in this precision needs loss scaling (f16's narrow exponent
    /// underflows small gradients).
    pub fn needs_loss_scaling(self) -> bool {
        self == Self::F16
    }

    /// Checks the precision can run on `device`.
    pub fn check(self, device: &Device) -> Result<()> {
        if self == Self::Bf16 && device.is_cpu() {
            return Err(ModelError::BadInput(
                "bf16 needs a CUDA device (candle's CPU matmul has no bf16 kernel); use f16 or f32 on the CPU"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Self::F32),
            "f16" | "fp16" => Ok(Self::F16),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("unknown precision {other:?}: expected f32, f16 or bf16")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        })
    }
}
