//! Mean pooling averages exactly the real tokens, and skips BERT's pooler.

use candle_core::Device;
use petl_models::{
    ClassificationHead, EncoderInput, EncoderModel, ForwardCtx, ModelDir, NoHooks, ParamStore, Pooling,
};
use std::path::Path;

#[test]
fn mean_pooling_averages_unpadded_tokens_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tiny-bert");
    let model = EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap();
    let mut store = ParamStore::new(&Device::Cpu, 0);
    let head = ClassificationHead::create(&model, 3, Pooling::Mean, &mut store).unwrap();
    // Row 0 has 3 real tokens, row 1 has 2 and padding that must not count.
    let input = EncoderInput::from_host(
        &[5, 6, 7, 8, 9, 0],
        &[0; 6],
        &[1, 1, 1, 1, 1, 0],
        2,
        3,
        &Device::Cpu,
    )
    .unwrap();
    let mut ctx = ForwardCtx::eval();
    let hidden = model.forward(&input, &NoHooks, &mut ctx).unwrap().hidden;
    let logits = head
        .forward(&model, &hidden, &input.attention_mask, &NoHooks, &mut ctx)
        .unwrap();

    let h = hidden.to_vec3::<f32>().unwrap();
    let w = store.get("classifier.weight").unwrap().to_vec2::<f32>().unwrap();
    let b = store.get("classifier.bias").unwrap().to_vec1::<f32>().unwrap();
    let means: Vec<Vec<f32>> = [(0usize, 3usize), (1, 2)]
        .iter()
        .map(|&(row, n)| {
            (0..h[row][0].len())
                .map(|k| (0..n).map(|t| h[row][t][k]).sum::<f32>() / n as f32)
                .collect()
        })
        .collect();
    let expected: Vec<Vec<f32>> = means
        .iter()
        .map(|m| {
            w.iter()
                .zip(&b)
                .map(|(wr, bi)| wr.iter().zip(m).map(|(x, y)| x * y).sum::<f32>() + bi)
                .collect()
        })
        .collect();
    let got = logits.to_vec2::<f32>().unwrap();
    for (g, e) in got.iter().flatten().zip(expected.iter().flatten()) {
        assert!((g - e).abs() < 1e-5, "{g} vs {e}");
    }
    assert_eq!(head.pooling(), Pooling::Mean);
    // No pooler parameters are created or used in mean mode.
    assert!(store.get("pooler.dense.weight").is_none());
}
