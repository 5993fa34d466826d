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

impl ArtifactMeta {
    /// Checks every field that can be checked without the base model or the weights: the
    /// shape each field must have in this format version, and the values that cannot be right
    /// in any artifact. Returns what is wrong, naming the field.
    ///
    /// The checks that need more are made where that is at hand: the weights' parameter count
    /// in [`crate::load`], the sparse diff file in [`crate::load_sparse`], and the task, head
    /// width, base model and tensor names and shapes when a task model is built from the
    /// artifact (`petl_train::TaskModel::from_artifact`).
    pub fn validate(&self) -> Result<(), String> {
        let v = self.format_version;
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&v) {
            return Err(format!(
                "`format_version` {v} is not one this petl reads ({OLDEST_READABLE_VERSION} to {FORMAT_VERSION})"
            ));
        }
        if self.petl_version.trim().is_empty() {
            return Err("`petl_version` is empty".into());
        }
        match (&self.method, v) {
            (serde_json::Value::String(name), 1) if !name.is_empty() => {}
            (serde_json::Value::Object(_), 2..) => {}
            (other, 1) => {
                return Err(format!(
                    "`method` must be a preset name in format version 1, found {}",
                    json_kind(other)
                ))
            }
            (other, _) => {
                return Err(format!(
                    "`method` must be a method configuration (an object) in format version {v}, found {}",
                    json_kind(other)
                ))
            }
        }
        if !self.task.is_object() {
            return Err(format!(
                "`task` must be an object, found {}",
                json_kind(&self.task)
            ));
        }
        if self.num_outputs == 0 {
            return Err("`num_outputs` is 0; a head has at least one output".into());
        }
        if self.base_fingerprint.0.trim().is_empty() {
            return Err("`base_fingerprint` is empty".into());
        }
        if self.base_model_type.trim().is_empty() {
            return Err("`base_model_type` is empty".into());
        }
        if self.base_params == 0 {
            return Err("`base_params` is 0".into());
        }
        if v >= 2 {
            if self.stored_params == 0 {
                return Err("`stored_params` is 0 (or missing); every artifact stores a head".into());
            }
            if self.stored_params > self.trainable_params {
                return Err(format!(
                    "`stored_params` {} exceeds `trainable_params` {}: an artifact stores at most what trained",
                    self.stored_params, self.trainable_params
                ));
            }
        }
        if let Some(sparse) = &self.sparse_diff {
            if v < 3 {
                return Err(format!(
                    "`sparse_diff` appeared in format version 3; this file says {v}"
                ));
            }
            if sparse.file.is_empty() || sparse.file.contains(['/', '\\']) || sparse.file.starts_with('.') {
                return Err(format!(
                    "`sparse_diff.file` {:?} is not a plain file name",
                    sparse.file
                ));
            }
            if sparse.bytes == 0 {
                return Err("`sparse_diff.bytes` is 0".into());
            }
            if v >= 2 && sparse.nnz > self.stored_params as u64 {
                return Err(format!(
                    "`sparse_diff.nnz` {} exceeds `stored_params` {}",
                    sparse.nnz, self.stored_params
                ));
            }
        }
        Ok(())
    }
}

impl ArtifactMeta {
    /// Parses `artifact.json` text; a value of the wrong type is reported with the field it
    /// sits in (serde alone names only the position).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        serde_json::from_value(value.clone()).map_err(|e| match field_error(&value) {
            Some(field) => field,
            None => e.to_string(),
        })
    }
}

/// The first field of `value` that does not deserialise to its type, with serde's message.
fn field_error(value: &serde_json::Value) -> Option<String> {
    fn check<T: serde::de::DeserializeOwned>(v: &serde_json::Value, key: &str) -> Option<String> {
        let field = v.get(key)?;
        serde_json::from_value::<T>(field.clone())
            .err()
            .map(|e| format!("`{key}`: {e}"))
    }
    check::<u32>(value, "format_version")
        .or_else(|| check::<String>(value, "petl_version"))
        .or_else(|| check::<usize>(value, "num_outputs"))
        .or_else(|| check::<Pooling>(value, "pooling"))
        .or_else(|| check::<Fingerprint>(value, "base_fingerprint"))
        .or_else(|| check::<String>(value, "base_model_type"))
        .or_else(|| check::<usize>(value, "trainable_params"))
        .or_else(|| check::<usize>(value, "stored_params"))
        .or_else(|| check::<usize>(value, "base_params"))
        .or_else(|| {
            let sparse = value.get("sparse_diff").filter(|s| s.is_object())?;
            check::<String>(sparse, "file")
                .or_else(|| check::<u64>(sparse, "nnz"))
                .or_else(|| check::<petl_sparse::ValueDType>(sparse, "value_dtype"))
                .or_else(|| check::<u64>(sparse, "bytes"))
                .map(|e| format!("`sparse_diff.{}", &e[1..]))
        })
        .or_else(|| check::<Option<SparseDiffMeta>>(value, "sparse_diff"))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
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
