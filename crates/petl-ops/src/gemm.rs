//! Row-major f32 products straight on the `gemm` crate, for the frozen linear.
//!
//! candle's CPU matmul zero-fills every output on the calling thread before the product
//! overwrites it, and a bias is then another pass: at MiniLM's width that serial fill was a
//! tenth of the forward. Here the output is written once: by the product, or by a parallel
//! fill of the bias rows that the product accumulates onto.

use rayon::prelude::*;

/// How a weight stored row-major as `[out, in]` enters the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weight {
    /// `x · Wᵀ` (the forward of `nn.Linear`): `x` has `in` columns, the result `out`.
    Transposed,
    /// `x · W` (its input gradient): `x` has `out` columns, the result `in`.
    AsStored,
}

/// `x · op(W)` (+ `bias` on every row) for `x` `[rows, k]` row-major and `w` `[out, in]`
/// row-major, as a new `[rows, n]` vector.
pub(crate) fn rows_times(
    x: &[f32],
    rows: usize,
    w: &[f32],
    (out, inp): (usize, usize),
    op: Weight,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (k, n) = match op {
        Weight::Transposed => (inp, out),
        Weight::AsStored => (out, inp),
    };
    assert_eq!(
        x.len(),
        rows * k,
        "rows_times: input of {} for {rows}×{k}",
        x.len()
    );
    assert_eq!(
        w.len(),
        out * inp,
        "rows_times: weight of {} for {out}×{inp}",
        w.len()
    );
    let len = rows * n;
    if bias.is_none() && k == 0 {
        return vec![0.0; len];
    }
    let mut y: Vec<f32> = Vec::with_capacity(len);
    if let Some(b) = bias {
        let chunk = crate::cpu::rows_per_task(n) * n;
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(chunk.max(1))
            .for_each(|c| {
                for row in c.chunks_mut(n) {
                    for (d, &s) in row.iter_mut().zip(b) {
                        d.write(s);
                    }
                }
            });
    }
    // Element (i, j) of W as the right operand: W[j][i] when transposed, W[i][j] as stored.
    let (rhs_rs, rhs_cs) = match op {
        Weight::Transposed => (1isize, inp as isize),
        Weight::AsStored => (inp as isize, 1isize),
    };
    if len > 0 && k > 0 {
        // SAFETY: `x` holds rows·k and `w` out·in elements, addressed within those bounds by
        // the strides above; `y` has capacity for rows·n, and the product writes every one of
        // them (onto the bias rows written above when `read_dst`, without reading otherwise).
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                bias.is_some(),
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                rhs_cs,
                rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            );
        }
    }
    // SAFETY: all `len` elements were written above, by the bias fill and/or the product.
    unsafe { y.set_len(len) };
    y
}

/// `gᵀ · x` for `g` `[rows, out]` and `x` `[rows, in]` row-major: a weight's gradient
/// `[out, in]`, as a new vector.
pub(crate) fn weight_grad(g: &[f32], x: &[f32], rows: usize, (out, inp): (usize, usize)) -> Vec<f32> {
    assert_eq!(
        g.len(),
        rows * out,
        "weight_grad: gradient of {} for {rows}×{out}",
        g.len()
    );
    assert_eq!(
        x.len(),
        rows * inp,
        "weight_grad: input of {} for {rows}×{inp}",
        x.len()
    );
    let len = out * inp;
    if rows == 0 {
        return vec![0.0; len];
    }
    let mut dw: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        // SAFETY: `g` and `x` hold rows·out and rows·in elements, addressed within bounds by
        // these strides (gᵀ: element (o, r) at r·out + o); `dw` has capacity out·in, and the
        // product writes each element without reading it.
        unsafe {
            gemm::gemm(
                out,
                inp,
                rows,
                dw.as_mut_ptr(),
                1,
                inp as isize,
                false,
                g.as_ptr(),
                out as isize,
                1,
                x.as_ptr(),
                1,
                inp as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            );
        }
    }
    // SAFETY: the product wrote all out·in elements.
    unsafe { dw.set_len(len) };
    dw
}

/// Column sums of `g` `[rows, out]`: a bias's gradient.
pub(crate) fn column_sums(g: &[f32], out: usize) -> Vec<f32> {
    if out == 0 {
        return Vec::new();
    }
    let block = crate::cpu::rows_per_task(out) * out;
    g.par_chunks(block)
        .map(|rows| {
            let mut acc = vec![0f32; out];
            for row in rows.chunks_exact(out) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .reduce(
            || vec![0f32; out],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                a
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_weight_orientations_and_the_bias_match_a_naive_product() {
        let (rows, out, inp) = (5, 3, 4);
        let x: Vec<f32> = (0..rows * inp).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..out * inp).map(|i| (i as f32 * 0.91).cos()).collect();
        let b = [0.5f32, -1.0, 2.0];
        let y = rows_times(&x, rows, &w, (out, inp), Weight::Transposed, Some(&b));
        for r in 0..rows {
            for o in 0..out {
                let want: f32 = (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum::<f32>() + b[o];
                assert!((y[r * out + o] - want).abs() < 1e-5);
            }
        }
        let g: Vec<f32> = (0..rows * out).map(|i| (i as f32 * 0.13).sin()).collect();
        let dx = rows_times(&g, rows, &w, (out, inp), Weight::AsStored, None);
        for r in 0..rows {
            for i in 0..inp {
                let want: f32 = (0..out).map(|o| g[r * out + o] * w[o * inp + i]).sum();
                assert!((dx[r * inp + i] - want).abs() < 1e-5);
            }
        }
        let dw = weight_grad(&g, &x, rows, (out, inp));
        for o in 0..out {
            for i in 0..inp {
                let want: f32 = (0..rows).map(|r| g[r * out + o] * x[r * inp + i]).sum();
                assert!((dw[o * inp + i] - want).abs() < 1e-5);
            }
        }
        let db = column_sums(&g, out);
        for o in 0..out {
            let want: f32 = (0..rows).map(|r| g[r * out + o]).sum();
            assert!((db[o] - want).abs() < 1e-5);
        }
    }
}
