//! Fixtures shared by the model tests.
#![allow(dead_code)]

use candle_core::Tensor;
use petl_models::{ForwardCtx, HeadsSite, Hooks, KvPrefix, Proj, Result, Sublayer};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Hooks that change nothing and count every call, keyed by hook point and site (`linear 0
/// Query`, `param <name>`, `heads 3 CrossAttention`, …); they also check the shapes each hook
/// point promises.
#[derive(Default)]
pub struct Counter(RefCell<BTreeMap<String, usize>>);

impl Counter {
    fn hit(&self, key: String) {
        *self.0.borrow_mut().entry(key).or_default() += 1;
    }
    /// What was counted since the last call, emptying the count.
    pub fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl Hooks for Counter {
    fn param(&self, name: &str, _base: &Tensor, _ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        self.hit(format!("param {name}"));
        Ok(None)
    }
    fn base_linear(&self, w: &str, _i: &Tensor, o: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("base_linear {w}"));
        Ok(o)
    }
    fn base_norm(&self, w: &str, _i: &Tensor, _e: f64, o: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("base_norm {w}"));
        Ok(o)
    }
    fn base_lookup(&self, t: &str, _i: &Tensor, o: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        self.hit(format!("base_lookup {t}"));
        Ok(o)
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
    fn heads(&self, layer: usize, site: HeadsSite<'_>, h: Tensor, _c: &mut ForwardCtx) -> Result<Tensor> {
        // The site carries every query head and the scores over every key.
        assert_eq!(site.query.dims(), h.dims());
        assert_eq!(site.scores.dim(1).unwrap(), h.dim(1).unwrap());
        self.hit(format!("heads {layer} {:?}", site.sublayer));
        Ok(h)
    }
    fn output(
        &self,
        layer: usize,
        s: Sublayer,
        i: &Tensor,
        o: Tensor,
        _c: &mut ForwardCtx,
    ) -> Result<Tensor> {
        assert_eq!(i.dims(), o.dims());
        self.hit(format!("output {layer} {s:?}"));
        Ok(o)
    }
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
