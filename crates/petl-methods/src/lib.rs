//! Parameter-efficient methods as deltas on a frozen base model.
//!
//! He et al. (2022) show that adapters, prefix tuning, LoRA, prompt tuning and BitFit are all
//! modifications Δh of a frozen model's hidden states that differ along four dimensions. petl
//! takes that literally: [`Method`] is a list of [`DeltaSpec`]s, each a point of that space
//! ([`Form`] × [`Insertion`] × [`Site`] × [`Composition`]), and every published method is one of
//! the [`PRESETS`]. [`Delta::build`] creates a method's trainable tensors in a
//! [`petl_models::ParamStore`] and returns the [`petl_models::Hooks`] implementation the model
//! runs with. The base weights are never written: even full fine-tuning trains copies that the
//! delta substitutes, so one loaded base serves any number of tasks.
#![deny(missing_docs)]

mod count;
mod delta;
pub mod diff;
mod error;
mod merge;
mod prefix;
pub mod presets;
mod site;
mod spec;

pub use count::{bottleneck_for_budget, ParamCount};
pub use delta::Delta;
pub use error::{MethodError, Result};
pub use merge::{merge_into, MergeUndo, Merged};
pub use presets::{preset, Preset, PRESETS};
pub use spec::{
    proj_name, AdapterActivation, AdapterNorm, Composition, DeltaSpec, Form, InitScheme, Insertion, Layers,
    Method, PrefixActivation, Scale, Site, SpecError,
};
