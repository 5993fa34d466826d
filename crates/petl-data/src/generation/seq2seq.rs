//! Encoder-decoder (BART / mBART) encoding: source with the tokenizer's
//! special tokens, labels ending in eos, decoder inputs shifted right.

use std::path::Path;

use tokenizers::tokenizer::PostProcessor;
use tokenizers::{Encoding, Tokenizer, TruncationDirection};

use crate::error::{DataError, Result};
use crate::generation::encoded::{PromptEncoded, Seq2SeqEncoded, TruncationSide};
use crate::generation::example::GenExample;
use crate::generation::tokenizer::{load_tokenizer, plain_tokenizer, tokenize_err, ENCODE_CHUNK};

/// How examples become encoder-decoder pairs.
///
/// Source: the source text with the tokenizer's special tokens (BART
/// `<s> … </s>`, mBART `… </s> en_XX`), cut to `max_source_len` on the
/// `truncation` side with the special tokens kept. Labels:
/// `label_prefix + target + [eos_id] + label_suffix`, the target cut so the
/// whole is at most `max_target_len`. Decoder inputs: `[decoder_start_id]`
/// followed by the labels without their last token.
///
/// Hugging Face conventions: BART fine-tuning tokenizes targets with the
/// tokenizer, giving labels `<s> … </s>`; set `label_prefix = [bos]` and
/// `decoder_start_id = eos` (`</s>`) to match. mBART-style targets
/// `… </s> ro_RO` use `label_suffix = [ro_RO]` and
/// `decoder_start_id = ro_RO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqSpec {
    /// Maximum encoder length, special tokens included.
    pub max_source_len: usize,
    /// Maximum label length, prefix, eos and suffix included.
    pub max_target_len: usize,
    /// First decoder input (the model config's `decoder_start_token_id`).
    pub decoder_start_id: u32,
    /// Token that ends the target.
    pub eos_id: u32,
    /// Tokens before the target in the labels. Default empty.
    pub label_prefix: Vec<u32>,
    /// Tokens after eos in the labels. Default empty.
    pub label_suffix: Vec<u32>,
    /// Which end of an over-long source is cut. Default [`TruncationSide::Right`].
    pub truncation: TruncationSide,
}

impl Seq2SeqSpec {
    /// A spec with empty label prefix and suffix and right truncation.
    pub fn new(decoder_start_id: u32, eos_id: u32, max_source_len: usize, max_target_len: usize) -> Self {
        Seq2SeqSpec {
            max_source_len,
            max_target_len,
            decoder_start_id,
            eos_id,
            label_prefix: Vec::new(),
            label_suffix: Vec::new(),
            truncation: TruncationSide::Right,
        }
    }
}

/// Encodes [`GenExample`]s for encoder-decoder training and generation.
#[derive(Clone)]
pub struct Seq2SeqEncoder {
    tokenizer: Tokenizer,
    spec: Seq2SeqSpec,
    special_tokens: usize,
}

impl std::fmt::Debug for Seq2SeqEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The wrapped tokenizer's Debug prints the whole vocabulary.
        f.debug_struct("Seq2SeqEncoder")
            .field("spec", &self.spec)
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

impl Seq2SeqEncoder {
    /// Loads `tokenizer.json` (see [`Seq2SeqEncoder::new`]).
    pub fn from_file(path: &Path, spec: Seq2SeqSpec) -> Result<Self> {
        Self::new(load_tokenizer(path)?, spec)
    }

    /// Checks `spec` against the tokenizer, whose own padding and truncation
    /// are disabled.
    ///
    /// # Errors
    ///
    /// [`DataError::MaxLenTooSmall`] if `max_source_len` cannot hold the
    /// tokenizer's special tokens plus one source token;
    /// [`DataError::InvalidSetting`] if `max_target_len` cannot hold the
    /// label prefix and suffix, eos and one target token.
    pub fn new(tokenizer: Tokenizer, spec: Seq2SeqSpec) -> Result<Self> {
        let tokenizer = plain_tokenizer(tokenizer);
        let special_tokens = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if spec.max_source_len <= special_tokens {
            return Err(DataError::MaxLenTooSmall {
                max_len: spec.max_source_len,
                special_tokens,
            });
        }
        let fixed = spec.label_prefix.len() + 1 + spec.label_suffix.len();
        if spec.max_target_len <= fixed {
            return Err(DataError::InvalidSetting {
                setting: "max_target_len",
                reason: format!(
                    "{} leaves no room for the target next to {fixed} prefix, eos and suffix tokens",
                    spec.max_target_len
                ),
            });
        }
        Ok(Seq2SeqEncoder {
            tokenizer,
            spec,
            special_tokens,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &Seq2SeqSpec {
        &self.spec
    }

    /// The tokenizer, without padding or truncation (decode generations with it).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes one training example.
    pub fn encode(&self, ex: &GenExample) -> Result<Seq2SeqEncoded> {
        let source = self
            .tokenizer
            .encode_fast(ex.source.as_str(), false)
            .map_err(tokenize_err)?;
        let target = self
            .tokenizer
            .encode_fast(ex.target.as_str(), false)
            .map_err(tokenize_err)?;
        self.assemble(source, target.get_ids())
    }

    /// Encodes examples in order, tokenizing in parallel; equal to calling
    /// [`encode`](Self::encode) on each.
    pub fn encode_all(&self, examples: &[GenExample]) -> Result<Vec<Seq2SeqEncoded>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(ENCODE_CHUNK) {
            let sources = self.encode_texts(chunk.iter().map(|ex| ex.source.as_str()))?;
            let targets = self.encode_texts(chunk.iter().map(|ex| ex.target.as_str()))?;
            for (source, target) in sources.into_iter().zip(targets) {
                out.push(self.assemble(source, target.get_ids())?);
            }
        }
        Ok(out)
    }

    /// The encoder input for generation: the source with special tokens, cut
    /// to `max_source_len` as in training.
    pub fn encode_source(&self, source: &str) -> Result<PromptEncoded> {
        let enc = self.tokenizer.encode_fast(source, false).map_err(tokenize_err)?;
        self.finish_source(enc)
    }

    /// [`encode_source`](Self::encode_source) for every example, in order.
    pub fn encode_sources(&self, examples: &[GenExample]) -> Result<Vec<PromptEncoded>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(ENCODE_CHUNK) {
            for enc in self.encode_texts(chunk.iter().map(|ex| ex.source.as_str()))? {
                out.push(self.finish_source(enc)?);
            }
        }
        Ok(out)
    }

    fn encode_texts<'a>(&self, texts: impl Iterator<Item = &'a str>) -> Result<Vec<Encoding>> {
        self.tokenizer
            .encode_batch_fast(texts.collect::<Vec<_>>(), false)
            .map_err(tokenize_err)
    }

    fn finish_source(&self, mut enc: Encoding) -> Result<PromptEncoded> {
        let room = self.spec.max_source_len - self.special_tokens;
        let source_truncated = enc.len() > room;
        if source_truncated {
            let direction = match self.spec.truncation {
                TruncationSide::Right => TruncationDirection::Right,
                TruncationSide::Left => TruncationDirection::Left,
            };
            enc.truncate(room, 0, direction);
        }
        let enc = self
            .tokenizer
            .post_process(enc, None, true)
            .map_err(tokenize_err)?;
        Ok(PromptEncoded {
            input_ids: enc.get_ids().to_vec(),
            source_truncated,
        })
    }

    fn assemble(&self, source: Encoding, target: &[u32]) -> Result<Seq2SeqEncoded> {
        let source = self.finish_source(source)?;
        let s = &self.spec;
        let room = s.max_target_len - s.label_prefix.len() - 1 - s.label_suffix.len();
        let keep = target.len().min(room);
        let mut labels = Vec::with_capacity(s.label_prefix.len() + keep + 1 + s.label_suffix.len());
        labels.extend_from_slice(&s.label_prefix);
        labels.extend_from_slice(&target[..keep]);
        labels.push(s.eos_id);
        labels.extend_from_slice(&s.label_suffix);
        Ok(
            Seq2SeqEncoded::from_parts(source.input_ids, labels, s.decoder_start_id)
                .with_flags(source.source_truncated, keep < target.len()),
        )
    }
}
