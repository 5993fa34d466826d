//! Loading a checkpoint's tensors under canonical names, and the base-model fingerprint.

use crate::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// A base model's identity: a hash of every tensor's name, dtype, shape and a sample of its
/// bytes. Artifacts record it so they refuse to load onto another base. Sampling keeps it cheap
/// for multi-gigabyte checkpoints while still telling apart two fine-tunes of one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The float tensors of a checkpoint, keyed by their names with the family prefix removed
/// (`bert.encoder.layer.0…` → `encoder.layer.0…`), converted to f32.
#[derive(Debug)]
pub struct Checkpoint {
    tensors: BTreeMap<String, Tensor>,
    fingerprint: Fingerprint,
}

/// Bytes sampled per tensor for the fingerprint: 16 windows of 64 bytes.
const SAMPLE_WINDOWS: usize = 16;
const WINDOW: usize = 64;

impl Checkpoint {
    /// Reads every float tensor of the given safetensors files. `strip_prefix` (e.g. `"bert."`)
    /// is removed where present; integer buffers such as `position_ids` are skipped.
    pub fn load(files: &[impl AsRef<Path>], strip_prefix: &str, device: &Device) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        let mut entries: Vec<(String, String, Vec<usize>, Vec<u8>)> = Vec::new();
        for file in files {
            let path = file.as_ref();
            let f = std::fs::File::open(path).map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            // SAFETY: the map is read-only and dropped before this function returns; a file
            // truncated underneath us would fault, which is the same contract every mmap-based
            // checkpoint loader (safetensors, candle) accepts.
            let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| ModelError::Safetensors {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            for (raw_name, view) in st.tensors() {
                let name = canonical_name(&raw_name, strip_prefix);
                let dtype = match view.dtype() {
                    safetensors::Dtype::F32 => DType::F32,
                    safetensors::Dtype::F16 => DType::F16,
                    safetensors::Dtype::BF16 => DType::BF16,
                    safetensors::Dtype::F64 => DType::F64,
                    safetensors::Dtype::I64
                    | safetensors::Dtype::I32
                    | safetensors::Dtype::U8
                    | safetensors::Dtype::BOOL => continue,
                    other => {
                        return Err(ModelError::UnsupportedDtype {
                            name,
                            dtype: format!("{other:?}"),
                        })
                    }
                };
                let shape = view.shape().to_vec();
                let data = view.data();
                entries.push((
                    name.clone(),
                    format!("{:?}", view.dtype()),
                    shape.clone(),
                    sample(data),
                ));
                let t = Tensor::from_raw_buffer(data, dtype, &shape, device)?.to_dtype(DType::F32)?;
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(ModelError::DuplicateParam { name });
                }
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = Sha256::new();
        for (name, dtype, shape, bytes) in &entries {
            h.update(name.as_bytes());
            h.update(dtype.as_bytes());
            for d in shape {
                h.update((*d as u64).to_le_bytes());
            }
            h.update(bytes);
        }
        let fingerprint = Fingerprint(hex::encode(&h.finalize()[..16]));
        Ok(Self { tensors, fingerprint })
    }

    /// A checkpoint from tensors already in memory under canonical names (converted to f32),
    /// identified by `fingerprint`: how a reader of another format (GGUF) hands its weights
    /// to a model, fingerprinting them as it sees fit (e.g. a hash of the file).
    pub fn from_tensors(tensors: BTreeMap<String, Tensor>, fingerprint: Fingerprint) -> Result<Self> {
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Self { tensors, fingerprint })
    }

    /// The checkpoint's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Removes and returns the tensor `name`, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
            })?;
        if t.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    /// Whether the checkpoint (still) holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Removes and returns `name` if present, checking its shape when it is.
    pub fn take_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.tensors.contains_key(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// What is left after the architecture took its tensors (task heads, LM heads).
    pub fn into_remaining(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }
}

/// Normalises a checkpoint key: drops the family prefix and maps the TF-era LayerNorm names
/// (`gamma`/`beta`) to PyTorch's, as `transformers` does on load.
fn canonical_name(raw: &str, strip_prefix: &str) -> String {
    let name = raw.strip_prefix(strip_prefix).unwrap_or(raw);
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_string()
    }
}

fn sample(data: &[u8]) -> Vec<u8> {
    if data.len() <= SAMPLE_WINDOWS * WINDOW {
        return data.to_vec();
    }
    let stride = (data.len() - WINDOW) / (SAMPLE_WINDOWS - 1);
    (0..SAMPLE_WINDOWS)
        .flat_map(|i| data[i * stride..i * stride + WINDOW].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(
            canonical_name("bert.encoder.layer.0.x.weight", "bert."),
            "encoder.layer.0.x.weight"
        );
        assert_eq!(canonical_name("classifier.weight", "bert."), "classifier.weight");
        assert_eq!(
            canonical_name("bert.embeddings.LayerNorm.gamma", "bert."),
            "embeddings.LayerNorm.weight"
        );
        assert_eq!(canonical_name("x.LayerNorm.beta", "bert."), "x.LayerNorm.bias");
    }

    #[test]
    fn corrupt_file_is_a_clear_error_and_fingerprint_sees_values() {
        let dir = std::env::temp_dir().join(format!("petl-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.safetensors");
        std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
        let e = Checkpoint::load(&[&bad], "", &Device::Cpu).unwrap_err();
        assert!(matches!(e, ModelError::Safetensors { .. }), "{e}");
        assert!(e.to_string().contains("bad.safetensors"));

        let write = |name: &str, v: f32| {
            let t = Tensor::full(v, (4, 4), &Device::Cpu).unwrap();
            let p = dir.join(name);
            candle_core::safetensors::save(&BTreeMap::from([("w".to_string(), t)]).into_iter().collect(), &p)
                .unwrap();
            p
        };
        let a = Checkpoint::load(&[write("a.safetensors", 1.0)], "", &Device::Cpu).unwrap();
        let a2 = Checkpoint::load(&[write("a2.safetensors", 1.0)], "", &Device::Cpu).unwrap();
        let b = Checkpoint::load(&[write("b.safetensors", 2.0)], "", &Device::Cpu).unwrap();
        assert_eq!(a.fingerprint(), a2.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
