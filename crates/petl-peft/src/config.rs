//! `adapter_config.json`: the peft configuration types petl reads and writes.
//!
//! Reading is lenient where peft's own forward-compatibility asks for it and strict where a
//! value would change what the adapter computes:
//!
//! - keys petl uses are parsed and type-checked;
//! - keys that only matter for initialisation or training (`init_lora_weights`,
//!   `loftq_config`, `prompt_tuning_init`, …) are ignored;
//! - keys that would change the forward pass must be off (`false`, `null`, `{}`, `[]`, or
//!   `bias = "none"`): `use_dora = true` and every other such option is an error naming it;
//! - any other key (from a newer peft) is ignored with a `tracing` warning and listed in
//!   [`AdapterConfig::unknown_keys`].
//!
//! Writing produces the keys peft 0.21 writes that existed in older peft releases too, so an
//! older peft loads the file; every key left out takes peft's default.

use crate::{PeftError, Result};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The adapter configuration file of a peft adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter weights file of a peft adapter directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The pickled weights file older peft versions wrote; petl does not read it.
pub const PICKLE_FILE: &str = "adapter_model.bin";
/// The peft release whose file format this module writes and was tested against.
pub const PEFT_VERSION: &str = "0.21.2";

/// The peft methods petl converts (peft's `peft_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeftType {
    /// `LORA`.
    Lora,
    /// `IA3`.
    Ia3,
    /// `PREFIX_TUNING`.
    PrefixTuning,
    /// `PROMPT_TUNING`.
    PromptTuning,
}

impl PeftType {
    /// The name peft writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lora => "LORA",
            Self::Ia3 => "IA3",
            Self::PrefixTuning => "PREFIX_TUNING",
            Self::PromptTuning => "PROMPT_TUNING",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Lora, Self::Ia3, Self::PrefixTuning, Self::PromptTuning]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// Whether peft treats the method as prompt learning (its weights are saved as
    /// `prompt_embeddings`, outside `base_model.model`).
    pub fn is_prompt_learning(self) -> bool {
        matches!(self, Self::PrefixTuning | Self::PromptTuning)
    }
}

/// The peft task types petl converts (peft's `task_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    /// `SEQ_CLS`: a `*ForSequenceClassification` model, the head in `modules_to_save`.
    SeqCls,
    /// `FEATURE_EXTRACTION`: the bare encoder (`BertModel`), no head.
    FeatureExtraction,
}

impl TaskType {
    /// The name peft writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SeqCls => "SEQ_CLS",
            Self::FeatureExtraction => "FEATURE_EXTRACTION",
        }
    }
}

/// peft's `target_modules` (and IA³'s `feedforward_modules`): module-name suffixes, or one
/// regular expression that must match a module's full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// A module is targeted when its name equals or ends with `.` + one of these.
    Names(Vec<String>),
    /// A module is targeted when this regex matches its whole name.
    Regex(String),
}

impl TargetModules {
    fn to_json(&self) -> Value {
        match self {
            Self::Names(v) => Value::from(v.clone()),
            Self::Regex(r) => Value::from(r.clone()),
        }
    }

    fn from_json(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::String(s) => Ok(Self::Regex(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Err(format!("a list of module names holds {other}")),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Self::Names),
            other => Err(format!(
                "expected a list of module names or a regex, found {other}"
            )),
        }
    }
}

/// `LoraConfig` fields petl uses.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank (per-module ranks from `rank_pattern` are read from the weights' shapes).
    pub r: usize,
    /// α: the update is scaled by α/r (α/√r with `use_rslora`).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input during training.
    pub lora_dropout: f64,
    /// rsLoRA scaling α/√r.
    pub use_rslora: bool,
    /// The wrapped modules.
    pub target_modules: TargetModules,
}

/// `IA3Config` fields petl uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Ia3Config {
    /// The wrapped modules.
    pub target_modules: TargetModules,
    /// The wrapped modules whose input (not output) is scaled.
    pub feedforward_modules: TargetModules,
}

/// Fields prefix and prompt tuning share (`PromptLearningConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualTokens {
    /// Number of virtual tokens (prefix or prompt length).
    pub num_virtual_tokens: usize,
    /// Hidden size of the base model.
    pub token_dim: Option<usize>,
    /// Number of transformer blocks.
    pub num_layers: Option<usize>,
    /// Attention heads per block.
    pub num_attention_heads: Option<usize>,
    /// 1 for encoder-only models (2 for encoder–decoder).
    pub num_transformer_submodules: Option<usize>,
}

/// The method-specific part of an adapter config.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodConfig {
    /// LoRA.
    Lora(LoraConfig),
    /// IA³.
    Ia3(Ia3Config),
    /// Prefix tuning.
    PrefixTuning {
        /// Length and model dimensions.
        tokens: VirtualTokens,
        /// Whether prefixes were generated by an MLP during training (the saved
        /// `prompt_embeddings` are the generated prefixes either way).
        prefix_projection: bool,
        /// The MLP's hidden width.
        encoder_hidden_size: Option<usize>,
    },
    /// Prompt tuning.
    PromptTuning(VirtualTokens),
}

/// A peft `adapter_config.json`, as far as petl uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    /// `task_type`; `None` when the file has `null`.
    pub task_type: Option<TaskType>,
    /// `base_model_name_or_path`: the base model's hub id or directory.
    pub base_model_name_or_path: Option<String>,
    /// `modules_to_save` (duplicates removed, order kept): modules saved whole, e.g. the
    /// classifier.
    pub modules_to_save: Vec<String>,
    /// The method and its fields.
    pub method: MethodConfig,
    /// Keys this petl does not know (from a newer peft), ignored with a warning when read.
    pub unknown_keys: Vec<String>,
}

impl AdapterConfig {
    /// The method's `peft_type`.
    pub fn peft_type(&self) -> PeftType {
        match self.method {
            MethodConfig::Lora(_) => PeftType::Lora,
            MethodConfig::Ia3(_) => PeftType::Ia3,
            MethodConfig::PrefixTuning { .. } => PeftType::PrefixTuning,
            MethodConfig::PromptTuning(_) => PeftType::PromptTuning,
        }
    }

    /// Reads `adapter_config.json` at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| PeftError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses the text of an `adapter_config.json`; `path` is only used in messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| PeftError::BadConfig {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(PeftError::BadConfig {
                path: path.to_path_buf(),
                message: "the file is not a JSON object".into(),
            });
        };
        let mut f = Fields {
            map,
            path: path.to_path_buf(),
            used: BTreeSet::new(),
        };
        let peft_type: String = f.require("peft_type")?;
        let Some(kind) = PeftType::parse(&peft_type) else {
            return Err(f.unsupported(
                format!("peft_type {peft_type}"),
                "petl converts LORA, IA3, PREFIX_TUNING and PROMPT_TUNING adapters".into(),
            ));
        };
        let task_type = match f.get::<String>("task_type")?.as_deref() {
            None => None,
            Some("SEQ_CLS") => Some(TaskType::SeqCls),
            Some("FEATURE_EXTRACTION") => Some(TaskType::FeatureExtraction),
            Some(other) => {
                return Err(f.unsupported(
                    format!("task_type {other}"),
                    "petl's task models are sequence classifiers (SEQ_CLS) on an encoder; \
                     FEATURE_EXTRACTION adapters can be imported only with a head"
                        .into(),
                ))
            }
        };
        let base_model_name_or_path = f.get("base_model_name_or_path")?;
        let mut modules_to_save: Vec<String> = Vec::new();
        for m in f.get::<Vec<String>>("modules_to_save")?.unwrap_or_default() {
            if !modules_to_save.contains(&m) {
                modules_to_save.push(m);
            }
        }
        f.ignore(&["revision", "inference_mode", "auto_mapping", "peft_version"]);
        let method = match kind {
            PeftType::Lora => MethodConfig::Lora(read_lora(&mut f)?),
            PeftType::Ia3 => {
                f.must_be_off(
                    "fan_in_fan_out",
                    "petl's BERT-family weights are never transposed",
                )?;
                f.ignore(&[
                    "init_ia3_weights",
                    "exclude_modules",
                    "layers_to_transform",
                    "layers_pattern",
                ]);
                MethodConfig::Ia3(Ia3Config {
                    target_modules: f.target_modules("target_modules")?,
                    feedforward_modules: f.target_modules("feedforward_modules")?,
                })
            }
            PeftType::PrefixTuning => {
                f.ignore(&["init_weights"]);
                MethodConfig::PrefixTuning {
                    tokens: read_tokens(&mut f)?,
                    prefix_projection: f.get("prefix_projection")?.unwrap_or(false),
                    encoder_hidden_size: f.get("encoder_hidden_size")?,
                }
            }
            PeftType::PromptTuning => {
                f.ignore(&[
                    "prompt_tuning_init",
                    "prompt_tuning_init_text",
                    "tokenizer_name_or_path",
                    "tokenizer_kwargs",
                ]);
                MethodConfig::PromptTuning(read_tokens(&mut f)?)
            }
        };
        let unknown_keys = f.rest();
        for key in &unknown_keys {
            tracing::warn!(
                "{}: unknown key `{key}` (from a newer peft?) ignored",
                path.display()
            );
        }
        Ok(Self {
            task_type,
            base_model_name_or_path,
            modules_to_save,
            method,
            unknown_keys,
        })
    }

    /// The JSON object peft reads back (keys sorted, as peft writes them).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("peft_type", self.peft_type().as_str().into());
        put("task_type", self.task_type.map(TaskType::as_str).into());
        put(
            "base_model_name_or_path",
            self.base_model_name_or_path.clone().into(),
        );
        put("revision", Value::Null);
        put("inference_mode", true.into());
        put("auto_mapping", Value::Null);
        put(
            "modules_to_save",
            if self.modules_to_save.is_empty() {
                Value::Null
            } else {
                self.modules_to_save.clone().into()
            },
        );
        match &self.method {
            MethodConfig::Lora(c) => {
                put("r", c.r.into());
                put("lora_alpha", number(c.lora_alpha));
                put("lora_dropout", number(c.lora_dropout));
                put("target_modules", c.target_modules.to_json());
                put("use_rslora", c.use_rslora.into());
                put("bias", "none".into());
                put("fan_in_fan_out", false.into());
                put("init_lora_weights", true.into());
                put("layers_to_transform", Value::Null);
                put("layers_pattern", Value::Null);
                put("rank_pattern", Value::Object(Map::new()));
                put("alpha_pattern", Value::Object(Map::new()));
            }
            MethodConfig::Ia3(c) => {
                put("target_modules", c.target_modules.to_json());
                put("feedforward_modules", c.feedforward_modules.to_json());
                put("fan_in_fan_out", false.into());
                put("init_ia3_weights", true.into());
            }
            MethodConfig::PrefixTuning {
                tokens,
                prefix_projection,
                encoder_hidden_size,
            } => {
                write_tokens(&mut put, tokens);
                put("prefix_projection", (*prefix_projection).into());
                put("encoder_hidden_size", (*encoder_hidden_size).into());
            }
            MethodConfig::PromptTuning(tokens) => {
                write_tokens(&mut put, tokens);
                put("prompt_tuning_init", "RANDOM".into());
                put("prompt_tuning_init_text", Value::Null);
                put("tokenizer_name_or_path", Value::Null);
            }
        }
        Value::Object(m)
    }
}

/// An integral value as a JSON integer (peft types `lora_alpha` as int), otherwise a float.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

fn write_tokens(put: &mut impl FnMut(&str, Value), t: &VirtualTokens) {
    put("num_virtual_tokens", t.num_virtual_tokens.into());
    put("token_dim", t.token_dim.into());
    put("num_layers", t.num_layers.into());
    put("num_attention_heads", t.num_attention_heads.into());
    put("num_transformer_submodules", t.num_transformer_submodules.into());
}

fn read_lora(f: &mut Fields) -> Result<LoraConfig> {
    f.must_be_off(
        "use_dora",
        "DoRA rescales each weight column by a learned magnitude; petl has no DoRA form and \
         will not compute something else",
    )?;
    f.must_be_off(
        "alpha_pattern",
        "per-module α is not converted; merge the pattern into one lora_alpha",
    )?;
    f.must_be_off(
        "fan_in_fan_out",
        "petl's BERT-family weights are never transposed",
    )?;
    f.must_be_off("lora_bias", "petl's low-rank form has no bias on lora_B")?;
    f.must_be_off("layer_replication", "petl does not duplicate layers")?;
    f.must_be_off(
        "megatron_config",
        "Megatron-parallel layers are not BERT-family encoders",
    )?;
    f.must_be_off(
        "trainable_token_indices",
        "trained embedding rows are not part of petl's LoRA",
    )?;
    f.must_be_off("target_parameters", "LoRA on raw parameters is not implemented")?;
    f.must_be_off("use_qalora", "QA-LoRA pools the LoRA input; not implemented")?;
    f.must_be_off("use_bdlora", "block-diagonal LoRA is not implemented")?;
    f.must_be_off("alora_invocation_tokens", "activated LoRA is not implemented")?;
    f.must_be_off("arrow_config", "Arrow routing is not implemented")?;
    f.must_be_off("kasa_config", "KaSA is not implemented")?;
    f.must_be_off("monteclora_config", "MonteCLoRA is not implemented")?;
    f.must_be_off("velora_config", "VeLoRA is not implemented")?;
    if let Some(bias) = f.get::<String>("bias")? {
        if bias != "none" {
            return Err(f.unsupported(
                format!("bias = {bias:?}"),
                "trained base biases are not part of a LoRA adapter in petl (use bias = \"none\")".into(),
            ));
        }
    }
    f.ignore(&[
        "init_lora_weights",
        "layers_to_transform",
        "layers_pattern",
        "rank_pattern",
        "exclude_modules",
        "loftq_config",
        "eva_config",
        "corda_config",
        "lora_ga_config",
        "megatron_core",
        "qalora_group_size",
        "ensure_weight_tying",
        "runtime_config",
    ]);
    let r: usize = f.get("r")?.unwrap_or(8);
    let lora_alpha: f64 = f.get("lora_alpha")?.unwrap_or(8.0);
    let lora_dropout: f64 = f.get("lora_dropout")?.unwrap_or(0.0);
    if r == 0 || !lora_alpha.is_finite() || !(0.0..1.0).contains(&lora_dropout) {
        return Err(f.bad(format!(
            "r = {r}, lora_alpha = {lora_alpha}, lora_dropout = {lora_dropout}: need r ≥ 1, a finite α \
             and dropout in [0, 1)"
        )));
    }
    Ok(LoraConfig {
        r,
        lora_alpha,
        lora_dropout,
        use_rslora: f.get("use_rslora")?.unwrap_or(false),
        target_modules: f.target_modules("target_modules")?,
    })
}

fn read_tokens(f: &mut Fields) -> Result<VirtualTokens> {
    let t = VirtualTokens {
        num_virtual_tokens: f.require("num_virtual_tokens")?,
        token_dim: f.get("token_dim")?,
        num_layers: f.get("num_layers")?,
        num_attention_heads: f.get("num_attention_heads")?,
        num_transformer_submodules: f.get("num_transformer_submodules")?,
    };
    if t.num_virtual_tokens == 0 {
        return Err(f.bad("num_virtual_tokens is 0".into()));
    }
    if let Some(n) = t.num_transformer_submodules.filter(|&n| n != 1) {
        return Err(f.unsupported(
            format!("num_transformer_submodules = {n}"),
            "petl's models are encoders (1 submodule)".into(),
        ));
    }
    Ok(t)
}

/// A JSON object whose keys are consumed one by one, so the unknown ones are what is left.
struct Fields {
    map: Map<String, Value>,
    path: PathBuf,
    used: BTreeSet<String>,
}

impl Fields {
    /// The value of `key` (`None` when absent or `null`).
    fn get<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        self.used.insert(key.to_string());
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| self.bad(format!("`{key}`: {e} (found {v})"))),
        }
    }

    fn require<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Result<T> {
        self.get(key)?
            .ok_or_else(|| self.bad(format!("`{key}` is missing")))
    }

    fn target_modules(&mut self, key: &str) -> Result<TargetModules> {
        self.used.insert(key.to_string());
        match self.map.get(key).cloned() {
            None | Some(Value::Null) => Ok(TargetModules::Names(Vec::new())),
            Some(v) => TargetModules::from_json(v).map_err(|e| self.bad(format!("`{key}`: {e}"))),
        }
    }

    /// Requires `key` to be absent or off (`null`, `false`, `{}`, `[]`).
    fn must_be_off(&mut self, key: &str, why: &str) -> Result<()> {
        self.used.insert(key.to_string());
        match self.map.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
            Some(Value::Object(o)) if o.is_empty() => Ok(()),
            Some(Value::Array(a)) if a.is_empty() => Ok(()),
            Some(v) => Err(self.unsupported(format!("`{key}` = {v}"), why.to_string())),
        }
    }

    fn ignore(&mut self, keys: &[&str]) {
        self.used.extend(keys.iter().map(|k| k.to_string()));
    }

    /// The keys never asked for, sorted.
    fn rest(&self) -> Vec<String> {
        self.map
            .keys()
            .filter(|k| !self.used.contains(*k))
            .cloned()
            .collect()
    }

    fn bad(&self, message: String) -> PeftError {
        PeftError::BadConfig {
            path: self.path.clone(),
            message,
        }
    }

    fn unsupported(&self, what: String, reason: String) -> PeftError {
        PeftError::UnsupportedPeft {
            path: self.path.clone(),
            what,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AdapterConfig> {
        AdapterConfig::from_json(text, Path::new("adapter_config.json"))
    }

    #[test]
    fn reads_peft_0_21_lora_and_tolerates_unknown_keys() {
        let c = parse(
            r#"{"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 4, "lora_alpha": 8,
                "target_modules": ["query", "value"], "modules_to_save": ["classifier", "score", "classifier"],
                "use_dora": false, "bias": "none", "alpha_pattern": {}, "loftq_config": {},
                "peft_version": "0.21.2", "some_future_option": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!(c.task_type, Some(TaskType::SeqCls));
        assert_eq!(c.modules_to_save, vec!["classifier", "score"]);
        assert_eq!(c.unknown_keys, vec!["some_future_option"]);
        let MethodConfig::Lora(l) = &c.method else {
            panic!("not lora")
        };
        assert_eq!((l.r, l.lora_alpha), (4, 8.0));
        assert_eq!(
            l.target_modules,
            TargetModules::Names(vec!["query".into(), "value".into()])
        );
        // Written and read back, the config is the same.
        let back = parse(&c.to_json().to_string()).unwrap();
        assert_eq!(back.method, c.method);
        assert!(back.unknown_keys.is_empty());
    }

    #[test]
    fn options_that_change_the_forward_are_refused_by_name() {
        let e = parse(r#"{"peft_type": "LORA", "r": 4, "use_dora": true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use_dora") && e.contains("DoRA"), "{e}");
        let e = parse(r#"{"peft_type": "LORA", "r": 4, "bias": "all"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bias"), "{e}");
        let e = parse(r#"{"peft_type": "LORA", "alpha_pattern": {"query": 4}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("alpha_pattern"), "{e}");
        let e = parse(r#"{"peft_type": "LOHA", "r": 4}"#).unwrap_err().to_string();
        assert!(e.contains("LOHA"), "{e}");
        let e = parse(r#"{"peft_type": "LORA", "task_type": "CAUSAL_LM"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CAUSAL_LM"), "{e}");
        let e = parse(r#"{"peft_type": "LORA", "r": "four"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`r`"), "{e}");
        let e = parse(r#"{"peft_type": "PREFIX_TUNING"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_virtual_tokens"), "{e}");
        let e = parse(
            r#"{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 3, "num_transformer_submodules": 2}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("num_transformer_submodules"), "{e}");
        assert!(parse("[1]").is_err());
    }
}
