//! Task heads: the new, always-trainable layers on top of the encoder.

use crate::config::Family;
use crate::params::{Init, ParamStore};
use crate::{EncoderModel, ForwardCtx, Hooks, Result};
use candle_core::{Tensor, Var, D};
use petl_ops::Dropout;

/// How the head turns the sequence of hidden states into one vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first token (`[CLS]` / `<s>`), through BERT's pretrained pooler: the layout of
    /// Hugging Face's `*ForSequenceClassification`.
    #[default]
    Cls,
    /// The mean over real (unpadded) tokens, without BERT's pooler: how sentence-transformers
    /// checkpoints were trained to represent a sentence.
    Mean,
}

/// A sequence classification (or, with one output, regression) head, laid out as Hugging Face's
/// `*ForSequenceClassification` so its tensors load there unchanged:
///
/// - BERT: the pretrained pooler (`tanh(W·h_[CLS] + b)`), dropout, `classifier` linear. A
///   checkpoint without a pooler gets a fresh trainable one (`pooler.dense.*`). With
///   [`Pooling::Mean`] the pooler is skipped.
/// - RoBERTa: dropout, `classifier.dense`, tanh, dropout, `classifier.out_proj` on `<s>` (or on
///   the mean with [`Pooling::Mean`]).
#[derive(Debug, Clone)]
pub struct ClassificationHead {
    layers: HeadLayers,
    pooling: Pooling,
    dropout: Dropout,
    num_outputs: usize,
}

#[derive(Debug, Clone)]
enum HeadLayers {
    Bert {
        own_pooler: Option<(Var, Var)>,
        classifier: (Var, Var),
    },
    Roberta {
        dense: (Var, Var),
        out_proj: (Var, Var),
    },
}

impl ClassificationHead {
    /// Creates the head's parameters in `store`. Tensors of the same name and shape found in the
    /// checkpoint (a model saved with its head) are the starting point; otherwise weights draw
    /// from N(0, initializer_range²) and biases start at zero, as transformers initialises them.
    pub fn create(
        model: &EncoderModel,
        num_outputs: usize,
        pooling: Pooling,
        store: &mut ParamStore,
    ) -> Result<Self> {
        let c = model.config();
        let d = c.hidden_size;
        let std = c.initializer_range;
        let mut linear = |prefix: &str, out: usize, inp: usize| -> Result<(Var, Var)> {
            let w_name = format!("{prefix}.weight");
            let b_name = format!("{prefix}.bias");
            let saved = |name: &str, shape: &[usize]| {
                model
                    .extra_tensors()
                    .get(name)
                    .filter(|t| t.dims() == shape)
                    .map(|t| Init::Copy(t.clone()))
            };
            let w_init = saved(&w_name, &[out, inp]).unwrap_or(Init::Normal { std });
            let b_init = saved(&b_name, &[out]).unwrap_or(Init::Zeros);
            Ok((
                store.create(&w_name, &[out, inp], w_init)?,
                store.create(&b_name, &[out], b_init)?,
            ))
        };
        let layers = match c.family {
            Family::Bert => HeadLayers::Bert {
                own_pooler: match (model.pooler(), pooling) {
                    (None, Pooling::Cls) => Some(linear("pooler.dense", d, d)?),
                    _ => None,
                },
                classifier: linear("classifier", num_outputs, d)?,
            },
            Family::Roberta => HeadLayers::Roberta {
                dense: linear("classifier.dense", d, d)?,
                out_proj: linear("classifier.out_proj", num_outputs, d)?,
            },
        };
        Ok(Self {
            layers,
            pooling,
            dropout: Dropout::new(c.classifier_dropout),
            num_outputs,
        })
    }

    /// Number of outputs (classes, or 1 for regression).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// The pooling this head uses.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Logits `[batch, num_outputs]` from the encoder's last hidden state `[batch, seq, d]` and
    /// the attention mask `[batch, seq]` (1 for real tokens).
    pub fn forward(
        &self,
        model: &EncoderModel,
        hidden: &Tensor,
        mask: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let sentence = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => masked_mean(hidden, mask)?,
        };
        let apply = |x: &Tensor, (w, b): &(Var, Var)| petl_ops::linear(x, w.as_tensor(), Some(b.as_tensor()));
        match &self.layers {
            HeadLayers::Bert {
                own_pooler,
                classifier,
            } => {
                let pooled = match (self.pooling, model.pooler(), own_pooler) {
                    (Pooling::Mean, _, _) => sentence,
                    (Pooling::Cls, Some(base), _) => base.forward(&sentence, hooks, ctx)?.tanh()?,
                    (Pooling::Cls, None, Some(own)) => apply(&sentence, own)?.tanh()?,
                    (Pooling::Cls, None, None) => {
                        unreachable!("create() gives a pooler-less checkpoint its own pooler")
                    }
                };
                let pooled = ctx.dropout(&self.dropout, &pooled)?;
                Ok(apply(&pooled, classifier)?)
            }
            HeadLayers::Roberta { dense, out_proj } => {
                let x = ctx.dropout(&self.dropout, &sentence)?;
                let x = apply(&x, dense)?.tanh()?;
                let x = ctx.dropout(&self.dropout, &x)?;
                Ok(apply(&x, out_proj)?)
            }
        }
    }
}

/// Mean of `hidden` `[batch, seq, d]` over the positions where `mask` `[batch, seq]` is 1.
fn masked_mean(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    // Every row has at least one real token (the encoder rejects empty input); the clamp only
    // guards a caller that passes an all-zero mask.
    let count = m.sum(1)?.clamp(1.0, f64::MAX)?;
    Ok(summed.broadcast_div(&count)?)
}

/// Index of the largest logit per row.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>> {
    Ok(logits
        .argmax(D::Minus1)?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|i| i as usize)
        .collect())
}
