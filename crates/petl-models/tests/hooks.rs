//! Every hook point is reached, once per block where it belongs, by the shared encoder code.

mod common;

use candle_core::Device;
use common::Counter;
use petl_models::BaseModel;
use petl_models::{EncoderInput, EncoderModel, ForwardCtx, ModelDir, Proj, Sublayer};
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn every_hook_point_is_called_once_per_site() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tiny-roberta");
    let model = EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap();
    let input = EncoderInput::from_host(&[0, 5, 6, 2], &[0; 4], &[1; 4], 1, 4, &Device::Cpu).unwrap();
    let counter = Counter::default();
    model.forward(&input, &counter, &mut ForwardCtx::eval()).unwrap();
    let mut seen = counter.take();
    // The base-read hooks (`base_linear`, `base_norm`, `base_lookup`) are counted by the
    // decoder test; this one covers the design space's hook points.
    seen.retain(|k, _| !k.starts_with("base_"));
    let layers = model.config().num_layers;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    expected.insert("embeddings".into(), 1);
    for l in 0..layers {
        for s in [Sublayer::Attention, Sublayer::Ffn] {
            expected.insert(format!("input {l} {s:?}"), 1);
            expected.insert(format!("output {l} {s:?}"), 1);
        }
        for p in Proj::ALL.into_iter().filter(|&p| model.shape().has_proj(l, p)) {
            expected.insert(format!("linear {l} {p:?}"), 1);
            expected.insert(format!("linear_input {l} {p:?}"), 1);
        }
        expected.insert(format!("kv_prefix {l} Attention"), 1);
        expected.insert(format!("heads {l} Attention"), 1);
    }
    // Every encoder parameter is read through the param hook exactly once per forward
    // (the pooler belongs to the head).
    for name in model.base_params().keys().filter(|n| !n.starts_with("pooler.")) {
        expected.insert(format!("param {name}"), 1);
    }
    assert_eq!(seen, expected);
}
