//! Which model a benchmark runs on: resolving a name to a Hugging Face directory (fetching,
//! writing random weights or exporting a GGUF once) and telling encoders from decoders.

use super::random_bert::{write_random_bert, RandomBert, RANDOM_BERT_SEED};
use crate::{Result, TrainError};
use petl_models::gguf::{GgufError, GgufModel};
use petl_models::{DecoderFamily, ModelDir};
use std::path::{Path, PathBuf};

/// The catalog name of SmolLM2-135M-Instruct (a Q4_1 GGUF).
const SMOLLM2: &str = "smollm2";

/// The model a benchmark runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchModel {
    /// all-MiniLM-L6-v2 from petl's cache (fetched on first use).
    MiniLm,
    /// A randomly initialised BERT-base ([`RandomBert::base`]), written once into the cache.
    BertBase,
    /// SmolLM2-135M-Instruct (a 30-layer Llama) from petl's cached GGUF, exported once into the
    /// cache as a Hugging Face directory, so PyTorch loads the very same (dequantized) weights.
    SmolLm2,
    /// A local Hugging Face model directory (an encoder or a decoder-only language model).
    Dir(PathBuf),
}

impl BenchModel {
    /// `minilm`, `bert-base`, `smollm2`, or a directory.
    pub fn parse(text: &str) -> Self {
        match text {
            "minilm" => Self::MiniLm,
            "bert-base" => Self::BertBase,
            SMOLLM2 => Self::SmolLm2,
            dir => Self::Dir(PathBuf::from(dir)),
        }
    }

    /// A short name for tables.
    pub fn label(&self) -> String {
        match self {
            Self::MiniLm => "minilm".into(),
            Self::BertBase => "bert-base (random init)".into(),
            Self::SmolLm2 => "smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to f32)".into(),
            Self::Dir(d) => d.display().to_string(),
        }
    }

    /// The model directory: fetching MiniLM or SmolLM2, writing the random BERT-base or the
    /// SmolLM2 export first if needed. A directory must hold a model petl can benchmark.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            Self::MiniLm => Ok(petl_hub::ensure("minilm")?),
            Self::BertBase => {
                let dir = bench_cache().join("bert-base-random");
                write_random_bert(&RandomBert::base(), RANDOM_BERT_SEED, &dir)?;
                Ok(dir)
            }
            Self::SmolLm2 => {
                let gguf = single_gguf(&petl_hub::ensure(SMOLLM2)?)?;
                let dir = bench_cache().join(format!("smollm2-hf-{}", source_tag(SMOLLM2)));
                export_gguf_once(&gguf, &dir)?;
                Ok(dir)
            }
            Self::Dir(d) => {
                ModelDir::open(d)?;
                BenchArch::of_dir(d)?;
                Ok(d.clone())
            }
        }
    }
}

/// `petl_home()/bench`, where generated benchmark models live.
fn bench_cache() -> PathBuf {
    petl_hub::petl_home().join("bench")
}

/// The first 12 hex digits of the catalog's checksum of `asset`'s first file, so that an
/// export made from an older file is never mistaken for the current one.
fn source_tag(asset: &str) -> String {
    petl_hub::find(asset)
        .and_then(|a| a.files.first())
        .and_then(|f| f.sha256)
        .map_or_else(|| "unpinned".into(), |sha| sha.chars().take(12).collect())
}

/// The one `.gguf` file in `dir`.
fn single_gguf(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|source| TrainError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(TrainError::Config {
            field: "model",
            reason: format!("{} holds {} GGUF files, not one", dir.display(), other.len()),
        }),
    }
}

/// Whether `dir` holds a finished export: the exporter renames a complete directory into
/// place, so the files being there means they are whole.
fn is_exported(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
}

/// Writes the GGUF model `gguf` into `out` as a Hugging Face directory (config.json,
/// model.safetensors in f32, tokenizer.json) unless `out` already holds one. The export is
/// assembled under a temporary name and renamed into place
/// ([`GgufModel::export_hf_dir`]), so a concurrent or interrupted run never leaves half a
/// model behind; when two runs race, the loser uses the winner's directory.
pub fn export_gguf_once(gguf: &Path, out: &Path) -> Result<()> {
    if is_exported(out) {
        return Ok(());
    }
    if out.exists() {
        // Not written by the exporter (which renames only complete directories): replace it.
        std::fs::remove_dir_all(out).map_err(|source| TrainError::Io {
            path: out.to_path_buf(),
            source,
        })?;
    }
    match GgufModel::open(gguf)?.export_hf_dir(out) {
        Ok(()) => Ok(()),
        Err(GgufError::OutputExists { .. }) if is_exported(out) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a benchmark builds on a model: a 2-class classifier on an encoder, a causal language
/// model on a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchArch {
    /// A BERT-family encoder.
    Encoder,
    /// A Llama-family decoder-only language model.
    Decoder,
}

impl BenchArch {
    /// The architecture of the Hugging Face directory `dir`, from its `config.json`.
    pub fn of_dir(dir: &Path) -> Result<Self> {
        Self::of_config(&crate::config::read_model_config(&ModelDir::open(dir)?)?)
    }

    /// The architecture a `config.json` describes: a decoder family's `model_type` (llama,
    /// mistral, qwen2) or a `*ForCausalLM` architecture is a decoder; an encoder-decoder is
    /// refused; anything else is taken for an encoder (whose loader names unsupported types).
    pub fn of_config(config: &serde_json::Value) -> Result<Self> {
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if DecoderFamily::from_model_type(model_type).is_ok() {
            return Ok(Self::Decoder);
        }
        let encoder_decoder = config.get("is_encoder_decoder").and_then(|v| v.as_bool()) == Some(true)
            || matches!(model_type, "bart" | "mbart" | "t5" | "mt5" | "marian");
        if encoder_decoder {
            return Err(TrainError::Config {
                field: "model",
                reason: format!(
                    "`{model_type}` is an encoder-decoder; petl bench measures encoders (a classifier) \
                     and decoder-only language models"
                ),
            });
        }
        let causal = config
            .get("architectures")
            .and_then(|v| v.as_array())
            .is_some_and(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .any(|x| x.ends_with("ForCausalLM"))
            });
        Ok(if causal { Self::Decoder } else { Self::Encoder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_parse_to_models() {
        assert_eq!(BenchModel::parse("smollm2"), BenchModel::SmolLm2);
        assert_eq!(BenchModel::parse("minilm"), BenchModel::MiniLm);
        assert_eq!(BenchModel::parse("some/dir"), BenchModel::Dir("some/dir".into()));
    }

    #[test]
    fn config_tells_encoders_from_decoders() -> Result<()> {
        let of = |c: serde_json::Value| BenchArch::of_config(&c);
        assert_eq!(of(json!({"model_type": "llama"}))?, BenchArch::Decoder);
        assert_eq!(of(json!({"model_type": "qwen2"}))?, BenchArch::Decoder);
        assert_eq!(of(json!({"model_type": "bert"}))?, BenchArch::Encoder);
        assert_eq!(
            of(json!({"model_type": "gpt2", "architectures": ["GPT2ForCausalLM"]}))?,
            BenchArch::Decoder
        );
        let err = of(json!({"model_type": "bart"}))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("encoder-decoder"), "{err}");
        Ok(())
    }
}
