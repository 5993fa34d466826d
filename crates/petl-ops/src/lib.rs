//! The tensor operations petl's models and methods are written against.
//!
//! Models never call candle's fused kernels directly: they call this crate, which runs petl's
//! own kernels with hand-written backward passes where it matters for training cost:
//!
//! - a **frozen linear** (the base model's weights) whose backward computes only `dX` (and `db`
//!   for a trained bias): candle's generic matmul backward also computes and keeps `dW` for
//!   every frozen weight;
//! - **fused LayerNorm / RMSNorm, softmax, GELU / SiLU and dropout** on contiguous f32 CPU
//!   tensors: one pass forward and one backward, instead of the five to ten elementwise passes
//!   (and as many kept intermediates) of the composed form.
//!
//! Other dtypes and devices compose candle's differentiable ops. candle 0.11's own fused
//! `layer_norm`, `rms_norm`, `softmax_last_dim` and `sdpa` have no backward and silently drop or
//! corrupt gradients, so they are never used. `tests/fused_backward.rs` checks every fused op
//! against the composed form and central finite differences.
//!
//! | op | module |
//! |---|---|
//! | [`linear`] | x·Wᵀ + b over the last dimension |
//! | [`layer_norm`] | LayerNorm over the last dimension |
//! | [`softmax_last_dim`] | numerically stable softmax |
//! | [`attention`], [`attention_heads`] | multi-head (grouped-query) attention over token- or head-major projections, one op per layer |
//! | [`scale_add_mask`] | attention logits `x·scale + mask` (padding or causal mask) |
//! | [`rotary_heads`] | rotary position embedding, fused with the split into heads |
//! | [`split_heads`], [`merge_heads`] | `[b, s, h·d]` ↔ `[b, h, s, d]` in one pass each way |
//! | [`feed_forward`], [`gated_feed_forward`] | a frozen FFN `act(x·W₁ᵀ + b₁)·W₂ᵀ + b₂`, or SwiGLU's gated one, as one op |
//! | [`swiglu`] | SwiGLU's `silu(gate) ⊙ up` |
//! | [`Activation`] | GELU (erf and tanh forms), ReLU, SiLU, tanh |
//! | [`Dropout`] / [`DropoutRng`] | seeded, reproducible inverted dropout |
//! | [`low_rank`] | LoRA's `x·Aᵀ·Bᵀ` as one op |
//! | [`cross_entropy`], [`mse`] | mean losses |
//! | [`token_cross_entropy`] | per-token language-modelling loss with label smoothing |
//! | [`rms_norm`] | RMSNorm over the last dimension |
//! | [`reuse_freed_memory`] | allocator settings for training-sized buffers |
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
mod alloc;
mod attention;
mod cpu;
mod dropout;
mod feed_forward;
mod gemm;
mod heads;
mod linear;
mod loss;
mod low_rank;
mod norm;
mod rotary;
mod rows;
mod scores;
mod softmax;
mod swiglu;
mod token_loss;

pub use activation::Activation;
pub use alloc::reuse_freed_memory;
pub use attention::{attention, attention_heads, AttentionSpec};
pub use dropout::{Dropout, DropoutRng, KeepMask};
pub use feed_forward::{feed_forward, gated_feed_forward, Projection};
pub use heads::{merge_heads, split_heads};
pub use linear::linear;
pub use loss::{cross_entropy, mse};
pub use low_rank::low_rank;
pub use norm::{layer_norm, rms_norm};
pub use rotary::rotary_heads;
pub use scores::scale_add_mask;
pub use softmax::{logsumexp_last_dim, sigmoid, softmax_last_dim};
pub use swiglu::swiglu;
pub use token_loss::token_cross_entropy;
