//! A local Hugging Face model directory: `config.json`, safetensors weights, `tokenizer.json`.

use crate::{ModelError, Result};
use std::path::{Path, PathBuf};

/// The files of a model directory, checked to exist.
#[derive(Debug, Clone)]
pub struct ModelDir {
    root: PathBuf,
    weights: Vec<PathBuf>,
}

impl ModelDir {
    /// Checks `root` holds a config and safetensors weights (one file, or shards listed by
    /// `model.safetensors.index.json`). A directory with only `pytorch_model.bin` is refused
    /// with instructions to convert it.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(ModelError::MissingFile {
                what: "model directory",
                path: root,
                hint: Some(
                    "pass a local Hugging Face model directory, or run `petl model fetch minilm`".into(),
                ),
            });
        }
        let config = root.join("config.json");
        if !config.is_file() {
            return Err(ModelError::MissingFile {
                what: "config.json",
                path: config,
                hint: None,
            });
        }
        let single = root.join("model.safetensors");
        let index = root.join("model.safetensors.index.json");
        let weights = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shards_from_index(&root, &index)?
        } else if root.join("pytorch_model.bin").is_file() {
            return Err(ModelError::PickleCheckpoint { path: root });
        } else {
            return Err(ModelError::MissingFile {
                what: "model.safetensors",
                path: single,
                hint: None,
            });
        };
        Ok(Self { root, weights })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// The safetensors files, in load order.
    pub fn weight_files(&self) -> &[PathBuf] {
        &self.weights
    }

    /// `tokenizer.json`, which must exist for anything that reads text.
    pub fn tokenizer_path(&self) -> Result<PathBuf> {
        let p = self.root.join("tokenizer.json");
        if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::MissingFile {
                what: "tokenizer.json",
                path: p,
                hint: Some("petl needs the fast-tokenizer file saved by `tokenizer.save_pretrained`".into()),
            })
        }
    }
}

fn shards_from_index(root: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: index.to_path_buf(),
        source,
    })?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            let p = root.join(&f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::MissingFile {
                    what: "weight shard",
                    path: p,
                    hint: Some(format!("listed in {}", index.display())),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_pickle_only_and_names_missing_files() {
        let dir = std::env::temp_dir().join(format!("petl-modeldir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = ModelDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains("missing config.json"), "{e}");
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let e = ModelDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains("missing model.safetensors"), "{e}");
        std::fs::write(dir.join("pytorch_model.bin"), "x").unwrap();
        let e = ModelDir::open(&dir).unwrap_err();
        assert!(matches!(e, ModelError::PickleCheckpoint { .. }), "{e}");
        assert!(e.to_string().contains("safetensors only"));
        std::fs::remove_dir_all(&dir).unwrap();
        let e = ModelDir::open(dir.join("nope")).unwrap_err().to_string();
        assert!(e.contains("missing model directory"), "{e}");
    }
}
