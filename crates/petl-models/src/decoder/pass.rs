//! What every block of one forward pass shares: the rotary angles of the new tokens and the
//! additive attention mask, both built once per pass on the host.

use super::rotary::Rotary;
use crate::{ModelError, Result};
use candle_core::{Device, Tensor};
use std::cell::RefCell;

/// The additive bias of a closed key. −1e9 rather than −∞ keeps a fully masked row (a padding
/// query) finite, and stays finite in half precision.
const CLOSED: f32 = -1e9;

/// The per-pass tables of `batch` rows of `queries` new tokens each.
#[derive(Debug)]
pub(super) struct Pass {
    /// `[batch, queries, head_dim/2]` cosines and sines of the new tokens' angles.
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    /// `[batch, 1, queries, keys]` over the token keys (cached, then new), prefix excluded.
    bias: Tensor,
    /// `bias` with open prefix columns in front, for the last prefix length asked for.
    prefixed: RefCell<Option<(usize, Tensor)>>,
    /// Longest key sequence the model accepts (a sliding window petl does not implement).
    pub(super) window: Option<usize>,
}

/// Token positions and key masks of a batch, on the host.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// Rows.
    pub(super) batch: usize,
    /// Key slots per row (cached and new tokens; prefixes are counted per layer).
    pub(super) keys: usize,
    /// `[batch, keys]`: whether each key slot holds a real token.
    pub(super) open: Vec<bool>,
    /// Per row, the position the next real token takes.
    pub(super) next_position: Vec<u32>,
}

impl Layout {
    /// The layout after a fresh sequence with attention mask `mask` `[batch, seq]` (nonzero for
    /// real tokens), real tokens numbered from `offset` (Hugging Face's
    /// `cumsum(mask) − 1` plus the prefix length; padding gets position 1, as in `generate`).
    /// Returns the layout and each token's position.
    pub(super) fn fresh(mask: &[u32], batch: usize, seq: usize, offset: usize) -> (Self, Vec<u32>) {
        let open: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        let mut positions = Vec::with_capacity(batch * seq);
        let mut next_position = Vec::with_capacity(batch);
        for row in open.chunks(seq.max(1)) {
            let mut next = offset as u32;
            for &real in row {
                if real {
                    positions.push(next);
                    next += 1;
                } else {
                    positions.push(1);
                }
            }
            next_position.push(next);
        }
        let layout = Self {
            batch,
            keys: seq,
            open,
            next_position,
        };
        (layout, positions)
    }

    /// The highest position any row has used, plus one: what must fit the model's positions.
    pub(super) fn positions_used(&self) -> usize {
        self.next_position.iter().copied().max().unwrap_or(0) as usize
    }

    /// Appends one real token to every row.
    pub(super) fn push_token(&self) -> Self {
        let mut open = Vec::with_capacity(self.batch * (self.keys + 1));
        for row in self.open.chunks(self.keys.max(1)).take(self.batch) {
            open.extend_from_slice(row);
            open.push(true);
        }
        Self {
            batch: self.batch,
            keys: self.keys + 1,
            open,
            next_position: self.next_position.iter().map(|p| p + 1).collect(),
        }
    }

    /// The layout of rows `rows` (repeats allowed).
    pub(super) fn select(&self, rows: &[usize]) -> Self {
        let k = self.keys;
        Self {
            batch: rows.len(),
            keys: k,
            open: rows
                .iter()
                .flat_map(|&r| self.open[r * k..(r + 1) * k].iter().copied())
                .collect(),
            next_position: rows.iter().map(|&r| self.next_position[r]).collect(),
        }
    }
}

impl Pass {
    /// A pass whose `queries` new tokens are the last `queries` key slots of `layout`, at
    /// `positions` (`[batch, queries]`). Each new token sees the earlier and its own slots that
    /// hold real tokens (causal + padding mask).
    pub(super) fn new(
        layout: &Layout,
        queries: usize,
        positions: &[u32],
        rotary: &Rotary,
        window: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        let (batch, keys) = (layout.batch, layout.keys);
        let first = keys - queries;
        let mut bias = vec![CLOSED; batch * queries * keys];
        for b in 0..batch {
            let open = &layout.open[b * keys..(b + 1) * keys];
            for q in 0..queries {
                let row = &mut bias[(b * queries + q) * keys..][..keys];
                for (j, v) in row.iter_mut().enumerate().take(first + q + 1) {
                    if open[j] {
                        *v = 0.0;
                    }
                }
            }
        }
        let (cos, sin) = rotary.tables(positions, batch, queries, device)?;
        Ok(Self {
            cos,
            sin,
            bias: Tensor::from_vec(bias, (batch, 1, queries, keys), device)?,
            prefixed: RefCell::new(None),
            window,
        })
    }

    /// The mask with `prefix` always-open key columns in front.
    pub(super) fn bias(&self, prefix: usize) -> Result<Tensor> {
        if prefix == 0 {
            return Ok(self.bias.clone());
        }
        if let Some((p, t)) = &*self.prefixed.borrow() {
            if *p == prefix {
                return Ok(t.clone());
            }
        }
        let (b, _, q, _) = self.bias.dims4()?;
        let open = Tensor::zeros((b, 1, q, prefix), self.bias.dtype(), self.bias.device())?;
        let t = Tensor::cat(&[&open, &self.bias], 3)?;
        *self.prefixed.borrow_mut() = Some((prefix, t.clone()));
        Ok(t)
    }

    /// Refuses key sequences longer than the sliding window.
    pub(super) fn check_window(&self, keys: usize) -> Result<()> {
        match self.window {
            Some(w) if keys > w => Err(ModelError::BadInput(format!(
                "{keys} keys (prefix, prompt and generated tokens) exceed the sliding window of {w}; \
                 petl does not implement sliding-window attention"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_mask_like_generate() {
        // Left padded, right padded, full.
        let mask = [0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1];
        let (layout, pos) = Layout::fresh(&mask, 3, 4, 2);
        assert_eq!(pos, vec![1, 1, 2, 3, 2, 3, 1, 1, 2, 3, 4, 5]);
        assert_eq!(layout.next_position, vec![4, 4, 6]);
        assert_eq!(layout.positions_used(), 6);
        let next = layout.push_token().select(&[2, 0, 0]);
        assert_eq!(next.next_position, vec![7, 5, 5]);
        assert_eq!(next.open[..5], [true, true, true, true, true]);
        assert_eq!(next.open[5..10], [false, false, true, true, true]);
    }

    #[test]
    fn mask_is_causal_and_hides_padding() {
        let (layout, pos) = Layout::fresh(&[0, 1, 1], 1, 3, 0);
        let rotary = Rotary::new(
            &super::super::config::RopeConfig {
                theta: 10_000.0,
                scaling: super::super::config::RopeScaling::None,
            },
            4,
        );
        let pass = Pass::new(&layout, 3, &pos, &rotary, None, &Device::Cpu).unwrap();
        let bias = pass
            .bias(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let c = CLOSED;
        #[rustfmt::skip]
        let want = vec![
            0., c, c, c,
            0., c, 0., c,
            0., c, 0., 0.,
        ];
        assert_eq!(bias, want);
    }
}
