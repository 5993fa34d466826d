//! A GGUF decoder seen as a Hugging Face model: config, HF-named f32 tensors, tokenizer.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use super::config::{Architecture, HfConfig};
use super::error::{GgufError, Result};
use super::file::GgufFile;
use super::names::{self, Module, Placed};
use super::permute::unpermute_qk_rows;

/// A llama.cpp GGUF file of a Llama-family decoder (Llama, Mistral, SmolLM, Qwen2), presented the way
/// a Hugging Face checkpoint directory would be.
///
/// [`open`](Self::open) reads only the header: it builds the [`HfConfig`] and checks every tensor's
/// name and shape against it, so a file that opens will load. Tensors are dequantized on request.
///
/// ```no_run
/// use petl_models::gguf::GgufModel;
/// let model = GgufModel::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
/// assert_eq!(model.config().num_hidden_layers, 30);
/// let weights = model.tensors(&candle_core::Device::Cpu)?;   // "model.layers.0.self_attn.q_proj.weight", …
/// let ids = model.tokenizer()?.encode("Hello", false).map_err(|e| e.to_string());
/// model.export_hf_dir("smollm2-hf")?;                          // config.json, model.safetensors, tokenizer.json
/// # Ok::<(), petl_models::gguf::GgufError>(())
/// ```
#[derive(Debug)]
pub struct GgufModel {
    file: GgufFile,
    architecture: Architecture,
    config: HfConfig,
    /// HF name → (GGUF name, placement), sorted by HF name.
    map: BTreeMap<String, (String, Placed)>,
}

impl GgufModel {
    /// Opens a GGUF file and maps it.
    ///
    /// # Errors
    /// Everything [`GgufFile::open`] reports; [`GgufError::UnsupportedArchitecture`];
    /// [`GgufError::MissingMetadata`] / [`GgufError::InvalidMetadata`] for the config;
    /// [`GgufError::UnknownTensor`] for a tensor with no HF counterpart (nothing is dropped silently);
    /// [`GgufError::MissingTensor`] and [`GgufError::ShapeMismatch`] when the tensors do not fit it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(GgufFile::open(path)?)
    }

    /// Maps an already opened file (see [`open`](Self::open)).
    pub fn from_file(file: GgufFile) -> Result<Self> {
        let arch_name =
            file.metadata_str("general.architecture")?
                .ok_or_else(|| GgufError::MissingMetadata {
                    key: "general.architecture".into(),
                })?;
        let architecture = Architecture::from_gguf(arch_name)?;
        let config = HfConfig::from_gguf(&file, architecture)?;
        let mut map = BTreeMap::new();
        for info in file.tensor_infos() {
            let placed = names::place(&info.name).ok_or_else(|| GgufError::UnknownTensor {
                tensor: info.name.clone(),
                reason: names::unmapped_reason(&info.name),
            })?;
            let bias_allowed = match placed.module {
                Module::Q | Module::K | Module::V => true,
                Module::O => architecture == Architecture::Llama,
                _ => false,
            };
            if placed.is_bias && !bias_allowed {
                return Err(GgufError::UnknownTensor {
                    tensor: info.name.clone(),
                    reason: Some("a bias this architecture's layers do not have"),
                });
            }
            if placed.layer.is_some_and(|l| l >= config.num_hidden_layers) {
                return Err(GgufError::UnknownTensor {
                    tensor: info.name.clone(),
                    reason: Some("its layer index is beyond `block_count`"),
                });
            }
            let expected = expected_shape(&config, &placed);
            if info.shape != expected {
                return Err(GgufError::ShapeMismatch {
                    hf_name: placed.hf_name,
                    expected,
                    actual: info.shape.clone(),
                });
            }
            map.insert(placed.hf_name.clone(), (info.name.clone(), placed));
        }
        let model = Self {
            file,
            architecture,
            config,
            map,
        };
        model.check_complete()?;
        Ok(model)
    }

    /// Every tensor the architecture needs must be there (biases: all layers or none).
    fn check_complete(&self) -> Result<()> {
        let mut needed = vec![
            "model.embed_tokens.weight".to_string(),
            "model.norm.weight".to_string(),
        ];
        if !self.config.tie_word_embeddings {
            needed.push("lm_head.weight".into());
        }
        for layer in 0..self.config.num_hidden_layers {
            for (path, module) in names::layer_modules() {
                needed.push(format!("model.layers.{layer}.{path}.weight"));
                if self.config.attention_bias && matches!(module, Module::Q | Module::K | Module::V) {
                    needed.push(format!("model.layers.{layer}.{path}.bias"));
                }
            }
        }
        match needed.into_iter().find(|n| !self.map.contains_key(n)) {
            Some(hf_name) => Err(GgufError::MissingTensor {
                gguf_name: names::gguf_tensor_name(&hf_name).unwrap_or_default(),
                hf_name,
            }),
            None => Ok(()),
        }
    }

    /// The underlying file (metadata, raw tensor table).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The model family.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The Hugging Face config rebuilt from the metadata.
    pub fn config(&self) -> &HfConfig {
        &self.config
    }

    /// The config as `config.json` holds it.
    pub fn config_json(&self) -> serde_json::Value {
        self.config.to_json()
    }

    /// Hugging Face names of every tensor, sorted (`lm_head.weight` only when untied).
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// One tensor by its Hugging Face name, dequantized to f32 on `device`, Q/K rows in HF order.
    ///
    /// # Errors
    /// [`GgufError::NoSuchTensor`] for a name the model does not have.
    pub fn tensor(&self, hf_name: &str, device: &Device) -> Result<Tensor> {
        let (gguf_name, placed) = self.map.get(hf_name).ok_or_else(|| GgufError::NoSuchTensor {
            name: hf_name.to_string(),
        })?;
        let t = self.file.dequantize(gguf_name, &Device::Cpu)?;
        let t = match (self.architecture.permutes_qk(), placed.module) {
            (true, Module::Q) => unpermute_qk_rows(&t, self.config.num_attention_heads)?,
            (true, Module::K) => unpermute_qk_rows(&t, self.config.num_key_value_heads)?,
            _ => t,
        };
        Ok(t.to_device(device)?)
    }

    /// Every tensor under its Hugging Face name, f32 on `device`, as transformers' GGUF loader
    /// returns them. Tied models have no `lm_head.weight` (the config says to reuse the embedding).
    pub fn tensors(&self, device: &Device) -> Result<BTreeMap<String, Tensor>> {
        self.map
            .keys()
            .map(|name| Ok((name.clone(), self.tensor(name, device)?)))
            .collect()
    }

    /// The tokenizer described by the `tokenizer.ggml.*` metadata; see [`GgufFile::tokenizer`].
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        self.file.tokenizer()
    }

    /// Whether the file describes a tokenizer at all (`tokenizer.ggml.model` is present).
    pub fn has_tokenizer(&self) -> bool {
        self.file.has_tokenizer()
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Result<Option<&str>> {
        self.file.chat_template()
    }

    /// Writes the model as a Hugging Face directory `out` (config.json, generation_config.json,
    /// model.safetensors in f32, and tokenizer.json + tokenizer_config.json when the file has a
    /// tokenizer) that transformers loads with `AutoModelForCausalLM` / `AutoTokenizer`.
    ///
    /// The directory is assembled under a temporary sibling name and renamed into place, so `out`
    /// appears complete or not at all.
    ///
    /// # Errors
    /// [`GgufError::OutputExists`] if `out` exists; I/O and conversion errors otherwise.
    pub fn export_hf_dir(&self, out: impl AsRef<Path>) -> Result<()> {
        super::export::export(self, out.as_ref())
    }
}

/// The shape the config implies for a tensor.
fn expected_shape(c: &HfConfig, placed: &Placed) -> Vec<usize> {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let q = c.num_attention_heads * c.head_dim();
    let kv = c.num_key_value_heads * c.head_dim();
    let (out, inp) = match placed.module {
        Module::Embedding | Module::LmHead => (c.vocab_size, Some(h)),
        Module::FinalNorm | Module::AttnNorm | Module::FfnNorm => (h, None),
        Module::Q => (q, Some(h)),
        Module::K | Module::V => (kv, Some(h)),
        Module::O => (h, Some(q)),
        Module::Gate | Module::Up => (f, Some(h)),
        Module::Down => (h, Some(f)),
    };
    match inp {
        Some(inp) if !placed.is_bias => vec![out, inp],
        _ => vec![out],
    }
}
