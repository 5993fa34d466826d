use crate::cpu::{f32_slice, rows_per_task};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// Rotary position embedding (Su et al., arXiv:2104.09864) of projected attention heads, fused
/// with the move to per-head layout: `x` `[batch, seq, heads·d]` (a projection's output) becomes
/// `[batch, heads, seq, d]` with each head's pairs `(x_i, x_{i+d/2})` rotated by the angle
/// whose cosine and sine are `cos`, `sin` `[batch, seq, d/2]`. This is Hugging Face's
/// `q·cos + rotate_half(q)·sin` with `cos = cat(c, c)` (Llama, Mistral, Qwen2), not the
/// interleaved-pairs layout of the original paper.
///
/// Contiguous f32 on the CPU runs one pass forward, and the backward is the inverse rotation
/// with the transpose back, in one pass (`cos` and `sin` are constants: they get no
/// gradient). Other dtypes and devices compose candle ops.
///
/// ```
/// use candle_core::{Device, Tensor};
/// // One head of width 2 at angle π/2: (x₀, x₁) ↦ (−x₁, x₀).
/// let x = Tensor::new(&[[[1f32, 2.]]], &Device::Cpu)?;
/// let cos = Tensor::new(&[[[0f32]]], &Device::Cpu)?;
/// let sin = Tensor::new(&[[[1f32]]], &Device::Cpu)?;
/// let y = petl_ops::rotary_heads(&x, 1, &cos, &sin)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![-2., 1.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn rotary_heads(x: &Tensor, heads: usize, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (batch, seq, width) = x.dims3()?;
    let d = width / heads.max(1);
    if heads == 0 || d * heads != width || d % 2 != 0 {
        return Err(candle_core::Error::Msg(format!(
            "rotary: width {width} is not {heads} heads of an even size"
        )));
    }
    let half = d / 2;
    for t in [cos, sin] {
        if t.dims() != [batch, seq, half] {
            return Err(candle_core::Error::Msg(format!(
                "rotary: angles have shape {:?}, expected [{batch}, {seq}, {half}]",
                t.dims()
            )));
        }
    }
    if crate::norm::fused(x, &[cos, sin]) {
        return x.contiguous()?.apply_op1(Rotary {
            heads,
            cos: cos.contiguous()?,
            sin: sin.contiguous()?,
        });
    }
    let x = x.reshape((batch, seq, heads, d))?.transpose(1, 2)?;
    let c = cos.to_dtype(x.dtype())?.unsqueeze(1)?;
    let s = sin.to_dtype(x.dtype())?.unsqueeze(1)?;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let first = (x1.broadcast_mul(&c)? - x2.broadcast_mul(&s)?)?;
    let second = (x2.broadcast_mul(&c)? + x1.broadcast_mul(&s)?)?;
    Tensor::cat(&[&first, &second], 3)
}

/// The forward op; `cos`/`sin` are `[batch, seq, d/2]`, contiguous.
struct Rotary {
    heads: usize,
    cos: Tensor,
    sin: Tensor,
}

/// The angles' f32 slices (CPU, contiguous: checked by the caller).
fn angles<'a>(
    cos: &'a CpuStorage,
    cl: &Layout,
    sin: &'a CpuStorage,
    sl: &Layout,
) -> Result<(&'a [f32], &'a [f32])> {
    Ok((
        f32_slice(cos, cl, "petl-rotary")?,
        f32_slice(sin, sl, "petl-rotary")?,
    ))
}

/// Rotates one head row `x` (width `2·c.len()`) into `out`; `sign` −1 is the inverse rotation.
#[inline(always)]
fn rotate(x: &[f32], c: &[f32], s: &[f32], sign: f32, out: &mut [f32]) {
    let half = c.len();
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for i in 0..half {
        let sn = sign * s[i];
        o1[i] = x1[i] * c[i] - x2[i] * sn;
        o2[i] = x2[i] * c[i] + x1[i] * sn;
    }
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "petl-rotary"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(x, xl, self.name())?;
        let (batch, seq, width) = xl.shape().dims3()?;
        let heads = self.heads;
        let d = width / heads;
        let half = d / 2;
        let (cs, cl) = self.cos.storage_and_layout();
        let (ss, sl) = self.sin.storage_and_layout();
        let (Storage::Cpu(cs), Storage::Cpu(ss)) = (&*cs, &*ss) else {
            return Err(candle_core::Error::Msg("rotary: angles on another device".into()));
        };
        let (cos, sin) = angles(cs, cl, ss, sl)?;
        // Output blocks are whole heads `[seq, d]` of one batch row.
        let block = seq * d;
        let chunk = rows_per_task(block) * block;
        let out = crate::cpu::par_filled(batch * heads * block, chunk, |i, o| {
            for (j, head) in o.chunks_exact_mut(block).enumerate() {
                let bh = i * (chunk / block) + j;
                let (b, h) = (bh / heads, bh % heads);
                for (t, row) in head.chunks_exact_mut(d).enumerate() {
                    let at = b * seq + t;
                    let src = &x[at * width + h * d..][..d];
                    let ang = at * half..(at + 1) * half;
                    rotate(src, &cos[ang.clone()], &sin[ang], 1.0, row);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((batch, heads, seq, d))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let back = RotaryBackward {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// `[batch, heads, seq, d]` gradient → `[batch, seq, heads·d]`, rotated back.
struct RotaryBackward {
    cos: Tensor,
    sin: Tensor,
}

impl CustomOp1 for RotaryBackward {
    fn name(&self) -> &'static str {
        "petl-rotary-backward"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(g, gl, self.name())?;
        let (batch, heads, seq, d) = gl.shape().dims4()?;
        let half = d / 2;
        let width = heads * d;
        let (cs, cl) = self.cos.storage_and_layout();
        let (ss, sl) = self.sin.storage_and_layout();
        let (Storage::Cpu(cs), Storage::Cpu(ss)) = (&*cs, &*ss) else {
            return Err(candle_core::Error::Msg("rotary: angles on another device".into()));
        };
        let (cos, sin) = angles(cs, cl, ss, sl)?;
        let chunk = rows_per_task(width) * width;
        let out = crate::cpu::par_filled(batch * seq * width, chunk, |i, o| {
            for (j, row) in o.chunks_exact_mut(width).enumerate() {
                let at = i * (chunk / width) + j;
                let (b, t) = (at / seq, at % seq);
                let ang = at * half..(at + 1) * half;
                for (h, head) in row.chunks_exact_mut(d).enumerate() {
                    let src = &g[((b * heads + h) * seq + t) * d..][..d];
                    rotate(src, &cos[ang.clone()], &sin[ang.clone()], -1.0, head);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((batch, seq, width))))
    }
}
