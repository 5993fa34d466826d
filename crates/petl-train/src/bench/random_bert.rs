//! A randomly initialised BERT written once, deterministically, in Hugging Face's layout, so
//! that petl and PyTorch benchmark the very same weights without a download.

use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use petl_models::{Init, ParamStore};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The seed of the random BERT-base weights: fixed, so every machine benchmarks the same model.
pub const RANDOM_BERT_SEED: u64 = 20_220_125;

/// The shape of a randomly initialised BERT encoder (GELU, post-LN, absolute positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomBert {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN inner width.
    pub intermediate_size: usize,
    /// Position embeddings.
    pub max_position_embeddings: usize,
}

impl RandomBert {
    /// BERT-base: 12 layers, width 768, 12 heads, FFN 3072, the uncased vocabulary.
    pub fn base() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
        }
    }

    /// A 2-layer, 64-wide BERT for tests.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 200,
            hidden_size: 64,
            num_layers: 2,
            num_heads: 4,
            intermediate_size: 128,
            max_position_embeddings: 64,
        }
    }

    /// The `config.json` of this shape: a complete Hugging Face `BertConfig`.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "attention_probs_dropout_prob": 0.1,
            "classifier_dropout": null,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": self.max_position_embeddings,
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "type_vocab_size": 2,
            "use_cache": true,
            "vocab_size": self.vocab_size,
        })
    }

    /// Every tensor name (Hugging Face `BertModel` keys, pooler included) with its shape.
    pub fn tensor_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let (d, m) = (self.hidden_size, self.intermediate_size);
        let mut out = BTreeMap::new();
        let mut linear = |name: String, o: usize, i: usize| {
            out.insert(format!("{name}.weight"), vec![o, i]);
            out.insert(format!("{name}.bias"), vec![o]);
        };
        for l in 0..self.num_layers {
            let p = format!("encoder.layer.{l}");
            for proj in ["query", "key", "value"] {
                linear(format!("{p}.attention.self.{proj}"), d, d);
            }
            linear(format!("{p}.attention.output.dense"), d, d);
            linear(format!("{p}.intermediate.dense"), m, d);
            linear(format!("{p}.output.dense"), d, m);
        }
        linear("pooler.dense".into(), d, d);
        let norms = (0..self.num_layers)
            .flat_map(|l| {
                [
                    format!("encoder.layer.{l}.attention.output.LayerNorm"),
                    format!("encoder.layer.{l}.output.LayerNorm"),
                ]
            })
            .chain(["embeddings.LayerNorm".to_string()]);
        for n in norms {
            out.insert(format!("{n}.weight"), vec![d]);
            out.insert(format!("{n}.bias"), vec![d]);
        }
        out.insert(
            "embeddings.word_embeddings.weight".into(),
            vec![self.vocab_size, d],
        );
        out.insert(
            "embeddings.position_embeddings.weight".into(),
            vec![self.max_position_embeddings, d],
        );
        out.insert("embeddings.token_type_embeddings.weight".into(), vec![2, d]);
        out
    }
}

/// Writes a randomly initialised BERT of shape `shape` into `dir` as `config.json` and
/// `model.safetensors`: weights N(0, 0.02²), LayerNorm γ = 1 and β = 0, biases 0, drawn from
/// `seed` in name order, so the same arguments give the same bytes on every machine. A `dir`
/// that already holds this configuration and weights is left alone; otherwise both files are
/// written into a fresh directory that is then renamed into place, so a reader never sees half
/// a model.
pub fn write_random_bert(shape: &RandomBert, seed: u64, dir: &Path) -> Result<()> {
    let config = serde_json::to_string_pretty(&shape.config_json()).map_err(|e| TrainError::Config {
        field: "model",
        reason: format!("cannot render the random model's config.json: {e}"),
    })? + "\n";
    let weights = dir.join("model.safetensors");
    if weights.is_file() && std::fs::read_to_string(dir.join("config.json")).ok().as_deref() == Some(&config)
    {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = write_random_files(shape, seed, &tmp, &config).and_then(|()| {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))
    });
    if written.is_err() {
        // Best effort: a leftover temporary directory is harmless but wastes disk.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

fn write_random_files(shape: &RandomBert, seed: u64, dir: &Path, config: &str) -> Result<()> {
    petl_artifact::write_atomic(&dir.join("config.json"), config.as_bytes())?;
    let mut store = ParamStore::new(&Device::Cpu, seed);
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, dims) in shape.tensor_shapes() {
        let init = if name.ends_with(".bias") {
            Init::Zeros
        } else if name.contains("LayerNorm") {
            Init::Ones
        } else {
            Init::Normal { std: 0.02 }
        };
        let var = store.create(&name, &dims, init)?;
        tensors.insert(name, var.as_tensor().clone());
    }
    let path = dir.join("model.safetensors");
    // transformers refuses safetensors files whose metadata lacks the framework tag.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors.iter(), Some(metadata), &path).map_err(|e| {
        TrainError::Artifact(petl_artifact::ArtifactError::BadWeights {
            path: path.clone(),
            message: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use petl_models::{BaseModel, EncoderModel, ModelDir};

    /// The random writer gives the same bytes twice, keeps a finished directory, and writes
    /// what the encoder loads: every base tensor (pooler included), LayerNorm γ = 1.
    #[test]
    fn random_bert_is_deterministic_and_loads() -> Result<()> {
        let root = tempfile::tempdir().map_err(|source| TrainError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let shape = RandomBert::tiny();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        write_random_bert(&shape, 7, &a)?;
        write_random_bert(&shape, 7, &b)?;
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        let bytes = read(&a.join("model.safetensors"));
        assert!(!bytes.is_empty());
        assert_eq!(bytes, read(&b.join("model.safetensors")));
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let before = modified(&a.join("model.safetensors"));
        write_random_bert(&shape, 7, &a)?;
        assert_eq!(before, modified(&a.join("model.safetensors")), "rewritten");

        let model = EncoderModel::load(&ModelDir::open(&a)?, &Device::Cpu)?;
        let expected: usize = shape
            .tensor_shapes()
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum();
        assert_eq!(model.num_base_params(), expected);
        assert_eq!(model.base_params().len(), shape.tensor_shapes().len());
        assert!(model.extra_tensors().is_empty());
        let gamma = model.base_params()["encoder.layer.1.output.LayerNorm.weight"].to_vec1::<f32>()?;
        assert!(gamma.iter().all(|&g| g == 1.0));
        let w = model.base_params()["encoder.layer.0.intermediate.dense.weight"]
            .flatten_all()?
            .to_vec1::<f32>()?;
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "weight std {std}");
        assert!(std::fs::read_dir(root.path())
            .map_err(|source| TrainError::Io {
                path: root.path().to_path_buf(),
                source
            })?
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().starts_with('.')));
        Ok(())
    }
}
