use candle_core::{Result, Tensor, D};

/// Softmax over the last dimension, stabilised by subtracting the row maximum.
///
/// Composed from `exp`, `sum` and `div` so its gradient is exact; candle's fused
/// `softmax_last_dim` returns a silently wrong gradient in 0.11.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    // The max is a constant shift: detaching it changes no value or gradient but keeps the
    // backward graph free of the max's (zero) contribution.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// `log Σ exp(x)` over the last dimension, keeping it (`[.., 1]`), stabilised like
/// [`softmax_last_dim`].
pub fn logsumexp_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)
}

/// The logistic function `1 / (1 + e^(−x))`, composed so it is differentiable.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn logsumexp_and_sigmoid_match_closed_forms() -> Result<()> {
        let x = Tensor::new(&[[1000f32, 1000.], [0., 0.]], &Device::Cpu)?;
        let l = logsumexp_last_dim(&x)?.to_vec2::<f32>()?;
        assert!((l[0][0] - (1000.0 + 2f32.ln())).abs() < 1e-3);
        assert!((l[1][0] - 2f32.ln()).abs() < 1e-6);
        let s = sigmoid(&Tensor::new(&[0f32, 2.], &Device::Cpu)?)?.to_vec1::<f32>()?;
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[1] - 0.880_797_1).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn rows_sum_to_one_and_survive_large_logits() -> Result<()> {
        let x = Tensor::new(&[[1000f32, 1001., 1002.]], &Device::Cpu)?;
        let y = softmax_last_dim(&x)?.to_vec2::<f32>()?;
        // e^0, e^1, e^2 normalised: 0.0900, 0.2447, 0.6652
        let expect = [0.090_030_57f32, 0.244_728_47, 0.665_240_94];
        for (a, e) in y[0].iter().zip(expect) {
            assert!((a - e).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_the_analytic_jacobian() -> Result<()> {
        // d/dx_j sum_i w_i p_i = p_j (w_j - sum_i w_i p_i)
        let x = Var::new(&[0.2f32, -0.5, 1.0], &Device::Cpu)?;
        let w = [1f32, 2., -1.];
        let p = softmax_last_dim(x.as_tensor())?;
        let wt = Tensor::new(&w, &Device::Cpu)?;
        let g = p.mul(&wt)?.sum_all()?.backward()?;
        let got = g.get(&x).unwrap().to_vec1::<f32>()?;
        let pv = p.to_vec1::<f32>()?;
        let dot: f32 = pv.iter().zip(w).map(|(a, b)| a * b).sum();
        for j in 0..3 {
            let expect = pv[j] * (w[j] - dot);
            assert!((got[j] - expect).abs() < 1e-6, "{j}: {} vs {expect}", got[j]);
        }
        Ok(())
    }
}
