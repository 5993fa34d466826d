//! A generation base with one task's hooks, as `petl-generate` drives it: prefill, one step,
//! cache row selection — for decoder-only and encoder-decoder models.

use candle_core::{DType, Device, Tensor};
use petl_generate::{LogitRows, SequenceLayout, StepModel};
use petl_models::{
    BaseModel, DecoderCache, DecoderInput, DecoderModel, ForwardCtx, Hooks, ModelError, Seq2SeqCache,
    Seq2SeqModel,
};

type Result<T> = std::result::Result<T, ModelError>;

fn rows_of(logits: &Tensor) -> Result<LogitRows> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// A Llama-family decoder: prompts are left-padded and continue in place.
pub(crate) struct DecoderStepper<'a> {
    pub model: &'a DecoderModel,
    pub hooks: &'a dyn Hooks,
    pub pad: u32,
}

impl StepModel for DecoderStepper<'_> {
    type Cache = DecoderCache;
    type Error = ModelError;

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.model.config().max_position_embeddings - self.hooks.position_offset())
    }

    fn prefill(&self, prompts: &[&[u32]]) -> Result<(DecoderCache, LogitRows)> {
        let device: &Device = self.model.device();
        let input = DecoderInput::left_padded(prompts, self.pad, device)?;
        let (cache, logits) = self.model.prefill(&input, self.hooks, &mut ForwardCtx::eval())?;
        Ok((cache, rows_of(&logits)?))
    }

    fn step(&self, cache: &mut DecoderCache, tokens: &[u32]) -> Result<LogitRows> {
        let logits = self
            .model
            .step(cache, tokens, self.hooks, &mut ForwardCtx::eval())?;
        rows_of(&logits)
    }

    fn select_rows(&self, cache: &mut DecoderCache, rows: &[usize]) -> Result<()> {
        cache.select_rows(rows)
    }
}

/// A BART-family encoder-decoder: prompts are sources, encoded once (right-padded, masked);
/// the decoder starts from `decoder_start`.
pub(crate) struct Seq2SeqStepper<'a> {
    pub model: &'a Seq2SeqModel,
    pub hooks: &'a dyn Hooks,
    pub pad: u32,
    pub decoder_start: u32,
}

impl StepModel for Seq2SeqStepper<'_> {
    type Cache = Seq2SeqCache;
    type Error = ModelError;

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.model.config().max_position_embeddings)
    }

    fn layout(&self) -> SequenceLayout {
        SequenceLayout::EncoderDecoder {
            decoder_start: vec![self.decoder_start],
            max_source_positions: Some(self.model.config().max_position_embeddings),
        }
    }

    fn prefill(&self, prompts: &[&[u32]]) -> Result<(Seq2SeqCache, LogitRows)> {
        let device = self.model.device();
        let rows = prompts.len();
        let width = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (r, p) in prompts.iter().enumerate() {
            ids[r * width..r * width + p.len()].copy_from_slice(p);
            mask[r * width..r * width + p.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (rows, width), device)?;
        let mask = Tensor::from_vec(mask, (rows, width), device)?;
        let ctx = &mut ForwardCtx::eval();
        let encoded = self.model.encode(&ids, &mask, self.hooks, ctx)?;
        let start = Tensor::from_vec(vec![self.decoder_start; rows], (rows, 1), device)?;
        let (cache, logits) = self.model.prefill(&encoded, &start, self.hooks, ctx)?;
        Ok((cache, rows_of(&logits)?))
    }

    fn step(&self, cache: &mut Seq2SeqCache, tokens: &[u32]) -> Result<LogitRows> {
        let logits = self
            .model
            .step(cache, tokens, self.hooks, &mut ForwardCtx::eval())?;
        rows_of(&logits)
    }

    fn select_rows(&self, cache: &mut Seq2SeqCache, rows: &[usize]) -> Result<()> {
        self.model.select_rows(cache, rows)
    }
}
