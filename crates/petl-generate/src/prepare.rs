//! Checking the model and the prompts before any forward pass: vocabulary, lengths, truncation,
//! and each row's token budget.

use crate::config::{GenerationConfig, PromptOverflow};
use crate::error::GenerateError;
use crate::model::{SequenceLayout, StepModel};
use crate::output::FinishReason;

/// What decoding needs to know about the model, checked once.
#[derive(Debug, Clone)]
pub(crate) struct ModelFacts {
    pub vocab_size: usize,
    pub max_positions: Option<usize>,
    pub layout: SequenceLayout,
}

/// One prompt, ready to decode.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What [`StepModel::prefill`] receives (the prompt, maybe truncated).
    pub input: Vec<u32>,
    /// The start of the decoded sequence: the prompt (decoder-only) or the decoder start.
    pub prefix: Vec<u32>,
    /// Most tokens this row may generate, at least 1.
    pub budget: usize,
    /// Why the row ends when it uses its whole budget.
    pub length_reason: FinishReason,
    /// Prompt tokens removed by truncation.
    pub dropped: usize,
}

/// Reads the model's vocabulary, limits and layout and checks the config's token ids against them.
pub(crate) fn check_model<M: StepModel>(
    model: &M,
    config: &GenerationConfig,
) -> Result<ModelFacts, GenerateError<M::Error>> {
    let vocab_size = model.vocab_size();
    if vocab_size == 0 {
        return Err(GenerateError::EmptyVocabulary);
    }
    let in_vocab = |field: &'static str, token: u32| {
        if (token as usize) < vocab_size {
            Ok(())
        } else {
            Err(GenerateError::ConfigTokenOutOfVocab {
                field,
                token,
                vocab_size,
            })
        }
    };
    for &token in &config.stop_tokens {
        in_vocab("stop_tokens", token)?;
    }
    if let Some(token) = config.forced_bos_token_id {
        in_vocab("forced_bos_token_id", token)?;
    }
    if let Some(token) = config.forced_eos_token_id {
        in_vocab("forced_eos_token_id", token)?;
    }
    let max_positions = model.max_positions();
    let layout = model.layout();
    if let SequenceLayout::EncoderDecoder { decoder_start, .. } = &layout {
        if decoder_start.is_empty() {
            return Err(GenerateError::EmptyDecoderStart);
        }
        for &token in decoder_start {
            in_vocab("decoder_start", token)?;
        }
        if let Some(max_positions) = max_positions {
            if decoder_start.len() >= max_positions {
                return Err(GenerateError::DecoderStartTooLong {
                    len: decoder_start.len(),
                    max_positions,
                });
            }
        }
    }
    Ok(ModelFacts {
        vocab_size,
        max_positions,
        layout,
    })
}

/// Validates every prompt, applies the overflow policy and sets each row's budget.
pub(crate) fn prepare_rows<E: std::error::Error + 'static>(
    prompts: &[&[u32]],
    config: &GenerationConfig,
    facts: &ModelFacts,
) -> Result<Vec<Row>, GenerateError<E>> {
    prompts
        .iter()
        .enumerate()
        .map(|(row, prompt)| prepare_row(row, prompt, config, facts))
        .collect()
}

fn prepare_row<E: std::error::Error + 'static>(
    row: usize,
    prompt: &[u32],
    config: &GenerationConfig,
    facts: &ModelFacts,
) -> Result<Row, GenerateError<E>> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt { row });
    }
    if let Some((position, &token)) = prompt
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= facts.vocab_size)
    {
        return Err(GenerateError::TokenOutOfVocab {
            row,
            position,
            token,
            vocab_size: facts.vocab_size,
        });
    }
    let max_new = config.max_new_tokens;
    let (input, prefix) = match &facts.layout {
        SequenceLayout::DecoderOnly => {
            let input = match facts.max_positions {
                None => prompt.to_vec(),
                Some(max_positions) => fit_decoder_prompt(row, prompt, config, max_positions)?,
            };
            (input.clone(), input)
        }
        SequenceLayout::EncoderDecoder {
            decoder_start,
            max_source_positions,
        } => {
            let input = match *max_source_positions {
                Some(limit) if prompt.len() > limit => {
                    if limit == 0 || config.prompt_overflow == PromptOverflow::Error {
                        return Err(GenerateError::PromptTooLong {
                            row,
                            prompt_len: prompt.len(),
                            limit,
                            why: "max_source_positions",
                        });
                    }
                    cut(prompt, limit, config.prompt_overflow)
                }
                _ => prompt.to_vec(),
            };
            (input, decoder_start.clone())
        }
    };
    let room = facts.max_positions.map_or(usize::MAX, |max_positions| {
        max_positions.saturating_sub(prefix.len())
    });
    let (budget, length_reason) = if room < max_new {
        (room, FinishReason::MaxPositions)
    } else {
        (max_new, FinishReason::MaxNewTokens)
    };
    // budget ≥ 1: a decoder-only prompt leaves a free position (checked above), a decoder start is
    // shorter than max_positions (checked in check_model).
    Ok(Row {
        dropped: prompt.len() - input.len(),
        input,
        prefix,
        budget,
        length_reason,
    })
}

/// A decoder-only prompt must leave room for one new token; with truncation, for all of them.
fn fit_decoder_prompt<E: std::error::Error + 'static>(
    row: usize,
    prompt: &[u32],
    config: &GenerationConfig,
    max_positions: usize,
) -> Result<Vec<u32>, GenerateError<E>> {
    if config.prompt_overflow == PromptOverflow::Error {
        if prompt.len() >= max_positions {
            return Err(GenerateError::PromptTooLong {
                row,
                prompt_len: prompt.len(),
                limit: max_positions.saturating_sub(1),
                why: "max_positions minus one new token",
            });
        }
        return Ok(prompt.to_vec());
    }
    let keep = max_positions.saturating_sub(config.max_new_tokens);
    if keep == 0 {
        return Err(GenerateError::NoRoomForPrompt {
            max_new_tokens: config.max_new_tokens,
            max_positions,
        });
    }
    Ok(cut(prompt, keep, config.prompt_overflow))
}

/// The first or last `keep` tokens of `prompt`.
fn cut(prompt: &[u32], keep: usize, side: PromptOverflow) -> Vec<u32> {
    if prompt.len() <= keep {
        return prompt.to_vec();
    }
    match side {
        PromptOverflow::TruncateRight => prompt[..keep].to_vec(),
        PromptOverflow::TruncateLeft | PromptOverflow::Error => prompt[prompt.len() - keep..].to_vec(),
    }
}
