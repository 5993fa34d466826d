//! Files on disk: atomic writes, and the task artifact — the small, self-describing change a
//! task makes to a shared base model.
//!
//! An artifact is a directory:
//!
//! | file | content |
//! |---|---|
//! | `artifact.json` | [`ArtifactMeta`]: format version, method, task, base fingerprint, parameter counts |
//! | `weights.safetensors` | the trainable tensors under their checkpoint names (HF key layout) |
//! | `diff.sparse` | diff pruning only: the sparse diff (format: `docs/sparse-diff-format.md`) |
//!
//! Both are written to a temporary sibling and renamed into place, so a crash never leaves a
//! half-written file where a complete one was.
#![deny(missing_docs)]

mod atomic;
mod meta;

pub use atomic::{write_atomic, write_json_atomic, write_safetensors_atomic};
pub use meta::{ArtifactMeta, SparseDiffMeta, FORMAT_VERSION, OLDEST_READABLE_VERSION};

use candle_core::{Device, Tensor};
use petl_models::Fingerprint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors reading or writing artifacts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `artifact.json` is not valid.
    #[error("invalid artifact metadata {path}: {message}")]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The weights file is corrupt or truncated.
    #[error("invalid artifact weights {path}: {message}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// The artifact was trained on another base model.
    #[error(
        "artifact {path} was trained on base model {expected}, but the loaded base is {actual}; \
         load it with the base model it was trained on"
    )]
    WrongBase {
        /// The artifact directory.
        path: PathBuf,
        /// Fingerprint recorded in the artifact.
        expected: Fingerprint,
        /// Fingerprint of the loaded base.
        actual: Fingerprint,
    },
    /// The artifact was written by an incompatible petl.
    #[error("artifact {path} has format version {found}; this petl reads version {supported}")]
    UnsupportedVersion {
        /// The artifact directory.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The sparse diff file is corrupt, truncated or of an unknown version.
    #[error("invalid sparse diff {path}: {source}")]
    BadSparse {
        /// The file.
        path: PathBuf,
        /// What the reader found.
        #[source]
        source: petl_sparse::SparseError,
    },
    /// Serialising tensors failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ArtifactError>;

const META_FILE: &str = "artifact.json";
const WEIGHTS_FILE: &str = "weights.safetensors";
/// The sparse diff file of diff-pruning artifacts.
pub const SPARSE_FILE: &str = "diff.sparse";

/// Writes an artifact directory (created if missing). Weights go first and metadata last, so
/// a directory with a readable `artifact.json` always has the weights it describes.
pub fn save(dir: &Path, meta: &ArtifactMeta, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_safetensors_atomic(&dir.join(WEIGHTS_FILE), tensors)?;
    write_json_atomic(&dir.join(META_FILE), meta)
}

/// Encodes `diff` with values in `dtype` and writes it into artifact directory `dir`
/// atomically; returns what [`save`]'s metadata should record and the size report. Write it
/// before the metadata, as [`save`] does the weights.
pub fn save_sparse(
    dir: &Path,
    diff: &petl_sparse::SparseDiff,
    dtype: petl_sparse::ValueDType,
) -> Result<(SparseDiffMeta, petl_sparse::SizeReport)> {
    let path = dir.join(SPARSE_FILE);
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let encoded = petl_sparse::encode(diff, dtype).map_err(|source| ArtifactError::BadSparse {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &encoded.bytes)?;
    let meta = SparseDiffMeta {
        file: SPARSE_FILE.to_string(),
        nnz: diff.nnz(),
        value_dtype: dtype,
        bytes: encoded.bytes.len() as u64,
    };
    Ok((meta, encoded.report))
}

/// Reads the sparse diff an artifact's metadata names, if it names one, and checks that the
/// file holds what the metadata says (entry count, value precision, size).
pub fn load_sparse(dir: &Path, meta: &ArtifactMeta) -> Result<Option<petl_sparse::Decoded>> {
    let Some(sparse) = &meta.sparse_diff else {
        return Ok(None);
    };
    if sparse.file.is_empty() || sparse.file.contains(['/', '\\']) || sparse.file.starts_with('.') {
        return Err(ArtifactError::BadMeta {
            path: dir.join(META_FILE),
            message: format!("sparse diff file name {:?} is not a plain file name", sparse.file),
        });
    }
    let path = dir.join(&sparse.file);
    let bytes = std::fs::read(&path).map_err(|source| ArtifactError::Io {
        path: path.clone(),
        source,
    })?;
    let decoded = petl_sparse::decode(&bytes).map_err(|source| ArtifactError::BadSparse {
        path: path.clone(),
        source,
    })?;
    let mismatch = |field: &str, recorded: String, found: String| ArtifactError::BadMeta {
        path: dir.join(META_FILE),
        message: format!(
            "`sparse_diff.{field}` is {recorded}, but {} holds {found}",
            path.display()
        ),
    };
    if decoded.diff.nnz() != sparse.nnz {
        return Err(mismatch(
            "nnz",
            sparse.nnz.to_string(),
            decoded.diff.nnz().to_string(),
        ));
    }
    if decoded.dtype != sparse.value_dtype {
        return Err(mismatch(
            "value_dtype",
            sparse.value_dtype.to_string(),
            decoded.dtype.to_string(),
        ));
    }
    if bytes.len() as u64 != sparse.bytes {
        return Err(mismatch(
            "bytes",
            sparse.bytes.to_string(),
            format!("{} bytes", bytes.len()),
        ));
    }
    Ok(Some(decoded))
}

/// Reads an artifact's metadata, checking its format version and every field
/// ([`ArtifactMeta::validate`]).
pub fn load_meta(dir: &Path) -> Result<ArtifactMeta> {
    let path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ArtifactError::Io {
        path: path.clone(),
        source,
    })?;
    let meta = ArtifactMeta::from_json(&text).map_err(|message| ArtifactError::BadMeta {
        path: path.clone(),
        message,
    })?;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&meta.format_version) {
        return Err(ArtifactError::UnsupportedVersion {
            path: dir.to_path_buf(),
            found: meta.format_version,
            supported: FORMAT_VERSION,
        });
    }
    meta.validate()
        .map_err(|message| ArtifactError::BadMeta { path, message })?;
    Ok(meta)
}

/// Reads an artifact for the base model identified by `base`: refuses another base's artifact
/// before touching its weights, then checks that the weights are floating point and that
/// `stored_params` equals what the files hold.
pub fn load(
    dir: &Path,
    base: &Fingerprint,
    device: &Device,
) -> Result<(ArtifactMeta, BTreeMap<String, Tensor>)> {
    let meta = load_meta(dir)?;
    if &meta.base_fingerprint != base {
        return Err(ArtifactError::WrongBase {
            path: dir.to_path_buf(),
            expected: meta.base_fingerprint.clone(),
            actual: base.clone(),
        });
    }
    let weights = dir.join(WEIGHTS_FILE);
    let tensors = load_tensors(&weights, device)?;
    if let Some((name, t)) = tensors.iter().find(|(_, t)| !t.dtype().is_float()) {
        return Err(ArtifactError::BadWeights {
            path: weights,
            message: format!(
                "tensor `{name}` has dtype {:?}; artifact weights are floating point",
                t.dtype()
            ),
        });
    }
    if meta.format_version >= 2 {
        let in_weights: usize = tensors.values().map(Tensor::elem_count).sum();
        let in_sparse = meta.sparse_diff.as_ref().map_or(0, |s| s.nnz as usize);
        if in_weights + in_sparse != meta.stored_params {
            return Err(ArtifactError::BadMeta {
                path: dir.join(META_FILE),
                message: format!(
                    "`stored_params` is {}, but the files hold {} ({in_weights} in {WEIGHTS_FILE}{})",
                    meta.stored_params,
                    in_weights + in_sparse,
                    if in_sparse > 0 {
                        format!(" + {in_sparse} in the sparse diff")
                    } else {
                        String::new()
                    }
                ),
            });
        }
    }
    Ok((meta, tensors))
}

/// Reads every tensor of a safetensors file.
pub fn load_tensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    if !path.is_file() {
        return Err(ArtifactError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let map = candle_core::safetensors::load(path, device).map_err(|e| ArtifactError::BadWeights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(map.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fp: &str) -> ArtifactMeta {
        ArtifactMeta {
            format_version: FORMAT_VERSION,
            petl_version: "test".into(),
            method: serde_json::json!({"name": "bitfit", "delta": [{"form": {"kind": "bias"}, "site": "params"}]}),
            task: serde_json::json!({"name": "sst2"}),
            num_outputs: 2,
            pooling: petl_models::Pooling::Cls,
            base_fingerprint: Fingerprint(fp.into()),
            base_model_type: "bert".into(),
            trainable_params: 4,
            stored_params: 4,
            base_params: 100,
            sparse_diff: None,
        }
    }

    #[test]
    fn round_trip_is_bit_exact_and_wrong_base_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::new(&[1.5f32, -2.25, 3.0, f32::MIN_POSITIVE], &Device::Cpu)?;
        let tensors = BTreeMap::from([("classifier.bias".to_string(), t.clone())]);
        save(dir.path(), &meta("abc"), &tensors)?;
        let (m, back) = load(dir.path(), &Fingerprint("abc".into()), &Device::Cpu)?;
        assert_eq!(m, meta("abc"));
        assert_eq!(back["classifier.bias"].to_vec1::<f32>()?, t.to_vec1::<f32>()?);
        let e = load(dir.path(), &Fingerprint("other".into()), &Device::Cpu).unwrap_err();
        assert!(matches!(e, ArtifactError::WrongBase { .. }));
        assert!(e.to_string().contains("trained on base model abc"), "{e}");
        Ok(())
    }

    #[test]
    fn corrupt_truncated_and_future_files_are_clear_errors() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::zeros(64, candle_core::DType::F32, &Device::Cpu)?;
        save(dir.path(), &meta("abc"), &BTreeMap::from([("w".to_string(), t)]))?;
        let weights = dir.path().join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() - 10]).unwrap();
        let e = load(dir.path(), &Fingerprint("abc".into()), &Device::Cpu).unwrap_err();
        assert!(matches!(e, ArtifactError::BadWeights { .. }), "{e}");

        let mut future = meta("abc");
        future.format_version = FORMAT_VERSION + 1;
        write_json_atomic(&dir.path().join(META_FILE), &future)?;
        assert!(matches!(
            load_meta(dir.path()),
            Err(ArtifactError::UnsupportedVersion { .. })
        ));
        std::fs::write(dir.path().join(META_FILE), "{\"format_version\": 1").unwrap();
        assert!(matches!(
            load_meta(dir.path()),
            Err(ArtifactError::BadMeta { .. })
        ));
        Ok(())
    }
}
