use candle_core::{DType, Result, Tensor, D};

/// Mean cross-entropy of `logits` `[N, C]` against class ids `targets` `[N]` (u32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_probs = shifted.broadcast_sub(&log_z)?;
    let picked = log_probs.gather(&targets.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}

/// Mean squared error between `predictions` `[N]` (or `[N, 1]`) and `targets` `[N]`.
pub fn mse(predictions: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let p = predictions.to_dtype(DType::F32)?.flatten_all()?;
    let t = targets.to_dtype(DType::F32)?.flatten_all()?;
    p.sub(&t)?.sqr()?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn cross_entropy_matches_hand_value_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Var::new(&[[0f32, 0.], [2., 0.]], &dev)?;
        let targets = Tensor::new(&[1u32, 0], &dev)?;
        let loss = cross_entropy(logits.as_tensor(), &targets)?;
        // row 0: -ln(1/2) = 0.693147; row 1: -ln(e^2/(e^2+1)) = 0.126928; mean 0.410038
        assert!((loss.to_scalar::<f32>()? - 0.410_038).abs() < 1e-5);
        // d/dlogits = (softmax - onehot)/N
        let g = loss.backward()?.get(&logits).unwrap().to_vec2::<f32>()?;
        let p1 = (2f32).exp() / ((2f32).exp() + 1.0);
        let expect = [[0.25f32, -0.25], [(p1 - 1.0) / 2.0, (1.0 - p1) / 2.0]];
        for (r, er) in g.iter().zip(expect) {
            for (a, e) in r.iter().zip(er) {
                assert!((a - e).abs() < 1e-6, "{a} vs {e}");
            }
        }
        Ok(())
    }

    #[test]
    fn mse_of_known_values() -> Result<()> {
        let dev = Device::Cpu;
        let p = Tensor::new(&[[1f32], [3.]], &dev)?;
        let t = Tensor::new(&[2f32, 3.], &dev)?;
        assert_eq!(mse(&p, &t)?.to_scalar::<f32>()?, 0.5);
        Ok(())
    }
}
