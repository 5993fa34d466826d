//! The design space of He et al. (2022) as one configuration type.
//!
//! A [`Method`] is a list of [`DeltaSpec`]s. Each places one modification Δh in the model along
//! the paper's four dimensions — functional [`Form`], [`Insertion`], modified representation
//! ([`Site`]) and [`Composition`] — plus the layers it covers and its initialisation. Every
//! published method is a preset of this type (see [`crate::presets`]); new points of the space
//! (MAM, UniPELT-style unions) are lists of several deltas.
//!
//! Configurations are TOML or JSON. Unknown keys are an error naming the key: a misspelt `r`
//! silently falling back to a default would waste a training run.

use petl_models::{ModelShape, Proj};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A parameter-efficient method: a named list of deltas on a frozen base. No deltas means only
/// the task head trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// The preset this came from, or a name of the user's choosing.
    pub name: String,
    /// The deltas, applied in order at each hook point.
    #[serde(default, rename = "delta")]
    pub deltas: Vec<DeltaSpec>,
}

/// One modification Δh: what it computes, where, from what, and how it is combined with h.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSpec {
    /// The functional form of Δh.
    pub form: Form,
    /// The representation Δh modifies.
    pub site: Site,
    /// Whether Δh reads the site's input (parallel) or its output (sequential).
    #[serde(default)]
    pub insertion: Insertion,
    /// How Δh is combined with h.
    #[serde(default)]
    pub composition: Composition,
    /// Which blocks get this delta.
    #[serde(default)]
    pub layers: Layers,
    /// How new weights start.
    #[serde(default)]
    pub init: InitScheme,
    /// Dropout inside the delta during training (on the input of low-rank forms, after the
    /// nonlinearity of bottlenecks).
    #[serde(default)]
    pub dropout: f64,
}

/// The functional form of Δh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Form {
    /// `f(x W_down + b) W_up + b'`: the adapter family.
    Bottleneck {
        /// Bottleneck width r.
        r: usize,
        /// The nonlinearity f.
        #[serde(default)]
        activation: AdapterActivation,
        /// A trainable LayerNorm on the adapter's input or output.
        #[serde(default)]
        layer_norm: AdapterNorm,
    },
    /// `x W_down W_up` without biases or nonlinearity: LoRA.
    LowRank {
        /// Rank r.
        r: usize,
    },
    /// Attention over `length` learned key/value vectors per layer and head: prefix tuning
    /// (softmax, gated) and the multi-head parallel adapter (ReLU, added).
    Prefix {
        /// Number of prefix vectors l (the bottleneck of the prefix form).
        length: usize,
        /// Normalisation of the prefix logits.
        #[serde(default)]
        activation: PrefixActivation,
        /// Hidden width of the MLP that generates the prefixes during training (Li & Liang's
        /// reparameterisation; 800 in He et al.). Training-only: artifacts store the generated
        /// prefixes, not the MLP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reparam: Option<usize>,
        /// Compute the gated composition explicitly as Eq. 7–10 of He et al. instead of by
        /// concatenating the prefixes to K and V; the two are the same function.
        #[serde(default, skip_serializing_if = "is_false")]
        explicit_gate: bool,
        /// Number the real tokens' positions after the prefix, as Hugging Face models do when
        /// prefixes arrive as past keys and values (peft's prefix tuning). He et al.'s code
        /// leaves positions alone.
        #[serde(default, skip_serializing_if = "is_false")]
        shift_positions: bool,
    },
    /// `h ⊙ l` with a learned vector l (IA³).
    Scaling {
        /// Projections whose *input* is scaled instead of their output (IA³ scales the FFN's
        /// inner activation, the input of `ffn_down`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scale_input: Vec<Proj>,
    },
    /// Only bias terms change (BitFit). (Empty braces, so that a stray key such as `r` is an
    /// error rather than silently ignored.)
    Bias {},
    /// Every base weight changes (full fine-tuning, as a dense diff).
    Dense {},
    /// `θ = θ₀ + δ` on every base parameter, δ trained from zero (diff pruning, Guo et al.
    /// 2021): with `l0`, `δ = z ⊙ w` under hard-concrete gates and an expected-L0 penalty;
    /// with `projection`, training continues by keeping the largest entries and fine-tuning
    /// them with the mask fixed, and the task stores a [`Form::SparseDiff`].
    Diff {
        /// L0 gates; without them δ trains densely (the non-adaptive baseline).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l0: Option<crate::diff::L0Gates>,
        /// Projection to an exact sparsity, then fixed-mask fine-tuning.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        projection: Option<crate::diff::Projection>,
    },
    /// A diff at fixed positions whose values train: what diff pruning stores. The positions
    /// come with the artifact, not the configuration.
    SparseDiff {},
    /// `length` learned vectors prepended to the word embeddings (prompt tuning).
    Prompt {
        /// Number of prompt vectors.
        length: usize,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Form {
    /// The form's name as written in configs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bottleneck { .. } => "bottleneck",
            Self::LowRank { .. } => "low_rank",
            Self::Prefix { .. } => "prefix",
            Self::Scaling { .. } => "scaling",
            Self::Bias {} => "bias",
            Self::Dense {} => "dense",
            Self::Diff { .. } => "diff",
            Self::SparseDiff {} => "sparse_diff",
            Self::Prompt { .. } => "prompt",
        }
    }

    /// Whether the form replaces base parameters (at most one such delta per method).
    pub fn replaces_params(&self) -> bool {
        matches!(
            self,
            Self::Bias {} | Self::Dense {} | Self::Diff { .. } | Self::SparseDiff {}
        )
    }

    /// The bottleneck size (r or l), where the form has one.
    pub fn bottleneck(&self) -> Option<usize> {
        match *self {
            Self::Bottleneck { r, .. } | Self::LowRank { r } => Some(r),
            Self::Prefix { length, .. } | Self::Prompt { length } => Some(length),
            _ => None,
        }
    }

    /// Sets the bottleneck size (r or l); a no-op for forms without one.
    pub fn set_bottleneck(&mut self, n: usize) {
        match self {
            Self::Bottleneck { r, .. } | Self::LowRank { r } => *r = n,
            Self::Prefix { length, .. } | Self::Prompt { length } => *length = n,
            _ => {}
        }
    }
}

/// The nonlinearity of a bottleneck adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterActivation {
    /// max(0, x): He et al.'s adapters.
    #[default]
    Relu,
    /// x·σ(x): AdapterHub's Houlsby configuration.
    Swish,
    /// Exact GELU.
    Gelu,
    /// tanh.
    Tanh,
    /// None (a bottleneck with biases but no nonlinearity).
    Identity,
}

/// Where a bottleneck adapter has its own LayerNorm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterNorm {
    /// No LayerNorm (He et al.'s MAM and scaled PA).
    #[default]
    None,
    /// On the adapter's input, before W_down.
    In,
    /// On the adapter's output, after W_up.
    Out,
}

/// The normalisation of prefix logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixActivation {
    /// softmax, sharing its normaliser with the context under gated composition (prefix tuning).
    #[default]
    Softmax,
    /// ReLU: the multi-head parallel adapter.
    Relu,
}

/// The representation a delta modifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// The input word embeddings (prompt tuning).
    Embeddings,
    /// The attention sub-layer: its input and its output after W_o, before the residual.
    Attention,
    /// Each head's attention output, before W_o.
    Heads,
    /// The FFN sub-layer: its input and its output, before the residual.
    Ffn,
    /// Named weight matrices: input and output of each projection.
    Weights(Vec<Proj>),
    /// Base parameters themselves (BitFit, dense diffs).
    Params,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embeddings => f.write_str("embeddings"),
            Self::Attention => f.write_str("attention"),
            Self::Heads => f.write_str("heads"),
            Self::Ffn => f.write_str("ffn"),
            Self::Params => f.write_str("params"),
            Self::Weights(p) => {
                let names: Vec<&str> = p.iter().map(|p| proj_name(*p)).collect();
                write!(f, "{}", names.join("+"))
            }
        }
    }
}

/// The config name of a projection.
pub fn proj_name(p: Proj) -> &'static str {
    match p {
        Proj::Query => "query",
        Proj::Key => "key",
        Proj::Value => "value",
        Proj::AttnOut => "attn_out",
        Proj::FfnUp => "ffn_up",
        Proj::FfnDown => "ffn_down",
        Proj::FfnGate => "ffn_gate",
        Proj::CrossQuery => "cross_query",
        Proj::CrossKey => "cross_key",
        Proj::CrossValue => "cross_value",
        Proj::CrossOut => "cross_out",
    }
}

/// Whether Δh reads the site's input or its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Insertion {
    /// `h ← h ⊕ Δ(h)`: the adapter of Houlsby et al.
    Sequential,
    /// `h ← h ⊕ Δ(x)` with x the site's input: prefix tuning, LoRA, the parallel adapter.
    #[default]
    Parallel,
}

/// How Δh is combined with h.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Composition {
    /// `h + Δh`.
    #[default]
    Add,
    /// `h + s·Δh`.
    Scaled(Scale),
    /// Prefix forms: `(1−λ(x))·h + λ(x)·Δh` with prefix tuning's implicit gate. Other forms:
    /// `h + σ(x·w_g + b_g)·Δh` with a learned per-token gate (UniPELT).
    Gated,
}

/// The scalar s of a scaled composition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// A fixed hyperparameter (LoRA's α/r, MAM's 4).
    Fixed(f64),
    /// A trained scalar starting at 1.
    Learned,
}

impl Serialize for Scale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(v) => s.serialize_f64(*v),
            Self::Learned => s.serialize_str("learned"),
        }
    }
}

impl<'de> Deserialize<'de> for Scale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scale;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"learned\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scale, E> {
                Ok(Scale::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scale, E> {
                Ok(Scale::Fixed(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scale, E> {
                Ok(Scale::Fixed(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scale, E> {
                match v {
                    "learned" => Ok(Scale::Learned),
                    other => Err(E::custom(format!(
                        "unknown scale {other:?}: give a number or \"learned\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Which blocks a delta covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Layers {
    /// Every block.
    #[default]
    All,
    /// These 0-based block indices.
    Only(Vec<usize>),
}

impl Layers {
    /// Whether block `layer` is covered.
    pub fn contains(&self, layer: usize) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.contains(&layer),
        }
    }

    /// The covered blocks of a model with `n` blocks, ascending.
    pub fn select(&self, n: usize) -> Vec<usize> {
        (0..n).filter(|&l| self.contains(l)).collect()
    }
}

impl Serialize for Layers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => s.serialize_str("all"),
            Self::Only(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Layers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Layers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\" or a list of layer indices")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Layers, E> {
                match v {
                    "all" => Ok(Layers::All),
                    other => Err(E::custom(format!("unknown layer selection {other:?}"))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Layers, A::Error> {
                let mut v = Vec::new();
                while let Some(i) = seq.next_element::<usize>()? {
                    v.push(i);
                }
                v.sort_unstable();
                v.dedup();
                Ok(Layers::Only(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// How new delta weights start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// N(0, 0.02²) weights, zero biases (BERT; He et al.'s plain adapters and prefixes).
    #[default]
    Bert,
    /// Kaiming-uniform (a = √5) down-projection, zero up-projection and biases (LoRA; He
    /// et al.'s scaled PA and MAM). The delta is exactly zero at the start.
    Lora,
    /// Truncated N(0, 0.01²) within ±0.02 for both projections, zero biases (Houlsby).
    Houlsby,
}

/// A configuration that does not describe a valid delta for the model at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delta {index} ({form} at {site}): {reason}")]
pub struct SpecError {
    /// Position of the delta in the method.
    pub index: usize,
    /// Its form.
    pub form: &'static str,
    /// Its site.
    pub site: String,
    /// What is wrong.
    pub reason: String,
}

impl Method {
    /// Deserialises a method written either as a preset name (`method = "mam"`) or in full
    /// (`[method]` with `[[method.delta]]` tables). For `#[serde(deserialize_with)]`.
    pub fn deserialize_named_or_full<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Method;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a preset name or a method table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Method, E> {
                crate::presets::preset(v).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Method, A::Error> {
                Method::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_any(V)
    }

    /// Checks every delta against the design space's rules and the model's dimensions.
    pub fn validate(&self, shape: &ModelShape) -> Result<(), SpecError> {
        let mut param_forms = 0;
        for (index, delta) in self.deltas.iter().enumerate() {
            delta.validate(shape).map_err(|reason| SpecError {
                index,
                form: delta.form.kind(),
                site: delta.site.to_string(),
                reason,
            })?;
            param_forms += delta.form.replaces_params() as usize;
        }
        if param_forms > 1 {
            return Err(SpecError {
                index: self.deltas.len() - 1,
                form: "bias/dense/diff",
                site: "params".into(),
                reason: "at most one delta may replace base parameters".into(),
            });
        }
        Ok(())
    }

    /// The same method with the prefix MLPs removed: what an artifact stores after the
    /// prefixes are generated once ("ejected").
    pub fn ejected(&self) -> Self {
        let mut m = self.clone();
        for d in &mut m.deltas {
            if let Form::Prefix { reparam, .. } = &mut d.form {
                *reparam = None;
            }
        }
        m
    }

    /// Whether any delta trains a generator that is not stored.
    pub fn has_reparam(&self) -> bool {
        self.deltas
            .iter()
            .any(|d| matches!(d.form, Form::Prefix { reparam: Some(_), .. }))
    }
}

impl DeltaSpec {
    /// `form` at `site` with every other dimension at its default: parallel insertion, added,
    /// all layers, BERT initialisation, no dropout (what a config file that names only `form`
    /// and `site` gives).
    pub fn new(form: Form, site: Site) -> Self {
        Self {
            form,
            site,
            insertion: Insertion::default(),
            composition: Composition::default(),
            layers: Layers::default(),
            init: InitScheme::default(),
            dropout: 0.0,
        }
    }

    fn validate(&self, shape: &ModelShape) -> Result<(), String> {
        let blocks = shape.num_blocks();
        if let Layers::Only(list) = &self.layers {
            if let Some(&bad) = list.iter().find(|&&l| l >= blocks) {
                return Err(format!(
                    "layer {bad} does not exist (the model has {blocks} blocks)"
                ));
            }
            if list.is_empty() {
                return Err("`layers` is empty".into());
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        let has_network = matches!(self.form, Form::Bottleneck { .. } | Form::LowRank { .. });
        if self.dropout > 0.0 && !has_network {
            return Err("dropout applies to bottleneck and low-rank forms only".into());
        }
        if let Some(0) = self.form.bottleneck() {
            return Err("the bottleneck size (r or length) must be at least 1".into());
        }
        if let Composition::Scaled(Scale::Fixed(s)) = self.composition {
            if !s.is_finite() {
                return Err(format!("scale {s} is not finite"));
            }
        }
        let sequential = self.insertion == Insertion::Sequential;
        let plain = |what: &str| -> Result<(), String> {
            if sequential {
                return Err(format!(
                    "{what} has no sequential form; use insertion = \"parallel\""
                ));
            }
            if self.composition != Composition::Add {
                return Err(format!("{what} only composes by addition"));
            }
            Ok(())
        };
        match (&self.form, &self.site) {
            (Form::Bottleneck { .. }, Site::Attention | Site::Ffn | Site::Weights(_)) => {}
            (Form::LowRank { .. }, Site::Attention | Site::Ffn | Site::Weights(_)) => {
                if sequential {
                    return Err("a low-rank delta reads the projection input (parallel)".into());
                }
            }
            (Form::Prefix { activation, .. }, Site::Heads) => {
                if sequential {
                    return Err("a prefix attends from the sub-layer input (parallel)".into());
                }
                if self.composition == Composition::Gated && *activation != PrefixActivation::Softmax {
                    return Err("the prefix gate λ(x) is defined for softmax prefixes only".into());
                }
                if self.init == InitScheme::Houlsby {
                    return Err("houlsby init is for bottleneck adapters".into());
                }
            }
            (Form::Scaling { scale_input }, Site::Weights(projs)) => {
                plain("scaling")?;
                if let Some(p) = scale_input.iter().find(|p| !projs.contains(p)) {
                    return Err(format!(
                        "scale_input names {}, which is not in the site",
                        proj_name(*p)
                    ));
                }
            }
            (Form::Bias {} | Form::Dense {} | Form::SparseDiff {}, Site::Params) => {
                plain("a parameter delta")?
            }
            (Form::Diff { l0, projection }, Site::Params) => {
                plain("a diff")?;
                if l0.is_none() && projection.is_none() {
                    return Err(
                        "a diff with neither `l0` gates nor a `projection` is full fine-tuning; \
                                use form dense"
                            .into(),
                    );
                }
                if let Some(g) = l0 {
                    g.validate(blocks + 2)?;
                }
                if let Some(p) = projection {
                    p.validate()?;
                }
            }
            (Form::Prompt { .. }, Site::Embeddings) => {
                plain("a prompt")?;
                if self.layers != Layers::All {
                    return Err("a prompt is prepended once, before the first layer; drop `layers`".into());
                }
            }
            (form, site) => {
                return Err(format!(
                    "form {} cannot modify {site}; it acts at {}",
                    form.kind(),
                    match form {
                        Form::Bottleneck { .. } | Form::LowRank { .. } => "attention, ffn or weights",
                        Form::Prefix { .. } => "heads",
                        Form::Scaling { .. } => "weights",
                        Form::Bias {} | Form::Dense {} | Form::Diff { .. } | Form::SparseDiff {} => "params",
                        Form::Prompt { .. } => "embeddings",
                    }
                ))
            }
        }
        if let Site::Weights(projs) = &self.site {
            if projs.is_empty() {
                return Err("the weights site lists no projection".into());
            }
            if let Some(p) = projs.iter().find(|&&p| !shape.has_proj_anywhere(p)) {
                return Err(format!(
                    "this {} model has no {} projection",
                    shape.model_type,
                    proj_name(*p)
                ));
            }
        }
        let explicit = matches!(
            self.form,
            Form::Prefix {
                explicit_gate: true,
                ..
            }
        );
        if explicit && self.composition != Composition::Gated {
            return Err("explicit_gate computes the gated composition; set composition = \"gated\"".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> ModelShape {
        let text = r#"{"model_type":"bert","vocab_size":99,"hidden_size":32,"num_hidden_layers":2,
            "num_attention_heads":4,"intermediate_size":37,"max_position_embeddings":64,"type_vocab_size":2}"#;
        ModelShape::from_config_json(text).unwrap()
    }

    #[test]
    fn parses_every_dimension_from_toml() {
        let text = r#"
            name = "mine"
            [[delta]]
            form = { kind = "prefix", length = 16, reparam = 800 }
            site = "heads"
            composition = "gated"
            [[delta]]
            form = { kind = "bottleneck", r = 16, layer_norm = "in" }
            site = "ffn"
            composition = { scaled = 2.0 }
            init = "lora"
            layers = [0, 1]
            dropout = 0.1
            [[delta]]
            form = { kind = "low_rank", r = 4 }
            site = { weights = ["query", "value"] }
            composition = { scaled = "learned" }
        "#;
        let m: Method = toml::from_str(text).unwrap();
        assert_eq!(m.deltas.len(), 3);
        assert_eq!(m.deltas[1].composition, Composition::Scaled(Scale::Fixed(2.0)));
        assert_eq!(m.deltas[1].layers, Layers::Only(vec![0, 1]));
        assert_eq!(m.deltas[2].site, Site::Weights(vec![Proj::Query, Proj::Value]));
        assert_eq!(m.deltas[2].composition, Composition::Scaled(Scale::Learned));
        m.validate(&shape()).unwrap();
        // Round trip through JSON keeps everything.
        let back: Method = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Method>(
            "name = \"x\"\n[[delta]]\nform = { kind = \"low_rank\", rank = 4 }\nsite = \"ffn\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rank"), "{err}");
        let err = toml::from_str::<Method>(
            "name = \"x\"\n[[delta]]\nform = { kind = \"bias\", r = 4 }\nsite = \"params\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`r`"), "{err}");
        let err = toml::from_str::<Method>(
            "name = \"x\"\n[[delta]]\nform = { kind = \"bias\" }\nsite = \"params\"\nlayer = [1]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("layer"), "{err}");
    }

    #[test]
    fn rejects_points_outside_the_space() {
        let bad = |form: Form, site: Site, insertion, composition| {
            let m = Method {
                name: "x".into(),
                deltas: vec![DeltaSpec {
                    form,
                    site,
                    insertion,
                    composition,
                    layers: Layers::All,
                    init: InitScheme::Bert,
                    dropout: 0.0,
                }],
            };
            m.validate(&shape()).unwrap_err().to_string()
        };
        let prompt = Form::Prompt { length: 3 };
        assert!(bad(prompt, Site::Ffn, Insertion::Parallel, Composition::Add).contains("embeddings"));
        let relu = Form::Prefix {
            length: 4,
            activation: PrefixActivation::Relu,
            reparam: None,
            explicit_gate: false,
            shift_positions: false,
        };
        assert!(bad(relu, Site::Heads, Insertion::Parallel, Composition::Gated).contains("softmax"));
        let lora = Form::LowRank { r: 4 };
        let site = Site::Weights(vec![Proj::Query]);
        assert!(bad(lora, site, Insertion::Sequential, Composition::Add).contains("parallel"));
        let zero = Form::Bottleneck {
            r: 0,
            activation: AdapterActivation::Relu,
            layer_norm: AdapterNorm::None,
        };
        assert!(bad(zero, Site::Ffn, Insertion::Parallel, Composition::Add).contains("at least 1"));
        let m = Method {
            name: "x".into(),
            deltas: vec![DeltaSpec {
                form: Form::Bias {},
                site: Site::Params,
                insertion: Insertion::Parallel,
                composition: Composition::Add,
                layers: Layers::Only(vec![7]),
                init: InitScheme::Bert,
                dropout: 0.0,
            }],
        };
        assert!(m.validate(&shape()).unwrap_err().to_string().contains("layer 7"));
        let mut m = m;
        m.deltas[0].layers = Layers::All;
        m.deltas[0].dropout = 0.1;
        assert!(m.validate(&shape()).unwrap_err().to_string().contains("dropout"));
    }
}
