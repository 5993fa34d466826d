use petl_models::{Fingerprint, Pooling};
use serde::{Deserialize, Serialize};

/// The artifact format this build writes and reads. Bumped on any incompatible change.
/// Version 3 may hold a sparse diff file (diff pruning); version 2 records the full method
/// configuration; version 1 recorded a method name, which still reads as the preset of that
/// name.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format this build still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// What `artifact.json` records about a trained delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactMeta {
    /// Artifact format version ([`FORMAT_VERSION`]); written first.
    pub format_version: u32,
    /// The petl version that wrote it.
    pub petl_version: String,
    /// The method: its full design-space configuration as stored (prefix generators ejected),
    /// or, in version 1, a preset name.
    pub method: serde_json::Value,
    /// The task the head was trained for (name, labels, metrics).
    pub task: serde_json::Value,
    /// Head outputs (classes, or 1 for regression).
    pub num_outputs: usize,
    /// How the head pools the sequence; absent in artifacts from before the option existed.
    #[serde(default)]
    pub pooling: Pooling,
    /// Fingerprint of the base model the delta applies to.
    pub base_fingerprint: Fingerprint,
    /// `model_type` of that base.
    pub base_model_type: String,
    /// Scalar parameters trained (delta and head, prefix generators included).
    pub trainable_params: usize,
    /// Scalar parameters stored in the artifact (delta and head); absent before version 2.
    #[serde(default)]
    pub stored_params: usize,
    /// Scalar parameters of the base model.
    pub base_params: usize,
    /// The sparse diff file, for methods that store one (diff pruning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_diff: Option<SparseDiffMeta>,
}

/// What `artifact.json` says about the artifact's sparse diff file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseDiffMeta {
    /// File name inside the artifact directory.
    pub file: String,
    /// Changed entries.
    pub nnz: u64,
    /// Precision of the stored values.
    pub value_dtype: petl_sparse::ValueDType,
    /// Size of the file.
    pub bytes: u64,
}
