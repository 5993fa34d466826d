//! What a parameter-efficient delta needs to know about the frozen model it is built on,
//! whatever the architecture.

use crate::{Fingerprint, ModelShape, Proj};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;

/// A frozen pretrained model as the design space sees it: its dimensions, its named base
/// tensors and where each projection's weight lives. Encoders, decoders and
/// encoder-decoders implement it, so a method is built the same way on every family.
pub trait BaseModel {
    /// The model's dimensions, with the parameter count of the loaded checkpoint.
    fn shape(&self) -> ModelShape;

    /// Every base parameter by canonical name.
    fn base_params(&self) -> &BTreeMap<String, Tensor>;

    /// The checkpoint name of the weight of projection `proj` in block `layer` (its bias is
    /// the same name ending in `.bias`), or `None` where the block has no such projection.
    fn weight_name(&self, layer: usize, proj: Proj) -> Option<String>;

    /// The block index a base parameter belongs to (counted over all stacks), or `None` for
    /// embeddings, final norms and heads.
    fn layer_of(&self, name: &str) -> Option<usize>;

    /// The base model's fingerprint, which artifacts record.
    fn fingerprint(&self) -> &Fingerprint;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// Number of scalar base parameters.
    fn num_base_params(&self) -> usize {
        self.base_params().values().map(|t| t.elem_count()).sum()
    }
}
