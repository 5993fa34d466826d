//! The Hugging Face `config.json` a GGUF file's metadata describes.

use serde::{Deserialize, Serialize};

use super::error::{GgufError, Result};
use super::file::GgufFile;

/// The model families petl maps from GGUF (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// `llama`: Llama 1–3, Mistral 7B and SmolLM, which llama.cpp's converter all writes as `llama`.
    Llama,
    /// `qwen2`: Qwen2 and Qwen2.5 (Q/K/V biases).
    Qwen2,
}

/// The architectures [`Architecture::from_gguf`] accepts.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2";

impl Architecture {
    /// Parses `general.architecture`.
    ///
    /// # Errors
    /// [`GgufError::UnsupportedArchitecture`] for anything else.
    pub fn from_gguf(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(GgufError::UnsupportedArchitecture {
                architecture: other.to_string(),
                supported: SUPPORTED_ARCHITECTURES,
            }),
        }
    }

    /// The name in `general.architecture`, also the prefix of its metadata keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }

    /// The Hugging Face `model_type`.
    pub fn model_type(self) -> &'static str {
        self.gguf_name()
    }

    /// The Hugging Face class, for `config.json`'s `architectures`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// Whether the file stores `q_proj` / `k_proj` rows in llama.cpp's interleaved rotary order.
    ///
    /// `convert_hf_to_gguf.py` permutes Q/K only in `LlamaModel.modify_tensors` (inherited by the
    /// classes for Llama, Mistral and other models it writes as `llama`); `Qwen2Model` derives from
    /// `TextModel` and writes rows unchanged, because llama.cpp runs Qwen2 with NeoX-style rotary
    /// (halves, as in HF). transformers' loader agrees: only `TENSOR_PROCESSORS["llama"]` un-permutes.
    pub fn permutes_qk(self) -> bool {
        matches!(self, Self::Llama)
    }
}

/// A Hugging Face decoder `config.json` (LlamaConfig / Qwen2Config fields), rebuilt from GGUF metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfConfig {
    /// The model class, e.g. `["LlamaForCausalLM"]`.
    pub architectures: Vec<String>,
    /// `llama` or `qwen2`.
    pub model_type: String,
    /// Rows of the embedding (`{arch}.vocab_size`, else the tokenizer's token count).
    pub vocab_size: usize,
    /// Model width (`{arch}.embedding_length`).
    pub hidden_size: usize,
    /// FFN width (`{arch}.feed_forward_length`).
    pub intermediate_size: usize,
    /// Decoder layers (`{arch}.block_count`).
    pub num_hidden_layers: usize,
    /// Query heads (`{arch}.attention.head_count`).
    pub num_attention_heads: usize,
    /// Key/value heads (`{arch}.attention.head_count_kv`, default: query heads).
    pub num_key_value_heads: usize,
    /// Per-head width when the file states it (`{arch}.attention.key_length`, else for Llama
    /// `{arch}.rope.dimension_count`, as transformers reads it); absent means `hidden_size / heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Always `silu` for these families.
    pub hidden_act: String,
    /// Trained context (`{arch}.context_length`).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon (`{arch}.attention.layer_norm_rms_epsilon`), the f32 in the file widened to f64.
    pub rms_norm_eps: f64,
    /// RoPE base (`{arch}.rope.freq_base`, default 10000 as in llama.cpp).
    pub rope_theta: f64,
    /// RoPE scaling from `{arch}.rope.scaling.*` (`rope_type`, `factor`,
    /// `original_max_position_embeddings`), `null` when the file has none.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// `true` when the file has no `output.weight` (the LM head reuses the embedding).
    pub tie_word_embeddings: bool,
    /// Whether Q/K/V have biases (always for Qwen2; for Llama when `blk.0.attn_q.bias` exists).
    pub attention_bias: bool,
    /// Always `false` for these families.
    pub mlp_bias: bool,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_token_id: Option<u32>,
    /// The dtype of the tensors petl produces: `float32`.
    pub torch_dtype: String,
}

impl HfConfig {
    /// Per-head width: `head_dim` or `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Reads the config of an `arch` model from `file`'s metadata and validates it.
    pub(crate) fn from_gguf(file: &GgufFile, arch: Architecture) -> Result<Self> {
        let p = arch.gguf_name();
        let key = |name: &str| format!("{p}.{name}");
        let required = |name: &str| -> Result<usize> {
            let k = key(name);
            let v = file
                .metadata_u64(&k)?
                .ok_or(GgufError::MissingMetadata { key: k.clone() })?;
            to_usize(&k, v)
        };
        let optional = |name: &str| -> Result<Option<usize>> {
            let k = key(name);
            file.metadata_u64(&k)?.map(|v| to_usize(&k, v)).transpose()
        };
        let token_id = |name: &str| -> Result<Option<u32>> {
            let k = format!("tokenizer.ggml.{name}");
            file.metadata_u64(&k)?
                .map(|v| {
                    u32::try_from(v).map_err(|_| GgufError::InvalidMetadata {
                        key: k.clone(),
                        reason: format!("token id {v} does not fit in 32 bits"),
                    })
                })
                .transpose()
        };

        let hidden_size = required("embedding_length")?;
        let num_attention_heads = required("attention.head_count")?;
        let num_key_value_heads = optional("attention.head_count_kv")?.unwrap_or(num_attention_heads);
        let head_dim = match optional("attention.key_length")? {
            Some(d) => Some(d),
            None if arch == Architecture::Llama => optional("rope.dimension_count")?,
            None => None,
        };
        let eps_key = key("attention.layer_norm_rms_epsilon");
        let rms_norm_eps = file
            .metadata_f64(&eps_key)?
            .ok_or(GgufError::MissingMetadata { key: eps_key })?;
        let vocab_size = match optional("vocab_size")? {
            Some(v) => v,
            None => match file.metadata_strings("tokenizer.ggml.tokens")? {
                Some(tokens) => tokens.len(),
                None => embedding_rows(file)?,
            },
        };
        let config = Self {
            architectures: vec![arch.hf_class().to_string()],
            model_type: arch.model_type().to_string(),
            vocab_size,
            hidden_size,
            intermediate_size: required("feed_forward_length")?,
            num_hidden_layers: required("block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            hidden_act: "silu".to_string(),
            max_position_embeddings: required("context_length")?,
            rms_norm_eps,
            rope_theta: file.metadata_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling: rope_scaling(file, p)?,
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            attention_bias: arch == Architecture::Qwen2 || file.tensor_info("blk.0.attn_q.bias").is_some(),
            mlp_bias: false,
            bos_token_id: token_id("bos_token_id")?,
            eos_token_id: token_id("eos_token_id")?,
            pad_token_id: token_id("padding_token_id")?,
            torch_dtype: "float32".to_string(),
        };
        config.validate(p, arch)?;
        Ok(config)
    }

    fn validate(&self, p: &str, arch: Architecture) -> Result<()> {
        let invalid = |name: &str, reason: String| GgufError::InvalidMetadata {
            key: format!("{p}.{name}"),
            reason,
        };
        for (name, v) in [
            ("embedding_length", self.hidden_size),
            ("feed_forward_length", self.intermediate_size),
            ("block_count", self.num_hidden_layers),
            ("attention.head_count", self.num_attention_heads),
            ("attention.head_count_kv", self.num_key_value_heads),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be positive".into()));
            }
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(invalid(
                "attention.head_count_kv",
                format!(
                    "{} query heads cannot share {} KV heads evenly",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        match self.head_dim {
            Some(0) => return Err(invalid("attention.key_length", "must be positive".into())),
            None if self.hidden_size % self.num_attention_heads != 0 => {
                return Err(invalid(
                    "attention.head_count",
                    format!(
                        "{} heads do not divide the width {}",
                        self.num_attention_heads, self.hidden_size
                    ),
                ))
            }
            _ => {}
        }
        if arch.permutes_qk() && self.head_dim() % 2 != 0 {
            return Err(invalid(
                "attention.head_count",
                format!(
                    "rotary embeddings need an even head width, got {}",
                    self.head_dim()
                ),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(invalid(
                "attention.layer_norm_rms_epsilon",
                format!("must be a positive number, got {}", self.rms_norm_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(invalid(
                "rope.freq_base",
                format!("must be a positive number, got {}", self.rope_theta),
            ));
        }
        Ok(())
    }

    /// The config as `config.json` holds it.
    pub fn to_json(&self) -> serde_json::Value {
        // A struct of plain fields always serializes.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// `{p}.rope.scaling.*` (or the older `{p}.rope.scale_linear`) as HF's `rope_scaling`.
fn rope_scaling(file: &GgufFile, p: &str) -> Result<Option<serde_json::Value>> {
    let kind = file.metadata_str(&format!("{p}.rope.scaling.type"))?;
    let factor = file.metadata_f64(&format!("{p}.rope.scaling.factor"))?;
    let original = file.metadata_u64(&format!("{p}.rope.scaling.original_context_length"))?;
    let legacy_linear = file.metadata_f64(&format!("{p}.rope.scale_linear"))?;
    let (kind, factor) = match (kind, factor, legacy_linear) {
        (Some("none"), _, _) | (None, _, None) => return Ok(None),
        (Some(kind), factor, _) => (kind, factor),
        (None, _, Some(linear)) => ("linear", Some(linear)),
    };
    let factor = factor.ok_or_else(|| GgufError::MissingMetadata {
        key: format!("{p}.rope.scaling.factor"),
    })?;
    let mut scaling = serde_json::json!({ "rope_type": kind, "factor": factor });
    if let Some(original) = original {
        scaling["original_max_position_embeddings"] = original.into();
    }
    Ok(Some(scaling))
}

fn embedding_rows(file: &GgufFile) -> Result<usize> {
    file.tensor_info("token_embd.weight")
        .and_then(|t| t.shape.first().copied())
        .ok_or_else(|| GgufError::MissingTensor {
            hf_name: "model.embed_tokens.weight".into(),
            gguf_name: "token_embd.weight".into(),
        })
}

fn to_usize(key: &str, v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| GgufError::InvalidMetadata {
        key: key.to_string(),
        reason: format!("{v} does not fit in usize"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures() {
        assert_eq!(Architecture::from_gguf("llama").unwrap(), Architecture::Llama);
        assert_eq!(
            Architecture::from_gguf("qwen2").unwrap().hf_class(),
            "Qwen2ForCausalLM"
        );
        assert!(Architecture::Llama.permutes_qk());
        assert!(!Architecture::Qwen2.permutes_qk());
        let e = Architecture::from_gguf("gemma3").unwrap_err().to_string();
        assert_eq!(
            e,
            "GGUF architecture `gemma3` is not supported (supported: llama, qwen2)"
        );
    }
}
