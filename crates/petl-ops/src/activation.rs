use candle_core::{Result, Tensor};

/// A pointwise nonlinearity, named as Hugging Face configs name it (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` (HF `gelu`).
    Gelu,
    /// Tanh approximation of GELU (HF `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
    /// `x·σ(x)` (HF `silu`, `swish`).
    Silu,
    /// Hyperbolic tangent.
    Tanh,
}

impl Activation {
    /// Parses a Hugging Face `hidden_act` string; `None` for names petl does not implement.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            "tanh" => Self::Tanh,
            _ => return None,
        })
    }

    /// The Hugging Face name of this activation.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_new",
            Self::Relu => "relu",
            Self::Silu => "silu",
            Self::Tanh => "tanh",
        }
    }

    /// Applies the activation elementwise.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
            Self::Tanh => x.tanh(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exact_gelu_matches_reference_values() -> Result<()> {
        let x = Tensor::new(&[-1f32, 0., 1., 2.], &Device::Cpu)?;
        let y = Activation::Gelu.forward(&x)?.to_vec1::<f32>()?;
        // x·Φ(x): Φ(-1)=0.158655, Φ(1)=0.841345, Φ(2)=0.977250
        let expect = [-0.158_655_25f32, 0., 0.841_344_7, 1.954_5];
        for (a, e) in y.iter().zip(expect) {
            assert!((a - e).abs() < 1e-4, "{a} vs {e}");
        }
        Ok(())
    }

    #[test]
    fn parses_hf_names() {
        assert_eq!(Activation::from_hf_name("gelu"), Some(Activation::Gelu));
        assert_eq!(Activation::from_hf_name("gelu_new"), Some(Activation::GeluTanh));
        assert_eq!(Activation::from_hf_name("quick_gelu"), None);
    }
}
