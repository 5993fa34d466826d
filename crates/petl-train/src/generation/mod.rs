//! Text generation tasks — summarization, translation, prompt → response — on decoder-only
//! (Llama family) and encoder-decoder (BART, mBART) base models, trained with the same
//! design-space methods and optimizer step as classification.
//!
//! - [`GenTask`]: where the data is, how a prompt is built, how evaluation decodes.
//! - [`GenBase`]: a loaded generation base and its tokenizer (a Hugging Face directory or a
//!   GGUF file).
//! - [`TextCodec`]: how the task's text becomes token ids for that base.
//! - [`GenTaskModel`]: the base with one task's delta: the language-modelling loss on target
//!   tokens only, and decoding through `petl-generate`.
//! - [`evaluate_generation`]: decode a dataset and score it (ROUGE or BLEU).
//! - [`train_generation`]: the loop `petl train` runs for a generation task.

mod base;
mod codec;
mod diff;
mod eval;
mod model;
mod stepper;
mod task;
mod trainer;

pub use base::{GenArch, GenBase, Seq2SeqFormat, SpecialTokens};
pub use codec::{EncodedSet, GenBatch, TextCodec};
pub use eval::{evaluate_generation, EvalSettings, GenEvalOutcome, GenPrediction};
pub(crate) use model::CausalLm;
pub use model::GenTaskModel;
pub use task::{GenData, GenTask, TextMetric};
pub(crate) use trainer::TokenPasses;
pub use trainer::{evaluate_task, train_generation, GenRunSummary};
