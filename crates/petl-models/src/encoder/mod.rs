//! The post-LN transformer encoder shared by the BERT and RoBERTa families.

mod attention;
mod block;
mod embeddings;

use crate::base::{BaseLinear, Loader};
use crate::config::EncoderConfig;
use crate::model_dir::ModelDir;
use crate::weights::{Checkpoint, Fingerprint};
use crate::{BaseModel, ForwardCtx, Hooks, ModelError, Precision, Proj, Result};
use block::Block;
use candle_core::{DType, Device, Tensor};
use embeddings::Embeddings;
use std::collections::BTreeMap;

/// One batch of tokenised input, row-major `[batch, seq]` u32 tensors.
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// Token ids.
    pub input_ids: Tensor,
    /// Segment (token type) ids.
    pub type_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

impl EncoderInput {
    /// Builds the tensors from flat row-major host buffers.
    pub fn from_host(
        input_ids: &[u32],
        type_ids: &[u32],
        attention_mask: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> Result<Self> {
        let n = batch * seq;
        if input_ids.len() != n || type_ids.len() != n || attention_mask.len() != n {
            return Err(ModelError::BadInput(format!(
                "batch {batch}×{seq} needs {n} ids, type ids and mask entries, got {}, {}, {}",
                input_ids.len(),
                type_ids.len(),
                attention_mask.len()
            )));
        }
        Ok(Self {
            input_ids: Tensor::from_slice(input_ids, (batch, seq), device)?,
            type_ids: Tensor::from_slice(type_ids, (batch, seq), device)?,
            attention_mask: Tensor::from_slice(attention_mask, (batch, seq), device)?,
        })
    }
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// The last hidden state `[batch, seq', d]`.
    pub hidden: Tensor,
    /// The attention mask over `hidden` `[batch, seq']`: the input's, with ones in front for
    /// positions a hook prepended (so `seq' ≥ seq`).
    pub mask: Tensor,
}

/// A pretrained BERT-family encoder: frozen weights plus the forward pass with hook points.
#[derive(Debug)]
pub struct EncoderModel {
    config: EncoderConfig,
    embeddings: Embeddings,
    blocks: Vec<Block>,
    pooler: Option<BaseLinear>,
    base: BTreeMap<String, Tensor>,
    extra: BTreeMap<String, Tensor>,
    fingerprint: Fingerprint,
    device: Device,
    precision: Precision,
}

impl EncoderModel {
    /// Loads the model in `dir` onto `device`.
    pub fn load(dir: &ModelDir, device: &Device) -> Result<Self> {
        Self::load_with_precision(dir, device, Precision::F32)
    }

    /// Loads the model in `dir` onto `device` with its frozen linears in `precision`.
    pub fn load_with_precision(dir: &ModelDir, device: &Device, precision: Precision) -> Result<Self> {
        precision.check(device)?;
        let config = EncoderConfig::from_file(&dir.config_path())?;
        let ckpt = Checkpoint::load(dir.weight_files(), config.family.checkpoint_prefix(), device)?;
        Self::build(config, ckpt, device, precision)
    }

    /// Builds the model from an already-read config and checkpoint.
    pub fn from_checkpoint(config: EncoderConfig, ckpt: Checkpoint, device: &Device) -> Result<Self> {
        Self::build(config, ckpt, device, Precision::F32)
    }

    fn build(
        config: EncoderConfig,
        mut ckpt: Checkpoint,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        let fingerprint = ckpt.fingerprint().clone();
        let mut loader = Loader::new(&mut ckpt, precision.linear_dtype());
        let embeddings = Embeddings::load(&mut loader, &config)?;
        let blocks = (0..config.num_layers)
            .map(|i| Block::load(&mut loader, &config, i))
            .collect::<Result<Vec<_>>>()?;
        let d = config.hidden_size;
        // Sentence-embedding checkpoints are sometimes saved without the pooler; the
        // classification head then trains its own (see `ClassificationHead`).
        let pooler = loader.optional_linear("pooler.dense", d, d)?;
        let base = loader.into_taken();
        let extra = ckpt.into_remaining();
        Ok(Self {
            config,
            embeddings,
            blocks,
            pooler,
            base,
            extra,
            fingerprint,
            device: device.clone(),
            precision,
        })
    }

    /// The precision the frozen linears compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Checkpoint tensors outside the encoder (e.g. a saved `classifier.*` head).
    pub fn extra_tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.extra
    }

    /// The pretrained pooler (`dense` + tanh over the first token), where the checkpoint has one.
    pub(crate) fn pooler(&self) -> Option<&BaseLinear> {
        self.pooler.as_ref()
    }

    /// The last hidden state and the mask over it.
    pub fn forward(
        &self,
        input: &EncoderInput,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<EncoderOutput> {
        let (batch, seq) = input.input_ids.dims2()?;
        if seq == 0 || batch == 0 {
            return Err(ModelError::BadInput("empty batch".into()));
        }
        if seq > self.config.max_input_len() {
            return Err(ModelError::BadInput(format!(
                "sequence length {seq} exceeds the model's {} positions",
                self.config.max_input_len()
            )));
        }
        let (mut hidden, mask) = self.embeddings.forward(input, &self.config, hooks, ctx)?;
        let bias = attention_bias(&mask)?;
        for (i, block) in self.blocks.iter().enumerate() {
            hidden = block.forward(i, &hidden, &bias, hooks, ctx)?;
        }
        Ok(EncoderOutput { hidden, mask })
    }
}

impl BaseModel for EncoderModel {
    fn shape(&self) -> crate::ModelShape {
        let mut shape = crate::ModelShape::of_encoder(&self.config, self.pooler.is_some());
        shape.base_params = self.num_base_params();
        shape.base_tensors = self.base.len();
        shape
    }

    fn base_params(&self) -> &BTreeMap<String, Tensor> {
        &self.base
    }

    fn weight_name(&self, layer: usize, proj: Proj) -> Option<String> {
        let module = match proj {
            Proj::Query => "attention.self.query",
            Proj::Key => "attention.self.key",
            Proj::Value => "attention.self.value",
            Proj::AttnOut => "attention.output.dense",
            Proj::FfnUp => "intermediate.dense",
            Proj::FfnDown => "output.dense",
            Proj::FfnGate | Proj::CrossQuery | Proj::CrossKey | Proj::CrossValue | Proj::CrossOut => {
                return None
            }
        };
        (layer < self.config.num_layers).then(|| format!("encoder.layer.{layer}.{module}.weight"))
    }

    fn layer_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix("encoder.layer.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    }

    fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// What [`EncoderModel::backward_checkpointed`] returns.
#[derive(Debug)]
pub struct CheckpointedBackward {
    /// The loss `tail` returned.
    pub loss: Tensor,
    /// The gradient of each requested variable, in request order (`None` where the loss does
    /// not depend on it).
    pub grads: Vec<Option<Tensor>>,
}

impl EncoderModel {
    /// Forward and backward with activation checkpointing per block: the forward keeps only
    /// each block's input (one `[batch, seq, d]` tensor per layer) instead of every
    /// intermediate, and the backward recomputes one block at a time from its saved input and
    /// random stream, so the same dropout masks are drawn and the gradients are those of the
    /// plain forward. Costs one extra forward of the blocks.
    ///
    /// `tail` maps the last hidden state and its mask to the scalar loss (the head and the
    /// loss); gradients are returned for `vars`, summed over every place they are used.
    pub fn backward_checkpointed(
        &self,
        input: &EncoderInput,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
        vars: &[&candle_core::Var],
        tail: &mut dyn FnMut(&Tensor, &Tensor, &mut ForwardCtx) -> Result<Tensor>,
    ) -> Result<CheckpointedBackward> {
        let (embedded, mask) = self.embeddings.forward(input, &self.config, hooks, ctx)?;
        let bias = attention_bias(&mask)?;
        // Forward without a graph: each block starts from a detached copy of its input and
        // only that input (and the random stream where the block starts) is kept.
        let mut saved = Vec::with_capacity(self.blocks.len());
        let mut hidden = embedded.detach();
        for (i, block) in self.blocks.iter().enumerate() {
            saved.push((hidden.clone(), ctx.fork()));
            hidden = block.forward(i, &hidden, &bias, hooks, ctx)?.detach();
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut collect = |store: &candle_core::backprop::GradStore| -> Result<()> {
            for (acc, var) in grads.iter_mut().zip(vars) {
                if let Some(g) = store.get(var) {
                    *acc = Some(match acc.take() {
                        Some(a) => (a + g)?,
                        None => g.clone(),
                    });
                }
            }
            Ok(())
        };
        let last = candle_core::Var::from_tensor(&hidden)?;
        let loss = tail(last.as_tensor(), &mask, ctx)?;
        let store = loss.backward()?;
        collect(&store)?;
        let mut upstream = upstream_grad(&store, &last)?;
        drop(store);
        for (i, (input, mut block_ctx)) in saved.into_iter().enumerate().rev() {
            let x = candle_core::Var::from_tensor(&input)?;
            let y = self.blocks[i].forward(i, x.as_tensor(), &bias, hooks, &mut block_ctx)?;
            let store = (y * &upstream)?.sum_all()?.backward()?;
            collect(&store)?;
            upstream = upstream_grad(&store, &x)?;
        }
        if embedded.track_op() {
            collect(&(embedded * &upstream)?.sum_all()?.backward()?)?;
        }
        Ok(CheckpointedBackward { loss, grads })
    }
}

/// The gradient reaching a recomputation's input (zeros if nothing depends on it).
pub(crate) fn upstream_grad(
    store: &candle_core::backprop::GradStore,
    x: &candle_core::Var,
) -> Result<Tensor> {
    Ok(match store.get(x) {
        Some(g) => g.clone(),
        None => x.as_tensor().zeros_like()?,
    })
}

/// Additive attention bias `[batch, 1, 1, seq]`: 0 where the mask is 1, a large negative where
/// it is 0, so padded keys get zero probability.
fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let keep = mask.to_dtype(DType::F32)?;
    // -1e9 rather than f32::MIN keeps the bias finite in half precision.
    let bias = ((keep - 1.0)? * 1e9)?;
    Ok(bias.reshape((b, 1, 1, t))?)
}
