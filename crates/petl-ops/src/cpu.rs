//! Scalar kernels and row-parallel helpers for petl's fused CPU ops.
//!
//! The math functions are written branch-free over `f32` so that the loops calling them
//! auto-vectorise: calling libm's `expf`/`erff` per element was a tenth of a MiniLM forward.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};
use rayon::prelude::*;

/// Elements a parallel task gets at least: below this the fork/join costs more than it saves.
const MIN_TASK_ELEMS: usize = 16 * 1024;

/// The contiguous `f32` slice a layout addresses, or an error naming the op when the storage is
/// another dtype or the layout strided (callers fall back to the generic path before that).
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &'static str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        (CpuStorage::F32(_), None) => Err(candle_core::Error::Msg(format!("{op}: strided input"))),
        _ => Err(candle_core::Error::Msg(format!(
            "{op}: {:?} input on the f32 kernel",
            s.dtype()
        ))),
    }
}

/// Runs `f` on the contiguous f32 CPU data of `t` (an error naming `op` otherwise).
pub(crate) fn with_f32<R>(
    t: &candle_core::Tensor,
    op: &'static str,
    f: impl FnOnce(&[f32]) -> R,
) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        return Err(candle_core::Error::Msg(format!("{op}: a tensor off the CPU")));
    };
    Ok(f(f32_slice(s, l, op)?))
}

/// Rows of `d` elements per parallel task.
pub(crate) fn rows_per_task(d: usize) -> usize {
    (MIN_TASK_ELEMS / d.max(1)).max(1)
}

/// A new vector of `n` floats, filled in parallel chunks of `chunk` by `f(chunk_index, chunk)`.
pub(crate) fn par_filled(n: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut v = vec![0f32; n];
    v.par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| f(i, c));
    v
}

/// `f(input_row_block, output_row_block)` over blocks of whole rows in parallel, into a new
/// vector as long as `input`.
pub(crate) fn par_rows(input: &[f32], d: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let chunk = rows_per_task(d) * d;
    par_filled(input.len(), chunk, |i, o| f(&input[i * chunk..][..o.len()], o))
}

/// `f(input_block, output_block)` over blocks of an elementwise map in parallel, into a new
/// vector as long as `input`.
pub(crate) fn par_map(input: &[f32], f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    par_rows(input, 1, f)
}

/// `f(a, b, out)` block by block over two equal-length slices in parallel, into a new vector.
pub(crate) fn par_zip2(a: &[f32], b: &[f32], f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync) -> Vec<f32> {
    par_filled(a.len(), MIN_TASK_ELEMS, |i, o| {
        let at = i * MIN_TASK_ELEMS;
        f(&a[at..][..o.len()], &b[at..][..o.len()], o)
    })
}

/// `f(a, b, c, out)` block by block over three equal-length slices in parallel, into a new
/// vector.
pub(crate) fn par_zip3(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(&[f32], &[f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    par_filled(a.len(), MIN_TASK_ELEMS, |i, o| {
        let at = i * MIN_TASK_ELEMS;
        f(&a[at..][..o.len()], &b[at..][..o.len()], &c[at..][..o.len()], o)
    })
}

/// Defines `fn $name(args)` that runs the `#[inline(always)]` kernel `$body` compiled for AVX2
/// and FMA where the CPU has them (eight lanes with fused multiply-adds), and as built
/// elsewhere (baseline x86-64: four lanes of SSE2). Target features only reach code inlined
/// into the function that enables them, hence a named kernel per loop.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the target features were detected on this CPU just above.
                    return unsafe { wide($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the target features were detected on this CPU just above.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const ROUND_MAGIC: f32 = 12_582_912.0;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` to about 1 ulp (Cephes' `expf` polynomial); exactly 0 below `e^-87.3`, as the
/// masked attention scores (−1e9) need.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // max/min rather than clamp: clamp's NaN handling keeps the loop from vectorising.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(-87.3).min(88.7);
    // Round to nearest by the 1.5·2²³ trick: `floor` is a libm call on baseline x86-64 and
    // would stop the loop from vectorising.
    let shifted = xc * LOG2E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    // The integer n, read from the mantissa of 1.5·2²³ + n: `n as i32` would be Rust's
    // saturating cast, which LLVM can only scalarise (a tenth of the loop's speed).
    let ni = (shifted.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if x < -87.3 {
        0.0
    } else {
        e * scale
    }
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), the same approximation
/// PyTorch's vectorised CPU `erf` uses.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly =
        ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_a_few_ulp_and_zero_far_below() {
        let mut worst = 0f64;
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_the_published_bound() {
        // 1.5e-7 in exact arithmetic, plus f32 rounding of the evaluation.
        let mut worst = 0f64;
        for i in -600..=600 {
            let x = i as f32 * 0.01;
            worst = worst.max((erf(x) as f64 - libm_erf(x as f64)).abs());
        }
        assert!(worst < 2.5e-7, "erf off by {worst}");
    }

    /// erf by its Taylor series (|x| ≤ 3) or the continued fraction of erfc, in f64.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) < 2.3e-5 here: the continued fraction converges fast.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            return (1.0 - erfc).copysign(x);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0;
        while term.abs() > 1e-17 || n < 5 {
            sum += term / (2 * n + 1) as f64;
            n += 1;
            term *= -x * x / n as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
