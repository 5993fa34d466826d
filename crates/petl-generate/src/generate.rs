//! The entry points: check everything, then run the configured search.

use crate::beam;
use crate::config::{GenerationConfig, Strategy};
use crate::error::GenerateError;
use crate::model::StepModel;
use crate::output::Generation;
use crate::pipeline::Pipeline;
use crate::prepare::{check_model, prepare_rows, ModelFacts};
use crate::sequential::{self, Chooser};
use crate::stop::{Detokenizer, StopCheck};
use crate::stream::{NoSink, TokenSink};

/// Generates for a batch of prompts with one model and one configuration.
///
/// [`Generator::new`] validates the configuration and checks it against the model;
/// [`generate`](Generator::generate) then checks the prompts (non-empty, ids in the vocabulary,
/// lengths within the model's positions, see [`crate::PromptOverflow`]) before the first forward
/// pass, and the model's logits at every step. Rows are independent: each ends on its own, and
/// finished rows are dropped from the cache.
pub struct Generator<'a, M: StepModel> {
    model: &'a M,
    config: &'a GenerationConfig,
    facts: ModelFacts,
    detokenizer: Option<Detokenizer<'a>>,
}

impl<'a, M: StepModel> Generator<'a, M> {
    /// A generator for `model` with `config`.
    ///
    /// # Errors
    /// [`GenerateError::Config`] for an invalid config; [`GenerateError::EmptyVocabulary`],
    /// [`GenerateError::ConfigTokenOutOfVocab`], [`GenerateError::EmptyDecoderStart`] or
    /// [`GenerateError::DecoderStartTooLong`] when config and model do not fit together.
    pub fn new(model: &'a M, config: &'a GenerationConfig) -> Result<Self, GenerateError<M::Error>> {
        config.validate()?;
        let facts = check_model(model, config)?;
        Ok(Self {
            model,
            config,
            facts,
            detokenizer: None,
        })
    }

    /// Sets the function that decodes generated tokens to text, needed for `stop_strings`.
    /// It is called with a row's whole generated sequence after every token (every candidate,
    /// in beam search) while stop strings are configured.
    pub fn with_detokenizer(mut self, detokenizer: &'a dyn Fn(&[u32]) -> String) -> Self {
        self.detokenizer = Some(detokenizer);
        self
    }

    /// Generates for every prompt; the result has one entry per prompt, in order. No prompts,
    /// no model call.
    ///
    /// # Errors
    /// See [`GenerateError`]: bad prompts are refused before the model runs; bad logits and model
    /// failures name the step.
    pub fn generate(&self, prompts: &[&[u32]]) -> Result<Vec<Generation>, GenerateError<M::Error>> {
        self.generate_streaming(prompts, &mut NoSink)
    }

    /// Like [`generate`](Self::generate), pushing tokens to `sink` as they are produced (see
    /// [`TokenSink`] for beam search).
    ///
    /// # Errors
    /// As [`generate`](Self::generate); tokens already pushed stay pushed.
    pub fn generate_streaming<S: TokenSink + ?Sized>(
        &self,
        prompts: &[&[u32]],
        sink: &mut S,
    ) -> Result<Vec<Generation>, GenerateError<M::Error>> {
        if !self.config.stop_strings.is_empty() && self.detokenizer.is_none() {
            return Err(GenerateError::StopStringsNeedDetokenizer);
        }
        let rows = prepare_rows(prompts, self.config, &self.facts)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = Pipeline::new(self.config);
        let stop = StopCheck {
            stop_tokens: &self.config.stop_tokens,
            stop_strings: &self.config.stop_strings,
            detokenizer: self.detokenizer,
        };
        let vocab_size = self.facts.vocab_size;
        match &self.config.strategy {
            Strategy::Greedy => sequential::decode(
                self.model,
                &rows,
                vocab_size,
                &pipeline,
                stop,
                Chooser::Greedy,
                sink,
            ),
            Strategy::Sample(sample) => {
                let chooser = Chooser::sampler(sample.seed, rows.len());
                sequential::decode(self.model, &rows, vocab_size, &pipeline, stop, chooser, sink)
            }
            Strategy::Beam(beam) => beam::decode(self.model, &rows, vocab_size, beam, &pipeline, stop, sink),
        }
    }
}

/// Generates for `prompts` with `config`: [`Generator::new`] then [`Generator::generate`].
///
/// # Errors
/// As [`Generator::new`] and [`Generator::generate`].
pub fn generate<M: StepModel>(
    model: &M,
    prompts: &[&[u32]],
    config: &GenerationConfig,
) -> Result<Vec<Generation>, GenerateError<M::Error>> {
    Generator::new(model, config)?.generate(prompts)
}
