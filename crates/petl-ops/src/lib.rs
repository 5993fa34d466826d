//! The tensor operations petl's models and methods are written against.
//!
//! Models never call candle's fused kernels directly: they call this crate, so the engine can swap in
//! petl's own fused kernels with hand-written backward passes (frozen linear without a weight
//! gradient, fused norm, softmax and attention) without touching model or method code.
//!
//! Every op here is differentiable through candle's generic backprop. candle 0.11's fused
//! `layer_norm`, `rms_norm`, `softmax_last_dim` and `sdpa` have no backward and silently drop or
//! corrupt gradients, so they are deliberately not used.
//!
//! | op | module |
//! |---|---|
//! | [`linear`] | x·Wᵀ + b over the last dimension |
//! | [`layer_norm`] | LayerNorm over the last dimension |
//! | [`softmax_last_dim`] | numerically stable softmax |
//! | [`Activation`] | GELU (erf and tanh forms), ReLU, SiLU, tanh |
//! | [`Dropout`] / [`DropoutRng`] | seeded, reproducible inverted dropout |
//! | [`cross_entropy`], [`mse`] | mean losses |
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu)?;
//! let w = Tensor::new(&[[1f32, 0., 0.], [0., 1., 1.]], &Device::Cpu)?;
//! let y = petl_ops::linear(&x, &w, None)?;
//! assert_eq!(y.to_vec2::<f32>()?, vec![vec![1., 5.]]);
//! # Ok::<(), candle_core::Error>(())
//! ```
#![deny(missing_docs)]

mod activation;
mod dropout;
mod linear;
mod loss;
mod norm;
mod softmax;

pub use activation::Activation;
pub use dropout::{Dropout, DropoutRng};
pub use linear::linear;
pub use loss::{cross_entropy, mse};
pub use norm::layer_norm;
pub use softmax::{logsumexp_last_dim, sigmoid, softmax_last_dim};
