//! Tensor names: peft's keys in `adapter_model.safetensors` and petl's parameter names.
//!
//! As peft 0.21.2 saves them (adapter name stripped), for a BERT encoder:
//!
//! | petl | peft |
//! |---|---|
//! | `delta{k}.layer{l}.{proj}.down.weight` `[r, in]` | `base_model.model.{m}encoder.layer.{l}.{module}.lora_A.weight` |
//! | `delta{k}.layer{l}.{proj}.up.weight` `[out, r]` | `base_model.model.{m}encoder.layer.{l}.{module}.lora_B.weight` |
//! | `delta{k}.layer{l}.{proj}.scale` `[out]` / `[in]` | `base_model.model.{m}encoder.layer.{l}.{module}.ia3_l` `[out, 1]` / `[1, in]` (input-scaled = peft's feedforward modules) |
//! | `delta{k}.layer{l}.prefix.{keys,values}` `[n, d]` | `prompt_embeddings` `[n, L·2·d]`: layer l's keys in columns `[2l·d, (2l+1)·d)`, values in `[(2l+1)·d, (2l+2)·d)` |
//! | `delta{k}.prompt` `[n, d]` | `prompt_embeddings` `[n, d]` |
//! | `classifier.{weight,bias}` (head) | `base_model.model.classifier.{weight,bias}`; prompt learning: `base_model.classifier.…` |
//! | `pooler.dense.{weight,bias}` (a head's own pooler) | `base_model.model.{m}pooler.dense.…` (`modules_to_save` `pooler`) |
//!
//! `{m}` is `bert.` / `roberta.` for `SEQ_CLS` (the `*ForSequenceClassification` model) and
//! empty for `FEATURE_EXTRACTION` (the bare encoder). `{module}` is `attention.self.query`,
//! `attention.self.key`, `attention.self.value`, `attention.output.dense`,
//! `intermediate.dense` or `output.dense`.

use petl_models::Proj;

/// Key prefix of tuner adapters (LoRA, IA³): `PeftModel.base_model.model`.
pub const TUNER_ROOT: &str = "base_model.model.";
/// Key prefix of a prompt-learning adapter's saved modules: `PeftModel.base_model`.
pub const PROMPT_ROOT: &str = "base_model.";
/// The one tensor of a prompt-learning adapter.
pub const PROMPT_EMBEDDINGS: &str = "prompt_embeddings";

/// The Hugging Face module of a projection inside `encoder.layer.{l}`, or `None` for the
/// projections a BERT-family block does not have (gates, cross-attention).
pub fn module_of(proj: Proj) -> Option<&'static str> {
    Some(match proj {
        Proj::Query => "attention.self.query",
        Proj::Key => "attention.self.key",
        Proj::Value => "attention.self.value",
        Proj::AttnOut => "attention.output.dense",
        Proj::FfnUp => "intermediate.dense",
        Proj::FfnDown => "output.dense",
        Proj::FfnGate | Proj::CrossQuery | Proj::CrossKey | Proj::CrossValue | Proj::CrossOut => return None,
    })
}

/// `encoder.layer.{l}.{module}`: a projection's module path below the encoder's root.
pub fn site_path(layer: usize, proj: Proj) -> Option<String> {
    module_of(proj).map(|m| format!("encoder.layer.{layer}.{m}"))
}

/// Splits `encoder.layer.{l}.{module}.{rest}` into the layer, the projection and `rest`.
pub fn parse_site(key: &str) -> Option<(usize, Proj, &str)> {
    let after = key.strip_prefix("encoder.layer.")?;
    let (layer, after) = after.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    Proj::ALL.into_iter().find_map(|p| {
        let rest = after.strip_prefix(module_of(p)?)?.strip_prefix('.')?;
        Some((layer, p, rest))
    })
}

/// The petl name of LoRA's down (`lora_A`) or up (`lora_B`) matrix.
pub fn lora_name(k: usize, layer: usize, proj: Proj, up: bool) -> String {
    let part = if up { "up" } else { "down" };
    format!(
        "delta{k}.layer{layer}.{}.{part}.weight",
        petl_methods::proj_name(proj)
    )
}

/// The petl name of an IA³ vector.
pub fn ia3_name(k: usize, layer: usize, proj: Proj) -> String {
    format!("delta{k}.layer{layer}.{}.scale", petl_methods::proj_name(proj))
}

/// The petl names of a layer's prefix keys and values.
pub fn prefix_names(k: usize, layer: usize) -> (String, String) {
    (
        format!("delta{k}.layer{layer}.prefix.keys"),
        format!("delta{k}.layer{layer}.prefix.values"),
    )
}

/// The petl name of prompt vectors.
pub fn prompt_name(k: usize) -> String {
    format!("delta{k}.prompt")
}

/// The path of a head tensor inside the Hugging Face model whose encoder sits under
/// `encoder_prefix` (`bert.` in `BertForSequenceClassification`), and the module peft's
/// `modules_to_save` names for it.
pub fn head_path(name: &str, encoder_prefix: &str) -> (String, &'static str) {
    if name.starts_with("pooler.") {
        (format!("{encoder_prefix}{name}"), "pooler")
    } else {
        (name.to_string(), "classifier")
    }
}

/// The petl head name of a tensor path inside the Hugging Face model, if it is a head tensor.
pub fn head_name(path: &str, encoder_prefix: &str) -> Option<String> {
    if path.starts_with("classifier.") {
        return Some(path.to_string());
    }
    let rest = path.strip_prefix(encoder_prefix).unwrap_or(path);
    rest.starts_with("pooler.dense.").then(|| rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_parse_without_confusing_the_two_output_denses() {
        for p in Proj::ALL.into_iter().filter(|&p| module_of(p).is_some()) {
            let key = format!("{}.lora_A.weight", site_path(3, p).unwrap());
            assert_eq!(parse_site(&key), Some((3, p, "lora_A.weight")), "{key}");
        }
        assert_eq!(parse_site("encoder.layer.x.output.dense.ia3_l"), None);
        assert_eq!(parse_site("encoder.layer.1.output.LayerNorm.weight"), None);
        assert_eq!(
            head_path("pooler.dense.weight", "bert."),
            ("bert.pooler.dense.weight".into(), "pooler")
        );
        assert_eq!(
            head_name("bert.pooler.dense.bias", "bert.").as_deref(),
            Some("pooler.dense.bias")
        );
        assert_eq!(
            head_name("classifier.out_proj.weight", "roberta.").as_deref(),
            Some("classifier.out_proj.weight")
        );
        assert_eq!(head_name("bert.embeddings.word_embeddings.weight", "bert."), None);
    }
}
