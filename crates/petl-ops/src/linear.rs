use candle_core::{Result, Tensor};

/// `x · Wᵀ + b` over the last dimension of `x`, PyTorch's `nn.Linear` convention.
///
/// Shapes: `x` is `[..., in]`, `weight` is `[out, in]`, `bias` is `[out]`; the result is `[..., out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let in_dim = *dims
        .last()
        .ok_or_else(|| candle_core::Error::Msg("linear on a scalar".into()))?;
    let rows = x.elem_count() / in_dim.max(1);
    // Folding the leading dimensions into one keeps this a single 2-D GEMM with a transposed
    // right operand, which candle's CPU and CUDA backends run without copying the weight.
    let x2 = x.reshape((rows, in_dim))?;
    let y = x2.matmul(&weight.t()?)?;
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out_dims = dims.to_vec();
    let last = out_dims.len() - 1;
    out_dims[last] = weight.dim(0)?;
    y.reshape(out_dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_hand_computation_on_3d_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &dev)?; // [1,2,2]
        let w = Tensor::new(&[[1f32, 1.], [2., -1.], [0., 3.]], &dev)?; // [3,2]
        let b = Tensor::new(&[0.5f32, 0., -1.], &dev)?;
        let y = linear(&x, &w, Some(&b))?;
        // row [1,2]: [1+2+.5, 2-2+0, 0+6-1] ; row [3,4]: [7.5, 2, 11]
        assert_eq!(
            y.to_vec3::<f32>()?,
            vec![vec![vec![3.5, 0., 5.], vec![7.5, 2., 11.]]]
        );
        Ok(())
    }

    #[test]
    fn gradients_reach_input_weight_and_bias() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[1f32, 2.]], &dev)?;
        let w = Var::new(&[[3f32, 4.]], &dev)?;
        let b = Var::new(&[5f32], &dev)?;
        let y = linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()))?.sum_all()?;
        let g = y.backward()?;
        assert_eq!(g.get(&x).unwrap().to_vec2::<f32>()?, vec![vec![3., 4.]]);
        assert_eq!(g.get(&w).unwrap().to_vec2::<f32>()?, vec![vec![1., 2.]]);
        assert_eq!(g.get(&b).unwrap().to_vec1::<f32>()?, vec![1.]);
        Ok(())
    }
}
