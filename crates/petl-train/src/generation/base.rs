//! A loaded generation base: the frozen model and the tokenizer that goes with it.

use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use petl_models::gguf::GgufModel;
use petl_models::{
    BaseModel, Checkpoint, DecoderConfig, DecoderModel, Fingerprint, ModelDir, ModelShape, Precision, Proj,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The token ids generation and training need beyond the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Put first in a prompt, when the model expects it.
    pub bos: Option<u32>,
    /// Any of these ends a generated sequence; the first ends a training target.
    pub eos: Vec<u32>,
    /// Fills padded positions (masked, so any id works; the model's own when it has one).
    pub pad: u32,
}

/// A frozen generation base model with its tokenizer.
#[derive(Debug)]
pub struct GenBase {
    model: DecoderModel,
    tokenizer: Tokenizer,
    special: SpecialTokens,
    source: PathBuf,
}

impl GenBase {
    /// Loads a decoder from `path`: a Hugging Face directory (`config.json`, safetensors,
    /// `tokenizer.json`), a GGUF file, or a directory holding one GGUF file (dequantized to
    /// f32; the tokenizer comes from the GGUF metadata).
    pub fn load(path: &Path, device: &Device, precision: Precision) -> Result<Self> {
        let gguf = gguf_file(path)?;
        let (model, tokenizer) = match gguf {
            Some(file) => load_gguf(&file, device, precision)?,
            None => {
                let dir = ModelDir::open(path)?;
                let model = DecoderModel::load_with_precision(&dir, device, precision)?;
                let tok_path = dir.tokenizer_path()?;
                let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| TrainError::Config {
                    field: "model",
                    reason: format!("cannot read {}: {e}", tok_path.display()),
                })?;
                (model, tokenizer)
            }
        };
        let special = special_tokens(model.config(), &tokenizer);
        Ok(Self {
            model,
            tokenizer,
            special,
            source: path.to_path_buf(),
        })
    }

    /// The decoder.
    pub fn decoder(&self) -> &DecoderModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Begin/end/padding ids.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Where the model was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Vocabulary size of the LM head.
    pub fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    /// The longest sequence the model attends over.
    pub fn max_positions(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    /// `model_type` of the base.
    pub fn model_type(&self) -> &'static str {
        self.model.config().family.model_type()
    }

    /// Decodes ids to text, dropping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| TrainError::Config {
            field: "tokenizer",
            reason: format!("cannot decode generated ids: {e}"),
        })
    }
}

impl BaseModel for GenBase {
    fn shape(&self) -> ModelShape {
        self.model.shape()
    }

    fn base_params(&self) -> &BTreeMap<String, Tensor> {
        self.model.base_params()
    }

    fn weight_name(&self, layer: usize, proj: Proj) -> Option<String> {
        self.model.weight_name(layer, proj)
    }

    fn layer_of(&self, name: &str) -> Option<usize> {
        self.model.layer_of(name)
    }

    fn fingerprint(&self) -> &Fingerprint {
        self.model.fingerprint()
    }

    fn device(&self) -> &Device {
        self.model.device()
    }
}

/// The GGUF file `path` names: itself, or the single `.gguf` in a directory without a
/// `config.json`.
fn gguf_file(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(path
            .extension()
            .is_some_and(|e| e == "gguf")
            .then(|| path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(TrainError::Config {
            field: "model",
            reason: format!(
                "{} holds {} GGUF files; name the one to load",
                path.display(),
                many.len()
            ),
        }),
    }
}

fn load_gguf(path: &Path, device: &Device, precision: Precision) -> Result<(DecoderModel, Tokenizer)> {
    let gguf = GgufModel::open(path)?;
    let config = DecoderConfig::from_json(&gguf.config_json().to_string())?;
    // The file's checksum names the base: artifacts trained on it refuse any other file.
    let fingerprint = Fingerprint(format!(
        "gguf-sha256:{}",
        petl_hub::sha256_file(path).map_err(|e| TrainError::Config {
            field: "model",
            reason: e.to_string(),
        })?
    ));
    let ckpt = Checkpoint::from_tensors(gguf.tensors(device)?, fingerprint)?;
    let model = DecoderModel::from_checkpoint_with_precision(config, ckpt, device, precision)?;
    Ok((model, gguf.tokenizer()?))
}

/// bos/eos/pad from the config, with ChatML's `<|im_end|>` as a stop token when the
/// vocabulary has it (instruct models end their turn with it, not with eos).
fn special_tokens(config: &DecoderConfig, tokenizer: &Tokenizer) -> SpecialTokens {
    let mut eos = config.eos_token_ids.clone();
    if let Some(id) = tokenizer.token_to_id("<|im_end|>") {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let pad = config.pad_token_id.or_else(|| eos.first().copied()).unwrap_or(0);
    SpecialTokens {
        bos: config.bos_token_id,
        eos,
        pad,
    }
}
