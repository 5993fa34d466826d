//! A loaded generation base: the frozen model — decoder-only or encoder-decoder — and the
//! tokenizer that goes with it.

use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use petl_models::gguf::GgufModel;
use petl_models::{
    BaseModel, Checkpoint, DecoderConfig, DecoderModel, Fingerprint, ModelDir, ModelShape, Precision, Proj,
    Seq2SeqFamily, Seq2SeqModel,
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

/// The architecture of a generation base.
#[derive(Debug)]
pub enum GenArch {
    /// Decoder-only (Llama family): the prompt starts the decoded sequence.
    Decoder(Box<DecoderModel>),
    /// Encoder-decoder (BART, mBART): the source goes to the encoder, the decoder starts from
    /// its start token.
    Seq2Seq(Box<Seq2SeqModel>),
}

/// How an encoder-decoder's targets are laid out (Hugging Face's conventions per family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqFormat {
    /// The decoder's first input (`decoder_start_token_id`; mBART: the target language code).
    pub decoder_start: u32,
    /// Label tokens before the target (BART: `<s>`, as its tokenizer writes targets).
    pub label_prefix: Vec<u32>,
    /// Label tokens after eos (mBART: the target language code).
    pub label_suffix: Vec<u32>,
    /// A token generation forces first (`forced_bos_token_id`).
    pub forced_bos: Option<u32>,
    /// A token generation forces at the length limit (`forced_eos_token_id`).
    pub forced_eos: Option<u32>,
}

/// A frozen generation base model with its tokenizer.
#[derive(Debug)]
pub struct GenBase {
    model: GenArch,
    tokenizer: Tokenizer,
    special: SpecialTokens,
    source: PathBuf,
}

impl GenBase {
    /// Loads a base from `path`: a Hugging Face directory (`config.json`, safetensors,
    /// `tokenizer.json`) of a Llama-family decoder or a BART/mBART encoder-decoder, a GGUF
    /// file, or a directory holding one GGUF file (dequantized to f32; the tokenizer comes from
    /// the GGUF metadata).
    pub fn load(path: &Path, device: &Device, precision: Precision) -> Result<Self> {
        let gguf = gguf_file(path)?;
        let (model, tokenizer) = match gguf {
            Some(file) => {
                let (model, tokenizer) = load_gguf(&file, device, precision)?;
                (GenArch::Decoder(Box::new(model)), tokenizer)
            }
            None => {
                let dir = ModelDir::open(path)?;
                let model = if is_encoder_decoder(&dir)? {
                    GenArch::Seq2Seq(Box::new(Seq2SeqModel::load_with_precision(
                        &dir, device, precision,
                    )?))
                } else {
                    GenArch::Decoder(Box::new(DecoderModel::load_with_precision(
                        &dir, device, precision,
                    )?))
                };
                let tok_path = dir.tokenizer_path()?;
                let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| TrainError::Config {
                    field: "model",
                    reason: format!("cannot read {}: {e}", tok_path.display()),
                })?;
                (model, tokenizer)
            }
        };
        let special = special_tokens(&model, &tokenizer);
        Ok(Self {
            model,
            tokenizer,
            special,
            source: path.to_path_buf(),
        })
    }

    /// The model.
    pub fn arch(&self) -> &GenArch {
        &self.model
    }

    /// The model as the hook points see it.
    fn base(&self) -> &dyn BaseModel {
        match &self.model {
            GenArch::Decoder(m) => m.as_ref(),
            GenArch::Seq2Seq(m) => m.as_ref(),
        }
    }

    /// Whether the source goes to an encoder.
    pub fn is_encoder_decoder(&self) -> bool {
        matches!(self.model, GenArch::Seq2Seq(_))
    }

    /// The target layout of an encoder-decoder base for targets in `target_language` (an
    /// ISO code such as `ro`, for mBART's language codes), `None` for a decoder-only base.
    ///
    /// BART: labels `<s> … </s>`, decoder start `decoder_start_token_id`. mBART: labels
    /// `… </s> ro_RO`, decoder start the language code, as `shift_tokens_right` makes it.
    pub fn seq2seq_format(&self, target_language: Option<&str>) -> Result<Option<Seq2SeqFormat>> {
        let GenArch::Seq2Seq(model) = &self.model else {
            return Ok(None);
        };
        let c = model.config();
        let format = match c.family {
            Seq2SeqFamily::Bart => Seq2SeqFormat {
                decoder_start: c.decoder_start_token_id.ok_or_else(|| TrainError::Config {
                    field: "model",
                    reason: "the BART config names no decoder_start_token_id".into(),
                })?,
                label_prefix: c.bos_token_id.into_iter().collect(),
                label_suffix: Vec::new(),
                forced_bos: c.forced_bos_token_id,
                forced_eos: c.forced_eos_token_ids.first().copied(),
            },
            // Marian targets are `… </s>`; the decoder starts from the padding token.
            Seq2SeqFamily::Marian => Seq2SeqFormat {
                decoder_start: c.decoder_start_token_id.ok_or_else(|| TrainError::Config {
                    field: "model",
                    reason: "the Marian config names no decoder_start_token_id".into(),
                })?,
                label_prefix: Vec::new(),
                label_suffix: Vec::new(),
                forced_bos: None,
                forced_eos: c.forced_eos_token_ids.first().copied(),
            },
            Seq2SeqFamily::Mbart => {
                let code = match target_language {
                    Some(lang) => Some(language_code(&self.tokenizer, lang)?),
                    None => c.decoder_start_token_id,
                };
                let code = code.ok_or_else(|| TrainError::Config {
                    field: "model",
                    reason: "mBART needs the target language: the task names none and the config \
                             has no decoder_start_token_id"
                        .into(),
                })?;
                Seq2SeqFormat {
                    decoder_start: code,
                    label_prefix: Vec::new(),
                    label_suffix: vec![code],
                    forced_bos: None,
                    forced_eos: c.forced_eos_token_ids.first().copied(),
                }
            }
        };
        Ok(Some(format))
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
        match &self.model {
            GenArch::Decoder(m) => m.config().vocab_size,
            GenArch::Seq2Seq(m) => m.config().vocab_size,
        }
    }

    /// The longest sequence the model attends over (for an encoder-decoder, each of source
    /// and target).
    pub fn max_positions(&self) -> usize {
        match &self.model {
            GenArch::Decoder(m) => m.config().max_position_embeddings,
            GenArch::Seq2Seq(m) => m.config().max_position_embeddings,
        }
    }

    /// `model_type` of the base.
    pub fn model_type(&self) -> &str {
        match &self.model {
            GenArch::Decoder(m) => m.config().family.model_type(),
            GenArch::Seq2Seq(m) => &m.config().model_type,
        }
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
        self.base().shape()
    }

    fn base_params(&self) -> &BTreeMap<String, Tensor> {
        self.base().base_params()
    }

    fn weight_name(&self, layer: usize, proj: Proj) -> Option<String> {
        self.base().weight_name(layer, proj)
    }

    fn layer_of(&self, name: &str) -> Option<usize> {
        self.base().layer_of(name)
    }

    fn fingerprint(&self) -> &Fingerprint {
        self.base().fingerprint()
    }

    fn device(&self) -> &Device {
        self.base().device()
    }
}

/// Whether the Hugging Face directory holds an encoder-decoder (`is_encoder_decoder`, or a
/// BART-family `model_type`).
fn is_encoder_decoder(dir: &ModelDir) -> Result<bool> {
    let json = crate::config::read_model_config(dir)?;
    let model_type = json
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    Ok(
        json.get("is_encoder_decoder").and_then(|v| v.as_bool()) == Some(true)
            || matches!(model_type, "bart" | "mbart" | "marian"),
    )
}

/// The vocabulary id of the mBART language code for ISO `lang` (`ro` → `ro_RO`, `en` →
/// `en_XX`): the one token of the form `ro_XX`/`ro_RO` the tokenizer has.
fn language_code(tokenizer: &Tokenizer, lang: &str) -> Result<u32> {
    let upper = lang.to_ascii_uppercase();
    [format!("{lang}_XX"), format!("{lang}_{upper}")]
        .iter()
        .find_map(|code| tokenizer.token_to_id(code))
        .ok_or_else(|| TrainError::Config {
            field: "model",
            reason: format!(
                "the tokenizer has no mBART language code for {lang:?} ({lang}_XX or {lang}_{upper})"
            ),
        })
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
fn special_tokens(model: &GenArch, tokenizer: &Tokenizer) -> SpecialTokens {
    let (bos, mut eos, pad) = match model {
        GenArch::Decoder(m) => {
            let c = m.config();
            (c.bos_token_id, c.eos_token_ids.clone(), c.pad_token_id)
        }
        GenArch::Seq2Seq(m) => {
            let c = m.config();
            (c.bos_token_id, c.eos_token_ids.clone(), Some(c.pad_token_id))
        }
    };
    if let Some(id) = tokenizer.token_to_id("<|im_end|>") {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let pad = pad.or_else(|| eos.first().copied()).unwrap_or(0);
    SpecialTokens { bos, eos, pad }
}
