//! The Hugging Face `config.json` of a BART, mBART or Marian encoder-decoder.

use crate::{ModelError, Result};
use petl_ops::Activation;
use serde::Deserialize;
use std::path::Path;

/// The encoder-decoder families petl implements. They share the block tensor names and differ
/// in where the LayerNorms sit and how positions are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seq2SeqFamily {
    /// BART: post-LN blocks (`LN(x + f(x))`), no final LayerNorms.
    Bart,
    /// mBART: pre-LN blocks (`x + f(LN(x))`) and a final LayerNorm after each stack.
    Mbart,
    /// Marian (MarianMT): post-LN blocks like BART, fixed sinusoidal positions and no
    /// `layernorm_embedding`; the decoder starts from the padding token.
    Marian,
}

impl Seq2SeqFamily {
    const SUPPORTED: &'static str = "bart, mbart, marian";

    fn from_model_type(model_type: &str) -> Result<Self> {
        match model_type {
            "bart" => Ok(Self::Bart),
            "mbart" => Ok(Self::Mbart),
            "marian" => Ok(Self::Marian),
            other => Err(ModelError::UnsupportedModelType {
                model_type: other.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }

    /// Whether blocks normalise a sub-layer's input (mBART) rather than its residual sum (BART).
    pub fn pre_norm(self) -> bool {
        self == Self::Mbart
    }

    /// Whether positions come from a fixed sinusoidal table (Marian) rather than a learned one.
    pub fn sinusoidal_positions(self) -> bool {
        self == Self::Marian
    }

    /// Whether each stack normalises its embeddings (`layernorm_embedding`: BART and mBART).
    pub fn embedding_norm(self) -> bool {
        self != Self::Marian
    }

    /// The padding id transformers' config class assumes when config.json names none
    /// (`MarianConfig`: 58100, the last id of opus-mt's 58101-token vocabularies).
    fn default_pad_token_id(self) -> u32 {
        match self {
            Self::Bart | Self::Mbart => 1,
            Self::Marian => 58100,
        }
    }
}

/// A token id, or a list of them (`eos_token_id` may be either).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Ids {
    One(u32),
    Many(Vec<u32>),
}

impl Ids {
    fn into_vec(self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![id],
            Self::Many(ids) => ids,
        }
    }
}

/// Fields of `config.json` petl reads; unknown fields are ignored, as `transformers` does.
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    model_type: String,
    vocab_size: usize,
    d_model: usize,
    encoder_layers: usize,
    decoder_layers: usize,
    encoder_attention_heads: usize,
    decoder_attention_heads: usize,
    encoder_ffn_dim: usize,
    decoder_ffn_dim: usize,
    #[serde(default = "default_act")]
    activation_function: String,
    #[serde(default = "default_dropout")]
    dropout: f32,
    #[serde(default)]
    attention_dropout: f32,
    #[serde(default)]
    activation_dropout: f32,
    max_position_embeddings: usize,
    #[serde(default)]
    scale_embedding: bool,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<Ids>,
    #[serde(default)]
    decoder_start_token_id: Option<u32>,
    #[serde(default)]
    forced_bos_token_id: Option<u32>,
    #[serde(default)]
    forced_eos_token_id: Option<Ids>,
    // fairseq-era switches that transformers ignores (the model type decides); petl checks
    // they agree with the model type rather than silently running another architecture.
    #[serde(default)]
    normalize_before: Option<bool>,
    #[serde(default)]
    add_final_layer_norm: Option<bool>,
    #[serde(default)]
    normalize_embedding: Option<bool>,
    #[serde(default)]
    static_position_embeddings: Option<bool>,
    // Marian: separate encoder and decoder vocabularies (not implemented).
    #[serde(default)]
    share_encoder_decoder_embeddings: Option<bool>,
    #[serde(default)]
    decoder_vocab_size: Option<usize>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f32 {
    0.1
}
fn default_true() -> bool {
    true
}

/// A validated BART / mBART / Marian configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Seq2SeqConfig {
    /// The architecture family (decides where LayerNorms sit and how positions are embedded).
    pub family: Seq2SeqFamily,
    /// `model_type` as written in config.json.
    pub model_type: String,
    /// Vocabulary size (shared by encoder, decoder and LM head).
    pub vocab_size: usize,
    /// Model width d (`d_model`).
    pub d_model: usize,
    /// Encoder blocks.
    pub encoder_layers: usize,
    /// Decoder blocks.
    pub decoder_layers: usize,
    /// Attention heads (the same in encoder and decoder).
    pub num_heads: usize,
    /// FFN inner width (the same in encoder and decoder).
    pub ffn_dim: usize,
    /// FFN nonlinearity (`activation_function`).
    pub activation: Activation,
    /// Dropout on embeddings, sub-layer outputs (`dropout`).
    pub dropout: f32,
    /// Dropout on attention probabilities (`attention_dropout`).
    pub attention_dropout: f32,
    /// Dropout after the FFN nonlinearity (`activation_dropout`).
    pub activation_dropout: f32,
    /// Number of positions (BART's learned tables hold 2 more rows: its offset).
    pub max_position_embeddings: usize,
    /// Whether token embeddings are multiplied by √d (`scale_embedding`).
    pub scale_embedding: bool,
    /// Whether the LM head is the shared embedding (`tie_word_embeddings`).
    pub tie_word_embeddings: bool,
    /// LayerNorm epsilon (PyTorch's default; BART configs do not set one).
    pub layer_norm_eps: f64,
    /// Padding token id.
    pub pad_token_id: u32,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (`eos_token_id`, one or several).
    pub eos_token_ids: Vec<u32>,
    /// The decoder's first token (BART: `</s>`; Marian: the padding token; mBART configs often
    /// leave it to the tokenizer's language code).
    pub decoder_start_token_id: Option<u32>,
    /// A token generation forces first (mBART-50's target language).
    pub forced_bos_token_id: Option<u32>,
    /// Tokens generation forces when the length limit is reached.
    pub forced_eos_token_ids: Vec<u32>,
}

impl Seq2SeqConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config::read_config_file(path, Self::from_json)
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: "config.json".into(),
            source,
        })?;
        let family = Seq2SeqFamily::from_model_type(&raw.model_type)?;
        let activation =
            Activation::from_hf_name(&raw.activation_function).ok_or_else(|| ModelError::InvalidConfig {
                field: "activation_function",
                reason: format!("{:?} is not implemented", raw.activation_function),
            })?;
        let positive = [
            ("vocab_size", raw.vocab_size),
            ("d_model", raw.d_model),
            ("encoder_layers", raw.encoder_layers),
            ("decoder_layers", raw.decoder_layers),
            ("encoder_attention_heads", raw.encoder_attention_heads),
            ("decoder_attention_heads", raw.decoder_attention_heads),
            ("encoder_ffn_dim", raw.encoder_ffn_dim),
            ("decoder_ffn_dim", raw.decoder_ffn_dim),
            ("max_position_embeddings", raw.max_position_embeddings),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(invalid(field, "must be positive".into()));
            }
        }
        if raw.decoder_attention_heads != raw.encoder_attention_heads {
            return Err(invalid(
                "decoder_attention_heads",
                format!(
                    "{} differs from encoder_attention_heads {}; petl's model shape has one head count",
                    raw.decoder_attention_heads, raw.encoder_attention_heads
                ),
            ));
        }
        if raw.decoder_ffn_dim != raw.encoder_ffn_dim {
            return Err(invalid(
                "decoder_ffn_dim",
                format!(
                    "{} differs from encoder_ffn_dim {}; petl's model shape has one FFN width",
                    raw.decoder_ffn_dim, raw.encoder_ffn_dim
                ),
            ));
        }
        if raw.d_model % raw.encoder_attention_heads != 0 {
            return Err(invalid(
                "encoder_attention_heads",
                format!(
                    "d_model {} is not divisible by {} heads",
                    raw.d_model, raw.encoder_attention_heads
                ),
            ));
        }
        for (field, p) in [
            ("dropout", raw.dropout),
            ("attention_dropout", raw.attention_dropout),
            ("activation_dropout", raw.activation_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(field, format!("{p} is not in [0, 1)")));
            }
        }
        let pre_norm = family.pre_norm();
        let switches = [
            ("normalize_before", raw.normalize_before, pre_norm),
            ("add_final_layer_norm", raw.add_final_layer_norm, pre_norm),
            (
                "normalize_embedding",
                raw.normalize_embedding,
                family.embedding_norm(),
            ),
            (
                "static_position_embeddings",
                raw.static_position_embeddings,
                family.sinusoidal_positions(),
            ),
        ];
        for (field, value, implied) in switches {
            if value.is_some_and(|v| v != implied) {
                return Err(invalid(
                    field,
                    format!(
                        "{} is not the {} architecture (transformers runs model_type {:?} with {field} = {implied})",
                        !implied, raw.model_type, raw.model_type
                    ),
                ));
            }
        }
        if family == Seq2SeqFamily::Marian {
            check_marian_vocabulary(&raw)?;
        }
        let pad_token_id = raw.pad_token_id.unwrap_or_else(|| family.default_pad_token_id());
        let vocab = raw.vocab_size;
        let eos_token_ids = raw.eos_token_id.map(Ids::into_vec).unwrap_or_default();
        let forced_eos_token_ids = raw.forced_eos_token_id.map(Ids::into_vec).unwrap_or_default();
        let single = [
            ("pad_token_id", Some(pad_token_id)),
            ("bos_token_id", raw.bos_token_id),
            ("decoder_start_token_id", raw.decoder_start_token_id),
            ("forced_bos_token_id", raw.forced_bos_token_id),
        ];
        let lists = [
            ("eos_token_id", &eos_token_ids),
            ("forced_eos_token_id", &forced_eos_token_ids),
        ];
        let ids = single
            .into_iter()
            .filter_map(|(f, id)| id.map(|id| (f, id)))
            .chain(
                lists
                    .into_iter()
                    .flat_map(|(f, ids)| ids.iter().map(move |&id| (f, id))),
            );
        for (field, id) in ids {
            if id as usize >= vocab {
                return Err(invalid(field, format!("{id} is not below vocab_size {vocab}")));
            }
        }
        Ok(Self {
            family,
            model_type: raw.model_type,
            vocab_size: raw.vocab_size,
            d_model: raw.d_model,
            encoder_layers: raw.encoder_layers,
            decoder_layers: raw.decoder_layers,
            num_heads: raw.encoder_attention_heads,
            ffn_dim: raw.encoder_ffn_dim,
            activation,
            dropout: raw.dropout,
            attention_dropout: raw.attention_dropout,
            activation_dropout: raw.activation_dropout,
            max_position_embeddings: raw.max_position_embeddings,
            scale_embedding: raw.scale_embedding,
            tie_word_embeddings: raw.tie_word_embeddings,
            layer_norm_eps: 1e-5,
            pad_token_id,
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
            decoder_start_token_id: raw.decoder_start_token_id,
            forced_bos_token_id: raw.forced_bos_token_id,
            forced_eos_token_ids,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.num_heads
    }

    /// The factor token embeddings are multiplied by: √d with `scale_embedding`, else 1.
    pub fn embed_scale(&self) -> f64 {
        if self.scale_embedding {
            (self.d_model as f64).sqrt()
        } else {
            1.0
        }
    }
}

/// Marian checkpoints may give the decoder its own vocabulary (a second embedding table and a
/// head of `decoder_vocab_size` rows); petl implements only the shared one.
fn check_marian_vocabulary(raw: &RawConfig) -> Result<()> {
    if raw.share_encoder_decoder_embeddings == Some(false) {
        return Err(invalid(
            "share_encoder_decoder_embeddings",
            "false (separate encoder and decoder vocabularies) is not implemented; petl runs Marian \
             models whose encoder, decoder and LM head share one embedding table"
                .into(),
        ));
    }
    match raw.decoder_vocab_size {
        Some(v) if v != raw.vocab_size => Err(invalid(
            "decoder_vocab_size",
            format!(
                "{v} differs from vocab_size {}; petl implements only shared embeddings, where both \
                 are the same",
                raw.vocab_size
            ),
        )),
        _ => Ok(()),
    }
}

fn invalid(field: &'static str, reason: String) -> ModelError {
    ModelError::InvalidConfig { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// facebook/bart-large's config.json (the fields petl reads, plus fairseq-era switches).
    const BART_LARGE: &str = r#"{"activation_dropout":0.1,"activation_function":"gelu","add_bias_logits":false,
      "add_final_layer_norm":false,"attention_dropout":0.1,"bos_token_id":0,"d_model":1024,
      "decoder_attention_heads":16,"decoder_ffn_dim":4096,"decoder_layers":12,"decoder_start_token_id":2,
      "dropout":0.1,"encoder_attention_heads":16,"encoder_ffn_dim":4096,"encoder_layers":12,"eos_token_id":2,
      "forced_eos_token_id":2,"max_position_embeddings":1024,"model_type":"bart","normalize_before":false,
      "normalize_embedding":true,"pad_token_id":1,"scale_embedding":false,"static_position_embeddings":false,
      "vocab_size":50265}"#;

    #[test]
    fn parses_bart_large() {
        let c = Seq2SeqConfig::from_json(BART_LARGE).unwrap();
        assert_eq!(c.family, Seq2SeqFamily::Bart);
        assert_eq!(
            (c.d_model, c.encoder_layers, c.num_heads, c.head_dim()),
            (1024, 12, 16, 64)
        );
        assert_eq!(c.eos_token_ids, vec![2]);
        assert_eq!(c.decoder_start_token_id, Some(2));
        assert_eq!(c.embed_scale(), 1.0);
        assert!(!c.family.pre_norm());
    }

    #[test]
    fn mbart_is_pre_norm_and_scales_embeddings() {
        let text = BART_LARGE
            .replace("\"bart\"", "\"mbart\"")
            .replace("\"normalize_before\":false", "\"normalize_before\":true")
            .replace("\"add_final_layer_norm\":false", "\"add_final_layer_norm\":true")
            .replace("\"scale_embedding\":false", "\"scale_embedding\":true")
            .replace("\"eos_token_id\":2", "\"eos_token_id\":[2, 3]");
        let c = Seq2SeqConfig::from_json(&text).unwrap();
        assert!(c.family.pre_norm());
        assert_eq!(c.embed_scale(), 32.0);
        assert_eq!(c.eos_token_ids, vec![2, 3]);
    }

    /// Helsinki-NLP/opus-mt-en-de's config.json (the fields petl reads, plus fairseq-era
    /// switches).
    const OPUS_MT_EN_DE: &str = r#"{"activation_dropout":0.0,"activation_function":"swish",
      "add_bias_logits":false,"add_final_layer_norm":false,"attention_dropout":0.0,"bos_token_id":0,
      "d_model":512,"decoder_attention_heads":8,"decoder_ffn_dim":2048,"decoder_layers":6,
      "decoder_start_token_id":58100,"decoder_vocab_size":58101,"dropout":0.1,"encoder_attention_heads":8,
      "encoder_ffn_dim":2048,"encoder_layers":6,"eos_token_id":0,"forced_eos_token_id":0,
      "max_position_embeddings":512,"model_type":"marian","normalize_before":false,
      "normalize_embedding":false,"pad_token_id":58100,"scale_embedding":true,
      "share_encoder_decoder_embeddings":true,"static_position_embeddings":true,"vocab_size":58101}"#;

    #[test]
    fn marian_is_post_norm_with_sinusoids_and_starts_from_pad() {
        let c = Seq2SeqConfig::from_json(OPUS_MT_EN_DE).unwrap();
        assert_eq!(c.family, Seq2SeqFamily::Marian);
        assert!(!c.family.pre_norm() && c.family.sinusoidal_positions() && !c.family.embedding_norm());
        assert_eq!(c.activation, Activation::Silu);
        assert_eq!(c.embed_scale(), (512f64).sqrt());
        assert_eq!((c.pad_token_id, c.decoder_start_token_id), (58100, Some(58100)));
        assert_eq!(
            (c.eos_token_ids.clone(), c.forced_eos_token_ids.clone()),
            (vec![0], vec![0])
        );
        // Without pad_token_id, transformers' MarianConfig default (58100) applies.
        let c = Seq2SeqConfig::from_json(&OPUS_MT_EN_DE.replace("\"pad_token_id\":58100,", "")).unwrap();
        assert_eq!(c.pad_token_id, 58100);
        let bart = Seq2SeqFamily::Bart;
        assert!(bart.embedding_norm() && !bart.sinusoidal_positions());
    }

    #[test]
    fn marian_switches_and_vocabularies_are_checked() {
        let err = |text: String| Seq2SeqConfig::from_json(&text).unwrap_err().to_string();
        let e = err(OPUS_MT_EN_DE.replace(
            "\"static_position_embeddings\":true",
            "\"static_position_embeddings\":false",
        ));
        assert!(e.contains("static_position_embeddings"), "{e}");
        let e = err(OPUS_MT_EN_DE.replace("\"normalize_embedding\":false", "\"normalize_embedding\":true"));
        assert!(e.contains("normalize_embedding"), "{e}");
        let e = err(OPUS_MT_EN_DE.replace(
            "\"share_encoder_decoder_embeddings\":true",
            "\"share_encoder_decoder_embeddings\":false",
        ));
        assert!(e.contains("share_encoder_decoder_embeddings"), "{e}");
        let e = err(OPUS_MT_EN_DE.replace("\"decoder_vocab_size\":58101", "\"decoder_vocab_size\":60000"));
        assert!(e.contains("decoder_vocab_size"), "{e}");
        let e = err(OPUS_MT_EN_DE.replace("58101", "58000"));
        assert!(e.contains("pad_token_id"), "{e}");
        // BART's learned positions are not Marian's.
        let e = err(BART_LARGE.replace(
            "\"static_position_embeddings\":false",
            "\"static_position_embeddings\":true",
        ));
        assert!(e.contains("static_position_embeddings"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = |text: String| Seq2SeqConfig::from_json(&text).unwrap_err().to_string();
        let e = err(BART_LARGE.replace("\"normalize_before\":false", "\"normalize_before\":true"));
        assert!(e.contains("normalize_before"), "{e}");
        let e = err(BART_LARGE.replace("\"decoder_ffn_dim\":4096", "\"decoder_ffn_dim\":2048"));
        assert!(e.contains("decoder_ffn_dim"), "{e}");
        let e = err(BART_LARGE.replace("\"encoder_attention_heads\":16", "\"encoder_attention_heads\":15"));
        assert!(
            e.contains("decoder_attention_heads") || e.contains("encoder_attention_heads"),
            "{e}"
        );
        let e = err(BART_LARGE.replace(
            "\"activation_function\":\"gelu\"",
            "\"activation_function\":\"mish\"",
        ));
        assert!(e.contains("activation_function"), "{e}");
        let e = err(BART_LARGE.replace("\"decoder_start_token_id\":2", "\"decoder_start_token_id\":60000"));
        assert!(e.contains("decoder_start_token_id"), "{e}");
        let e = err(BART_LARGE.replace("\"dropout\":0.1,\"encoder", "\"dropout\":1.5,\"encoder"));
        assert!(e.contains("`dropout`"), "{e}");
        let e = err(BART_LARGE.replace(",\"d_model\":1024", ""));
        assert!(e.contains("d_model"), "{e}");
        let e = err(BART_LARGE.replace("\"bart\"", "\"t5\""));
        assert!(e.contains("unsupported model_type \"t5\""), "{e}");
    }
}
