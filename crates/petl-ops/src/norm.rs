use candle_core::{DType, Result, Tensor, D};

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · gamma + beta`, with the biased
/// variance, as PyTorch computes it.
///
/// Built from basic ops so gradients flow to `x`, `gamma` and `beta` (candle's fused
/// `layer_norm` has no backward). Half-precision inputs are normalised in f32.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let in_dtype = x.dtype();
    let x = match in_dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed
        .to_dtype(in_dtype)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn normalises_rows() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 3.]], &dev)?;
        let g = Tensor::new(&[1f32, 1., 2.], &dev)?;
        let b = Tensor::new(&[0f32, 1., 0.], &dev)?;
        let y = layer_norm(&x, &g, &b, 0.0)?.to_vec2::<f32>()?;
        // mean 2, biased var 2/3, std 0.8165: normed [-1.2247, 0, 1.2247]
        let expect = [-1.224_744_9f32, 1.0, 2.449_489_7];
        for (a, e) in y[0].iter().zip(expect) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
        Ok(())
    }

    #[test]
    fn every_operand_gets_a_finite_nonzero_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[0.3f32, -1.2, 2.0, 0.7]], &dev)?;
        let g = Var::new(&[1.1f32, 0.9, 1.0, 1.2], &dev)?;
        let b = Var::new(&[0.1f32, 0.0, -0.1, 0.2], &dev)?;
        let w = Tensor::new(&[[1f32, -2., 3., 0.5]], &dev)?;
        let y = layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5)?;
        let grads = y.mul(&w)?.sum_all()?.backward()?;
        for v in [&x, &g, &b] {
            let gr = grads
                .get(v)
                .expect("gradient present")
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert!(gr.iter().all(|v| v.is_finite()));
            assert!(gr.iter().any(|v| v.abs() > 1e-6));
        }
        Ok(())
    }
}
