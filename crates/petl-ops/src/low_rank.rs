use crate::dropout::KeepMask;
use crate::gemm::{rows_times, weight_grad, Weight};
use crate::rows::{as_rows, with_last};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// LoRA's delta `scale · dropout(x) · Aᵀ · Bᵀ`, `x` `[..., in]`, `A` `[r, in]`, `B` `[out, r]`,
/// as one op: the input dropout and the scaling happen inside, the `[rows, r]` bottleneck is
/// recomputed in the backward pass rather than kept (`r` is small), and the backward computes
/// all three gradients together (`dB = s·gᵀ·h`, `dh = s·g·B`, `dA = dhᵀ·x̃`, `dx = dh·A ⊙ m`).
/// Composed, the same function is a dropout, two matmuls, two transposes, a scaling and two
/// reshapes, each a graph node whose input gradient candle accumulates through a zero-filled
/// buffer.
///
/// Off the CPU, or with other dtypes, it composes candle ops.
pub fn low_rank(
    x: &Tensor,
    down: &Tensor,
    up: &Tensor,
    scale: f64,
    dropout: Option<&KeepMask>,
) -> Result<Tensor> {
    let in_dim = x.dim(candle_core::D::Minus1)?;
    let (r, a_in) = down.dims2()?;
    let (out_dim, b_r) = up.dims2()?;
    if a_in != in_dim || b_r != r {
        return Err(candle_core::Error::Msg(format!(
            "low rank: x has {in_dim} features, A is {r}×{a_in}, B is {out_dim}×{b_r}"
        )));
    }
    if !crate::norm::fused(x, &[down, up]) {
        let x = match dropout {
            Some(mask) => mask.apply(x)?,
            None => x.clone(),
        };
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let y = (x2.matmul(&down.t()?)?.matmul(&up.t()?)? * scale)?;
        return y.reshape(with_last(x.dims(), out_dim));
    }
    if let Some(mask) = dropout {
        if mask.len() != x.elem_count() {
            return Err(candle_core::Error::Msg(format!(
                "low rank: a dropout mask of {} elements for an input of {:?}",
                mask.len(),
                x.dims()
            )));
        }
    }
    // No reshape nodes around the op (see `crate::rows`): it folds the rows itself.
    x.contiguous()?.apply_op3(
        &down.contiguous()?,
        &up.contiguous()?,
        LowRank {
            scale: scale as f32,
            dropout: dropout.cloned(),
        },
    )
}

struct LowRank {
    scale: f32,
    dropout: Option<KeepMask>,
}

impl LowRank {
    /// The op's input after dropout, `x ⊙ m` (borrowed unchanged without dropout).
    fn dropped<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match &self.dropout {
            Some(mask) => {
                let mut v = x.to_vec();
                mask.apply_from(0, &mut v);
                std::borrow::Cow::Owned(v)
            }
            None => std::borrow::Cow::Borrowed(x),
        }
    }
}

impl CustomOp3 for LowRank {
    fn name(&self) -> &'static str {
        "petl-low-rank"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let rows_layout = as_rows(xl)?;
        let (rows, in_dim) = rows_layout.shape().dims2()?;
        let (r, _) = al.shape().dims2()?;
        let (out_dim, _) = bl.shape().dims2()?;
        let x = crate::cpu::f32_slice(x, xl, self.name())?;
        let a = crate::cpu::f32_slice(a, al, self.name())?;
        let b = crate::cpu::f32_slice(b, bl, self.name())?;
        let xd = self.dropped(x);
        let mut h = rows_times(&xd, rows, a, (r, in_dim), Weight::Transposed, None);
        // Scaling the narrow bottleneck is r/out of the cost of scaling the output.
        h.iter_mut().for_each(|v| *v *= self.scale);
        let y = rows_times(&h, rows, b, (out_dim, r), Weight::Transposed, None);
        Ok((CpuStorage::F32(y), with_last(xl.dims(), out_dim)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let wants = (x.track_op(), a.track_op(), b.track_op());
        let grad = grad.contiguous()?;
        let (r, in_dim) = a.dims2()?;
        let (out_dim, _) = b.dims2()?;
        let rows = x.elem_count() / in_dim.max(1);
        let (dx, da, db) = crate::cpu::with_f32(x, name, |x| {
            crate::cpu::with_f32(a, name, |a| {
                crate::cpu::with_f32(b, name, |b| {
                    crate::cpu::with_f32(&grad, name, |g| {
                        let xd = self.dropped(x);
                        let db = wants.2.then(|| {
                            let mut h = rows_times(&xd, rows, a, (r, in_dim), Weight::Transposed, None);
                            h.iter_mut().for_each(|v| *v *= self.scale);
                            weight_grad(g, &h, rows, (out_dim, r))
                        });
                        let mut dh = rows_times(g, rows, b, (out_dim, r), Weight::AsStored, None);
                        dh.iter_mut().for_each(|v| *v *= self.scale);
                        let da = wants.1.then(|| weight_grad(&dh, &xd, rows, (r, in_dim)));
                        let dx = wants.0.then(|| {
                            let mut dx = rows_times(&dh, rows, a, (r, in_dim), Weight::AsStored, None);
                            if let Some(mask) = &self.dropout {
                                mask.apply_from(0, &mut dx);
                            }
                            dx
                        });
                        (dx, da, db)
                    })
                })
            })
        })????;
        let dev = x.device();
        Ok((
            dx.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?,
            da.map(|v| Tensor::from_vec(v, (r, in_dim), dev)).transpose()?,
            db.map(|v| Tensor::from_vec(v, (out_dim, r), dev)).transpose()?,
        ))
    }
}
