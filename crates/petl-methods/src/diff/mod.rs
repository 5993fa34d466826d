//! Diff pruning (Guo et al. 2021): a task is a sparse diff `δ` on the frozen base, `θ = θ₀ + δ`.
//!
//! - [`config`]: the L0 stage's gates and the projection stage's settings.
//! - [`gates`]: the hard-concrete relaxation of the L0 norm.
//! - [`project`]: exact top-k magnitude projection.
//! - `delta`: the diff as hooks on base parameters (dense gated, dense, or sparse).
//! - [`apply`]: writing a sparse diff into a loaded base and taking it out again.
//! - [`SparseCorrection`]: a sparse diff as per-row corrections, for many tasks in one batch.

pub mod apply;
pub mod config;
mod correction;
pub(crate) mod delta;
mod fused;
pub mod gates;
pub mod project;

pub use apply::{apply_diff, AppliedDiff};
pub use config::{EvalGate, GroupGates, L0Gates, Projection};
pub use correction::{CorrectionGroups, SparseCorrection};
pub use delta::Penalty;
pub use gates::HardConcrete;
pub use project::{project, DenseDiff, ProjectionError};
