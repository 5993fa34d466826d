//! petl's fused ops against the generic candle composition and finite differences.
//!
//! Each op runs its fused f32 CPU kernel; the same function on f64 inputs takes the generic
//! path (the fused kernels are f32-only), which gives the reference forward and gradients; the
//! reference gradients are themselves checked by central finite differences in f64.

use candle_core::{DType, Device, Result, Tensor, Var};
use petl_ops::Activation;

/// Deterministic values in roughly [-2, 2].
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64, dtype: DType) -> Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_vec(values(n, seed), shape, &Device::Cpu)?.to_dtype(dtype)
}

/// An op under test: inputs (some trained) to output.
type Op = dyn Fn(&[Tensor]) -> Result<Tensor>;

/// Σ w·op(inputs) and the gradient of every input that is a `Var` (`trained[i]`).
fn loss_and_grads(
    op: &Op,
    inputs: &[Tensor],
    trained: &[bool],
    dtype: DType,
) -> Result<(f64, Vec<Option<Vec<f64>>>)> {
    let vars: Vec<Option<Var>> = inputs
        .iter()
        .zip(trained)
        .map(|(t, &tr)| tr.then(|| Var::from_tensor(&t.to_dtype(dtype)?)).transpose())
        .collect::<Result<_>>()?;
    let args: Vec<Tensor> = inputs
        .iter()
        .zip(&vars)
        .map(|(t, v)| match v {
            Some(v) => Ok(v.as_tensor().clone()),
            None => t.to_dtype(dtype),
        })
        .collect::<Result<_>>()?;
    let y = op(&args)?;
    let w = tensor(y.dims(), 99, dtype)?;
    let loss = y.mul(&w)?.sum_all()?;
    let grads = loss.backward()?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let gs = vars
        .iter()
        .map(|v| {
            v.as_ref()
                .map(|v| -> Result<Vec<f64>> {
                    let g = grads.get(v).expect("a trained input has a gradient");
                    g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
                })
                .transpose()
        })
        .collect::<Result<_>>()?;
    Ok((value, gs))
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Checks `op`: fused f32 vs generic f64 forward and gradients, and the f64 gradients vs
/// central differences on a sample of coordinates.
fn check(name: &str, op: &Op, inputs: &[Tensor], trained: &[bool], tol: f64) -> Result<()> {
    let y32 = op(&inputs
        .iter()
        .map(|t| t.to_dtype(DType::F32))
        .collect::<Result<Vec<_>>>()?)?;
    let y64 = op(&inputs
        .iter()
        .map(|t| t.to_dtype(DType::F64))
        .collect::<Result<Vec<_>>>()?)?;
    let fwd = max_abs_diff(
        &y32.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
        &y64.flatten_all()?.to_vec1()?,
    );
    assert!(fwd < tol, "{name}: forward differs by {fwd}");

    let (_, g32) = loss_and_grads(op, inputs, trained, DType::F32)?;
    let (_, g64) = loss_and_grads(op, inputs, trained, DType::F64)?;
    for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => {
                let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let d = max_abs_diff(a, b) / scale;
                assert!(d < tol, "{name}: gradient of input {i} differs by {d} (relative)");
            }
            (None, None) => {}
            _ => panic!("{name}: input {i} has a gradient on one path only"),
        }
    }

    // Finite differences of the f64 reference.
    let h = 1e-6;
    for (i, t) in inputs.iter().enumerate() {
        let Some(analytic) = &g64[i] else { continue };
        let base: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let step = (base.len() / 7).max(1);
        for k in (0..base.len()).step_by(step) {
            let shifted = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[k] += delta;
                let mut args = inputs.to_vec();
                args[i] = Tensor::from_vec(v, t.dims(), &Device::Cpu)?;
                Ok(loss_and_grads(op, &args, &vec![false; inputs.len()], DType::F64)?.0)
            };
            let fd = (shifted(h)? - shifted(-h)?) / (2.0 * h);
            let err = (fd - analytic[k]).abs() / analytic[k].abs().max(1.0);
            assert!(
                err < 1e-5,
                "{name}: input {i}[{k}] analytic {} vs finite difference {fd}",
                analytic[k]
            );
        }
    }
    Ok(())
}

#[test]
fn layer_norm_matches_reference_for_input_scale_and_shift() -> Result<()> {
    let op = |a: &[Tensor]| petl_ops::layer_norm(&a[0], &a[1], &a[2], 1e-5);
    let inputs = [
        tensor(&[3, 5, 24], 1, DType::F64)?,
        ((tensor(&[24], 2, DType::F64)? * 0.5)? + 1.0)?,
        tensor(&[24], 3, DType::F64)?,
    ];
    check(
        "layer_norm (all trained)",
        &op,
        &inputs,
        &[true, true, true],
        2e-5,
    )?;
    check(
        "layer_norm (frozen γ, β)",
        &op,
        &inputs,
        &[true, false, false],
        2e-5,
    )?;
    check(
        "layer_norm (BitFit: β only)",
        &op,
        &inputs,
        &[true, false, true],
        2e-5,
    )
}

#[test]
fn rms_norm_matches_reference() -> Result<()> {
    let op = |a: &[Tensor]| petl_ops::rms_norm(&a[0], &a[1], 1e-6);
    let inputs = [tensor(&[4, 40], 4, DType::F64)?, tensor(&[40], 5, DType::F64)?];
    check("rms_norm", &op, &inputs, &[true, true], 2e-5)?;
    check("rms_norm (frozen γ)", &op, &inputs, &[true, false], 2e-5)
}

#[test]
fn softmax_matches_reference_including_masked_positions() -> Result<()> {
    let op = |a: &[Tensor]| petl_ops::softmax_last_dim(&a[0]);
    let x = (tensor(&[2, 3, 7, 19], 6, DType::F64)? * 3.0)?;
    check("softmax", &op, std::slice::from_ref(&x), &[true], 2e-6)?;
    // A −1e9 additive mask, as attention applies it: masked probabilities are exactly 0.
    let mask = Tensor::from_vec(
        (0..19)
            .map(|j| if j % 4 == 3 { -1e9 } else { 0.0 })
            .collect::<Vec<f64>>(),
        19,
        &Device::Cpu,
    )?;
    let masked = x.broadcast_add(&mask)?.to_dtype(DType::F32)?;
    let p = petl_ops::softmax_last_dim(&masked)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert!(p.iter().enumerate().all(|(i, &v)| (i % 19) % 4 != 3 || v == 0.0));
    Ok(())
}

#[test]
fn gelu_silu_and_relu_match_reference() -> Result<()> {
    let x = (tensor(&[5, 300], 7, DType::F64)? * 2.0)?;
    for act in [Activation::Gelu, Activation::Silu, Activation::Relu] {
        let op = move |a: &[Tensor]| act.forward(&a[0]);
        check(act.hf_name(), &op, std::slice::from_ref(&x), &[true], 1e-6)?;
    }
    Ok(())
}

#[test]
fn frozen_linear_passes_only_the_input_and_bias_gradients() -> Result<()> {
    let x = tensor(&[2, 3, 16], 8, DType::F64)?;
    let w = tensor(&[10, 16], 9, DType::F64)?;
    let b = tensor(&[10], 10, DType::F64)?;
    // Frozen weight (a plain tensor), frozen or trained (BitFit) bias.
    let op = |a: &[Tensor]| petl_ops::linear(&a[0], &a[1], Some(&a[2]));
    check(
        "frozen linear",
        &op,
        &[x.clone(), w.clone(), b.clone()],
        &[true, false, false],
        2e-6,
    )?;
    check(
        "frozen linear, trained bias",
        &op,
        &[x.clone(), w.clone(), b.clone()],
        &[true, false, true],
        2e-6,
    )?;
    // The generic path for a trained weight still gives all three.
    check(
        "trained linear",
        &op,
        &[x.clone(), w.clone(), b.clone()],
        &[true, true, true],
        2e-6,
    )?;
    // A trained weight with a frozen bias (diff pruning's w + δ on a frozen b), and a frozen
    // input (the first layer's adapter under a frozen embedding).
    check(
        "trained weight, frozen bias",
        &op,
        &[x.clone(), w.clone(), b.clone()],
        &[false, true, false],
        2e-6,
    )?;
    let op = |a: &[Tensor]| petl_ops::linear(&a[0], &a[1], None);
    check(
        "trained linear, no bias",
        &op,
        &[x.clone(), w.clone()],
        &[true, true],
        2e-6,
    )?;
    check("frozen linear, no bias", &op, &[x, w], &[true, false], 2e-6)
}

#[test]
fn frozen_linear_matches_matmul_and_keeps_no_weight_gradient() -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&tensor(&[4, 16], 11, DType::F32)?)?;
    let w = tensor(&[6, 16], 12, DType::F32)?;
    let b = tensor(&[6], 13, DType::F32)?;
    let y = petl_ops::linear(x.as_tensor(), &w, Some(&b))?;
    let want = x.as_tensor().matmul(&w.t()?)?.broadcast_add(&b)?;
    let d = (y.clone() - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-5, "forward differs by {d}");
    let grads = y.sum_all()?.backward()?;
    assert!(
        grads.get(&w).is_none() && grads.get(&b).is_none(),
        "frozen operands got a gradient"
    );
    let gx = grads.get(x.as_tensor()).expect("input gradient");
    let want = w.sum(0)?.unsqueeze(0)?.broadcast_as((4, 16))?;
    let d = (gx - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-5);
    let _ = dev;
    Ok(())
}

#[test]
fn dropout_backward_masks_the_gradient() -> Result<()> {
    let x = Var::from_tensor(&tensor(&[64, 64], 14, DType::F32)?)?;
    let d = petl_ops::Dropout::new(0.3);
    let mut rng = petl_ops::DropoutRng::new(3);
    let y = d.forward(x.as_tensor(), Some(&mut rng))?;
    let g = y.sum_all()?.backward()?;
    let gx = g
        .get(x.as_tensor())
        .expect("gradient")
        .flatten_all()?
        .to_vec1::<f32>()?;
    let yv = y.flatten_all()?.to_vec1::<f32>()?;
    let xv = x.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    for ((g, y), x) in gx.iter().zip(&yv).zip(&xv) {
        // The gradient is the mask: y = x·mask.
        assert!((y - x * g).abs() < 1e-6);
        assert!(*g == 0.0 || (g - 1.0 / 0.7).abs() < 1e-5);
    }
    Ok(())
}

#[test]
fn scaled_masked_scores_match_reference() -> Result<()> {
    // [batch 2, heads 3, queries 4, keys 5] logits and a [2, 1, 1, 5] mask with padded keys.
    let x = tensor(&[2, 3, 4, 5], 15, DType::F64)?;
    let mask_of = |m: f64| {
        Tensor::from_vec(
            vec![0., 0., 0., m, m, 0., 0., 0., 0., 0.],
            (2, 1, 1, 5),
            &Device::Cpu,
        )
    };
    let op = |a: &[Tensor]| petl_ops::scale_add_mask(&a[0], 0.125, &a[1]);
    // −1e9 swallows x in f32 but not in f64, so the f32-vs-f64 check uses a moderate mask.
    check(
        "scale_add_mask",
        &op,
        &[x.clone(), mask_of(-30.)?],
        &[true, false],
        1e-6,
    )?;
    let mask = mask_of(-1e9)?;
    let fused = petl_ops::scale_add_mask(&x.to_dtype(DType::F32)?, 0.125, &mask.to_dtype(DType::F32)?)?;
    let want = (x * 0.125)?.broadcast_add(&mask)?.to_dtype(DType::F32)?;
    assert_eq!(
        fused.flatten_all()?.to_vec1::<f32>()?,
        want.flatten_all()?.to_vec1::<f32>()?
    );
    Ok(())
}

#[test]
fn half_precision_frozen_linear_computes_in_f16_and_returns_f32_gradients() -> Result<()> {
    let x = Var::from_tensor(&tensor(&[3, 32], 16, DType::F32)?)?;
    let w = tensor(&[8, 32], 17, DType::F32)?;
    let b = tensor(&[8], 18, DType::F32)?;
    let want = petl_ops::linear(x.as_tensor(), &w, Some(&b))?;
    let (w16, b16) = (w.to_dtype(DType::F16)?, b.to_dtype(DType::F16)?);
    let got = petl_ops::linear(x.as_tensor(), &w16, Some(&b16))?;
    assert_eq!(got.dtype(), DType::F32);
    let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
    let d = (got.clone() - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d / scale < 2e-3, "f16 linear off by {d} (scale {scale})");
    let g = got.sum_all()?.backward()?;
    let gx = g.get(x.as_tensor()).expect("input gradient");
    assert_eq!(gx.dtype(), DType::F32);
    let want_gx = w.sum(0)?.unsqueeze(0)?.broadcast_as((3, 32))?;
    let d = (gx - want_gx)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-2, "f16 input gradient off by {d}");
    Ok(())
}

#[test]
fn low_rank_product_matches_reference_and_finite_differences() -> Result<()> {
    let op = |a: &[Tensor]| petl_ops::low_rank(&a[0], &a[1], &a[2], 1.0, None);
    let inputs = [
        tensor(&[2, 5, 12], 19, DType::F64)?,
        (tensor(&[4, 12], 20, DType::F64)? * 0.3)?,
        (tensor(&[7, 4], 21, DType::F64)? * 0.3)?,
    ];
    check("low_rank (all)", &op, &inputs, &[true, true, true], 2e-6)?;
    check(
        "low_rank (frozen input)",
        &op,
        &inputs,
        &[false, true, true],
        2e-6,
    )?;
    check("low_rank (B only)", &op, &inputs, &[true, false, true], 2e-6)?;
    // Scaled, with dropout on the input (the mask is drawn once and shared by both paths).
    let mask = petl_ops::DropoutRng::new(8).keep_mask(2 * 5 * 12, 0.25);
    let op = move |a: &[Tensor]| petl_ops::low_rank(&a[0], &a[1], &a[2], 2.5, Some(&mask));
    check(
        "low_rank (scaled, dropout)",
        &op,
        &inputs,
        &[true, true, true],
        2e-6,
    )
}

#[test]
fn causal_masked_scores_match_reference() -> Result<()> {
    // [batch 2, heads 3, queries 4, keys 6] against a per-query [2, 1, 4, 6] mask (a causal
    // mask after two cached keys, with a padded key in the second row).
    let x = tensor(&[2, 3, 4, 6], 22, DType::F64)?;
    let mask_of = |m: f64| {
        let mut v = Vec::new();
        for b in 0..2 {
            for q in 0..4 {
                for k in 0..6 {
                    let open = k <= q + 2 && !(b == 1 && k == 0);
                    v.push(if open { 0.0 } else { m });
                }
            }
        }
        Tensor::from_vec(v, (2, 1, 4, 6), &Device::Cpu)
    };
    let op = |a: &[Tensor]| petl_ops::scale_add_mask(&a[0], 0.25, &a[1]);
    check(
        "scale_add_mask (causal)",
        &op,
        &[x.clone(), mask_of(-30.)?],
        &[true, false],
        1e-6,
    )?;
    // The fused kernel against broadcasting, exactly, for a batch-shared mask too.
    for mask in [mask_of(-1e9)?, mask_of(-1e9)?.narrow(0, 1, 1)?] {
        let mask = mask.to_dtype(DType::F32)?;
        let x = x.to_dtype(DType::F32)?;
        let fused = petl_ops::scale_add_mask(&x, 0.25, &mask)?;
        let want = (x * 0.25)?.broadcast_add(&mask)?;
        assert_eq!(
            fused.flatten_all()?.to_vec1::<f32>()?,
            want.flatten_all()?.to_vec1::<f32>()?
        );
    }
    Ok(())
}

#[test]
fn rotary_matches_reference_and_finite_differences() -> Result<()> {
    // [batch 2, seq 3, 4 heads of width 6] with per-row angles (left padding shifts them).
    let op = |a: &[Tensor]| petl_ops::rotary_heads(&a[0], 4, &a[1].cos()?, &a[1].sin()?);
    let inputs = [
        tensor(&[2, 3, 24], 23, DType::F64)?,
        (tensor(&[2, 3, 3], 24, DType::F64)? * 3.0)?,
    ];
    check("rotary", &op, &inputs, &[true, false], 2e-6)?;
    // Against Hugging Face's formula q·cos + rotate_half(q)·sin, written out.
    let x = inputs[0].to_dtype(DType::F32)?;
    let theta = inputs[1].to_dtype(DType::F32)?;
    let got = petl_ops::rotary_heads(&x, 4, &theta.cos()?, &theta.sin()?)?;
    let q = x.reshape((2, 3, 4, 6))?.transpose(1, 2)?;
    let full = Tensor::cat(&[&theta, &theta], 2)?.unsqueeze(1)?;
    let half = Tensor::cat(&[&q.narrow(3, 3, 3)?.neg()?, &q.narrow(3, 0, 3)?], 3)?;
    let want = (q.broadcast_mul(&full.cos()?)? + half.broadcast_mul(&full.sin()?)?)?;
    let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-6, "rotary differs from rotate_half by {d}");
    Ok(())
}

#[test]
fn grouped_query_rows_cycle_through_the_causal_mask() -> Result<()> {
    // [batch 2, kv heads 2, 3 query heads × 4 queries, keys 5] against a [2, 1, 4, 5] mask.
    let x = tensor(&[2, 2, 12, 5], 25, DType::F64)?;
    let mask: Vec<f64> = (0..2 * 4 * 5)
        .map(|i| if (i % 5) <= (i / 5) % 4 + 1 { 0.0 } else { -30.0 })
        .collect();
    let mask = Tensor::from_vec(mask, (2, 1, 4, 5), &Device::Cpu)?;
    let op = |a: &[Tensor]| petl_ops::scale_add_mask(&a[0], 0.5, &a[1]);
    check(
        "scale_add_mask (grouped)",
        &op,
        &[x.clone(), mask.clone()],
        &[true, false],
        1e-6,
    )?;
    // Against broadcasting over an explicit group dimension.
    let (x, mask) = (x.to_dtype(DType::F32)?, mask.to_dtype(DType::F32)?);
    let fused = petl_ops::scale_add_mask(&x, 0.5, &mask)?;
    let want = (x.reshape((2, 2, 3, 4, 5))? * 0.5)?
        .broadcast_add(&mask.unsqueeze(2)?)?
        .reshape((2, 2, 12, 5))?;
    assert_eq!(
        fused.flatten_all()?.to_vec1::<f32>()?,
        want.flatten_all()?.to_vec1::<f32>()?
    );
    Ok(())
}

#[test]
fn head_split_and_merge_match_reshape_and_transpose() -> Result<()> {
    let split = |a: &[Tensor]| petl_ops::split_heads(&a[0], 3);
    check(
        "split_heads",
        &split,
        &[tensor(&[2, 5, 12], 26, DType::F64)?],
        &[true],
        1e-6,
    )?;
    let merge = |a: &[Tensor]| petl_ops::merge_heads(&a[0]);
    check(
        "merge_heads",
        &merge,
        &[tensor(&[2, 3, 5, 4], 27, DType::F64)?],
        &[true],
        1e-6,
    )?;
    let x = tensor(&[2, 5, 12], 28, DType::F32)?;
    let heads = petl_ops::split_heads(&x, 3)?;
    let want = x.reshape((2, 5, 3, 4))?.transpose(1, 2)?.contiguous()?;
    assert_eq!(
        heads.flatten_all()?.to_vec1::<f32>()?,
        want.flatten_all()?.to_vec1::<f32>()?
    );
    let back = petl_ops::merge_heads(&heads)?;
    assert_eq!(
        back.flatten_all()?.to_vec1::<f32>()?,
        x.flatten_all()?.to_vec1::<f32>()?
    );
    Ok(())
}

#[test]
fn swiglu_matches_reference() -> Result<()> {
    let op = |a: &[Tensor]| petl_ops::swiglu(&a[0], &a[1]);
    let inputs = [
        (tensor(&[3, 200], 29, DType::F64)? * 2.0)?,
        tensor(&[3, 200], 30, DType::F64)?,
    ];
    check("swiglu", &op, &inputs, &[true, true], 1e-6)?;
    check("swiglu (frozen up)", &op, &inputs, &[true, false], 1e-6)
}

#[test]
fn fused_attention_matches_the_composed_form_and_finite_differences() -> Result<()> {
    // Batch 2, 5 queries, 7 keys (2 of them prefix rows), 3 heads of width 4; the second row's
    // last two keys are padding.
    let (q, k, v) = (
        tensor(&[2, 5, 12], 40, DType::F64)?,
        tensor(&[2, 7, 12], 41, DType::F64)?,
        tensor(&[2, 7, 12], 42, DType::F64)?,
    );
    let mut bias = vec![0f64; 14];
    bias[12] = -30.0;
    bias[13] = -30.0;
    let bias = Tensor::from_vec(bias, (2, 1, 1, 7), &Device::Cpu)?;
    let mask = petl_ops::DropoutRng::new(5).keep_mask(2 * 3 * 5 * 7, 0.2);
    for (name, dropout) in [("attention", None), ("attention with dropout", Some(mask))] {
        let op = move |a: &[Tensor]| {
            let spec = petl_ops::AttentionSpec {
                heads: 3,
                scale: 0.5,
                bias: Some(&a[3]),
                dropout: dropout.as_ref(),
            };
            petl_ops::attention(&a[0], &a[1], &a[2], &spec)
        };
        let inputs = [q.clone(), k.clone(), v.clone(), bias.clone()];
        check(name, &op, &inputs, &[true, true, true, false], 1e-5)?;
        // A frozen key projection gets no gradient, the others theirs.
        check(name, &op, &inputs, &[true, false, true, false], 1e-5)?;
    }
    // Without a bias, against the plain per-head formula.
    let x = |t: &Tensor| t.to_dtype(DType::F32);
    let (q, k, v) = (x(&q)?, x(&k)?, x(&v)?);
    let spec = petl_ops::AttentionSpec {
        heads: 3,
        scale: 0.5,
        bias: None,
        dropout: None,
    };
    let got = petl_ops::attention(&q, &k, &v, &spec)?;
    let heads = |t: &Tensor| petl_ops::split_heads(t, 3);
    let probs = candle_nn_free_softmax(&(heads(&q)?.matmul(&heads(&k)?.t()?)? * 0.5)?)?;
    let want = petl_ops::merge_heads(&probs.matmul(&heads(&v)?)?)?;
    let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-5, "attention without a bias off by {d}");
    Ok(())
}

/// Softmax over the last dimension from candle's elementary ops.
fn candle_nn_free_softmax(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(candle_core::D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(candle_core::D::Minus1)?)
}

#[test]
fn attention_names_mismatched_shapes() -> Result<()> {
    let q = tensor(&[2, 5, 12], 1, DType::F32)?;
    let k = tensor(&[2, 7, 12], 2, DType::F32)?;
    let spec = |heads| petl_ops::AttentionSpec {
        heads,
        scale: 1.0,
        bias: None,
        dropout: None,
    };
    let err = petl_ops::attention(&q, &k, &k, &spec(5)).unwrap_err().to_string();
    assert!(err.contains("5 heads"), "{err}");
    let short = tensor(&[2, 6, 12], 3, DType::F32)?;
    assert!(petl_ops::attention(&q, &k, &short, &spec(3)).is_err());
    let bias = tensor(&[2, 5], 4, DType::F32)?;
    let with_bias = petl_ops::AttentionSpec {
        bias: Some(&bias),
        ..spec(3)
    };
    let err = petl_ops::attention(&q, &k, &k, &with_bias)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias"), "{err}");
    Ok(())
}

#[test]
fn fused_feed_forward_matches_the_composed_form() -> Result<()> {
    // [2, 5, 12] → 20 inner → 7, every weight frozen; the f64 run composes linear + act.
    let inputs = [
        tensor(&[2, 5, 12], 50, DType::F64)?,
        (tensor(&[20, 12], 51, DType::F64)? * 0.3)?,
        tensor(&[20], 52, DType::F64)?,
        (tensor(&[7, 20], 53, DType::F64)? * 0.3)?,
        tensor(&[7], 54, DType::F64)?,
    ];
    for act in [
        Activation::Gelu,
        Activation::Relu,
        Activation::Silu,
        Activation::GeluTanh,
    ] {
        let op = move |a: &[Tensor]| {
            let up = petl_ops::Projection {
                weight: &a[1],
                bias: Some(&a[2]),
            };
            let down = petl_ops::Projection {
                weight: &a[3],
                bias: Some(&a[4]),
            };
            petl_ops::feed_forward(&a[0], up, act, down)
        };
        check(
            act.hf_name(),
            &op,
            &inputs,
            &[true, false, false, false, false],
            1e-5,
        )?;
        // Trained weights take the composed path and get their gradients.
        check(
            act.hf_name(),
            &op,
            &inputs,
            &[true, true, false, true, true],
            1e-5,
        )?;
    }
    Ok(())
}

#[test]
fn fused_grouped_query_attention_with_a_causal_mask_matches_the_composed_form() -> Result<()> {
    // Head-major inputs as a Llama layer has them: 2 batch entries, 4 query heads sharing 2 key
    // heads, 5 queries over 7 keys (2 prefix rows, then a causal mask over the 5 tokens).
    let (q, k, v) = (
        tensor(&[2, 4, 5, 4], 60, DType::F64)?,
        tensor(&[2, 2, 7, 4], 61, DType::F64)?,
        tensor(&[2, 2, 7, 4], 62, DType::F64)?,
    );
    let mut bias = vec![0f64; 2 * 5 * 7];
    for n in 0..2 {
        for i in 0..5 {
            for j in 0..5 {
                if j > i {
                    bias[(n * 5 + i) * 7 + 2 + j] = -30.0;
                }
            }
        }
    }
    // The second entry's first token is padding.
    for i in 0..5 {
        bias[(5 + i) * 7 + 2] = -30.0;
    }
    let bias = Tensor::from_vec(bias, (2, 1, 5, 7), &Device::Cpu)?;
    let mask = petl_ops::DropoutRng::new(9).keep_mask(2 * 4 * 5 * 7, 0.2);
    for dropout in [None, Some(mask)] {
        let op = move |a: &[Tensor]| {
            let spec = petl_ops::AttentionSpec {
                heads: 4,
                scale: 0.5,
                bias: Some(&a[3]),
                dropout: dropout.as_ref(),
            };
            petl_ops::attention_heads(&a[0], &a[1], &a[2], &spec)
        };
        let inputs = [q.clone(), k.clone(), v.clone(), bias.clone()];
        check(
            "grouped attention",
            &op,
            &inputs,
            &[true, true, true, false],
            1e-5,
        )?;
        check(
            "grouped attention",
            &op,
            &inputs,
            &[false, true, false, false],
            1e-5,
        )?;
    }
    // One causal mask shared by the batch ([1, 1, queries, keys]) is accepted too.
    let shared = bias.narrow(0, 0, 1)?;
    let op = move |a: &[Tensor]| {
        let spec = petl_ops::AttentionSpec {
            heads: 4,
            scale: 0.5,
            bias: Some(&a[3]),
            dropout: None,
        };
        petl_ops::attention_heads(&a[0], &a[1], &a[2], &spec)
    };
    check(
        "shared causal mask",
        &op,
        &[q, k, v, shared],
        &[true, true, true, false],
        1e-5,
    )
}

#[test]
fn fused_gated_feed_forward_matches_the_composed_form() -> Result<()> {
    // SwiGLU: [2, 5, 12] → 20 inner (gate and up) → 12, biases on (Qwen-style) and off.
    let inputs = [
        tensor(&[2, 5, 12], 70, DType::F64)?,
        (tensor(&[20, 12], 71, DType::F64)? * 0.3)?,
        (tensor(&[20, 12], 72, DType::F64)? * 0.3)?,
        (tensor(&[12, 20], 73, DType::F64)? * 0.3)?,
        tensor(&[20], 74, DType::F64)?,
    ];
    for with_bias in [false, true] {
        let op = move |a: &[Tensor]| {
            let p = |w: usize| petl_ops::Projection {
                weight: &a[w],
                bias: with_bias.then_some(&a[4]).filter(|_| w != 3),
            };
            petl_ops::gated_feed_forward(&a[0], p(1), p(2), p(3))
        };
        check(
            "gated feed forward",
            &op,
            &inputs,
            &[true, false, false, false, false],
            1e-5,
        )?;
        check(
            "gated feed forward, trained",
            &op,
            &inputs,
            &[true, true, true, true, false],
            1e-5,
        )?;
    }
    Ok(())
}
