use crate::gemm::Weight;
use crate::rows::{as_rows, as_vector, with_last};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor};

/// `x · Wᵀ + b` over the last dimension of `x`, PyTorch's `nn.Linear` convention.
///
/// Shapes: `x` is `[..., in]`, `weight` is `[out, in]`, `bias` is `[out]`; the result is `[..., out]`.
///
/// A frozen weight (one no gradient flows to: a plain tensor, not derived from a `Var`) runs as
/// petl's own op, whose backward computes only what is trained: `dX = dY·W` and, for a trained
/// bias (BitFit), `db = Σ dY`. candle's generic matmul backward would also compute and keep
/// `dW = dYᵀ·X` for every frozen weight, a third of the step's FLOPs and most of its gradient
/// memory. A trained weight (full fine-tuning, a diffed weight `w + δ`) takes the generic path.
///
/// A frozen weight stored in another dtype than `x` (f16/bf16 under mixed precision) computes
/// in the weight's dtype and returns `x`'s.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let in_dim = *dims
        .last()
        .ok_or_else(|| candle_core::Error::Msg("linear on a scalar".into()))?;
    let (out_dim, w_in) = weight.dims2()?;
    if w_in != in_dim {
        return Err(candle_core::Error::Msg(format!(
            "linear: input has {in_dim} features, weight expects {w_in}"
        )));
    }
    let rows = x.elem_count() / in_dim.max(1);
    let mut out_dims = dims.to_vec();
    let last = out_dims.len() - 1;
    out_dims[last] = out_dim;
    if weight.track_op() {
        let params: Vec<&Tensor> = std::iter::once(weight).chain(bias).collect();
        if crate::norm::fused(x, &params) {
            let x = x.contiguous()?;
            let w = weight.contiguous()?;
            return match bias {
                Some(b) => x.apply_op3(&w, &as_vector(b, out_dim)?, TrainedLinear),
                None => x.apply_op2(&w, TrainedLinear),
            };
        }
        let cast = |t: &Tensor| t.to_dtype(x.dtype());
        let b = bias.map(cast).transpose()?;
        return generic_linear(x, &cast(weight)?, b.as_ref(), rows, in_dim)?.reshape(out_dims);
    }
    if weight.dtype() != x.dtype() {
        // A frozen weight stored in half precision (mixed precision): multiply in the weight's
        // dtype and hand the result back in the activations' dtype. The casts are
        // differentiable, so gradients reach `x` and a trained bias in their own dtype.
        let compute = weight.dtype();
        let b = bias.map(|b| b.to_dtype(compute)).transpose()?;
        return linear(&x.to_dtype(compute)?, weight, b.as_ref())?.to_dtype(x.dtype());
    }
    let bias = bias.map(|b| b.to_dtype(x.dtype())).transpose()?;
    let bias = bias.map(|b| as_vector(&b, out_dim)).transpose()?;
    // The op folds the leading dimensions into one itself (a single 2-D GEMM with a transposed
    // right operand, which candle's CPU and CUDA backends run without copying the weight):
    // a reshape node on either side would cost a zero-filled, accumulated full-size gradient
    // in candle's backward pass.
    let x = x.contiguous()?;
    let op = FrozenWeight {
        weight: weight.clone(),
    };
    match bias {
        Some(b) if b.track_op() => x.apply_op2(&b, op),
        Some(b) => x.apply_op1(FrozenLinear { weight: op, bias: b }),
        None => x.apply_op1(op),
    }
}

fn generic_linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    rows: usize,
    in_dim: usize,
) -> Result<Tensor> {
    let y = x.reshape((rows, in_dim))?.matmul(&weight.t()?)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x · Wᵀ` (+ a trained bias as the second operand) with `W` frozen.
#[derive(Debug, Clone)]
struct FrozenWeight {
    weight: Tensor,
}

/// `x · Wᵀ + b` with both `W` and `b` frozen.
#[derive(Debug, Clone)]
struct FrozenLinear {
    weight: FrozenWeight,
    bias: Tensor,
}

impl FrozenWeight {
    /// `x · Wᵀ` on any backend's storage, `x` `[..., in]` contiguous.
    fn matmul<S: BackendStorage>(&self, x: &S, xl: &Layout, w: &S, wl: &Layout) -> Result<(S, Shape)> {
        let rows = as_rows(xl)?;
        let (m, k) = rows.shape().dims2()?;
        let n = self.weight.dim(0)?;
        let y = x.matmul(w, (1, m, n, k), &rows, &wl.transpose(0, 1)?)?;
        Ok((y, with_last(xl.dims(), n)))
    }

    /// `x · Wᵀ (+ b)` on the CPU: f32 straight on `gemm` with the bias fused (no zero-filled
    /// output, no second pass), other dtypes through candle's matmul.
    fn cpu(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*w else {
            return Err(candle_core::Error::Msg(
                "frozen linear: weight and input on different devices".into(),
            ));
        };
        let (out, inp) = wl.shape().dims2()?;
        let b32 = bias.map(|(b, bl)| f32s(b, bl));
        if let (Some(xs), Some(ws), None | Some(Some(_))) = (f32s(x, xl), f32s(w, wl), b32) {
            let rows = xs.len() / inp.max(1);
            let y = crate::gemm::rows_times(xs, rows, ws, (out, inp), Weight::Transposed, b32.flatten());
            return Ok((CpuStorage::F32(y), with_last(xl.dims(), out)));
        }
        let (mut y, shape) = self.matmul(x, xl, w, wl)?;
        if let Some((b, bl)) = bias {
            add_rows(&mut y, b, bl)?;
        }
        Ok((y, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, x: &candle_core::CudaStorage, xl: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        match &*w {
            Storage::Cuda(w) => self.matmul(x, xl, w, wl),
            _ => Err(candle_core::Error::Msg(
                "frozen linear: weight and input on different devices".into(),
            )),
        }
    }

    /// `dX = dY · W`, the only gradient a frozen weight passes on.
    fn grad_input(&self, x: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        // `grad` records no graph (nothing it derives from is trained), so these reshapes are
        // plain views.
        let out = self.weight.dim(0)?;
        let rows = grad.elem_count() / out.max(1);
        if crate::norm::fused(grad, &[&self.weight]) {
            return Ok(Some(
                grad.contiguous()?.apply_op1_no_bwd(&InputGrad(self.clone()))?,
            ));
        }
        Ok(Some(
            grad.reshape((rows, out))?
                .matmul(&self.weight)?
                .reshape(x.shape())?,
        ))
    }
}

/// `dX = dY · W` for a frozen weight on the CPU in f32, written once (see `crate::gemm`).
struct InputGrad(FrozenWeight);

impl CustomOp1 for InputGrad {
    fn name(&self) -> &'static str {
        "petl-frozen-linear-input-grad"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = crate::cpu::f32_slice(g, gl, self.name())?;
        let (w, wl) = self.0.weight.storage_and_layout();
        let Storage::Cpu(w) = &*w else {
            return Err(candle_core::Error::Msg(
                "frozen linear: weight off the CPU".into(),
            ));
        };
        let w = crate::cpu::f32_slice(w, wl, self.name())?;
        let (out, inp) = wl.shape().dims2()?;
        let rows = g.len() / out.max(1);
        let dx = crate::gemm::rows_times(g, rows, w, (out, inp), Weight::AsStored, None);
        Ok((CpuStorage::F32(dx), with_last(gl.dims(), inp)))
    }
}

/// The contiguous f32 slice a layout addresses, or `None` (another dtype, strided).
fn f32s<'a>(s: &'a CpuStorage, l: &Layout) -> Option<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Some(&v[a..b]),
        _ => None,
    }
}

/// Adds the bias `b` to every row of `y` in place (CPU, any float dtype candle stores).
fn add_rows(y: &mut CpuStorage, b: &CpuStorage, bl: &Layout) -> Result<()> {
    let (start, end) = bl
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("linear: strided bias".into()))?;
    fn add<T: Copy + std::ops::Add<Output = T> + Send + Sync>(y: &mut [T], b: &[T]) {
        use rayon::prelude::*;
        let d = b.len();
        y.par_chunks_mut(crate::cpu::rows_per_task(d) * d)
            .for_each(|block| {
                for row in block.chunks_exact_mut(d) {
                    for (v, &bv) in row.iter_mut().zip(b) {
                        *v = *v + bv;
                    }
                }
            });
    }
    match (y, b) {
        (CpuStorage::F32(y), CpuStorage::F32(b)) => add(y, &b[start..end]),
        (CpuStorage::F64(y), CpuStorage::F64(b)) => add(y, &b[start..end]),
        (CpuStorage::BF16(y), CpuStorage::BF16(b)) => add(y, &b[start..end]),
        (CpuStorage::F16(y), CpuStorage::F16(b)) => add(y, &b[start..end]),
        (y, b) => {
            return Err(candle_core::Error::Msg(format!(
                "linear: bias {:?} on output {:?}",
                b.dtype(),
                y.dtype()
            )))
        }
    }
    Ok(())
}

impl CustomOp1 for FrozenWeight {
    fn name(&self) -> &'static str {
        "petl-frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu(x, xl, None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda(x, xl)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        self.grad_input(x, grad)
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "petl-frozen-linear-bias"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, bl) = self.bias.storage_and_layout();
        let Storage::Cpu(b) = &*b else {
            return Err(candle_core::Error::Msg(
                "frozen linear: bias on another device".into(),
            ));
        };
        self.weight.cpu(x, xl, Some((b, bl)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (y, shape) = self.weight.cuda(x, xl)?;
        let (b, bl) = self.bias.storage_and_layout();
        let Storage::Cuda(b) = &*b else {
            return Err(candle_core::Error::Msg(
                "frozen linear: bias on another device".into(),
            ));
        };
        let yl = Layout::contiguous(&shape);
        let y = y.binary_impl::<candle_core::op::Add>(b, &yl, &bl.broadcast_as(shape.clone())?)?;
        Ok((y, shape))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        self.weight.grad_input(x, grad)
    }
}

/// Frozen weight, trained bias: the second operand is the bias.
impl CustomOp2 for FrozenWeight {
    fn name(&self) -> &'static str {
        "petl-frozen-weight-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu(x, xl, Some((b, bl)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        b: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (y, shape) = self.cuda(x, xl)?;
        let yl = Layout::contiguous(&shape);
        let y = y.binary_impl::<candle_core::op::Add>(b, &yl, &bl.broadcast_as(shape.clone())?)?;
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let out = b.elem_count();
        let db = if !b.track_op() {
            None
        } else if crate::norm::fused(grad, &[]) {
            let grad = grad.contiguous()?;
            let db = crate::cpu::with_f32(&grad, "petl-frozen-weight-linear", |g| {
                crate::gemm::column_sums(g, out)
            })?;
            Some(Tensor::from_vec(db, out, b.device())?)
        } else {
            Some(grad.reshape((grad.elem_count() / out.max(1), out))?.sum(0)?)
        };
        Ok((self.grad_input(x, grad)?, db))
    }
}

/// `x · Wᵀ (+ b)` with `W` (and `b`) trained, on contiguous f32 CPU tensors: the generic
/// composition is a matmul, a transpose, a broadcast add and two reshapes, each a graph node
/// whose input gradient candle accumulates through a zero-filled buffer; this is one node, and
/// its backward computes `dX = g·W`, `dW = gᵀ·x` and `db = Σ g` (each only if needed) straight
/// on `gemm`.
struct TrainedLinear;

impl TrainedLinear {
    fn forward(
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        b: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let name = "petl-trained-linear";
        let xs = crate::cpu::f32_slice(x, xl, name)?;
        let ws = crate::cpu::f32_slice(w, wl, name)?;
        let (out, inp) = wl.shape().dims2()?;
        let rows = xs.len() / inp.max(1);
        let y = crate::gemm::rows_times(xs, rows, ws, (out, inp), Weight::Transposed, b);
        Ok((CpuStorage::F32(y), with_last(xl.dims(), out)))
    }

    /// `(dX, dW, db)`, each computed only when its operand takes part in the graph.
    fn backward(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = "petl-trained-linear";
        let grad = grad.contiguous()?;
        let (out, inp) = w.dims2()?;
        let rows = x.elem_count() / inp.max(1);
        let wants_db = b.is_some_and(|b| b.track_op());
        let (dx, dw, db) = crate::cpu::with_f32(&grad, name, |g| {
            crate::cpu::with_f32(x, name, |xs| {
                crate::cpu::with_f32(w, name, |ws| {
                    let dx = x
                        .track_op()
                        .then(|| crate::gemm::rows_times(g, rows, ws, (out, inp), Weight::AsStored, None));
                    let dw = w
                        .track_op()
                        .then(|| crate::gemm::weight_grad(g, xs, rows, (out, inp)));
                    let db = wants_db.then(|| crate::gemm::column_sums(g, out));
                    (dx, dw, db)
                })
            })
        })???;
        let dx = dx
            .map(|v| Tensor::from_vec(v, x.shape(), x.device()))
            .transpose()?;
        let dw = dw
            .map(|v| Tensor::from_vec(v, (out, inp), w.device()))
            .transpose()?;
        let db = db.map(|v| Tensor::from_vec(v, out, w.device())).transpose()?;
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for TrainedLinear {
    fn name(&self) -> &'static str {
        "petl-trained-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Self::forward(x, xl, w, wl, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = Self::backward(x, w, None, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for TrainedLinear {
    fn name(&self) -> &'static str {
        "petl-trained-linear-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let bs = crate::cpu::f32_slice(b, bl, CustomOp3::name(self))?;
        Self::forward(x, xl, w, wl, Some(bs))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        Self::backward(x, w, Some(b), grad)
    }
}
