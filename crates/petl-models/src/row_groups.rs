//! Different hooks for different rows of one batch: how a server runs requests for many tasks
//! through one shared base forward.
//!
//! Every row-wise hook point sees its tensors split into the groups' row ranges, each group's
//! hooks act on their slice, and the slices are joined again. The frozen computation between
//! hook points — every base matmul, attention, LayerNorm — runs once for the whole batch.
//!
//! What cannot differ per row is refused: replacing a base parameter ([`Hooks::param`]: full
//! fine-tuning, BitFit, a dense diff) changes it for every row, and prompts, prefixes and
//! position shifts change the sequence layout, so all groups must agree on them. Callers group
//! tasks by [`RowGroups::layout`] and run incompatible ones in separate batches.

use crate::{ForwardCtx, HeadsSite, Hooks, KvPrefix, ModelError, Proj, Result, Sublayer};
use candle_core::Tensor;
use std::ops::Range;

/// Hooks that dispatch each contiguous range of batch rows to its own [`Hooks`].
pub struct RowGroups<'a> {
    groups: Vec<(Range<usize>, &'a dyn Hooks)>,
}

impl std::fmt::Debug for RowGroups<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.groups.iter().map(|(r, _)| r.clone()).collect();
        f.debug_struct("RowGroups").field("ranges", &ranges).finish()
    }
}

/// The part of a delta that fixes a batch's sequence layout; rows can share a forward only when
/// their deltas agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Keys and values prepended per layer (prefix tuning), as lengths.
    pub prefix_len: usize,
    /// How far input positions are shifted.
    pub position_offset: usize,
}

impl<'a> RowGroups<'a> {
    /// Groups given as `(rows, hooks)` in row order; together they must cover `0..n` without
    /// gaps or overlap, each with at least one row.
    pub fn new(groups: Vec<(Range<usize>, &'a dyn Hooks)>) -> Result<Self> {
        let mut next = 0;
        for (rows, _) in &groups {
            if rows.start != next || rows.is_empty() {
                return Err(ModelError::BadInput(format!(
                    "row groups must be non-empty and contiguous from row 0: got {rows:?} after row {next}"
                )));
            }
            next = rows.end;
        }
        if groups.is_empty() {
            return Err(ModelError::BadInput("no row groups".into()));
        }
        Ok(Self { groups })
    }

    /// Total rows covered.
    pub fn rows(&self) -> usize {
        self.groups.last().map_or(0, |(r, _)| r.end)
    }

    /// The sequence layout `hooks` impose for `layers` layers, probing layer 0's prefix (prefix
    /// lengths are the same in every layer a method prefixes; a method that prefixes only some
    /// layers gets its own batch through a nonzero length here).
    pub fn layout(hooks: &dyn Hooks) -> Result<Layout> {
        let mut ctx = ForwardCtx::eval();
        let prefix_len = match hooks.kv_prefix(0, Sublayer::Attention, 1, &mut ctx)? {
            Some(p) => p.keys.dim(2)?,
            None => 0,
        };
        Ok(Layout {
            prefix_len,
            position_offset: hooks.position_offset(),
        })
    }

    /// Runs `f` on every group's slice of `x` (rows on dim 0) and joins the results.
    fn split(
        &self,
        x: &Tensor,
        mut f: impl FnMut(&dyn Hooks, &Range<usize>, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if let [(rows, hooks)] = self.groups.as_slice() {
            return f(*hooks, rows, x.clone());
        }
        let mut parts = Vec::with_capacity(self.groups.len());
        let mut changed = false;
        for (rows, hooks) in &self.groups {
            let slice = rows_of(x, rows)?;
            let id = slice.id();
            let out = f(*hooks, rows, slice)?;
            changed |= out.id() != id;
            parts.push(out);
        }
        // Most hook points leave most tasks' rows alone; joining unchanged slices would copy the
        // whole activation for nothing.
        if !changed {
            return Ok(x.clone());
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

fn rows_of(x: &Tensor, rows: &Range<usize>) -> Result<Tensor> {
    Ok(x.narrow(0, rows.start, rows.len())?)
}

impl Hooks for RowGroups<'_> {
    fn param(&self, name: &str, base: &Tensor, ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        for (_, hooks) in &self.groups {
            if hooks.param(name, base, ctx)?.is_some() {
                return Err(ModelError::BadInput(format!(
                    "a delta replaces base parameter {name}, which would change it for every task in \
                     the batch; run it in a batch of its own"
                )));
            }
        }
        Ok(None)
    }

    fn base_linear(
        &self,
        weight: &str,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        self.split(&output, |h, rows, y| {
            h.base_linear(weight, &rows_of(input, rows)?, y, ctx)
        })
    }

    fn base_norm(
        &self,
        weight: &str,
        input: &Tensor,
        eps: f64,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        self.split(&output, |h, rows, y| {
            h.base_norm(weight, &rows_of(input, rows)?, eps, y, ctx)
        })
    }

    fn base_lookup(&self, table: &str, ids: &Tensor, output: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.split(&output, |h, rows, y| {
            h.base_lookup(table, &rows_of(ids, rows)?, y, ctx)
        })
    }

    fn embeddings(&self, words: Tensor, mask: Tensor, ctx: &mut ForwardCtx) -> Result<(Tensor, Tensor)> {
        let seq = words.dim(1)?;
        let mut masks = Vec::with_capacity(self.groups.len());
        let words = self.split(&words, |h, rows, w| {
            let (w, m) = h.embeddings(w, rows_of(&mask, rows)?, ctx)?;
            masks.push(m);
            Ok(w)
        })?;
        if words.dim(1)? != seq {
            return Err(ModelError::BadInput(
                "prompt tuning changes the sequence length; its tasks need a batch of their own".into(),
            ));
        }
        Ok((words, Tensor::cat(&masks, 0)?))
    }

    fn input(&self, layer: usize, sublayer: Sublayer, x: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.split(&x, |h, _, x| h.input(layer, sublayer, x, ctx))
    }

    fn position_offset(&self) -> usize {
        // `new`'s callers group by layout, so every group agrees; `kv_prefix` checks prefixes.
        self.groups.first().map_or(0, |(_, h)| h.position_offset())
    }

    fn linear_input(&self, layer: usize, proj: Proj, input: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.split(&input, |h, _, x| h.linear_input(layer, proj, x, ctx))
    }

    fn linear(
        &self,
        layer: usize,
        proj: Proj,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        self.split(&output, |h, rows, y| {
            h.linear(layer, proj, &rows_of(input, rows)?, y, ctx)
        })
    }

    fn kv_prefix(
        &self,
        layer: usize,
        sublayer: Sublayer,
        batch: usize,
        ctx: &mut ForwardCtx,
    ) -> Result<Option<KvPrefix>> {
        if batch != self.rows() {
            return Err(ModelError::BadInput(format!(
                "row groups cover {} rows but the batch has {batch}",
                self.rows()
            )));
        }
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut offsets = Vec::new();
        for (rows, hooks) in &self.groups {
            offsets.push(hooks.position_offset());
            match hooks.kv_prefix(layer, sublayer, rows.len(), ctx)? {
                Some(p) => {
                    keys.push(p.keys);
                    values.push(p.values);
                }
                None if keys.is_empty() => {}
                None => return Err(mixed_layout()),
            }
        }
        if offsets.windows(2).any(|w| w[0] != w[1]) {
            return Err(mixed_layout());
        }
        if keys.is_empty() {
            return Ok(None);
        }
        if keys.len() != self.groups.len() || keys.windows(2).any(|k| k[0].dims() != k[1].dims()) {
            return Err(mixed_layout());
        }
        Ok(Some(KvPrefix {
            keys: Tensor::cat(&keys, 0)?,
            values: Tensor::cat(&values, 0)?,
        }))
    }

    fn changes_heads(&self, layer: usize, sublayer: Sublayer) -> bool {
        self.groups.iter().any(|(_, h)| h.changes_heads(layer, sublayer))
    }

    fn heads(
        &self,
        layer: usize,
        site: HeadsSite<'_>,
        heads: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        self.split(&heads, |h, rows, x| {
            let (input, query, scores) = (
                rows_of(site.input, rows)?,
                rows_of(site.query, rows)?,
                rows_of(site.scores, rows)?,
            );
            let site = HeadsSite {
                sublayer: site.sublayer,
                input: &input,
                query: &query,
                scores: &scores,
            };
            h.heads(layer, site, x, ctx)
        })
    }

    fn output(
        &self,
        layer: usize,
        sublayer: Sublayer,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        self.split(&output, |h, rows, y| {
            h.output(layer, sublayer, &rows_of(input, rows)?, y, ctx)
        })
    }
}

fn mixed_layout() -> ModelError {
    ModelError::BadInput(
        "tasks in one batch disagree on prefixes or position shifts; group them by RowGroups::layout".into(),
    )
}

/// Two hooks in sequence: `first` acts at every point, then `second` on its result. Parameter
/// replacements come from `first` when it has one.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a dyn Hooks, pub &'a dyn Hooks);

impl std::fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chain")
    }
}

impl Hooks for Chain<'_> {
    fn param(&self, name: &str, base: &Tensor, ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        match self.0.param(name, base, ctx)? {
            Some(t) => Ok(Some(t)),
            None => self.1.param(name, base, ctx),
        }
    }

    fn base_linear(
        &self,
        weight: &str,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let y = self.0.base_linear(weight, input, output, ctx)?;
        self.1.base_linear(weight, input, y, ctx)
    }

    fn base_norm(
        &self,
        weight: &str,
        input: &Tensor,
        eps: f64,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let y = self.0.base_norm(weight, input, eps, output, ctx)?;
        self.1.base_norm(weight, input, eps, y, ctx)
    }

    fn base_lookup(&self, table: &str, ids: &Tensor, output: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let y = self.0.base_lookup(table, ids, output, ctx)?;
        self.1.base_lookup(table, ids, y, ctx)
    }

    fn embeddings(&self, words: Tensor, mask: Tensor, ctx: &mut ForwardCtx) -> Result<(Tensor, Tensor)> {
        let (w, m) = self.0.embeddings(words, mask, ctx)?;
        self.1.embeddings(w, m, ctx)
    }

    fn input(&self, layer: usize, sublayer: Sublayer, x: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = self.0.input(layer, sublayer, x, ctx)?;
        self.1.input(layer, sublayer, x, ctx)
    }

    fn position_offset(&self) -> usize {
        self.0.position_offset() + self.1.position_offset()
    }

    fn linear_input(&self, layer: usize, proj: Proj, input: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let x = self.0.linear_input(layer, proj, input, ctx)?;
        self.1.linear_input(layer, proj, x, ctx)
    }

    fn linear(
        &self,
        layer: usize,
        proj: Proj,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let y = self.0.linear(layer, proj, input, output, ctx)?;
        self.1.linear(layer, proj, input, y, ctx)
    }

    fn kv_prefix(
        &self,
        layer: usize,
        sublayer: Sublayer,
        batch: usize,
        ctx: &mut ForwardCtx,
    ) -> Result<Option<KvPrefix>> {
        match (
            self.0.kv_prefix(layer, sublayer, batch, ctx)?,
            self.1.kv_prefix(layer, sublayer, batch, ctx)?,
        ) {
            (None, p) | (p, None) => Ok(p),
            (Some(_), Some(_)) => Err(ModelError::BadInput(
                "both chained hooks prepend prefixes; one delta should hold them".into(),
            )),
        }
    }

    fn changes_heads(&self, layer: usize, sublayer: Sublayer) -> bool {
        self.0.changes_heads(layer, sublayer) || self.1.changes_heads(layer, sublayer)
    }

    fn changes_linear(&self, layer: usize, proj: Proj) -> bool {
        self.0.changes_linear(layer, proj) || self.1.changes_linear(layer, proj)
    }

    fn heads(
        &self,
        layer: usize,
        site: HeadsSite<'_>,
        heads: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let h = self.0.heads(layer, site, heads, ctx)?;
        self.1.heads(layer, site, h, ctx)
    }

    fn output(
        &self,
        layer: usize,
        sublayer: Sublayer,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let y = self.0.output(layer, sublayer, input, output, ctx)?;
        self.1.output(layer, sublayer, input, y, ctx)
    }
}
