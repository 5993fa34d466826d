//! Parameter-efficient methods as deltas on a frozen base model.
//!
//! A [`Method`] decides which parameters train; [`Method::build`] creates them in a
//! [`ParamStore`] and returns a [`Delta`], the [`Hooks`] implementation the model runs with.
//! The base weights are never written: even full fine-tuning trains copies that the delta
//! substitutes through [`Hooks::param`], so one loaded base serves any number of tasks.
//!
//! This methods are the baselines; the design-space methods (adapters, prefix, LoRA…)
//! and diff pruning plug into the same hook points.
#![deny(missing_docs)]

use candle_core::{Tensor, Var};
use petl_models::{EncoderModel, Hooks, Init, ParamStore, Result};
use std::collections::BTreeMap;

/// The methods petl trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Every base parameter trains (the usual fine-tuning baseline).
    Full,
    /// Only the task head trains (a linear probe on the frozen encoder).
    HeadOnly,
    /// Every bias term trains, LayerNorm biases included, plus the head (Ben Zaken et al., 2021;
    /// He et al. train parameters whose name contains `bias`).
    Bitfit,
}

impl Method {
    /// All methods, for listings.
    pub const ALL: [Method; 3] = [Self::Full, Self::HeadOnly, Self::Bitfit];

    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::HeadOnly => "head-only",
            Self::Bitfit => "bitfit",
        }
    }

    /// Parses a command-line name (`full`, `head-only`, `bitfit`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name.to_ascii_lowercase().replace('_', "-"))
    }

    /// Whether base parameter `name` trains under this method.
    pub fn trains(self, name: &str) -> bool {
        match self {
            Self::Full => true,
            Self::HeadOnly => false,
            Self::Bitfit => name.ends_with(".bias"),
        }
    }

    /// Creates this method's trainable parameters in `store` (named after the base parameters
    /// they replace) and returns the delta that applies them.
    pub fn build(self, model: &EncoderModel, store: &mut ParamStore) -> Result<Delta> {
        let mut overrides = BTreeMap::new();
        for (name, base) in model.base_params() {
            if self.trains(name) {
                let var = store.create(name, base.dims(), Init::Copy(base.clone()))?;
                overrides.insert(name.clone(), var);
            }
        }
        Ok(Delta {
            method: self,
            overrides,
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The trainable replacement of some base parameters.
#[derive(Debug, Clone)]
pub struct Delta {
    method: Method,
    overrides: BTreeMap<String, Var>,
}

impl Delta {
    /// The method this delta implements.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Number of scalar base parameters this delta replaces.
    pub fn num_elements(&self) -> usize {
        self.overrides.values().map(|v| v.elem_count()).sum()
    }
}

impl Hooks for Delta {
    fn param(&self, name: &str, _base: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.overrides.get(name).map(|v| v.as_tensor().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_parameters_by_method() {
        assert!(Method::Full.trains("encoder.layer.0.attention.self.query.weight"));
        assert!(!Method::HeadOnly.trains("encoder.layer.0.attention.self.query.bias"));
        assert!(Method::Bitfit.trains("encoder.layer.0.output.LayerNorm.bias"));
        assert!(!Method::Bitfit.trains("encoder.layer.0.output.LayerNorm.weight"));
        assert_eq!(Method::from_name("HEAD_ONLY"), Some(Method::HeadOnly));
        assert_eq!(Method::from_name("lora"), None);
    }
}
