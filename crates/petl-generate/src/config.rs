//! What to generate: length limits, the search strategy, stop conditions and logit processors.
//!
//! Field names and defaults follow transformers' `GenerationConfig` where it has the same knob.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Settings for one `generate` call. [`GenerationConfig::validate`] runs before any decoding.
///
/// ```
/// use petl_generate::{BeamConfig, EarlyStopping, GenerationConfig, Strategy};
///
/// let config: GenerationConfig = serde_json::from_str(
///     r#"{"max_new_tokens": 60, "stop_tokens": [2], "no_repeat_ngram_size": 3,
///         "strategy": {"type": "beam", "num_beams": 4, "length_penalty": 2.0, "early_stopping": true}}"#,
/// )?;
/// assert_eq!(
///     config.strategy,
///     Strategy::Beam(BeamConfig { num_beams: 4, length_penalty: 2.0, early_stopping: EarlyStopping::WhenFull, num_return_sequences: 1 })
/// );
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Most tokens generated per row, at least 1. Clipped per row to the model's position budget
    /// (see [`crate::StepModel::max_positions`]). Default 20.
    pub max_new_tokens: usize,
    /// The stop tokens cannot be generated before this many tokens (HF `min_new_tokens`;
    /// HF's `min_length` of an encoder-decoder model is `min_new_tokens` + the decoder start
    /// length). At most `max_new_tokens`. Default 0.
    pub min_new_tokens: usize,
    /// How the next token is chosen. Default greedy.
    pub strategy: Strategy,
    /// Token ids that end a row (HF `eos_token_id`, several allowed); the stop token is kept as
    /// the last generated token. Default none: rows run to `max_new_tokens`.
    pub stop_tokens: Vec<u32>,
    /// A row also ends once its generated text contains one of these strings (HF
    /// `stop_strings`); needs a detokenizer ([`crate::Generator::with_detokenizer`]). The tokens
    /// are kept; as in transformers, `min_new_tokens` does not hold stop strings back. Never
    /// empty strings. Default none.
    pub stop_strings: Vec<String>,
    /// Bans any token that would repeat an n-gram of this size already in the decoded sequence
    /// (HF `no_repeat_ngram_size`, prompt included for decoder-only models); 0 is off. Default 0.
    pub no_repeat_ngram_size: usize,
    /// HF `repetition_penalty` (CTRL, arXiv:1909.05858 §4.1): the score of every token already in
    /// the decoded sequence is divided by this when positive and multiplied when negative.
    /// Finite and > 0; 1.0 is off. Default 1.0.
    pub repetition_penalty: f64,
    /// Forces this token when the decoded sequence has length 1 (HF `forced_bos_token_id`, e.g.
    /// mBART's target language code). Default none.
    pub forced_bos_token_id: Option<u32>,
    /// Forces this token as the last token a row may generate (HF `forced_eos_token_id`).
    /// Default none.
    pub forced_eos_token_id: Option<u32>,
    /// What to do with a prompt that does not fit the model. Default [`PromptOverflow::Error`].
    pub prompt_overflow: PromptOverflow,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            min_new_tokens: 0,
            strategy: Strategy::Greedy,
            stop_tokens: Vec::new(),
            stop_strings: Vec::new(),
            no_repeat_ngram_size: 0,
            repetition_penalty: 1.0,
            forced_bos_token_id: None,
            forced_eos_token_id: None,
            prompt_overflow: PromptOverflow::Error,
        }
    }
}

impl GenerationConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// The first field out of range, as a [`ConfigError`] naming it and the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_new_tokens == 0 {
            return Err(out_of_range("max_new_tokens", 0.0, ">= 1"));
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(ConfigError::MinAboveMax {
                min: self.min_new_tokens,
                max: self.max_new_tokens,
            });
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(out_of_range(
                "repetition_penalty",
                self.repetition_penalty,
                "finite and > 0",
            ));
        }
        if let Some(index) = self.stop_strings.iter().position(String::is_empty) {
            return Err(ConfigError::EmptyStopString { index });
        }
        match &self.strategy {
            Strategy::Greedy => Ok(()),
            Strategy::Sample(sample) => sample.validate(),
            Strategy::Beam(beam) => beam.validate(),
        }
    }
}

fn out_of_range(field: &'static str, value: f64, allowed: &'static str) -> ConfigError {
    ConfigError::OutOfRange {
        field,
        value,
        allowed,
    }
}

/// How the next token is chosen from the processed scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// The highest score (the lowest token id among ties), per row.
    Greedy,
    /// A draw from the softmax of the warped scores, per row.
    Sample(SampleConfig),
    /// Hugging Face beam search over each row.
    Beam(BeamConfig),
}

/// Multinomial sampling (HF `do_sample=True`, `num_beams=1`). Defaults are transformers'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    /// Scores are divided by this before the filters; finite and > 0. Default 1.0.
    pub temperature: f64,
    /// Keeps the `top_k` highest scores (ties with the k-th included); 0 is off. Default 50.
    pub top_k: usize,
    /// Keeps the smallest set of highest-probability tokens whose mass reaches `top_p`, at least
    /// one; in (0, 1], 1.0 is off. Default 1.0.
    pub top_p: f64,
    /// Seed of the ChaCha20 generator; row `i` of a call draws from stream `i`, so a row's tokens
    /// depend on the seed and its index only, not on the other rows. Default 0.
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SampleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(out_of_range("temperature", self.temperature, "finite and > 0"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(out_of_range("top_p", self.top_p, "in (0, 1]"));
        }
        Ok(())
    }
}

/// Beam search as in transformers 5.23's `_beam_search` (`do_sample=False`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeamConfig {
    /// Beams kept per row, at least 1. Default 4.
    pub num_beams: usize,
    /// A finished hypothesis scores `sum of log-probabilities / generated_len^length_penalty`,
    /// where `generated_len` counts the generated tokens including the stop token; finite.
    /// Default 1.0.
    pub length_penalty: f64,
    /// When a row stops searching. Default [`EarlyStopping::Heuristic`] (HF `False`).
    pub early_stopping: EarlyStopping,
    /// Hypotheses returned per row, best first, in 1..=`num_beams`. Default 1.
    pub num_return_sequences: usize,
}

impl Default for BeamConfig {
    fn default() -> Self {
        Self {
            num_beams: 4,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            num_return_sequences: 1,
        }
    }
}

impl BeamConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.num_beams == 0 {
            return Err(out_of_range("num_beams", 0.0, ">= 1"));
        }
        if !self.length_penalty.is_finite() {
            return Err(out_of_range("length_penalty", self.length_penalty, "finite"));
        }
        if self.num_return_sequences == 0 || self.num_return_sequences > self.num_beams {
            return Err(ConfigError::ReturnSequences {
                requested: self.num_return_sequences,
                num_beams: self.num_beams,
            });
        }
        Ok(())
    }
}

/// HF's `early_stopping`: when a row's beam search ends before `max_new_tokens`.
///
/// In every mode a row ends once `num_beams` hypotheses are finished and the best running beam
/// cannot beat the worst of them by the mode's estimate; serialized as HF writes it
/// (`false`, `true`, `"never"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "EarlyStoppingRepr", into = "EarlyStoppingRepr")]
pub enum EarlyStopping {
    /// HF `False`: stop when the best running beam, normalised at its current length, scores no
    /// better than the worst finished hypothesis.
    #[default]
    Heuristic,
    /// HF `True`: stop as soon as `num_beams` hypotheses are finished.
    WhenFull,
    /// HF `"never"`: like [`EarlyStopping::Heuristic`], but with a positive length penalty the best
    /// running beam is normalised at the longest length it could still reach.
    Never,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EarlyStoppingRepr {
    Flag(bool),
    Word(String),
}

impl TryFrom<EarlyStoppingRepr> for EarlyStopping {
    type Error = String;
    fn try_from(repr: EarlyStoppingRepr) -> Result<Self, String> {
        match repr {
            EarlyStoppingRepr::Flag(false) => Ok(Self::Heuristic),
            EarlyStoppingRepr::Flag(true) => Ok(Self::WhenFull),
            EarlyStoppingRepr::Word(word) if word == "never" => Ok(Self::Never),
            EarlyStoppingRepr::Word(word) => Err(format!(
                "early_stopping must be true, false or \"never\", got \"{word}\""
            )),
        }
    }
}

impl From<EarlyStopping> for EarlyStoppingRepr {
    fn from(mode: EarlyStopping) -> Self {
        match mode {
            EarlyStopping::Heuristic => Self::Flag(false),
            EarlyStopping::WhenFull => Self::Flag(true),
            EarlyStopping::Never => Self::Word("never".to_owned()),
        }
    }
}

/// What happens to a prompt that leaves no room to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptOverflow {
    /// Refuse it ([`crate::GenerateError::PromptTooLong`]). A decoder-only prompt that fits with
    /// room for fewer than `max_new_tokens` is kept and the row's budget clipped.
    #[default]
    Error,
    /// Keep the last tokens (a decoder-only prompt is cut to `max_positions - max_new_tokens`,
    /// an encoder prompt to `max_source_positions`). A leading BOS is dropped with the rest.
    TruncateLeft,
    /// Keep the first tokens, to the same lengths as [`PromptOverflow::TruncateLeft`].
    TruncateRight,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_reads_and_writes_hf_values() {
        for (json, mode) in [
            ("false", EarlyStopping::Heuristic),
            ("true", EarlyStopping::WhenFull),
            ("\"never\"", EarlyStopping::Never),
        ] {
            assert_eq!(serde_json::from_str::<EarlyStopping>(json).unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), json);
        }
        let err = serde_json::from_str::<EarlyStopping>("\"sometimes\"").unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn defaults_round_trip_and_validate() {
        let config = GenerationConfig::default();
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<GenerationConfig>(&json).unwrap(), config);
        let sample = GenerationConfig {
            strategy: Strategy::Sample(SampleConfig::default()),
            ..config.clone()
        };
        let json = serde_json::to_string(&sample).unwrap();
        assert_eq!(serde_json::from_str::<GenerationConfig>(&json).unwrap(), sample);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |strategy| {
            GenerationConfig {
                strategy,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
        };
        let cases = [
            (
                bad(Strategy::Sample(SampleConfig {
                    temperature: 0.0,
                    ..Default::default()
                })),
                "temperature",
            ),
            (
                bad(Strategy::Sample(SampleConfig {
                    top_p: 0.0,
                    ..Default::default()
                })),
                "top_p",
            ),
            (
                bad(Strategy::Sample(SampleConfig {
                    top_p: 1.5,
                    ..Default::default()
                })),
                "top_p",
            ),
            (
                bad(Strategy::Beam(BeamConfig {
                    num_beams: 0,
                    ..Default::default()
                })),
                "num_beams",
            ),
            (
                bad(Strategy::Beam(BeamConfig {
                    length_penalty: f64::NAN,
                    ..Default::default()
                })),
                "length_penalty",
            ),
            (
                bad(Strategy::Beam(BeamConfig {
                    num_return_sequences: 5,
                    ..Default::default()
                })),
                "num_return_sequences",
            ),
            (
                GenerationConfig {
                    max_new_tokens: 0,
                    ..Default::default()
                }
                .validate()
                .unwrap_err(),
                "max_new_tokens",
            ),
            (
                GenerationConfig {
                    min_new_tokens: 30,
                    ..Default::default()
                }
                .validate()
                .unwrap_err(),
                "min_new_tokens",
            ),
            (
                GenerationConfig {
                    repetition_penalty: 0.0,
                    ..Default::default()
                }
                .validate()
                .unwrap_err(),
                "repetition_penalty",
            ),
            (
                GenerationConfig {
                    stop_strings: vec!["x".into(), String::new()],
                    ..Default::default()
                }
                .validate()
                .unwrap_err(),
                "stop string 1",
            ),
        ];
        for (err, field) in cases {
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<GenerationConfig>(r#"{"max_new_token": 3}"#).unwrap_err();
        assert!(err.to_string().contains("max_new_token"), "{err}");
    }
}
