//! Task heads: the new, always-trainable layers on top of the encoder.

use crate::config::Family;
use crate::params::{Init, ParamStore};
use crate::{EncoderModel, ForwardCtx, Hooks, Result};
use candle_core::{Tensor, Var, D};
use petl_ops::Dropout;

/// A sequence classification (or, with one output, regression) head, laid out as Hugging Face's
/// `*ForSequenceClassification` so its tensors load there unchanged:
///
/// - BERT: the pretrained pooler (`tanh(W·h_[CLS] + b)`), dropout, `classifier` linear. A
///   checkpoint without a pooler gets a fresh trainable one (`pooler.dense.*`).
/// - RoBERTa: dropout, `classifier.dense`, tanh, dropout, `classifier.out_proj` on `<s>`.
#[derive(Debug, Clone)]
pub struct ClassificationHead {
    layers: HeadLayers,
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
    pub fn create(model: &EncoderModel, num_outputs: usize, store: &mut ParamStore) -> Result<Self> {
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
                own_pooler: match model.pooler() {
                    Some(_) => None,
                    None => Some(linear("pooler.dense", d, d)?),
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
            dropout: Dropout::new(c.classifier_dropout),
            num_outputs,
        })
    }

    /// Number of outputs (classes, or 1 for regression).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// Logits `[batch, num_outputs]` from the encoder's last hidden state `[batch, seq, d]`.
    pub fn forward(
        &self,
        model: &EncoderModel,
        hidden: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let apply = |x: &Tensor, (w, b): &(Var, Var)| petl_ops::linear(x, w.as_tensor(), Some(b.as_tensor()));
        match &self.layers {
            HeadLayers::Bert {
                own_pooler,
                classifier,
            } => {
                let pooled = match (model.pooler(), own_pooler) {
                    (Some(base), _) => base.forward(&first, hooks)?,
                    (None, Some(own)) => apply(&first, own)?,
                    (None, None) => unreachable!("create() gives a pooler-less checkpoint its own pooler"),
                }
                .tanh()?;
                let pooled = ctx.dropout(&self.dropout, &pooled)?;
                Ok(apply(&pooled, classifier)?)
            }
            HeadLayers::Roberta { dense, out_proj } => {
                let x = ctx.dropout(&self.dropout, &first)?;
                let x = apply(&x, dense)?.tanh()?;
                let x = ctx.dropout(&self.dropout, &x)?;
                Ok(apply(&x, out_proj)?)
            }
        }
    }
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
