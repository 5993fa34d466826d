//! The key/value cache of incremental decoding.

use super::pass::Layout;
use crate::{ModelError, Result};
use candle_core::{Device, Tensor};

/// One layer's cached keys (rotated) and values, `[rows, heads, prefix + tokens, head_dim]`,
/// prefix first; `heads` is the key/value head count, or every query head when a prefix came
/// with one per query head.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    keys: Tensor,
    values: Tensor,
    prefix_len: usize,
}

impl LayerKv {
    /// Keeps detached copies of the pass's keys and values: decoding needs no gradient, and a
    /// cache must not hold a training graph alive.
    pub(super) fn new(keys: &Tensor, values: &Tensor, prefix_len: usize) -> Self {
        Self {
            keys: keys.detach(),
            values: values.detach(),
            prefix_len,
        }
    }

    pub(super) fn keys(&self) -> &Tensor {
        &self.keys
    }

    pub(super) fn values(&self) -> &Tensor {
        &self.values
    }

    pub(super) fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    pub(super) fn heads(&self) -> Result<usize> {
        Ok(self.keys.dim(1)?)
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            keys: self.keys.index_select(rows, 0)?,
            values: self.values.index_select(rows, 0)?,
            prefix_len: self.prefix_len,
        })
    }
}

/// What [`super::DecoderModel::prefill`] leaves for [`super::DecoderModel::step`]: every
/// layer's keys and values (prefixes from [`crate::Hooks::kv_prefix`] included once, at
/// prefill), which key slots hold real tokens, and each row's next position.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    pub(super) layers: Vec<LayerKv>,
    pub(super) layout: Layout,
    pub(super) device: Device,
}

impl DecoderCache {
    /// Number of rows (sequences) in the cache.
    pub fn rows(&self) -> usize {
        self.layout.batch
    }

    /// Token slots per row: the (padded) prompt, prompt-tuning rows and generated tokens;
    /// prefixes are not counted.
    pub fn len(&self) -> usize {
        self.layout.keys
    }

    /// Whether the cache holds no token slots (never true for a cache from prefill).
    pub fn is_empty(&self) -> bool {
        self.layout.keys == 0
    }

    /// The position id each row's next token takes.
    pub fn next_positions(&self) -> &[u32] {
        &self.layout.next_position
    }

    /// Rebuilds the cache so that its row `j` is the former row `rows[j]`: beam search's
    /// reordering and expansion (rows may repeat) or dropping finished rows.
    ///
    /// # Errors
    /// An empty `rows` or an index past the current row count.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        if rows.is_empty() {
            return Err(ModelError::BadInput("select_rows needs at least one row".into()));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.rows()) {
            return Err(ModelError::BadInput(format!(
                "row {bad} does not exist (the cache has {} rows)",
                self.rows()
            )));
        }
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let index = Tensor::from_vec(index, rows.len(), &self.device)?;
        let layers = self
            .layers
            .iter()
            .map(|l| l.select(&index))
            .collect::<Result<Vec<_>>>()?;
        self.layers = layers;
        self.layout = self.layout.select(rows);
        Ok(())
    }
}
