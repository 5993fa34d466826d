//! Every hook point is reached, once per block where it belongs, by the shared encoder code.

use candle_core::{Device, Tensor};
use petl_models::BaseModel;
use petl_models::{
    EncoderInput, EncoderModel, ForwardCtx, HeadsSite, Hooks, KvPrefix, ModelDir, Proj, Result, Sublayer,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Default)]
struct Counter(RefCell<BTreeMap<String, usize>>);

impl Counter {
    fn hit(&self, key: String) {
        *self.0.borrow_mut().entry(key).or_default() += 1;
    }
}

impl Hooks for Counter {
    fn param(&self, name: &str, _base: &Tensor, _ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        self.hit(format!("param {name}"));
        Ok(None)
    }
    fn embeddings(&self, h: Tensor, m: Tensor, _c: &mut ForwardCtx) -> Result<(Tensor, Tensor)> {
        self.hit("embeddings".into());
        Ok((h, m))
    }
    fn input(&self, layer: usize, s: Sublayer, x: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("input {layer} {s:?}"));
        Ok(x)
    }
    fn linear_input(&self, layer: usize, p: Proj, x: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("linear_input {layer} {p:?}"));
        Ok(x)
    }
    fn linear(&self, layer: usize, p: Proj, _i: &Tensor, o: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("linear {layer} {p:?}"));
        Ok(o)
    }
    fn kv_prefix(
        &self,
        layer: usize,
        s: Sublayer,
        _b: usize,
        _c: &mut ForwardCtx,
    ) -> Result<Option<KvPrefix>> {
        self.hit(format!("kv_prefix {layer} {s:?}"));
        Ok(None)
    }
    fn heads(&self, layer: usize, _s: HeadsSite<'_>, h: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("heads {layer}"));
        Ok(h)
    }
    fn output(
        &self,
        layer: usize,
        s: Sublayer,
        _i: &Tensor,
        o: Tensor,
        _c: &mut ForwardCtx,
    ) -> Result<Tensor> {
        self.hit(format!("output {layer} {s:?}"));
        Ok(o)
    }
}

#[test]
fn every_hook_point_is_called_once_per_site() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tiny-roberta");
    let model = EncoderModel::load(&ModelDir::open(dir).unwrap(), &Device::Cpu).unwrap();
    let input = EncoderInput::from_host(&[0, 5, 6, 2], &[0; 4], &[1; 4], 1, 4, &Device::Cpu).unwrap();
    let counter = Counter::default();
    model.forward(&input, &counter, &mut ForwardCtx::eval()).unwrap();
    let seen = counter.0.into_inner();
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
        expected.insert(format!("heads {l}"), 1);
    }
    // Every encoder parameter is read through the param hook exactly once per forward
    // (the pooler belongs to the head).
    for name in model.base_params().keys().filter(|n| !n.starts_with("pooler.")) {
        expected.insert(format!("param {name}"), 1);
    }
    assert_eq!(seen, expected);
}
