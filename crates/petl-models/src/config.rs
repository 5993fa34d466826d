//! The Hugging Face `config.json` of a BERT-family encoder.

use crate::{ModelError, Result};
use petl_ops::Activation;
use serde::Deserialize;
use std::path::Path;

/// The encoder families petl implements; they share one block definition and differ in
/// position ids, token types and classification head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT and BERT-shaped models (MiniLM, DistilBERT-free BERT variants): positions from 0,
    /// token types, pooler + classifier head.
    Bert,
    /// RoBERTa, XLM-R, CamemBERT: positions offset past the padding index, dense + out_proj head.
    Roberta,
}

impl Family {
    const SUPPORTED: &'static str = "bert, roberta, xlm-roberta, camembert";

    fn from_model_type(model_type: &str) -> Result<Self> {
        match model_type {
            "bert" => Ok(Self::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Ok(Self::Roberta),
            other => Err(ModelError::UnsupportedModelType {
                model_type: other.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }

    /// The key prefix full-model checkpoints (`*ForSequenceClassification`, `*ForMaskedLM`) put
    /// in front of the encoder's tensors.
    pub fn checkpoint_prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert.",
            Self::Roberta => "roberta.",
        }
    }
}

/// Fields of `config.json` petl reads; unknown fields are ignored, as `transformers` does, since
/// every transformers release adds some.
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f32,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f32,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
    #[serde(default)]
    classifier_dropout: Option<f32>,
    #[serde(default)]
    num_labels: Option<usize>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f32 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}
fn default_position_type() -> String {
    "absolute".into()
}

/// A validated encoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// The architecture family.
    pub family: Family,
    /// The `model_type` string as written in config.json.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// FFN inner width.
    pub intermediate_size: usize,
    /// FFN nonlinearity.
    pub activation: Activation,
    /// Dropout on embeddings, attention output and FFN output.
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attention_dropout: f32,
    /// Dropout before the classifier (HF `classifier_dropout`, defaulting to `hidden_dropout`).
    pub classifier_dropout: f32,
    /// Number of position embeddings.
    pub max_position_embeddings: usize,
    /// Number of token types (1 for RoBERTa).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id (RoBERTa positions start after it).
    pub pad_token_id: u32,
    /// Std of the normal initialiser for new weights.
    pub initializer_range: f64,
    /// `num_labels` if the checkpoint was saved with a head.
    pub num_labels: Option<usize>,
}

/// Reads `path` and parses it with `parse`, naming the file in a JSON error (parsers only know
/// the text).
pub(crate) fn read_config_file<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ModelError::Json { source, .. } => ModelError::Json {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

impl EncoderConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config_file(path, Self::from_json)
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: "config.json".into(),
            source,
        })?;
        let family = Family::from_model_type(&raw.model_type)?;
        let activation =
            Activation::from_hf_name(&raw.hidden_act).ok_or_else(|| ModelError::InvalidConfig {
                field: "hidden_act",
                reason: format!("{:?} is not implemented", raw.hidden_act),
            })?;
        if raw.position_embedding_type != "absolute" {
            return Err(ModelError::InvalidConfig {
                field: "position_embedding_type",
                reason: format!(
                    "only \"absolute\" is supported, got {:?}",
                    raw.position_embedding_type
                ),
            });
        }
        let positive = [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("intermediate_size", raw.intermediate_size),
            ("max_position_embeddings", raw.max_position_embeddings),
            ("type_vocab_size", raw.type_vocab_size),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(ModelError::InvalidConfig {
                    field,
                    reason: "must be positive".into(),
                });
            }
        }
        if raw.hidden_size % raw.num_attention_heads != 0 {
            return Err(ModelError::InvalidConfig {
                field: "num_attention_heads",
                reason: format!(
                    "hidden_size {} is not divisible by {} heads",
                    raw.hidden_size, raw.num_attention_heads
                ),
            });
        }
        for (field, p) in [
            ("hidden_dropout_prob", raw.hidden_dropout_prob),
            ("attention_probs_dropout_prob", raw.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::InvalidConfig {
                    field,
                    reason: format!("{p} is not in [0, 1)"),
                });
            }
        }
        let pad_token_id = raw.pad_token_id.unwrap_or(match family {
            Family::Bert => 0,
            Family::Roberta => 1,
        });
        Ok(Self {
            family,
            model_type: raw.model_type,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            activation,
            hidden_dropout: raw.hidden_dropout_prob,
            attention_dropout: raw.attention_probs_dropout_prob,
            classifier_dropout: raw.classifier_dropout.unwrap_or(raw.hidden_dropout_prob),
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            pad_token_id,
            initializer_range: raw.initializer_range,
            num_labels: raw.num_labels,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The longest input the position embeddings allow (RoBERTa loses `pad_token_id + 1` slots).
    pub fn max_input_len(&self) -> usize {
        match self.family {
            Family::Bert => self.max_position_embeddings,
            Family::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"architectures":["BertModel"],"attention_probs_dropout_prob":0.1,
      "hidden_act":"gelu","hidden_dropout_prob":0.1,"hidden_size":384,"initializer_range":0.02,
      "intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert",
      "num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,"position_embedding_type":"absolute",
      "type_vocab_size":2,"vocab_size":30522,"some_future_field":true}"#;

    #[test]
    fn parses_minilm_and_ignores_unknown_fields() {
        let c = EncoderConfig::from_json(MINILM).unwrap();
        assert_eq!(c.family, Family::Bert);
        assert_eq!(
            (c.hidden_size, c.num_layers, c.num_heads, c.head_dim()),
            (384, 6, 12, 32)
        );
        assert_eq!(c.activation, Activation::Gelu);
        assert_eq!(c.max_input_len(), 512);
    }

    #[test]
    fn rejects_what_petl_cannot_run() {
        let bad_type = MINILM.replace("\"bert\"", "\"gpt2\"");
        let e = EncoderConfig::from_json(&bad_type).unwrap_err().to_string();
        assert!(e.contains("unsupported model_type \"gpt2\""), "{e}");
        let bad_heads = MINILM.replace("\"num_attention_heads\":12", "\"num_attention_heads\":7");
        let e = EncoderConfig::from_json(&bad_heads).unwrap_err().to_string();
        assert!(
            e.contains("num_attention_heads") && e.contains("not divisible"),
            "{e}"
        );
        let rel = MINILM.replace("\"absolute\"", "\"relative_key\"");
        assert!(EncoderConfig::from_json(&rel)
            .unwrap_err()
            .to_string()
            .contains("position_embedding_type"));
        assert!(matches!(
            EncoderConfig::from_json("{"),
            Err(ModelError::Json { .. })
        ));
    }
}
