//! petl: parameter-efficient transfer learning for transformers, in Rust.
//!
//! This facade re-exports the workspace crates, each owning one idea:
//!
//! | crate | owns |
//! |---|---|
//! | [`ops`] | the differentiable tensor ops models are written against |
//! | [`models`] | frozen pretrained encoders with named hook points |
//! | [`methods`] | deltas: which parameters train and how they act |
//! | [`data`] | GLUE and table readers, tokenisation, batching |
//! | [`metrics`] | evaluation metrics |
//! | [`train`] | the training loop, evaluation, prediction |
//! | [`artifact`] | atomic files and the per-task artifact format |
//! | [`hub`] | fetching models and data from the package registry into the cache |
//! | [`peft`] | reading and writing Hugging Face peft adapters |
#![deny(missing_docs)]

pub use petl_artifact as artifact;
pub use petl_data as data;
pub use petl_generate as generate;
pub use petl_hub as hub;
pub use petl_methods as methods;
pub use petl_metrics as metrics;
pub use petl_models as models;
pub use petl_ops as ops;
pub use petl_peft as peft;
pub use petl_sparse as sparse;
pub use petl_train as train;
