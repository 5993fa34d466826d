use crate::cpu::{f32_slice, par_zip2, par_zip3, sigmoid, simd_kernel};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// SwiGLU's gated activation `silu(gate) ⊙ up` (Shazeer, arXiv:2002.05202; the MLP of Llama,
/// Mistral and Qwen2: `down(silu(gate·x) ⊙ up·x)`).
///
/// Contiguous f32 on the CPU is one pass forward, keeps no intermediate, and computes each
/// input's gradient in one pass (`d_gate = g·up·silu'(gate)`, `d_up = g·silu(gate)`); the
/// composed form keeps `silu(gate)` and runs five passes plus candle's accumulation buffers.
/// Other dtypes and devices compose candle ops.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let gate = Tensor::new(&[0f32, 2.], &Device::Cpu)?;
/// let up = Tensor::new(&[5f32, 3.], &Device::Cpu)?;
/// let y = petl_ops::swiglu(&gate, &up)?.to_vec1::<f32>()?;
/// // silu(0) = 0, silu(2) = 2·σ(2) = 1.7616
/// assert!(y[0] == 0.0 && (y[1] - 3.0 * 1.761_594).abs() < 1e-5);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        return Err(candle_core::Error::Msg(format!(
            "swiglu: gate {:?} and up {:?} differ in shape",
            gate.dims(),
            up.dims()
        )));
    }
    if crate::norm::fused(gate, &[up]) {
        return gate.contiguous()?.apply_op2(&up.contiguous()?, Swiglu);
    }
    crate::Activation::Silu.forward(gate)?.mul(up)
}

struct Swiglu;

#[inline(always)]
fn forward_body(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = g * sigmoid(g) * u;
    }
}

/// `dy · up · silu'(gate)`.
#[inline(always)]
fn grad_gate_body(g: &[f32], u: &[f32], dy: &[f32], out: &mut [f32]) {
    for (((o, &g), &u), &dy) in out.iter_mut().zip(g).zip(u).zip(dy) {
        let s = sigmoid(g);
        *o = dy * u * s * (1.0 + g * (1.0 - s));
    }
}

/// `dy · silu(gate)`.
#[inline(always)]
fn grad_up_body(g: &[f32], dy: &[f32], out: &mut [f32]) {
    for ((o, &g), &dy) in out.iter_mut().zip(g).zip(dy) {
        *o = dy * g * sigmoid(g);
    }
}

simd_kernel!(pub(crate) fn swiglu_forward(g: &[f32], u: &[f32], out: &mut [f32]) => forward_body);
simd_kernel!(pub(crate) fn swiglu_grad_gate(g: &[f32], u: &[f32], dy: &[f32], out: &mut [f32]) => grad_gate_body);
simd_kernel!(pub(crate) fn swiglu_grad_up(g: &[f32], dy: &[f32], out: &mut [f32]) => grad_up_body);

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        "petl-swiglu"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        gl: &Layout,
        u: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(g, gl, self.name())?;
        let u = f32_slice(u, ul, self.name())?;
        Ok((
            CpuStorage::F32(par_zip2(g, u, swiglu_forward)),
            gl.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d_gate = if gate.track_op() {
            Some(gate.apply_op3_no_bwd(up, &grad, &SwigluGradGate)?)
        } else {
            None
        };
        let d_up = if up.track_op() {
            Some(gate.apply_op2_no_bwd(&grad, &SwigluGradUp)?)
        } else {
            None
        };
        Ok((d_gate, d_up))
    }
}

struct SwigluGradGate;

impl CustomOp3 for SwigluGradGate {
    fn name(&self) -> &'static str {
        "petl-swiglu-grad-gate"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        gl: &Layout,
        u: &CpuStorage,
        ul: &Layout,
        dy: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(g, gl, self.name())?;
        let u = f32_slice(u, ul, self.name())?;
        let dy = f32_slice(dy, dl, self.name())?;
        Ok((
            CpuStorage::F32(par_zip3(g, u, dy, swiglu_grad_gate)),
            gl.shape().clone(),
        ))
    }
}

struct SwigluGradUp;

impl CustomOp2 for SwigluGradUp {
    fn name(&self) -> &'static str {
        "petl-swiglu-grad-up"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        gl: &Layout,
        dy: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(g, gl, self.name())?;
        let dy = f32_slice(dy, dl, self.name())?;
        Ok((
            CpuStorage::F32(par_zip2(g, dy, swiglu_grad_up)),
            gl.shape().clone(),
        ))
    }
}
