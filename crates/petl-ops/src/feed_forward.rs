use crate::activation::{Activation, Pointwise};
use crate::gemm::{rows_times, Weight};
use crate::rows::with_last;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;

/// One frozen projection of a feed-forward network: `weight` `[out, in]`, optional `bias`.
#[derive(Debug, Clone, Copy)]
pub struct Projection<'a> {
    /// The weight, `[out, in]` (PyTorch's `nn.Linear` layout).
    pub weight: &'a Tensor,
    /// The bias, `[out]`.
    pub bias: Option<&'a Tensor>,
}

/// A transformer's position-wise feed-forward network `act(x·W₁ᵀ + b₁)·W₂ᵀ + b₂` with every
/// weight frozen, `x` `[..., d]`.
///
/// On contiguous f32 CPU tensors with an activation petl has a kernel for (GELU, SiLU, ReLU)
/// this is one op that keeps only the inner pre-activation: its backward computes
/// `dx = ((g·W₂) ⊙ act'(u))·W₁` in one go. Composed, it is three graph nodes, two of them over
/// the wide inner activations, each of which candle's backward accumulates through a
/// zero-filled buffer, and the activation's output is kept as well. Elsewhere (other dtypes or
/// devices, trained weights, other activations) it composes [`crate::linear`] and the
/// activation.
pub fn feed_forward(x: &Tensor, up: Projection<'_>, act: Activation, down: Projection<'_>) -> Result<Tensor> {
    let params: Vec<&Tensor> = [Some(up.weight), up.bias, Some(down.weight), down.bias]
        .into_iter()
        .flatten()
        .collect();
    let kernel = act.pointwise();
    let fusable = crate::norm::fused(x, &params) && params.iter().all(|p| !p.track_op());
    let (inner, d_in) = up.weight.dims2()?;
    let (d_out, down_in) = down.weight.dims2()?;
    let (Some(kernel), true) = (kernel, fusable) else {
        let h = act.forward(&crate::linear(x, up.weight, up.bias)?)?;
        return crate::linear(&h, down.weight, down.bias);
    };
    if x.dim(candle_core::D::Minus1)? != d_in || down_in != inner {
        return Err(candle_core::Error::Msg(format!(
            "feed forward: input {:?}, W₁ {inner}×{d_in}, W₂ {d_out}×{down_in}",
            x.dims()
        )));
    }
    let bias = |b: Option<&Tensor>, n: usize| b.map(|b| crate::rows::as_vector(b, n)).transpose();
    x.contiguous()?.apply_op1(FeedForward {
        up: (up.weight.contiguous()?, bias(up.bias, inner)?),
        down: (down.weight.contiguous()?, bias(down.bias, d_out)?),
        act: kernel,
        pre_activation: OnceLock::new(),
    })
}

struct FeedForward {
    up: (Tensor, Option<Tensor>),
    down: (Tensor, Option<Tensor>),
    act: Pointwise,
    /// `x·W₁ᵀ + b₁` from the forward pass, for the backward's `act'`.
    pre_activation: OnceLock<Vec<f32>>,
}

const NAME: &str = "petl-feed-forward";

/// `f(weight, bias)` on the f32 data of a projection.
fn with_projection<R>(
    (w, b): &(Tensor, Option<Tensor>),
    f: impl FnOnce(&[f32], (usize, usize), Option<&[f32]>) -> R,
) -> Result<R> {
    let dims = w.dims2()?;
    crate::cpu::with_f32(w, NAME, |w| match b {
        Some(b) => crate::cpu::with_f32(b, NAME, |b| f(w, dims, Some(b))),
        None => Ok(f(w, dims, None)),
    })?
}

/// `f` over matching blocks of two equal-length slices, in parallel, in place on the second.
fn par_pairs(a: &[f32], b: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    let chunk = 1 << 14;
    b.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, o)| f(&a[i * chunk..][..o.len()], o));
}

impl CustomOp1 for FeedForward {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = crate::cpu::f32_slice(x, xl, NAME)?;
        let (inner, d_in) = self.up.0.dims2()?;
        let rows = x.len() / d_in.max(1);
        let u = with_projection(&self.up, |w, dims, b| {
            rows_times(x, rows, w, dims, Weight::Transposed, b)
        })?;
        let h = crate::cpu::par_map(&u, |u, h| self.act.forward_into(u, h));
        let y = with_projection(&self.down, |w, dims, b| {
            rows_times(&h, rows, w, dims, Weight::Transposed, b)
        })?;
        let d_out = self.down.0.dim(0)?;
        debug_assert_eq!(u.len(), rows * inner);
        // A second forward of the same op value cannot happen: candle builds one per call.
        let _ = self.pre_activation.set(u);
        Ok((CpuStorage::F32(y), with_last(xl.dims(), d_out)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let Some(u) = self.pre_activation.get() else {
            return Err(candle_core::Error::Msg(
                "feed forward: backward before the forward pass".into(),
            ));
        };
        let grad = grad.contiguous()?;
        let (inner, _) = self.up.0.dims2()?;
        let rows = u.len() / inner.max(1);
        let mut dh = crate::cpu::with_f32(&grad, NAME, |g| {
            with_projection(&self.down, |w, dims, _| {
                rows_times(g, rows, w, dims, Weight::AsStored, None)
            })
        })??;
        // dh ← act'(u) ⊙ dh, block by block (each block copied while it is in cache).
        par_pairs(u, &mut dh, |u, d| {
            let g = d.to_vec();
            self.act.backward_into(u, &g, d);
        });
        let dx = with_projection(&self.up, |w, dims, _| {
            rows_times(&dh, rows, w, dims, Weight::AsStored, None)
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// A gated feed-forward network with every weight frozen, SwiGLU's
/// `(silu(x·Gᵀ + b_g) ⊙ (x·Uᵀ + b_u))·Dᵀ + b_d` (Llama, Mistral, Qwen2), `x` `[..., d]`.
///
/// On contiguous f32 CPU tensors this is one op keeping the gate's and up-projection's
/// pre-activations; its backward computes `dx = d_gate·G + d_up·U` in one go. Composed, it is
/// four graph nodes over the wide inner activations, each accumulated by candle's backward
/// through a zero-filled buffer. Elsewhere it composes [`crate::linear`] and [`crate::swiglu`].
pub fn gated_feed_forward(
    x: &Tensor,
    gate: Projection<'_>,
    up: Projection<'_>,
    down: Projection<'_>,
) -> Result<Tensor> {
    let params: Vec<&Tensor> = [gate, up, down]
        .iter()
        .flat_map(|p| [Some(p.weight), p.bias])
        .flatten()
        .collect();
    let fusable = crate::norm::fused(x, &params) && params.iter().all(|p| !p.track_op());
    if !fusable {
        let inner = crate::swiglu(
            &crate::linear(x, gate.weight, gate.bias)?,
            &crate::linear(x, up.weight, up.bias)?,
        )?;
        return crate::linear(&inner, down.weight, down.bias);
    }
    let (inner, d_in) = gate.weight.dims2()?;
    let (d_out, down_in) = down.weight.dims2()?;
    if x.dim(candle_core::D::Minus1)? != d_in || up.weight.dims() != gate.weight.dims() || down_in != inner {
        return Err(candle_core::Error::Msg(format!(
            "gated feed forward: input {:?}, gate {inner}×{d_in}, up {:?}, down {d_out}×{down_in}",
            x.dims(),
            up.weight.dims()
        )));
    }
    let bias = |b: Option<&Tensor>, n: usize| b.map(|b| crate::rows::as_vector(b, n)).transpose();
    x.contiguous()?.apply_op1(GatedFeedForward {
        gate: (gate.weight.contiguous()?, bias(gate.bias, inner)?),
        up: (up.weight.contiguous()?, bias(up.bias, inner)?),
        down: (down.weight.contiguous()?, bias(down.bias, d_out)?),
        pre_activations: OnceLock::new(),
    })
}

struct GatedFeedForward {
    gate: (Tensor, Option<Tensor>),
    up: (Tensor, Option<Tensor>),
    down: (Tensor, Option<Tensor>),
    /// The gate's and the up-projection's outputs from the forward pass.
    pre_activations: OnceLock<(Vec<f32>, Vec<f32>)>,
}

impl CustomOp1 for GatedFeedForward {
    fn name(&self) -> &'static str {
        "petl-gated-feed-forward"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = crate::cpu::f32_slice(x, xl, NAME)?;
        let (_, d_in) = self.gate.0.dims2()?;
        let rows = x.len() / d_in.max(1);
        let project = |p| {
            with_projection(p, |w, dims, b| {
                rows_times(x, rows, w, dims, Weight::Transposed, b)
            })
        };
        let (g, u) = (project(&self.gate)?, project(&self.up)?);
        let chunk = 1 << 14;
        let h = crate::cpu::par_filled(g.len(), chunk, |i, o| {
            let at = i * chunk;
            crate::swiglu::swiglu_forward(&g[at..][..o.len()], &u[at..][..o.len()], o)
        });
        let y = with_projection(&self.down, |w, dims, b| {
            rows_times(&h, rows, w, dims, Weight::Transposed, b)
        })?;
        let d_out = self.down.0.dim(0)?;
        // A second forward of the same op value cannot happen: candle builds one per call.
        let _ = self.pre_activations.set((g, u));
        Ok((CpuStorage::F32(y), with_last(xl.dims(), d_out)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let Some((g, u)) = self.pre_activations.get() else {
            return Err(candle_core::Error::Msg(
                "gated feed forward: backward before the forward pass".into(),
            ));
        };
        let grad = grad.contiguous()?;
        let (inner, _) = self.gate.0.dims2()?;
        let rows = g.len() / inner.max(1);
        let dh = crate::cpu::with_f32(&grad, NAME, |dy| {
            with_projection(&self.down, |w, dims, _| {
                rows_times(dy, rows, w, dims, Weight::AsStored, None)
            })
        })??;
        let chunk = 1 << 14;
        let d_gate = crate::cpu::par_filled(g.len(), chunk, |i, o| {
            let at = i * chunk;
            let n = o.len();
            crate::swiglu::swiglu_grad_gate(&g[at..][..n], &u[at..][..n], &dh[at..][..n], o)
        });
        let d_up = crate::cpu::par_filled(g.len(), chunk, |i, o| {
            let at = i * chunk;
            crate::swiglu::swiglu_grad_up(&g[at..][..o.len()], &dh[at..][..o.len()], o)
        });
        let back = |p, d: &[f32]| {
            with_projection(p, |w, dims, _| {
                rows_times(d, rows, w, dims, Weight::AsStored, None)
            })
        };
        let mut dx = back(&self.gate, &d_gate)?;
        let from_up = back(&self.up, &d_up)?;
        par_pairs(&from_up, &mut dx, |a, o| {
            for (o, &a) in o.iter_mut().zip(a) {
                *o += a;
            }
        });
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}
