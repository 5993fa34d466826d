//! Text generation data: source/target pairs for decoder-only and
//! encoder-decoder models (see the crate docs for the flow).

mod causal;
mod collate;
mod encoded;
mod example;
mod plan;
mod read;
mod seq2seq;
mod template;
mod tokenizer;

pub use causal::{CausalLmEncoder, CausalLmSpec};
pub use collate::{
    collate_causal, collate_prompts, collate_seq2seq, CausalBatch, PadSide, PromptBatch, Seq2SeqBatch,
    IGNORE_INDEX,
};
pub use encoded::{CausalEncoded, PromptEncoded, Seq2SeqEncoded, TruncationSide};
pub use example::{DroppedRow, EmptySide, GenDataset, GenExample, GenKind};
pub use plan::{padded_tokens, plan_seq2seq_batches, plan_token_batches};
pub use read::{
    read_gen_jsonl, read_parallel, read_wmt16_en_ro, read_xsum, EnRoDirection, JsonlFields, ParallelSpec,
};
pub use seq2seq::{Seq2SeqEncoder, Seq2SeqSpec};
pub use template::{PromptTemplate, SOURCE_PLACEHOLDER};
