use crate::cpu::{erf, exp, f32_slice, par_zip2, sigmoid, simd_kernel};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

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
    /// The fused kernel of this activation, if petl has one.
    pub(crate) fn pointwise(self) -> Option<Pointwise> {
        match self {
            Self::Gelu => Some(Pointwise::Gelu),
            Self::Silu => Some(Pointwise::Silu),
            Self::Relu => Some(Pointwise::Relu),
            Self::GeluTanh | Self::Tanh => None,
        }
    }

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
        let fused = crate::norm::fused(x, &[]);
        match self {
            Self::Gelu if fused => x.contiguous()?.apply_op1(Pointwise::Gelu),
            Self::Silu if fused => x.contiguous()?.apply_op1(Pointwise::Silu),
            Self::Relu if fused => x.contiguous()?.apply_op1(Pointwise::Relu),
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
            Self::Tanh => x.tanh(),
        }
    }
}

/// Activations petl runs as fused CPU kernels with their derivative written out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pointwise {
    /// `x·Φ(x)`; derivative `Φ(x) + x·φ(x)`.
    Gelu,
    /// `x·σ(x)`; derivative `σ(x)·(1 + x·(1 − σ(x)))`.
    Silu,
    /// `max(0, x)`; derivative 1 above 0, else 0 (candle's composed backward is four passes).
    Relu,
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

impl Pointwise {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        match self {
            Self::Gelu => 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2)),
            Self::Silu => x * sigmoid(x),
            Self::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
        }
    }

    #[inline(always)]
    fn derivative(self, x: f32) -> f32 {
        match self {
            Self::Gelu => 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x),
            Self::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Self::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

impl Pointwise {
    /// `out = f(x)` over a slice, on the widest vector unit the CPU has.
    pub(crate) fn forward_into(self, x: &[f32], out: &mut [f32]) {
        match self {
            Self::Gelu => gelu_forward(x, out),
            Self::Silu => silu_forward(x, out),
            Self::Relu => relu_forward(x, out),
        }
    }

    /// `out = g · f'(x)` over slices.
    pub(crate) fn backward_into(self, x: &[f32], g: &[f32], out: &mut [f32]) {
        match self {
            Self::Gelu => gelu_backward(x, g, out),
            Self::Silu => silu_backward(x, g, out),
            Self::Relu => relu_backward(x, g, out),
        }
    }
}

impl CustomOp1 for Pointwise {
    fn name(&self) -> &'static str {
        match self {
            Self::Gelu => "petl-gelu",
            Self::Silu => "petl-silu",
            Self::Relu => "petl-relu",
        }
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let f = *self;
        let out = crate::cpu::par_map(x, |x, o| match f {
            Self::Gelu => gelu_forward(x, o),
            Self::Silu => silu_forward(x, o),
            Self::Relu => relu_forward(x, o),
        });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &PointwiseBackward(*self),
        )?))
    }
}

/// `g · f'(x)` for a [`Pointwise`] activation `f`.
struct PointwiseBackward(Pointwise);

impl CustomOp2 for PointwiseBackward {
    fn name(&self) -> &'static str {
        "petl-activation-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let g = f32_slice(g, gl, self.name())?;
        let out = match self.0 {
            Pointwise::Gelu => par_zip2(x, g, gelu_backward),
            Pointwise::Silu => par_zip2(x, g, silu_backward),
            Pointwise::Relu => par_zip2(x, g, relu_backward),
        };
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

#[inline(always)]
fn forward_loop(f: Pointwise, x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f.value(v);
    }
}

#[inline(always)]
fn backward_loop(f: Pointwise, x: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(g) {
        *o = g * f.derivative(v);
    }
}

#[inline(always)]
fn gelu_forward_body(x: &[f32], out: &mut [f32]) {
    forward_loop(Pointwise::Gelu, x, out)
}

#[inline(always)]
fn silu_forward_body(x: &[f32], out: &mut [f32]) {
    forward_loop(Pointwise::Silu, x, out)
}

#[inline(always)]
fn gelu_backward_body(x: &[f32], g: &[f32], out: &mut [f32]) {
    backward_loop(Pointwise::Gelu, x, g, out)
}

#[inline(always)]
fn silu_backward_body(x: &[f32], g: &[f32], out: &mut [f32]) {
    backward_loop(Pointwise::Silu, x, g, out)
}

#[inline(always)]
fn relu_forward_body(x: &[f32], out: &mut [f32]) {
    forward_loop(Pointwise::Relu, x, out)
}

#[inline(always)]
fn relu_backward_body(x: &[f32], g: &[f32], out: &mut [f32]) {
    backward_loop(Pointwise::Relu, x, g, out)
}

simd_kernel!(fn relu_forward(x: &[f32], out: &mut [f32]) => relu_forward_body);
simd_kernel!(fn relu_backward(x: &[f32], g: &[f32], out: &mut [f32]) => relu_backward_body);
simd_kernel!(fn gelu_forward(x: &[f32], out: &mut [f32]) => gelu_forward_body);
simd_kernel!(fn silu_forward(x: &[f32], out: &mut [f32]) => silu_forward_body);
simd_kernel!(fn gelu_backward(x: &[f32], g: &[f32], out: &mut [f32]) => gelu_backward_body);
simd_kernel!(fn silu_backward(x: &[f32], g: &[f32], out: &mut [f32]) => silu_backward_body);

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
