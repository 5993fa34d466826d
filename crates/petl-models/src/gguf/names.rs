//! llama.cpp tensor names ↔ Hugging Face Llama/Qwen2 names.
//!
//! The table is gguf-py's `TensorNameMap` for `MODEL_ARCH.LLAMA` / `QWEN2` (gguf 0.19,
//! `gguf/tensor_mapping.py`), restricted to the tensors of a dense decoder.

/// The parts of a dense decoder a tensor can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    Embedding,
    LmHead,
    FinalNorm,
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
    AttnNorm,
    FfnNorm,
}

/// Per-layer modules: GGUF suffix after `blk.N.` ↔ HF module path after `model.layers.N.`.
const LAYER_MODULES: &[(&str, &str, Module)] = &[
    ("attn_q", "self_attn.q_proj", Module::Q),
    ("attn_k", "self_attn.k_proj", Module::K),
    ("attn_v", "self_attn.v_proj", Module::V),
    ("attn_output", "self_attn.o_proj", Module::O),
    ("ffn_gate", "mlp.gate_proj", Module::Gate),
    ("ffn_up", "mlp.up_proj", Module::Up),
    ("ffn_down", "mlp.down_proj", Module::Down),
    ("attn_norm", "input_layernorm", Module::AttnNorm),
    ("ffn_norm", "post_attention_layernorm", Module::FfnNorm),
];

/// Tensors outside the layers.
const GLOBAL: &[(&str, &str, Module)] = &[
    (
        "token_embd.weight",
        "model.embed_tokens.weight",
        Module::Embedding,
    ),
    ("output_norm.weight", "model.norm.weight", Module::FinalNorm),
    ("output.weight", "lm_head.weight", Module::LmHead),
];

/// A GGUF tensor placed in the Hugging Face model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The Hugging Face name.
    pub hf_name: String,
    /// The decoder layer it belongs to, if any.
    pub layer: Option<usize>,
    /// Which part of the model it is.
    pub module: Module,
    /// Whether it is a bias (else a weight).
    pub is_bias: bool,
}

/// The Hugging Face name of a llama.cpp tensor name, or `None` when it is not part of a dense
/// Llama/Qwen2 decoder.
///
/// ```
/// use petl_models::gguf::hf_tensor_name;
/// assert_eq!(hf_tensor_name("blk.3.attn_q.weight").as_deref(), Some("model.layers.3.self_attn.q_proj.weight"));
/// assert_eq!(hf_tensor_name("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.post_attention_layernorm.weight"));
/// assert_eq!(hf_tensor_name("output.weight").as_deref(), Some("lm_head.weight"));
/// assert_eq!(hf_tensor_name("rope_freqs.weight"), None);
/// ```
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    place(gguf_name).map(|p| p.hf_name)
}

/// The llama.cpp name of a Hugging Face tensor name (the inverse of [`hf_tensor_name`]).
///
/// ```
/// use petl_models::gguf::gguf_tensor_name;
/// assert_eq!(gguf_tensor_name("model.layers.3.mlp.down_proj.weight").as_deref(), Some("blk.3.ffn_down.weight"));
/// assert_eq!(gguf_tensor_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
/// ```
pub fn gguf_tensor_name(hf_name: &str) -> Option<String> {
    if let Some((gguf, _, _)) = GLOBAL.iter().find(|(_, hf, _)| *hf == hf_name) {
        return Some(gguf.to_string());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = parse_index(layer)?;
    let (module, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let (gguf, _, _) = LAYER_MODULES.iter().find(|(_, hf, _)| *hf == module)?;
    Some(format!("blk.{layer}.{gguf}.{kind}"))
}

/// Where a GGUF tensor goes, with its layer and module.
pub(crate) fn place(gguf_name: &str) -> Option<Placed> {
    if let Some((_, hf, module)) = GLOBAL.iter().find(|(gguf, _, _)| *gguf == gguf_name) {
        return Some(Placed {
            hf_name: hf.to_string(),
            layer: None,
            module: *module,
            is_bias: false,
        });
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer = parse_index(layer)?;
    let (module, kind) = rest.rsplit_once('.')?;
    let is_bias = match kind {
        "weight" => false,
        "bias" => true,
        _ => return None,
    };
    let (_, hf_module, module) = LAYER_MODULES.iter().find(|(gguf, _, _)| *gguf == module)?;
    Some(Placed {
        hf_name: format!("model.layers.{layer}.{hf_module}.{kind}"),
        layer: Some(layer),
        module: *module,
        is_bias,
    })
}

/// A plain decimal layer index (no sign, no leading `+`, no leading zeros but `0` itself).
fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// What an unmapped tensor is, for tensors llama.cpp writes that petl knowingly does not map.
pub(crate) fn unmapped_reason(gguf_name: &str) -> Option<&'static str> {
    if gguf_name == "rope_freqs.weight" {
        return Some(
            "per-dimension RoPE frequency factors (Llama 3.1-style rope scaling), which petl does not \
             support yet",
        );
    }
    let module = gguf_name.strip_prefix("blk.")?.split_once('.')?.1;
    if module.starts_with("attn_q_norm") || module.starts_with("attn_k_norm") {
        return Some("a per-head Q/K norm (Qwen3-style), which Llama and Qwen2 do not have");
    }
    if module.contains("_exps") || module.starts_with("ffn_gate_inp") {
        return Some("a mixture-of-experts tensor; petl maps dense decoders only");
    }
    None
}

/// The HF module paths of a decoder layer with their kind, in HF order.
pub(crate) fn layer_modules() -> impl Iterator<Item = (&'static str, Module)> {
    LAYER_MODULES.iter().map(|(_, hf, module)| (*hf, *module))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for (gguf, hf, _) in GLOBAL {
            assert_eq!(hf_tensor_name(gguf).as_deref(), Some(*hf));
            assert_eq!(gguf_tensor_name(hf).as_deref(), Some(*gguf));
        }
        for (gguf, hf, _) in LAYER_MODULES {
            for kind in ["weight", "bias"] {
                for layer in [0, 7, 31] {
                    let g = format!("blk.{layer}.{gguf}.{kind}");
                    let h = format!("model.layers.{layer}.{hf}.{kind}");
                    assert_eq!(hf_tensor_name(&g), Some(h.clone()));
                    assert_eq!(gguf_tensor_name(&h), Some(g));
                }
            }
        }
    }

    #[test]
    fn rejects_lookalikes() {
        for bad in [
            "blk.x.attn_q.weight",
            "blk.01.attn_q.weight",
            "blk.-1.attn_q.weight",
            "blk.0.attn_q.scale",
            "blk.0.attn_qkv.weight",
            "blk.0.attn_q",
            "token_embd.bias",
            "output",
            "",
        ] {
            assert_eq!(hf_tensor_name(bad), None, "{bad}");
        }
        assert_eq!(
            gguf_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
        assert!(unmapped_reason("rope_freqs.weight").is_some());
        assert!(unmapped_reason("blk.2.attn_k_norm.weight").is_some());
        assert!(unmapped_reason("blk.2.ffn_up_exps.weight").is_some());
        assert_eq!(unmapped_reason("blk.2.something.weight"), None);
    }

    #[test]
    fn placement_records_layer_and_kind() {
        let p = place("blk.12.attn_k.bias").unwrap();
        assert_eq!(p.layer, Some(12));
        assert_eq!(p.module, Module::K);
        assert!(p.is_bias);
        let p = place("output_norm.weight").unwrap();
        assert_eq!(p.layer, None);
        assert_eq!(p.module, Module::FinalNorm);
    }
}
