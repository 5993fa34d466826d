//! Frozen pretrained transformers with named hook points.
//!
//! - [`ModelDir`] checks a local Hugging Face directory (`config.json`, safetensors, `tokenizer.json`).
//! - [`EncoderModel`] loads BERT-family weights (BERT, RoBERTa, XLM-R) and runs the forward pass,
//!   calling a [`Hooks`] implementation at every named hook point ([`Sublayer`], [`Proj`],
//!   per-head output, K/V prefix, every base parameter).
//! - [`Seq2SeqModel`] does the same for BART, mBART and Marian encoder-decoders, with a key/value
//!   cache for decoding ([`Seq2SeqCache`]).
//! - [`DecoderModel`] loads Llama-family decoders (Llama, Mistral, Qwen2, SmolLM2) and runs the
//!   same hooks in pre-norm blocks, with an LM head and cached incremental decoding
//!   ([`DecoderCache`]).
//! - [`ParamStore`] holds the trainable parameters; [`ClassificationHead`] is the task head.
//! - [`Fingerprint`] identifies a base model so artifacts refuse to load onto another.
//! - [`device::parse`] turns `cpu`, `cuda` or `cuda:N` into the device a model loads on.
//! - [`gguf`] reads llama.cpp GGUF files of Llama-family decoders as Hugging Face checkpoints
//!   (dequantized f32 tensors under HF names, `config.json`, tokenizer, export to a HF directory).
//!
//! Base weights are plain tensors and are never written: every delta, including full
//! fine-tuning, acts through the hooks.
#![deny(missing_docs)]

mod base;
mod base_model;
mod config;
mod decoder;
pub mod device;
mod encoder;
mod error;
pub mod gguf;
mod head;
mod hooks;
mod model_dir;
mod params;
mod positions;
mod precision;
mod row_groups;
mod seq2seq;
mod shape;
mod weights;

pub use base_model::BaseModel;
pub use config::{EncoderConfig, Family};
pub use decoder::{
    DecoderCache, DecoderConfig, DecoderFamily, DecoderInput, DecoderModel, DecoderOutput, RopeConfig,
    RopeScaling,
};
pub use encoder::{CheckpointedBackward, EncoderInput, EncoderModel, EncoderOutput};
pub use error::{ModelError, Result};
pub use head::{argmax_rows, ClassificationHead, Pooling};
pub use hooks::{ForwardCtx, HeadsSite, Hooks, KvPrefix, NoHooks, Proj, Sublayer};
pub use model_dir::ModelDir;
pub use params::{Init, ParamStore};
pub use precision::Precision;
pub use row_groups::{Chain, Layout, RowGroups};
pub use seq2seq::{Seq2SeqCache, Seq2SeqConfig, Seq2SeqFamily, Seq2SeqInput, Seq2SeqModel};
pub use shape::{AttentionKind, ModelShape, StackShape};
pub use weights::{Checkpoint, Fingerprint};
