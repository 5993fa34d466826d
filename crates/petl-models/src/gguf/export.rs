//! Writing a [`GgufModel`] out as a Hugging Face model directory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use safetensors::{Dtype, View};

use super::error::{GgufError, Result};
use super::model::GgufModel;

/// One f32 tensor ready for the safetensors writer.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32View {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

pub(crate) fn export(model: &GgufModel, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(GgufError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let name = out.file_name().ok_or_else(|| GgufError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the destination has no file name",
        ),
    })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let staging = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let written = write_files(model, &staging).and_then(|()| {
        if out.exists() {
            return Err(GgufError::OutputExists {
                path: out.to_path_buf(),
            });
        }
        std::fs::rename(&staging, out).map_err(io(out))
    });
    if written.is_err() {
        // Best effort: the error being returned matters more than a failed cleanup.
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

fn write_files(model: &GgufModel, dir: &Path) -> Result<()> {
    let config = model.config();
    write_json(&dir.join("config.json"), &model.config_json())?;
    let mut generation = serde_json::Map::new();
    for (key, id) in [
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
        ("pad_token_id", config.pad_token_id),
    ] {
        if let Some(id) = id {
            generation.insert(key.into(), id.into());
        }
    }
    write_json(
        &dir.join("generation_config.json"),
        &serde_json::Value::Object(generation),
    )?;
    if model.has_tokenizer() {
        write_tokenizer(model, dir)?;
    }
    write_weights(model, &dir.join("model.safetensors"))
}

fn write_tokenizer(model: &GgufModel, dir: &Path) -> Result<()> {
    let tokenizer = model.tokenizer()?;
    let path = dir.join("tokenizer.json");
    tokenizer.save(&path, true).map_err(|e| GgufError::Tokenizer {
        what: "saving tokenizer.json",
        message: e.to_string(),
    })?;
    let file = model.file();
    let token = |key: &str| -> Result<Option<String>> {
        let Some(id) = file.metadata_u64(key)? else {
            return Ok(None);
        };
        Ok(u32::try_from(id).ok().and_then(|id| tokenizer.id_to_token(id)))
    };
    let mut config = serde_json::Map::new();
    // Loads as transformers' generic fast tokenizer from tokenizer.json (v4 and v5 alike), rather
    // than a model-specific class that might rebuild parts of the pipeline.
    config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(t) = token(key)? {
            config.insert(name.into(), t.into());
        }
    }
    let (add_bos, add_eos) = super::tokenizer::bos_eos_flags(file)?;
    config.insert("add_bos_token".into(), add_bos.into());
    config.insert("add_eos_token".into(), add_eos.into());
    config.insert("clean_up_tokenization_spaces".into(), false.into());
    config.insert(
        "model_max_length".into(),
        model.config().max_position_embeddings.into(),
    );
    if let Some(template) = model.chat_template()? {
        config.insert("chat_template".into(), template.into());
    }
    write_json(
        &dir.join("tokenizer_config.json"),
        &serde_json::Value::Object(config),
    )
}

fn write_weights(model: &GgufModel, path: &Path) -> Result<()> {
    let mut views = Vec::new();
    for name in model.tensor_names() {
        let t = model.tensor(name, &Device::Cpu)?.to_dtype(DType::F32)?;
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        views.push((
            name.to_string(),
            F32View {
                shape: t.dims().to_vec(),
                bytes,
            },
        ));
    }
    // transformers refuses safetensors files whose metadata lacks a known `format`.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views.iter().map(|(n, v)| (n.as_str(), v)), Some(metadata), path).map_err(
        |e| GgufError::SafetensorsWrite {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    )
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    // Serializing a `Value` cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    std::fs::write(path, text).map_err(io(path))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> GgufError + '_ {
    move |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    }
}
