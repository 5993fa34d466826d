use crate::rows::{as_rows, with_last};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// The low-rank product `x · Aᵀ · Bᵀ` of LoRA-style deltas, `x` `[..., in]`, `A` `[r, in]`,
/// `B` `[out, r]`, as one op: the `[rows, r]` bottleneck is not kept for the backward pass
/// (it is recomputed there: `r` is small), and the backward computes all three gradients
/// together (`dB = gᵀ·h`, `dh = g·B`, `dA = dhᵀ·x`, `dx = dh·A`) instead of through four
/// generic graph nodes with their reshapes.
///
/// Off the CPU, or with other dtypes, it composes candle ops.
pub fn low_rank(x: &Tensor, down: &Tensor, up: &Tensor) -> Result<Tensor> {
    let in_dim = x.dim(candle_core::D::Minus1)?;
    let (r, a_in) = down.dims2()?;
    let (out_dim, b_r) = up.dims2()?;
    if a_in != in_dim || b_r != r {
        return Err(candle_core::Error::Msg(format!(
            "low rank: x has {in_dim} features, A is {r}×{a_in}, B is {out_dim}×{b_r}"
        )));
    }
    if !crate::norm::fused(x, &[down, up]) {
        let rows = x.elem_count() / in_dim.max(1);
        let out_dims = with_last(x.dims(), out_dim);
        let x2 = x.reshape((rows, in_dim))?;
        return x2.matmul(&down.t()?)?.matmul(&up.t()?)?.reshape(out_dims);
    }
    // No reshape nodes around the op (see `crate::rows`): it folds the rows itself.
    x.contiguous()?.apply_op3(down, up, LowRank)
}

struct LowRank;

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
        let x_rows = as_rows(xl)?;
        let (rows, in_dim) = x_rows.shape().dims2()?;
        let (r, _) = al.shape().dims2()?;
        let (out_dim, _) = bl.shape().dims2()?;
        let h = x.matmul(a, (1, rows, r, in_dim), &x_rows, &al.transpose(0, 1)?)?;
        let hl = Layout::contiguous((rows, r));
        let y = h.matmul(b, (1, rows, out_dim, r), &hl, &bl.transpose(0, 1)?)?;
        Ok((y, with_last(xl.dims(), out_dim)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let wants = (x.track_op(), a.track_op(), b.track_op());
        // Detached so the gradient computation records no graph of its own.
        let in_dim = x.dim(candle_core::D::Minus1)?;
        let rows = x.elem_count() / in_dim.max(1);
        let x_shape = x.shape().clone();
        let grad = grad.reshape((rows, b.dim(0)?))?;
        let (x, a, b) = (x.detach().reshape((rows, in_dim))?, a.detach(), b.detach());
        let h = x.matmul(&a.t()?)?;
        let db = wants.2.then(|| grad.t()?.matmul(&h)).transpose()?;
        let dh = grad.matmul(&b)?;
        let da = wants.1.then(|| dh.t()?.matmul(&x)).transpose()?;
        let dx = wants.0.then(|| dh.matmul(&a)?.reshape(&x_shape)).transpose()?;
        Ok((dx, da, db))
    }
}
