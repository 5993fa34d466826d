//! The dimensions of a transformer that decide how large a delta is: enough to count a
//! method's parameters from a `config.json` alone, without weights (`petl params`).

use crate::{DecoderConfig, EncoderConfig, ModelError, Proj, Result};
use serde::Deserialize;
use std::path::Path;

/// A kind of attention sub-layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// Self-attention (encoder, or causal in a decoder).
    SelfAttention,
    /// Decoder-to-encoder attention of an encoder-decoder.
    CrossAttention,
}

/// One stack of identical blocks (the encoder, or the decoder).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StackShape {
    /// `encoder` or `decoder`.
    pub name: &'static str,
    /// Number of blocks.
    pub layers: usize,
    /// The attention sub-layers of each block.
    pub attention: Vec<AttentionKind>,
}

/// The dimensions of a transformer, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelShape {
    /// `model_type` from `config.json`.
    pub model_type: String,
    /// Model width d.
    pub hidden_size: usize,
    /// Attention heads N_h.
    pub num_heads: usize,
    /// Width of one head d_h.
    pub head_dim: usize,
    /// Width of the key/value projections (smaller than d under grouped-query attention).
    pub kv_dim: usize,
    /// FFN inner width d_m.
    pub intermediate_size: usize,
    /// Whether the FFN is gated (SwiGLU: a [`Proj::FfnGate`] beside the up-projection).
    pub gated_ffn: bool,
    /// The block stacks, encoder first.
    pub stacks: Vec<StackShape>,
    /// Scalar parameters of the pretrained model.
    pub base_params: usize,
    /// How many of them are bias terms (BitFit's budget).
    pub bias_params: usize,
    /// Named tensors of the pretrained model (structured diff pruning's groups).
    pub base_tensors: usize,
}

impl ModelShape {
    /// The shape of the encoder described by `c`, counting the pooler when `with_pooler`.
    pub fn of_encoder(c: &EncoderConfig, with_pooler: bool) -> Self {
        let (d, m, l) = (c.hidden_size, c.intermediate_size, c.num_layers);
        let embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * d + 2 * d;
        let block = 4 * (d * d + d) + (d * m + m) + (m * d + d) + 4 * d;
        let pooler = if with_pooler { d * d + d } else { 0 };
        Self {
            model_type: c.model_type.clone(),
            hidden_size: d,
            num_heads: c.num_heads,
            head_dim: c.head_dim(),
            kv_dim: d,
            intermediate_size: m,
            gated_ffn: false,
            stacks: vec![StackShape {
                name: "encoder",
                layers: l,
                attention: vec![AttentionKind::SelfAttention],
            }],
            base_params: embeddings + l * block + pooler,
            bias_params: d + l * (4 * d + m + d + 2 * d) + if with_pooler { d } else { 0 },
            // Word, position, type embeddings and their LayerNorm; per block four attention
            // linears, two FFN linears (weight + bias each) and two LayerNorms.
            base_tensors: 5 + 16 * l + if with_pooler { 2 } else { 0 },
        }
    }

    /// The shape of the Llama-family decoder described by `c`.
    pub fn of_decoder(c: &DecoderConfig) -> Self {
        let (d, m, l) = (c.hidden_size, c.intermediate_size, c.num_layers);
        let (q, kv) = (c.q_dim(), c.kv_dim());
        let qkv_bias = if c.qkv_bias { q + 2 * kv } else { 0 };
        let o_bias = if c.o_bias { d } else { 0 };
        let mlp_bias = if c.mlp_bias { 2 * m + d } else { 0 };
        let block_bias = qkv_bias + o_bias + mlp_bias;
        let block = (d * q + 2 * d * kv + q * d) + 3 * d * m + 2 * d + block_bias;
        let head = if c.tie_word_embeddings {
            0
        } else {
            c.vocab_size * d
        };
        // Per block: four attention and three MLP weights, two RMSNorms, and the biases the
        // family has.
        let block_tensors =
            9 + 3 * usize::from(c.qkv_bias) + usize::from(c.o_bias) + 3 * usize::from(c.mlp_bias);
        Self {
            model_type: c.family.model_type().to_string(),
            hidden_size: d,
            num_heads: c.num_heads,
            head_dim: c.head_dim,
            kv_dim: kv,
            intermediate_size: m,
            gated_ffn: true,
            stacks: vec![StackShape {
                name: "decoder",
                layers: l,
                attention: vec![AttentionKind::SelfAttention],
            }],
            base_params: c.vocab_size * d + l * block + d + head,
            bias_params: l * block_bias,
            // The embedding, the final norm and an untied LM head.
            base_tensors: 2 + usize::from(!c.tie_word_embeddings) + l * block_tensors,
        }
    }

    /// Reads a Hugging Face `config.json` of any architecture petl knows the shape of:
    /// BERT-family encoders, BART/mBART/Marian encoder-decoders and Llama-family decoders.
    pub fn from_config_file(path: &Path) -> Result<Self> {
        crate::config::read_config_file(path, Self::from_config_json)
    }

    /// Parses the text of a `config.json`.
    pub fn from_config_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            model_type: String,
        }
        let bad = |source: serde_json::Error| ModelError::Json {
            path: "config.json".into(),
            source,
        };
        let probe: Probe = serde_json::from_str(text).map_err(bad)?;
        match probe.model_type.as_str() {
            "bart" | "mbart" | "marian" => {
                let c: Seq2SeqConfig = serde_json::from_str(text).map_err(bad)?;
                Ok(c.shape(&probe.model_type))
            }
            "llama" | "mistral" | "qwen2" => Ok(Self::of_decoder(&DecoderConfig::from_json(text)?)),
            _ => Ok(Self::of_encoder(&EncoderConfig::from_json(text)?, true)),
        }
    }

    /// `(in, out)` features of projection `proj`.
    pub fn proj_dims(&self, proj: Proj) -> (usize, usize) {
        let (d, m) = (self.hidden_size, self.intermediate_size);
        let q = self.num_heads * self.head_dim;
        match proj {
            Proj::Query => (d, q),
            Proj::AttnOut => (q, d),
            Proj::Key | Proj::Value => (d, self.kv_dim),
            Proj::CrossQuery | Proj::CrossKey | Proj::CrossValue | Proj::CrossOut => (d, d),
            Proj::FfnUp | Proj::FfnGate => (d, m),
            Proj::FfnDown => (m, d),
        }
    }

    /// Total number of blocks over all stacks.
    pub fn num_blocks(&self) -> usize {
        self.stacks.iter().map(|s| s.layers).sum()
    }

    /// The stack block `layer` (counted over all stacks) belongs to.
    pub fn stack_of(&self, layer: usize) -> Option<&StackShape> {
        let mut start = 0;
        self.stacks.iter().find(|s| {
            start += s.layers;
            layer < start
        })
    }

    /// Whether block `layer` has the attention sub-layer `kind`.
    pub fn has_attention(&self, layer: usize, kind: AttentionKind) -> bool {
        self.stack_of(layer).is_some_and(|s| s.attention.contains(&kind))
    }

    /// Whether block `layer` has projection `proj`.
    pub fn has_proj(&self, layer: usize, proj: Proj) -> bool {
        match proj.attention() {
            Some(crate::Sublayer::CrossAttention) => self.has_attention(layer, AttentionKind::CrossAttention),
            Some(_) => self.stack_of(layer).is_some(),
            None if proj == Proj::FfnGate => self.gated_ffn && self.stack_of(layer).is_some(),
            None => self.stack_of(layer).is_some(),
        }
    }

    /// Whether any block has projection `proj`.
    pub fn has_proj_anywhere(&self, proj: Proj) -> bool {
        (0..self.num_blocks()).any(|l| self.has_proj(l, proj))
    }
}

/// The fields of a BART/mBART/Marian `config.json` that decide its size.
#[derive(Deserialize)]
struct Seq2SeqConfig {
    vocab_size: usize,
    d_model: usize,
    encoder_layers: usize,
    decoder_layers: usize,
    encoder_attention_heads: usize,
    encoder_ffn_dim: usize,
    decoder_ffn_dim: usize,
    max_position_embeddings: usize,
}

impl Seq2SeqConfig {
    /// `model_type` is `bart`, `mbart` or `marian`.
    fn shape(&self, model_type: &str) -> ModelShape {
        let (mbart, marian) = (model_type == "mbart", model_type == "marian");
        let d = self.d_model;
        let attn = 4 * (d * d + d);
        let ffn = |m: usize| d * m + m + m * d + d;
        // Learned positions carry BART's offset of 2; the shared embedding counts once.
        // Marian's sinusoidal tables and missing `layernorm_embedding` add nothing.
        let positions = if marian {
            0
        } else {
            2 * (self.max_position_embeddings + 2) * d
        };
        let embedding_norms = if marian { 0 } else { 2 * 2 * d };
        let final_norms = if mbart { 2 * 2 * d } else { 0 };
        let encoder = self.encoder_layers * (attn + ffn(self.encoder_ffn_dim) + 2 * 2 * d);
        let decoder = self.decoder_layers * (2 * attn + ffn(self.decoder_ffn_dim) + 3 * 2 * d);
        ModelShape {
            model_type: model_type.into(),
            hidden_size: d,
            num_heads: self.encoder_attention_heads,
            head_dim: d / self.encoder_attention_heads.max(1),
            kv_dim: d,
            intermediate_size: self.encoder_ffn_dim,
            gated_ffn: false,
            stacks: vec![
                StackShape {
                    name: "encoder",
                    layers: self.encoder_layers,
                    attention: vec![AttentionKind::SelfAttention],
                },
                StackShape {
                    name: "decoder",
                    layers: self.decoder_layers,
                    attention: vec![AttentionKind::SelfAttention, AttentionKind::CrossAttention],
                },
            ],
            base_params: self.vocab_size * d + positions + embedding_norms + final_norms + encoder + decoder,
            bias_params: embedding_norms / 2
                + final_norms / 2
                + self.encoder_layers * (4 * d + self.encoder_ffn_dim + d + 2 * d)
                + self.decoder_layers * (8 * d + self.decoder_ffn_dim + d + 3 * d),
            // Shared embedding, two position tables and two embedding LayerNorms (not Marian),
            // two final LayerNorms (mBART); 16 tensors per encoder block, 26 per decoder block.
            base_tensors: 1
                + if marian { 0 } else { 2 + 4 }
                + if mbart { 4 } else { 0 }
                + 16 * self.encoder_layers
                + 26 * self.decoder_layers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bart_large_has_the_published_size() {
        // facebook/bart-large's config.json, size fields only.
        let text = r#"{"model_type":"bart","vocab_size":50265,"d_model":1024,"encoder_layers":12,
            "decoder_layers":12,"encoder_attention_heads":16,"decoder_attention_heads":16,
            "encoder_ffn_dim":4096,"decoder_ffn_dim":4096,"max_position_embeddings":1024}"#;
        let s = ModelShape::from_config_json(text).unwrap();
        // transformers: sum(p.numel() for p in BartModel(config).parameters()) = 406,291,456.
        assert_eq!(s.base_params, 406_291_456);
        assert_eq!(s.num_blocks(), 24);
    }

    #[test]
    fn opus_mt_marian_counts_its_trainable_parameters() {
        // Helsinki-NLP/opus-mt-en-de's config.json, size fields only.
        let text = r#"{"model_type":"marian","vocab_size":58101,"d_model":512,"encoder_layers":6,
            "decoder_layers":6,"encoder_attention_heads":8,"decoder_attention_heads":8,
            "encoder_ffn_dim":2048,"decoder_ffn_dim":2048,"max_position_embeddings":512}"#;
        let s = ModelShape::from_config_json(text).unwrap();
        // transformers: MarianModel(config) has 74,410,496 parameters, of which the two frozen
        // sinusoidal tables (2 · 512 · 512) are not trainable: 73,886,208.
        assert_eq!(s.base_params, 73_886_208);
        assert_eq!(s.model_type, "marian");
        assert_eq!(s.num_blocks(), 12);
    }

    #[test]
    fn roberta_base_counts_like_transformers() {
        let text = r#"{"model_type":"roberta","vocab_size":50265,"hidden_size":768,"num_hidden_layers":12,
            "num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":514,
            "type_vocab_size":1,"pad_token_id":1}"#;
        let s = ModelShape::from_config_json(text).unwrap();
        // RobertaModel (with pooler) from roberta-base's config: 124,645,632 parameters.
        assert_eq!(s.base_params, 124_645_632);
    }

    #[test]
    fn smollm2_135m_counts_like_transformers() {
        let text = r#"{"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
            "tie_word_embeddings":true}"#;
        let s = ModelShape::from_config_json(text).unwrap();
        // SmolLM2-135M: 134,515,008 parameters with tied embeddings.
        assert_eq!(s.base_params, 134_515_008);
        assert_eq!(s.proj_dims(Proj::Key), (576, 192));
    }
}
