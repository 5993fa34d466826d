//! llama.cpp GGUF files as Hugging Face decoder checkpoints.
//!
//! - [`GgufFile`] opens a GGUF file with candle's parser (`candle_core::quantized::gguf_file`), checks
//!   every tensor's byte range, and dequantizes any tensor to f32 ([`SUPPORTED_TYPES`]).
//! - [`GgufModel`] maps a Llama-family file ([`Architecture`]: `llama`, `qwen2`) onto Hugging Face's
//!   names: `token_embd.weight` → `model.embed_tokens.weight`, `blk.N.attn_q.weight` →
//!   `model.layers.N.self_attn.q_proj.weight`, …, with the Q/K rows of `llama` files put back in HF
//!   order ([`unpermute_qk_rows`]); rebuilds `config.json` ([`HfConfig`]) and the tokenizer from the
//!   metadata; and exports all of it as a Hugging Face directory ([`GgufModel::export_hf_dir`]).
//!
//! Everything is checked when the file is opened: unknown tensors, missing tensors, shapes that
//! disagree with the metadata, unsupported storage types and truncated data are errors naming the
//! tensor, never silently dropped or discovered half-way through a load.
//!
//! ```no_run
//! use petl_models::gguf::GgufModel;
//! let model = GgufModel::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let config = model.config_json();                        // HF LlamaConfig fields
//! let tensors = model.tensors(&candle_core::Device::Cpu)?; // BTreeMap<HF name, f32 Tensor>
//! let tokenizer = model.tokenizer()?;                      // tokenizers::Tokenizer
//! # Ok::<(), petl_models::gguf::GgufError>(())
//! ```

mod config;
mod error;
mod export;
mod file;
mod model;
mod names;
mod permute;
mod scan;
mod tokenizer;
mod types;

pub use config::{Architecture, HfConfig, SUPPORTED_ARCHITECTURES};
pub use error::{GgufError, Result};
pub use file::{GgufFile, TensorInfo};
pub use model::GgufModel;
pub use names::{gguf_tensor_name, hf_tensor_name};
pub use permute::{permute_qk_rows, unpermute_qk_rows};
pub use tokenizer::SUPPORTED_TOKENIZERS;
pub use types::{type_name, SUPPORTED_TYPES};

/// candle's GGUF types, re-exported for [`GgufFile`]'s metadata and tensor table.
pub use candle_core::quantized::{gguf_file::Value, GgmlDType};
