//! The configured processors, applied in transformers' order.

use crate::config::{GenerationConfig, SampleConfig, Strategy};
use crate::processors;

/// The processors a config turns on, in the order transformers 5.23's `_get_logits_processor`
/// builds them: repetition penalty, no-repeat n-gram, min new tokens, forced BOS, forced EOS,
/// then (sampling only) temperature, top-k, top-p.
#[derive(Debug, Clone)]
pub struct Pipeline {
    repetition_penalty: Option<f32>,
    no_repeat_ngram_size: usize,
    min_new_tokens: usize,
    stop_tokens: Vec<u32>,
    forced_bos: Option<u32>,
    forced_eos: Option<u32>,
    warpers: Option<Warpers>,
}

#[derive(Debug, Clone)]
struct Warpers {
    temperature: Option<f32>,
    top_k: usize,
    top_p: Option<f64>,
}

/// Where a row stands when its next token's scores are processed.
#[derive(Debug, Clone, Copy)]
pub struct RowPosition<'a> {
    /// The decoded sequence so far: prefix then generated tokens.
    pub sequence: &'a [u32],
    /// How many of its tokens were generated.
    pub generated: usize,
    /// The row's token budget.
    pub budget: usize,
}

impl Pipeline {
    /// The processors `config` turns on (the config is assumed valid).
    pub fn new(config: &GenerationConfig) -> Self {
        let warpers = match &config.strategy {
            Strategy::Sample(SampleConfig {
                temperature,
                top_k,
                top_p,
                ..
            }) => Some(Warpers {
                temperature: (*temperature != 1.0).then_some(*temperature as f32),
                top_k: *top_k,
                top_p: (*top_p < 1.0).then_some(*top_p),
            }),
            Strategy::Greedy | Strategy::Beam(_) => None,
        };
        Self {
            repetition_penalty: (config.repetition_penalty != 1.0)
                .then_some(config.repetition_penalty as f32),
            no_repeat_ngram_size: config.no_repeat_ngram_size,
            min_new_tokens: config.min_new_tokens,
            stop_tokens: config.stop_tokens.clone(),
            forced_bos: config.forced_bos_token_id,
            forced_eos: config.forced_eos_token_id,
            warpers,
        }
    }

    /// The logits processors (everything but the sampling warpers).
    pub fn process(&self, scores: &mut [f32], at: RowPosition<'_>) {
        if let Some(penalty) = self.repetition_penalty {
            processors::apply_repetition_penalty(scores, at.sequence, penalty);
        }
        processors::ban_repeated_ngrams(scores, at.sequence, self.no_repeat_ngram_size);
        if at.generated < self.min_new_tokens {
            processors::ban_tokens(scores, &self.stop_tokens);
        }
        if let Some(token) = self.forced_bos.filter(|_| at.sequence.len() == 1) {
            processors::force_token(scores, token);
        }
        if let Some(token) = self.forced_eos.filter(|_| at.generated + 1 == at.budget) {
            processors::force_token(scores, token);
        }
    }

    /// The sampling warpers (nothing unless the strategy samples).
    pub fn warp(&self, scores: &mut [f32]) {
        let Some(warpers) = &self.warpers else { return };
        if let Some(temperature) = warpers.temperature {
            processors::apply_temperature(scores, temperature);
        }
        processors::top_k_filter(scores, warpers.top_k, 1);
        if let Some(top_p) = warpers.top_p {
            processors::top_p_filter(scores, top_p, 1);
        }
    }
}
