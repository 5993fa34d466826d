//! Wall time of petl's hot ops at MiniLM's training shape (batch 16 × seq 128, width 384,
//! 12 heads, FFN 1536), forward and forward + backward: where a step's time goes, per op.
//!
//! `cargo run --release -p petl-ops --example op_times`

use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

fn time(name: &str, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    f()?;
    let start = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{name:<44} {ms:>8.2} ms");
    Ok(())
}

fn main() -> Result<()> {
    petl_ops::reuse_freed_memory();
    let dev = Device::Cpu;
    let (rows, d, m, heads, b, s) = (2048, 384, 1536, 12, 16, 128);
    let x = Var::randn(0f32, 1., (rows, d), &dev)?;
    let wide = Var::randn(0f32, 1., (rows, m), &dev)?;
    let w_dd = Tensor::randn(0f32, 0.05, (d, d), &dev)?;
    let w_up = Tensor::randn(0f32, 0.05, (m, d), &dev)?;
    let w_down = Tensor::randn(0f32, 0.05, (d, m), &dev)?;
    let bias_d = Tensor::zeros(d, candle_core::DType::F32, &dev)?;
    let bias_m = Tensor::zeros(m, candle_core::DType::F32, &dev)?;
    let gamma = Tensor::ones(d, candle_core::DType::F32, &dev)?;
    let reps = 10;
    // Backward from a gradient of ones over the whole output (contiguous, as in a model).
    let fb = |y: Tensor| -> Result<()> {
        y.backward()?;
        Ok(())
    };
    time("linear 384->384 fwd", reps, || {
        petl_ops::linear(&x, &w_dd, Some(&bias_d)).map(|_| ())
    })?;
    time("linear 384->384 fwd+bwd", reps, || {
        fb(petl_ops::linear(&x, &w_dd, Some(&bias_d))?)
    })?;
    time("linear 384->1536 fwd", reps, || {
        petl_ops::linear(&x, &w_up, Some(&bias_m)).map(|_| ())
    })?;
    time("linear 384->1536 fwd+bwd", reps, || {
        fb(petl_ops::linear(&x, &w_up, Some(&bias_m))?)
    })?;
    time("linear 1536->384 fwd", reps, || {
        petl_ops::linear(&wide, &w_down, Some(&bias_d)).map(|_| ())
    })?;
    time("linear 1536->384 fwd+bwd", reps, || {
        fb(petl_ops::linear(&wide, &w_down, Some(&bias_d))?)
    })?;
    let g_wide = Tensor::randn(0f32, 1., (rows, m), &dev)?;
    let g_d = Tensor::randn(0f32, 1., (rows, d), &dev)?;
    time("matmul [2048,1536]x[1536,384] (dX of up)", reps, || {
        g_wide.matmul(&w_up).map(|_| ())
    })?;
    time("matmul [2048,384]x[384,1536] (dX of down)", reps, || {
        g_d.matmul(&w_down).map(|_| ())
    })?;
    time("matmul [2048,384]x[384,1536]^T-view (fwd up)", reps, || {
        x.as_tensor().matmul(&w_up.t()?).map(|_| ())
    })?;
    let y_up = petl_ops::linear(&x, &w_up, Some(&bias_m))?;
    time("backward only, linear 384->1536", reps, || {
        y_up.backward().map(|_| ())
    })?;
    let y_down = petl_ops::linear(&wide, &w_down, Some(&bias_d))?;
    time("backward only, linear 1536->384", reps, || {
        y_down.backward().map(|_| ())
    })?;
    time("ones_like [2048,1536]", reps, || g_wide.ones_like().map(|_| ()))?;
    let gelu = petl_ops::Activation::Gelu;
    time("gelu [2048,1536] fwd", reps, || gelu.forward(&wide).map(|_| ()))?;
    time("gelu [2048,1536] fwd+bwd", reps, || fb(gelu.forward(&wide)?))?;
    let up = petl_ops::Projection {
        weight: &w_up,
        bias: Some(&bias_m),
    };
    let down = petl_ops::Projection {
        weight: &w_down,
        bias: Some(&bias_d),
    };
    time("FFN 384->1536->384, composed, fwd+bwd", reps, || {
        let h = gelu.forward(&petl_ops::linear(&x, &w_up, Some(&bias_m))?)?;
        fb(petl_ops::linear(&h, &w_down, Some(&bias_d))?)
    })?;
    time("FFN 384->1536->384, fused, fwd+bwd", reps, || {
        fb(petl_ops::feed_forward(&x, up, gelu, down)?)
    })?;
    time("layer_norm [2048,384] fwd", reps, || {
        petl_ops::layer_norm(&x, &gamma, &bias_d, 1e-12).map(|_| ())
    })?;
    time("layer_norm [2048,384] fwd+bwd", reps, || {
        fb(petl_ops::layer_norm(&x, &gamma, &bias_d, 1e-12)?)
    })?;
    time("add [2048,384] fwd", reps, || {
        (x.as_tensor() + x.as_tensor()).map(|_| ())
    })?;
    time("backward of [2048,384] (graph floor)", reps, || {
        fb(x.as_tensor().clone())
    })?;
    let q = Var::randn(0f32, 1., (b, s, d), &dev)?;
    let bias = Tensor::zeros((b, 1, 1, s), candle_core::DType::F32, &dev)?;
    let mut rng = petl_ops::DropoutRng::new(1);
    let spec = |mask| petl_ops::AttentionSpec {
        heads,
        scale: 0.17,
        bias: Some(&bias),
        dropout: mask,
    };
    time("attention fwd", reps, || {
        petl_ops::attention(&q, &q, &q, &spec(None)).map(|_| ())
    })?;
    time("attention fwd+bwd", reps, || {
        fb(petl_ops::attention(&q, &q, &q, &spec(None))?)
    })?;
    time("attention + dropout fwd+bwd (mask drawn)", reps, || {
        let mask = rng.keep_mask(b * heads * s * s, 0.1);
        let spec = petl_ops::AttentionSpec {
            dropout: Some(&mask),
            ..spec(None)
        };
        fb(petl_ops::attention(&q, &q, &q, &spec)?)
    })?;
    let drop = petl_ops::Dropout::new(0.1);
    let mut rng2 = petl_ops::DropoutRng::new(2);
    time("dropout [2048,384] fwd+bwd (mask drawn)", reps, || {
        fb(drop.forward(&x, Some(&mut rng2))?)
    })?;
    Ok(())
}
