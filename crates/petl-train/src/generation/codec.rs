//! How a task's text becomes token ids for its base: prompt-masked causal sequences for a
//! decoder-only model, source/label pairs for an encoder-decoder.

use super::base::GenBase;
use super::task::GenTask;
use crate::{Result, TrainError};
use petl_data::{
    collate_causal, collate_seq2seq, plan_batches, plan_seq2seq_batches, BatchOrder, CausalBatch,
    CausalEncoded, CausalLmEncoder, CausalLmSpec, GenExample, GenKind, PromptEncoded, Seq2SeqBatch,
    Seq2SeqEncoded, Seq2SeqEncoder, Seq2SeqSpec,
};

/// The encoder of one task on one base.
#[derive(Debug, Clone)]
pub enum TextCodec {
    /// Prompt and target in one sequence, the loss on the target only.
    Causal(CausalLmEncoder),
    /// Source to the encoder, target to the decoder.
    Seq2Seq(Seq2SeqEncoder),
}

/// A task's training examples, encoded.
#[derive(Debug, Clone)]
pub enum EncodedSet {
    /// For a decoder-only base.
    Causal(Vec<CausalEncoded>),
    /// For an encoder-decoder base.
    Seq2Seq(Vec<Seq2SeqEncoded>),
}

/// One padded training batch.
#[derive(Debug, Clone)]
pub enum GenBatch {
    /// For a decoder-only base.
    Causal(CausalBatch),
    /// For an encoder-decoder base.
    Seq2Seq(Seq2SeqBatch),
}

impl TextCodec {
    /// The codec of `task` (examples of `kind`) on `base`, sequences at most `max_len` tokens
    /// (for an encoder-decoder: sources; targets are bounded by the task's `max_target_len`).
    ///
    /// Decoder-only: the task's template (ChatML-wrapped for chat models), the target ended by
    /// the turn's end token in chat mode and by eos otherwise. Encoder-decoder: the source as
    /// the tokenizer frames it and the labels as [`GenBase::seq2seq_format`] lays them out;
    /// templates and chat turns are refused, since these models read the source as is.
    pub fn for_task(base: &GenBase, task: &GenTask, kind: &GenKind, max_len: usize) -> Result<Self> {
        let special = base.special();
        let max_len = max_len.min(base.max_positions());
        let first_eos = || {
            special.eos.first().copied().ok_or_else(|| TrainError::Config {
                field: "model",
                reason: "the model names no end-of-sequence token".into(),
            })
        };
        if let Some(format) = base.seq2seq_format(task.target_language())? {
            if task.template.is_some() || task.chat {
                return Err(TrainError::Config {
                    field: "task.template",
                    reason: format!(
                        "{} is an encoder-decoder: it reads the source as is, without a prompt template \
                         or chat turns",
                        base.model_type()
                    ),
                });
            }
            let max_target = task.max_target_len.min(base.max_positions());
            let mut spec = Seq2SeqSpec::new(format.decoder_start, first_eos()?, max_len, max_target);
            spec.label_prefix = format.label_prefix;
            spec.label_suffix = format.label_suffix;
            return Ok(Self::Seq2Seq(Seq2SeqEncoder::new(
                base.tokenizer().clone(),
                spec,
            )?));
        }
        let turn_end = base.tokenizer().token_to_id("<|im_end|>");
        let eos = match (task.chat, turn_end) {
            (true, Some(id)) => id,
            _ => first_eos()?,
        };
        let mut spec = CausalLmSpec::new(task.template(kind)?, eos, max_len, task.max_target_len);
        if !task.chat {
            spec.bos_id = special.bos;
        }
        Ok(Self::Causal(CausalLmEncoder::new(
            base.tokenizer().clone(),
            spec,
        )?))
    }

    /// Encodes training examples.
    pub fn encode_all(&self, examples: &[GenExample]) -> Result<EncodedSet> {
        Ok(match self {
            Self::Causal(c) => EncodedSet::Causal(c.encode_all(examples)?),
            Self::Seq2Seq(s) => EncodedSet::Seq2Seq(s.encode_all(examples)?),
        })
    }

    /// What decoding starts from for each example: the prompt (cut to `max_prompt_len`, the
    /// instruction kept) or the encoder's source.
    pub fn prompts(&self, examples: &[GenExample], max_prompt_len: usize) -> Result<Vec<PromptEncoded>> {
        Ok(match self {
            Self::Causal(c) => c.encode_prompts(examples, max_prompt_len)?,
            Self::Seq2Seq(s) => s.encode_sources(examples)?,
        })
    }
}

impl EncodedSet {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            Self::Causal(v) => v.len(),
            Self::Seq2Seq(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens example `i` is scored on.
    pub fn loss_tokens(&self, i: usize) -> usize {
        match self {
            Self::Causal(v) => v[i].loss_tokens(),
            Self::Seq2Seq(v) => v[i].labels().len(),
        }
    }

    /// Every example's scored tokens.
    pub fn total_loss_tokens(&self) -> usize {
        (0..self.len()).map(|i| self.loss_tokens(i)).sum()
    }

    /// Batches of similar length, `batch_size` rows each or, with `max_tokens`, as many rows as
    /// fit that many padded tokens (encoder and decoder tokens together).
    pub fn plan(&self, batch_size: usize, max_tokens: Option<usize>, order: BatchOrder) -> Vec<Vec<usize>> {
        match self {
            Self::Causal(v) => {
                let lengths: Vec<usize> = v.iter().map(CausalEncoded::len).collect();
                match max_tokens {
                    Some(budget) => petl_data::plan_token_batches(&lengths, budget, order),
                    None => plan_batches(&lengths, batch_size, order),
                }
            }
            Self::Seq2Seq(v) => {
                let pairs: Vec<(usize, usize)> = v.iter().map(Seq2SeqEncoded::lengths).collect();
                match max_tokens {
                    Some(budget) => plan_seq2seq_batches(&pairs, budget, order),
                    None => {
                        let lengths: Vec<usize> = pairs.iter().map(|(s, t)| s + t).collect();
                        plan_batches(&lengths, batch_size, order)
                    }
                }
            }
        }
    }

    /// The padded batch of examples `indices`.
    pub fn collate(&self, indices: &[usize], pad: u32) -> Result<GenBatch> {
        Ok(match self {
            Self::Causal(v) => {
                let items: Vec<&CausalEncoded> = indices.iter().map(|&i| &v[i]).collect();
                GenBatch::Causal(collate_causal(&items, pad)?)
            }
            Self::Seq2Seq(v) => {
                let items: Vec<&Seq2SeqEncoded> = indices.iter().map(|&i| &v[i]).collect();
                GenBatch::Seq2Seq(collate_seq2seq(&items, pad)?)
            }
        })
    }
}
