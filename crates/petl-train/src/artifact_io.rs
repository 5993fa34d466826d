//! A task's delta on disk: what classification and generation task models share when they
//! write an artifact and when they check and load one.

use crate::session::check_tensors;
use crate::{Result, TrainError};
use candle_core::Tensor;
use petl_artifact::{ArtifactError, ArtifactMeta, FORMAT_VERSION};
use petl_methods::{Delta, Form, Method};
use petl_models::{BaseModel, ParamStore, Pooling};
use petl_sparse::{SizeReport, ValueDType};
use std::collections::BTreeMap;
use std::path::Path;

/// An artifact's contents, checked against the base it is loaded onto.
pub(crate) struct StoredDelta {
    /// `artifact.json`.
    pub meta: ArtifactMeta,
    /// The method it records.
    pub method: Method,
    /// The dense tensors (`weights.safetensors`).
    pub tensors: BTreeMap<String, Tensor>,
    /// The sparse diff, for diff-pruning artifacts.
    pub sparse: Option<petl_sparse::Decoded>,
}

impl StoredDelta {
    /// Reads the artifact in `dir` for `base` (whose `model_type` is `model_type`): refuses one
    /// made for another base, a method that cannot be read, and a sparse-diff record that
    /// disagrees with the method.
    pub fn read(dir: &Path, base: &dyn BaseModel, model_type: &str) -> Result<Self> {
        let (meta, tensors) = petl_artifact::load(dir, base.fingerprint(), base.device())?;
        let method = read_method(&meta.method).map_err(|reason| TrainError::Config {
            field: "method",
            reason: format!("artifact {} has an unusable method: {reason}", dir.display()),
        })?;
        if meta.base_model_type != model_type {
            return Err(bad_meta(
                dir,
                format!(
                    "`base_model_type` is {:?}, but the base model (fingerprint {}) is {model_type:?}",
                    meta.base_model_type,
                    base.fingerprint(),
                ),
            ));
        }
        if meta.base_params != base.num_base_params() {
            return Err(bad_meta(
                dir,
                format!(
                    "`base_params` is {}, but the base model has {}",
                    meta.base_params,
                    base.num_base_params()
                ),
            ));
        }
        let wants_sparse = method.deltas.iter().any(|d| d.form == Form::SparseDiff {});
        match (wants_sparse, &meta.sparse_diff) {
            (true, None) => {
                return Err(bad_meta(
                    dir,
                    "the method has a sparse_diff delta but `sparse_diff` names no file".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(bad_meta(
                    dir,
                    "`sparse_diff` names a file, but the method has no sparse_diff delta".into(),
                ))
            }
            _ => {}
        }
        if meta.format_version >= 2 && method.has_reparam() {
            return Err(bad_meta(
                dir,
                "`method` has a prefix generator (`reparam`); artifacts store the generated prefixes".into(),
            ));
        }
        let sparse = petl_artifact::load_sparse(dir, &meta)?;
        Ok(Self {
            meta,
            method,
            tensors,
            sparse,
        })
    }

    /// Puts the dense tensors into `store` (built for this artifact's method, its sparse diff
    /// already set from the diff file), refusing a tensor the method lacks, has in another
    /// shape, or misses.
    pub fn fill(self, store: &ParamStore, delta: &Delta, dir: &Path) -> Result<()> {
        let mut tensors = self.tensors;
        for (name, var) in store.iter() {
            if delta.is_sparse_param(name) && !tensors.contains_key(name) {
                tensors.insert(name.to_string(), var.as_tensor().copy()?);
            }
        }
        check_tensors(store, &tensors, &self.method.name).map_err(|message| {
            TrainError::Artifact(ArtifactError::BadWeights {
                path: dir.join("weights.safetensors"),
                message,
            })
        })?;
        if self.meta.format_version >= 2 && self.meta.trainable_params < store.num_elements() {
            return Err(bad_meta(
                dir,
                format!(
                    "`trainable_params` is {}, fewer than the {} the stored method has",
                    self.meta.trainable_params,
                    store.num_elements()
                ),
            ));
        }
        store.assign(&tensors)?;
        Ok(())
    }
}

/// What an artifact records beyond the delta itself.
pub(crate) struct ArtifactRecord<'a> {
    /// The task description.
    pub task: serde_json::Value,
    /// Head outputs (the vocabulary for a language model).
    pub num_outputs: usize,
    /// How the head pools.
    pub pooling: Pooling,
    /// The base.
    pub base: &'a dyn BaseModel,
    /// Its `model_type`.
    pub base_model_type: &'a str,
    /// How sparse diff values are stored.
    pub value_dtype: ValueDType,
}

/// Writes `delta`'s stored form (and its sparse diff, if it has one) into `dir`; returns the
/// sparse file's size report.
pub(crate) fn write(
    dir: &Path,
    delta: &Delta,
    store: &ParamStore,
    record: ArtifactRecord<'_>,
) -> Result<Option<SizeReport>> {
    let tensors = delta.stored_tensors(store)?;
    let (sparse, report) = match delta.sparse_diff()? {
        Some(diff) => {
            let (meta, report) = petl_artifact::save_sparse(dir, &diff, record.value_dtype)?;
            (Some(meta), Some(report))
        }
        None => (None, None),
    };
    let sparse_nnz = sparse.as_ref().map_or(0, |s| s.nnz as usize);
    let method = delta.method().ejected();
    let meta = ArtifactMeta {
        format_version: FORMAT_VERSION,
        petl_version: env!("CARGO_PKG_VERSION").to_string(),
        method: serde_json::to_value(&method).map_err(|e| TrainError::Config {
            field: "method",
            reason: e.to_string(),
        })?,
        task: record.task,
        num_outputs: record.num_outputs,
        pooling: record.pooling,
        base_fingerprint: record.base.fingerprint().clone(),
        base_model_type: record.base_model_type.to_string(),
        trainable_params: store.num_elements(),
        stored_params: tensors.values().map(Tensor::elem_count).sum::<usize>() + sparse_nnz,
        base_params: record.base.num_base_params(),
        sparse_diff: sparse,
    };
    petl_artifact::save(dir, &meta, &tensors)?;
    Ok(report)
}

/// How a method's projected diff stores its values (f32 unless its projection says otherwise).
pub(crate) fn value_dtype_of(method: &Method) -> ValueDType {
    method
        .deltas
        .iter()
        .find_map(|d| match &d.form {
            Form::Diff {
                projection: Some(p), ..
            } => Some(p.value_dtype),
            _ => None,
        })
        .unwrap_or(ValueDType::F32)
}

/// A stored method: its configuration, or (format 1) a preset name.
fn read_method(value: &serde_json::Value) -> std::result::Result<Method, String> {
    match value {
        serde_json::Value::String(name) => petl_methods::preset(name).map_err(|e| e.to_string()),
        other => serde_json::from_value(other.clone()).map_err(|e| e.to_string()),
    }
}

/// An `artifact.json` problem, naming the file.
pub(crate) fn bad_meta(dir: &Path, message: String) -> TrainError {
    TrainError::Artifact(ArtifactError::BadMeta {
        path: dir.join("artifact.json"),
        message,
    })
}
