//! Frozen base parameters and the layers built from them. Every read of a base tensor goes
//! through [`Hooks::param`], which is how full fine-tuning, BitFit and sparse diffs act without
//! ever writing to the base.

use crate::weights::Checkpoint;
use crate::{ForwardCtx, Hooks, Proj, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// A pretrained tensor and its canonical checkpoint name.
#[derive(Debug, Clone)]
pub(crate) struct BaseParam {
    name: String,
    tensor: Tensor,
}

impl BaseParam {
    /// The tensor to compute with: the hook's replacement if it has one, else the base.
    pub(crate) fn resolve(&self, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        Ok(hooks
            .param(&self.name, &self.tensor, ctx)?
            .unwrap_or_else(|| self.tensor.clone()))
    }

    /// The canonical checkpoint name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Takes tensors out of a checkpoint by name and shape, recording every one taken so the model
/// can list its base parameters.
pub(crate) struct Loader<'a> {
    ckpt: &'a mut Checkpoint,
    taken: BTreeMap<String, Tensor>,
    /// The dtype linear weights and biases are stored in (see [`crate::Precision`]).
    linear_dtype: DType,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(ckpt: &'a mut Checkpoint, linear_dtype: DType) -> Self {
        Self {
            ckpt,
            taken: BTreeMap::new(),
            linear_dtype,
        }
    }

    pub(crate) fn param(&mut self, name: &str, shape: &[usize]) -> Result<BaseParam> {
        self.param_in(name, shape, DType::F32)
    }

    fn param_in(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<BaseParam> {
        let tensor = self.ckpt.take(name, shape)?.to_dtype(dtype)?;
        self.taken.insert(name.to_string(), tensor.clone());
        Ok(BaseParam {
            name: name.to_string(),
            tensor,
        })
    }

    /// A linear that a checkpoint may lack entirely; when its weight is there, so must be its bias.
    pub(crate) fn optional_linear(
        &mut self,
        prefix: &str,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Option<BaseLinear>> {
        if self.ckpt.contains(&format!("{prefix}.weight")) {
            self.linear(prefix, out_dim, in_dim).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn linear(&mut self, prefix: &str, out_dim: usize, in_dim: usize) -> Result<BaseLinear> {
        self.linear_with_bias(prefix, out_dim, in_dim, true)
    }

    /// A linear whose bias the architecture decides (Llama's have none).
    pub(crate) fn linear_with_bias(
        &mut self,
        prefix: &str,
        out_dim: usize,
        in_dim: usize,
        bias: bool,
    ) -> Result<BaseLinear> {
        let weight = self.param_in(&format!("{prefix}.weight"), &[out_dim, in_dim], self.linear_dtype)?;
        let bias = if bias {
            Some(self.param_in(&format!("{prefix}.bias"), &[out_dim], self.linear_dtype)?)
        } else {
            None
        };
        Ok(BaseLinear { weight, bias })
    }

    pub(crate) fn rms_norm(&mut self, prefix: &str, dim: usize, eps: f64) -> Result<BaseRmsNorm> {
        Ok(BaseRmsNorm {
            weight: self.param(&format!("{prefix}.weight"), &[dim])?,
            eps,
        })
    }

    pub(crate) fn layer_norm(&mut self, prefix: &str, dim: usize, eps: f64) -> Result<BaseLayerNorm> {
        Ok(BaseLayerNorm {
            weight: self.param(&format!("{prefix}.weight"), &[dim])?,
            bias: self.param(&format!("{prefix}.bias"), &[dim])?,
            eps,
        })
    }

    /// A tensor that is state but not a parameter (a frozen buffer such as Marian's sinusoidal
    /// positions): taken out of the checkpoint when it is there, in f32, and not recorded
    /// among the base parameters.
    pub(crate) fn buffer(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        match self.ckpt.take_optional(name, shape)? {
            Some(t) => Ok(Some(t.to_dtype(DType::F32)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn into_taken(self) -> BTreeMap<String, Tensor> {
        self.taken
    }
}

/// A frozen `nn.Linear`.
#[derive(Debug, Clone)]
pub(crate) struct BaseLinear {
    weight: BaseParam,
    bias: Option<BaseParam>,
}

impl BaseLinear {
    /// A bias-free linear computing with `weight` (a tied LM head reads the embedding matrix).
    pub(crate) fn from_weight(weight: BaseParam) -> Self {
        Self { weight, bias: None }
    }

    pub(crate) fn forward(&self, x: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let w = self.weight.resolve(hooks, ctx)?;
        let b = self.bias.as_ref().map(|b| b.resolve(hooks, ctx)).transpose()?;
        let y = petl_ops::linear(x, &w, b.as_ref())?;
        hooks.base_linear(self.weight.name(), x, y, ctx)
    }

    /// The frozen weight and bias, for fused ops that run where no hook acts
    /// ([`Hooks::changes_linear`]).
    pub(crate) fn base(&self) -> petl_ops::Projection<'_> {
        petl_ops::Projection {
            weight: &self.weight.tensor,
            bias: self.bias.as_ref().map(|b| &b.tensor),
        }
    }

    /// The projection `proj` of block `layer`: the linear, then the [`Hooks::linear`] point, so
    /// no projection can skip its hook.
    pub(crate) fn project(
        &self,
        layer: usize,
        proj: Proj,
        x: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let x = hooks.linear_input(layer, proj, x.clone(), ctx)?;
        let y = self.forward(&x, hooks, ctx)?;
        hooks.linear(layer, proj, &x, y, ctx)
    }
}

/// A frozen `nn.LayerNorm`.
#[derive(Debug, Clone)]
pub(crate) struct BaseLayerNorm {
    weight: BaseParam,
    bias: BaseParam,
    eps: f64,
}

impl BaseLayerNorm {
    pub(crate) fn forward(&self, x: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let g = self.weight.resolve(hooks, ctx)?;
        let b = self.bias.resolve(hooks, ctx)?;
        let y = petl_ops::layer_norm(x, &g, &b, self.eps)?;
        hooks.base_norm(self.weight.name(), x, self.eps, y, ctx)
    }
}

/// A frozen RMSNorm (Llama's `LlamaRMSNorm`).
#[derive(Debug, Clone)]
pub(crate) struct BaseRmsNorm {
    weight: BaseParam,
    eps: f64,
}

impl BaseRmsNorm {
    pub(crate) fn forward(&self, x: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let g = self.weight.resolve(hooks, ctx)?;
        let y = petl_ops::rms_norm(x, &g, self.eps)?;
        hooks.base_norm(self.weight.name(), x, self.eps, y, ctx)
    }
}
