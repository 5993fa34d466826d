//! The Hugging Face `config.json` of a Llama-family decoder (Llama, Mistral, Qwen2, SmolLM2).

use crate::{ModelError, Result};
use serde::Deserialize;
use std::path::Path;

/// The decoder architectures petl implements; they share one block definition and differ in
/// which projections carry biases and how a sliding window is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderFamily {
    /// Llama 1–3 and Llama-shaped models (SmolLM2, TinyLlama): biases only with `attention_bias`.
    Llama,
    /// Mistral: Llama's block with an optional sliding attention window.
    Mistral,
    /// Qwen2 / Qwen2.5: biases on the query, key and value projections (not the output).
    Qwen2,
}

impl DecoderFamily {
    const SUPPORTED: &'static str = "llama, mistral, qwen2";

    /// Parses a `model_type`.
    pub fn from_model_type(model_type: &str) -> Result<Self> {
        match model_type {
            "llama" => Ok(Self::Llama),
            "mistral" => Ok(Self::Mistral),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(ModelError::UnsupportedModelType {
                model_type: other.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }

    /// The `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// How rotary frequencies are rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE: `θ_i = base^(−2i/d)`.
    None,
    /// Llama 3.1's scaling (`rope_type: "llama3"`): low frequencies divided by `factor`, high
    /// ones kept, the band between interpolated.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pretrained with.
        original_max_position_embeddings: usize,
    },
}

/// Rotary position embedding parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    /// The base `θ` of the frequencies (HF `rope_theta`).
    pub theta: f64,
    /// Frequency rescaling.
    pub scaling: RopeScaling,
}

/// A validated decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// The architecture.
    pub family: DecoderFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_layers: usize,
    /// Query heads per block.
    pub num_heads: usize,
    /// Key/value heads per block (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding.
    pub rope: RopeConfig,
    /// Longest sequence (prompt, prefix shift and generated tokens) the model accepts.
    pub max_position_embeddings: usize,
    /// Whether the LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether the query, key and value projections have biases.
    pub qkv_bias: bool,
    /// Whether the attention output projection has a bias.
    pub o_bias: bool,
    /// Whether the MLP projections have biases (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// Dropout on attention probabilities (HF `attention_dropout`, 0 in every released model).
    pub attention_dropout: f32,
    /// Attention window (Mistral's `sliding_window`, Qwen2's with `use_sliding_window`);
    /// petl refuses sequences longer than it rather than implementing the window.
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (HF allows one or a list).
    pub eos_token_ids: Vec<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
}

/// One or several token ids (`eos_token_id` may be either).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Ids {
    One(u32),
    Many(Vec<u32>),
}

/// `rope_parameters` (transformers ≥ 5) or `rope_scaling` (earlier).
#[derive(Debug, Clone, Deserialize)]
struct RawRope {
    #[serde(default, alias = "type")]
    rope_type: Option<String>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    low_freq_factor: Option<f64>,
    #[serde(default)]
    high_freq_factor: Option<f64>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
}

/// Fields of `config.json` petl reads; unknown fields are ignored, as `transformers` does.
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<RawRope>,
    #[serde(default)]
    rope_parameters: Option<RawRope>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    attention_dropout: f32,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<Ids>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default = "default_tp")]
    pretraining_tp: usize,
    #[serde(default)]
    partial_rotary_factor: Option<f64>,
}

fn default_act() -> String {
    "silu".into()
}
fn default_max_positions() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_tp() -> usize {
    1
}

/// The default RoPE base of every supported family.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

impl DecoderConfig {
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
        let family = DecoderFamily::from_model_type(&raw.model_type)?;
        if raw.hidden_act != "silu" && raw.hidden_act != "swish" {
            return Err(invalid(
                "hidden_act",
                format!(
                    "{:?} is not implemented (Llama-family MLPs use silu)",
                    raw.hidden_act
                ),
            ));
        }
        if raw.pretraining_tp != 1 {
            return Err(invalid(
                "pretraining_tp",
                format!("{} is not supported (only 1)", raw.pretraining_tp),
            ));
        }
        if raw.partial_rotary_factor.is_some_and(|f| f != 1.0) {
            return Err(invalid(
                "partial_rotary_factor",
                "rotary embeddings on part of each head are not implemented",
            ));
        }
        for (field, v) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("intermediate_size", raw.intermediate_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("max_position_embeddings", raw.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be positive"));
            }
        }
        let heads = raw.num_attention_heads;
        let head_dim = match raw.head_dim {
            Some(h) => h,
            None if raw.hidden_size % heads == 0 => raw.hidden_size / heads,
            None => {
                return Err(invalid(
                    "num_attention_heads",
                    format!(
                        "hidden_size {} is not divisible by {heads} heads (and no head_dim is given)",
                        raw.hidden_size
                    ),
                ))
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(invalid(
                "head_dim",
                format!("{head_dim} must be positive and even (rotary embeddings rotate pairs)"),
            ));
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(invalid(
                "num_key_value_heads",
                format!("{kv_heads} does not divide num_attention_heads {heads}"),
            ));
        }
        if !(raw.rms_norm_eps > 0.0 && raw.rms_norm_eps.is_finite()) {
            return Err(invalid(
                "rms_norm_eps",
                format!("{} must be positive", raw.rms_norm_eps),
            ));
        }
        if !(0.0..1.0).contains(&raw.attention_dropout) {
            return Err(invalid(
                "attention_dropout",
                format!("{} is not in [0, 1)", raw.attention_dropout),
            ));
        }
        let rope = rope(&raw)?;
        let sliding_window = match family {
            DecoderFamily::Qwen2 if !raw.use_sliding_window => None,
            _ => raw.sliding_window,
        };
        if sliding_window == Some(0) {
            return Err(invalid("sliding_window", "must be positive"));
        }
        let (qkv_bias, o_bias) = match family {
            DecoderFamily::Qwen2 => (true, false),
            _ => (raw.attention_bias, raw.attention_bias),
        };
        let eos_token_ids = match raw.eos_token_id {
            None => Vec::new(),
            Some(Ids::One(id)) => vec![id],
            Some(Ids::Many(ids)) => ids,
        };
        Ok(Self {
            family,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias: raw.mlp_bias,
            attention_dropout: raw.attention_dropout,
            sliding_window,
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
            pad_token_id: raw.pad_token_id,
        })
    }

    /// Width of the query projection's output, `num_heads · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the key and value projections' outputs, `num_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

/// The rotary parameters from either spelling transformers has used.
fn rope(raw: &RawConfig) -> Result<RopeConfig> {
    // transformers ≥ 5 writes `rope_parameters` (with the base inside); earlier versions
    // `rope_theta` beside an optional `rope_scaling`.
    let (params, field) = match (&raw.rope_parameters, &raw.rope_scaling) {
        (Some(p), _) => (Some(p), "rope_parameters"),
        (None, s) => (s.as_ref(), "rope_scaling"),
    };
    let theta = params
        .and_then(|p| p.rope_theta)
        .or(raw.rope_theta)
        .unwrap_or(DEFAULT_ROPE_THETA);
    if !(theta > 0.0 && theta.is_finite()) {
        return Err(invalid("rope_theta", format!("{theta} must be positive")));
    }
    let kind = params.and_then(|p| p.rope_type.as_deref()).unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::None,
        "llama3" => {
            let p = params.ok_or_else(|| invalid(field, "llama3 scaling without parameters"))?;
            let need = |v: Option<f64>, name: &str| {
                v.filter(|x| *x > 0.0 && x.is_finite())
                    .ok_or_else(|| invalid(field, format!("llama3 scaling needs a positive `{name}`")))
            };
            let scaling = RopeScaling::Llama3 {
                factor: need(p.factor, "factor")?,
                low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: p
                    .original_max_position_embeddings
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        invalid(field, "llama3 scaling needs `original_max_position_embeddings`")
                    })?,
            };
            if let RopeScaling::Llama3 {
                low_freq_factor,
                high_freq_factor,
                ..
            } = scaling
            {
                if high_freq_factor <= low_freq_factor {
                    return Err(invalid(
                        field,
                        "llama3 scaling needs high_freq_factor > low_freq_factor",
                    ));
                }
            }
            scaling
        }
        other => {
            return Err(invalid(
                field,
                format!("rope type {other:?} is not implemented (supported: default, llama3)"),
            ))
        }
    };
    Ok(RopeConfig { theta, scaling })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's config.json (transformers 4 spelling).
    const SMOLLM2: &str = r#"{"architectures":["LlamaForCausalLM"],"attention_bias":false,
      "attention_dropout":0.0,"bos_token_id":1,"eos_token_id":2,"hidden_act":"silu","hidden_size":576,
      "initializer_range":0.041666666666666664,"intermediate_size":1536,"max_position_embeddings":8192,
      "mlp_bias":false,"model_type":"llama","num_attention_heads":9,"num_hidden_layers":30,
      "num_key_value_heads":3,"pad_token_id":2,"pretraining_tp":1,"rms_norm_eps":1e-05,
      "rope_scaling":null,"rope_theta":100000,"tie_word_embeddings":true,"torch_dtype":"bfloat16",
      "transformers_version":"4.42.3","use_cache":true,"vocab_size":49152}"#;

    #[test]
    fn parses_smollm2() {
        let c = DecoderConfig::from_json(SMOLLM2).unwrap();
        assert_eq!(c.family, DecoderFamily::Llama);
        assert_eq!(
            (c.num_heads, c.num_kv_heads, c.head_dim, c.group_size()),
            (9, 3, 64, 3)
        );
        assert_eq!((c.q_dim(), c.kv_dim()), (576, 192));
        assert_eq!(c.rope.theta, 100_000.0);
        assert_eq!(c.rope.scaling, RopeScaling::None);
        assert!(c.tie_word_embeddings && !c.qkv_bias && !c.o_bias);
        assert_eq!(
            (c.bos_token_id, c.eos_token_ids.clone(), c.pad_token_id),
            (Some(1), vec![2], Some(2))
        );
    }

    #[test]
    fn reads_both_rope_spellings_and_llama3_scaling() {
        let v5 = SMOLLM2.replace(
            r#""rope_scaling":null,"rope_theta":100000"#,
            r#""rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,
               "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let c = DecoderConfig::from_json(&v5).unwrap();
        assert_eq!(c.rope.theta, 500_000.0);
        assert!(matches!(c.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        let yarn = SMOLLM2.replace(
            r#""rope_scaling":null"#,
            r#""rope_scaling":{"type":"yarn","factor":4.0}"#,
        );
        let e = DecoderConfig::from_json(&yarn).unwrap_err().to_string();
        assert!(e.contains("rope_scaling") && e.contains("\"yarn\""), "{e}");
    }

    #[test]
    fn qwen2_has_qkv_biases_and_its_window_only_when_used() {
        let q = SMOLLM2
            .replace(r#""model_type":"llama""#, r#""model_type":"qwen2""#)
            .replace(
                r#""use_cache":true"#,
                r#""sliding_window":4096,"use_sliding_window":false"#,
            );
        let c = DecoderConfig::from_json(&q).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.sliding_window, None);
        let m = q.replace(r#""model_type":"qwen2""#, r#""model_type":"mistral""#);
        assert_eq!(DecoderConfig::from_json(&m).unwrap().sliding_window, Some(4096));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#""num_key_value_heads":3"#,
                r#""num_key_value_heads":4"#,
                "num_key_value_heads",
            ),
            (r#""hidden_act":"silu""#, r#""hidden_act":"gelu""#, "hidden_act"),
            (
                r#""model_type":"llama""#,
                r#""model_type":"gpt2""#,
                "unsupported model_type \"gpt2\"",
            ),
            (
                r#""num_attention_heads":9"#,
                r#""num_attention_heads":7"#,
                "num_attention_heads",
            ),
            (r#""vocab_size":49152"#, r#""vocab_size":0"#, "vocab_size"),
            (r#""rms_norm_eps":1e-05"#, r#""rms_norm_eps":0"#, "rms_norm_eps"),
            (r#""pretraining_tp":1"#, r#""pretraining_tp":2"#, "pretraining_tp"),
            (
                r#""use_cache":true"#,
                r#""partial_rotary_factor":0.5"#,
                "partial_rotary_factor",
            ),
        ];
        for (from, to, field) in cases {
            let e = DecoderConfig::from_json(&SMOLLM2.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{to}: {e}");
        }
        let odd = SMOLLM2.replace(r#""hidden_size":576"#, r#""hidden_size":576,"head_dim":63"#);
        assert!(DecoderConfig::from_json(&odd)
            .unwrap_err()
            .to_string()
            .contains("head_dim"));
        assert!(matches!(
            DecoderConfig::from_json("{"),
            Err(ModelError::Json { .. })
        ));
    }
}
