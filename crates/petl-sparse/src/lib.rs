//! The on-disk format of a sparse per-task diff (diff pruning, Guo et al. 2021).
//!
//! Diff pruning stores a task as a few changed entries of a frozen base model. This crate
//! turns such a change — per named base tensor, flat positions and f32 values — into a
//! compact, checksummed file and back. Positions are Golomb–Rice coded (or a bitmap for dense
//! tensors), so a diff costs close to the information-theoretic bound `log2 C(numel, nnz)`;
//! [`SizeReport`] measures exactly how close. Decoding treats every byte as hostile: it never
//! panics and never allocates more than the file's own size justifies.
//!
//! The byte layout is specified in `docs/sparse-diff-format.md`; the crate deliberately has no
//! tensor-library dependency so readers and tools can use it without a model runtime.
#![deny(missing_docs)]

mod binom;
mod bits;
mod codec;
mod dtype;
mod error;
mod report;
mod tensor;

pub use binom::log2_binomial;
pub use codec::{decode, encode, Decoded, Encoded, FORMAT_VERSION, MAGIC, MAX_RICE_K};
pub use dtype::ValueDType;
pub use error::{Result, SparseError};
pub use report::{PositionEncoding, SizeReport, SizeSummary, TensorSize};
pub use tensor::{SparseDiff, SparseTensor};
