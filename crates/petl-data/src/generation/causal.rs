//! Causal-LM (decoder-only) encoding: prompt template, prompt masking and
//! source-only truncation.

use std::path::Path;

use tokenizers::parallelism::MaybeParallelIterator;
use tokenizers::{Encoding, Tokenizer};

use crate::error::{DataError, Result};
use crate::generation::encoded::{CausalEncoded, PromptEncoded, TruncationSide};
use crate::generation::example::GenExample;
use crate::generation::template::PromptTemplate;
use crate::generation::tokenizer::{load_tokenizer, plain_tokenizer, tokenize_err, ENCODE_CHUNK};

/// How examples become causal-LM sequences.
///
/// A sequence is `[bos] + prompt + target + [eos]` with
/// `prompt = template.render(source)` and `target = target_lead + target`,
/// at most `max_len` tokens. To fit, the target is first cut to
/// `max_target_len - 1` tokens (plus eos); then source tokens are dropped
/// from the `truncation` side until the whole fits. The template's
/// instruction text and the (capped) target are never cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalLmSpec {
    /// Prompt template (e.g. [`PromptTemplate::summarize`], or a
    /// [`chatml`](PromptTemplate::chatml) wrapping for instruct models).
    pub template: PromptTemplate,
    /// Text put before the target text when tokenizing it. Default
    /// [`PromptTemplate::default_target_lead`] of the template (`" "` after
    /// `"Summary:"`, `""` after ChatML's `"assistant\n"`).
    pub target_lead: String,
    /// Token put first, if the model expects one. Default `None`. Prompts are
    /// tokenized without the tokenizer's own special tokens, so this is the
    /// only bos there is.
    pub bos_id: Option<u32>,
    /// Token that ends the target (the model's eos; `<|im_end|>` for ChatML).
    pub eos_id: u32,
    /// Maximum sequence length, bos and eos included.
    pub max_len: usize,
    /// Maximum target length, eos included (at least 2).
    pub max_target_len: usize,
    /// Which end of an over-long source is cut. Default [`TruncationSide::Right`].
    pub truncation: TruncationSide,
}

impl CausalLmSpec {
    /// A spec with the defaults above: no bos, the template's default target
    /// lead, right truncation.
    pub fn new(template: PromptTemplate, eos_id: u32, max_len: usize, max_target_len: usize) -> Self {
        let target_lead = template.default_target_lead().to_string();
        CausalLmSpec {
            template,
            target_lead,
            bos_id: None,
            eos_id,
            max_len,
            max_target_len,
            truncation: TruncationSide::Right,
        }
    }
}

/// Encodes [`GenExample`]s for decoder-only training and generation.
///
/// The prompt is tokenized as one string (template with the source filled
/// in), exactly as `tokenizer(prompt, add_special_tokens=False)` would in
/// Hugging Face Transformers; when it must be shortened, the source text is
/// cut at a token boundary and the prompt re-tokenized, so a truncated
/// prompt is also exactly the tokenization of a shorter source. The target
/// is tokenized separately, so the prompt/target boundary is exact.
#[derive(Clone)]
pub struct CausalLmEncoder {
    tokenizer: Tokenizer,
    spec: CausalLmSpec,
    template_tokens: usize,
}

impl std::fmt::Debug for CausalLmEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The wrapped tokenizer's Debug prints the whole vocabulary.
        f.debug_struct("CausalLmEncoder")
            .field("spec", &self.spec)
            .field("template_tokens", &self.template_tokens)
            .finish_non_exhaustive()
    }
}

impl CausalLmEncoder {
    /// Loads `tokenizer.json` (see [`CausalLmEncoder::new`]).
    pub fn from_file(path: &Path, spec: CausalLmSpec) -> Result<Self> {
        Self::new(load_tokenizer(path)?, spec)
    }

    /// Checks `spec` against the tokenizer. Any padding or truncation
    /// configured in the tokenizer is disabled: batches are padded by
    /// [`crate::collate_causal`] and truncation is done here.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidSetting`] if `max_target_len < 2`;
    /// [`DataError::TemplateTooLong`] if `max_len` cannot hold bos, the
    /// template with an empty source and `max_target_len` target tokens.
    pub fn new(tokenizer: Tokenizer, spec: CausalLmSpec) -> Result<Self> {
        if spec.max_target_len < 2 {
            return Err(DataError::InvalidSetting {
                setting: "max_target_len",
                reason: format!("{} < 2 (one target token plus eos)", spec.max_target_len),
            });
        }
        let tokenizer = plain_tokenizer(tokenizer);
        let template_tokens = tokenizer
            .encode_fast(spec.template.render(""), false)
            .map_err(tokenize_err)?
            .len();
        let reserved = usize::from(spec.bos_id.is_some()) + spec.max_target_len;
        if spec.max_len < template_tokens + reserved {
            return Err(DataError::TemplateTooLong {
                max_len: spec.max_len,
                template_tokens,
                reserved,
            });
        }
        Ok(CausalLmEncoder {
            tokenizer,
            spec,
            template_tokens,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &CausalLmSpec {
        &self.spec
    }

    /// The tokenizer, without padding or truncation (decode generations with it).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokens of the template with an empty source.
    pub fn template_tokens(&self) -> usize {
        self.template_tokens
    }

    /// Encodes one training example.
    pub fn encode(&self, ex: &GenExample) -> Result<CausalEncoded> {
        let target = self
            .tokenizer
            .encode_fast(self.target_text(ex), false)
            .map_err(tokenize_err)?;
        let prompt = self
            .tokenizer
            .encode(self.spec.template.render(&ex.source), false)
            .map_err(tokenize_err)?;
        self.assemble(&ex.source, prompt, target.get_ids())
    }

    /// Encodes examples in order, in parallel (unless `TOKENIZERS_PARALLELISM`
    /// is false); equal to calling [`encode`](Self::encode) on each.
    pub fn encode_all(&self, examples: &[GenExample]) -> Result<Vec<CausalEncoded>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(ENCODE_CHUNK) {
            let targets = self
                .tokenizer
                .encode_batch_fast(chunk.iter().map(|ex| self.target_text(ex)).collect(), false)
                .map_err(tokenize_err)?;
            let prompts = self
                .tokenizer
                .encode_batch(
                    chunk
                        .iter()
                        .map(|ex| self.spec.template.render(&ex.source))
                        .collect(),
                    false,
                )
                .map_err(tokenize_err)?;
            // Over-long prompts are re-tokenized while they are cut, so
            // finishing is spread over threads too.
            let jobs: Vec<_> = chunk.iter().zip(prompts).zip(targets).collect();
            let done: Vec<CausalEncoded> = jobs
                .into_maybe_par_iter()
                .map(|((ex, prompt), target)| self.assemble(&ex.source, prompt, target.get_ids()))
                .collect::<Result<_>>()?;
            out.extend(done);
        }
        Ok(out)
    }

    /// Encodes the prompt alone (`[bos] + template with source`), the input
    /// for generation, in at most `max_prompt_len` tokens: over-long sources
    /// are cut on the spec's truncation side, the instruction is kept.
    ///
    /// # Errors
    ///
    /// [`DataError::TemplateTooLong`] if `max_prompt_len` cannot hold bos and
    /// the template itself.
    pub fn encode_prompt(&self, source: &str, max_prompt_len: usize) -> Result<PromptEncoded> {
        let budget = self.prompt_budget(max_prompt_len)?;
        let first = self
            .tokenizer
            .encode(self.spec.template.render(source), false)
            .map_err(tokenize_err)?;
        self.prompt_only(source, first, budget)
    }

    /// [`encode_prompt`](Self::encode_prompt) for every example's source, in order.
    pub fn encode_prompts(
        &self,
        examples: &[GenExample],
        max_prompt_len: usize,
    ) -> Result<Vec<PromptEncoded>> {
        let budget = self.prompt_budget(max_prompt_len)?;
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(ENCODE_CHUNK) {
            let prompts = self
                .tokenizer
                .encode_batch(
                    chunk
                        .iter()
                        .map(|ex| self.spec.template.render(&ex.source))
                        .collect(),
                    false,
                )
                .map_err(tokenize_err)?;
            let jobs: Vec<_> = chunk.iter().zip(prompts).collect();
            let done: Vec<PromptEncoded> = jobs
                .into_maybe_par_iter()
                .map(|(ex, first)| self.prompt_only(&ex.source, first, budget))
                .collect::<Result<_>>()?;
            out.extend(done);
        }
        Ok(out)
    }

    fn bos_len(&self) -> usize {
        usize::from(self.spec.bos_id.is_some())
    }

    fn prompt_budget(&self, max_prompt_len: usize) -> Result<usize> {
        let reserved = self.bos_len();
        if max_prompt_len < self.template_tokens + reserved {
            return Err(DataError::TemplateTooLong {
                max_len: max_prompt_len,
                template_tokens: self.template_tokens,
                reserved,
            });
        }
        Ok(max_prompt_len - reserved)
    }

    fn prompt_only(&self, source: &str, first: Encoding, budget: usize) -> Result<PromptEncoded> {
        let (ids, source_truncated) = self.fit_prompt(source, first, budget)?;
        let mut input_ids = Vec::with_capacity(self.bos_len() + ids.len());
        input_ids.extend(self.spec.bos_id);
        input_ids.extend_from_slice(&ids);
        Ok(PromptEncoded {
            input_ids,
            source_truncated,
        })
    }

    fn target_text(&self, ex: &GenExample) -> String {
        format!("{}{}", self.spec.target_lead, ex.target)
    }

    fn assemble(&self, source: &str, prompt: Encoding, target: &[u32]) -> Result<CausalEncoded> {
        let keep = target.len().min(self.spec.max_target_len - 1);
        let mut target_ids = Vec::with_capacity(keep + 1);
        target_ids.extend_from_slice(&target[..keep]);
        target_ids.push(self.spec.eos_id);
        // `new` guarantees the budget holds the template with an empty source.
        let budget = self.spec.max_len - self.bos_len() - target_ids.len();
        let (prompt_ids, source_truncated) = self.fit_prompt(source, prompt, budget)?;
        let mut full_prompt = Vec::with_capacity(self.bos_len() + prompt_ids.len());
        full_prompt.extend(self.spec.bos_id);
        full_prompt.extend_from_slice(&prompt_ids);
        Ok(CausalEncoded::from_parts(&full_prompt, &target_ids)
            .with_flags(source_truncated, keep < target.len()))
    }

    /// Prompt ids in at most `budget` tokens, and whether the source was cut.
    ///
    /// `enc` is the tokenization of the full prompt, with byte offsets. While
    /// it is too long, the source text is cut just past its last kept token
    /// (or just before its first kept one, for left truncation) and the
    /// prompt re-tokenized; a cut can merge differently than the original
    /// tokens, hence the loop. Each round shortens the source, and an empty
    /// source fits (checked in `new`), so it ends.
    fn fit_prompt(&self, source: &str, mut enc: Encoding, budget: usize) -> Result<(Vec<u32>, bool)> {
        let head = self.spec.template.head().len();
        let mut kept = source;
        while enc.len() > budget {
            if kept.is_empty() {
                return Err(DataError::TemplateTooLong {
                    max_len: budget,
                    template_tokens: enc.len(),
                    reserved: 0,
                });
            }
            let over = enc.len() - budget;
            // Source tokens, as offsets relative to the kept source text.
            let spans: Vec<(usize, usize)> = enc
                .get_offsets()
                .iter()
                .filter(|&&(s, e)| e > head && s < head + kept.len())
                .map(|&(s, e)| {
                    let rel = |x: usize| x.saturating_sub(head).min(kept.len());
                    (rel(s), rel(e))
                })
                .collect();
            let keep = spans.len().saturating_sub(over);
            kept = match self.spec.truncation {
                TruncationSide::Right => {
                    let cut = if keep == 0 { 0 } else { spans[keep - 1].1 };
                    let mut cut = floor_boundary(kept, cut);
                    if cut >= kept.len() {
                        cut = floor_boundary(kept, kept.len() - 1);
                    }
                    &kept[..cut]
                }
                TruncationSide::Left => {
                    let start = if keep == 0 {
                        kept.len()
                    } else {
                        spans[spans.len() - keep].0
                    };
                    let mut start = ceil_boundary(kept, start);
                    if start == 0 {
                        start = ceil_boundary(kept, 1);
                    }
                    &kept[start..]
                }
            };
            enc = self
                .tokenizer
                .encode(self.spec.template.render(kept), false)
                .map_err(tokenize_err)?;
        }
        Ok((enc.get_ids().to_vec(), kept.len() < source.len()))
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_boundaries() {
        let s = "aé b"; // 'é' is bytes 1..3
        assert_eq!(floor_boundary(s, 2), 1);
        assert_eq!(ceil_boundary(s, 2), 3);
        assert_eq!(floor_boundary(s, 99), s.len());
        assert_eq!(ceil_boundary(s, 0), 0);
    }
}
