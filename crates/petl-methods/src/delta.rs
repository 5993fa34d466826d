//! A built method: the trainable tensors of every delta, wired to the model's hook points.

use crate::diff::delta::{selected_params, DiffDelta};
use crate::diff::{DenseDiff, Penalty};
use crate::error::Result;
use crate::prefix::{HeadsDelta, PrefixBank, PrefixBanks};
use crate::site::{SiteDelta, Widths};
use crate::spec::{proj_name, DeltaSpec, Form, InitScheme, Method, Site};
use candle_core::{Tensor, Var};
use petl_models::{
    AttentionKind, BaseModel, ForwardCtx, HeadsSite, Hooks, Init, KvPrefix, ModelShape, ParamStore, Proj,
    Sublayer,
};
use petl_sparse::SparseDiff;
use std::collections::BTreeMap;

/// The [`Hooks`] implementation of a [`Method`] on one model: every delta's trainable tensors
/// (held in a [`ParamStore`]) and where each acts. The base weights are never written.
#[derive(Debug, Clone)]
pub struct Delta {
    method: Method,
    /// Base parameters replaced by trainable copies (BitFit, dense diffs).
    params: BTreeMap<String, Var>,
    prompt: Option<Var>,
    /// IA³ scalings of projection inputs.
    inputs: BTreeMap<(usize, Proj), Vec<Var>>,
    linears: BTreeMap<(usize, Proj), Vec<SiteDelta>>,
    sublayers: BTreeMap<(usize, Sublayer), Vec<SiteDelta>>,
    /// Prefixes concatenated to keys and values, one set of banks per delta.
    kv_banks: Vec<PrefixBanks>,
    heads: Vec<HeadsDelta>,
    /// A diff on base parameters (diff pruning).
    diff: Option<DiffDelta>,
}

impl Delta {
    /// Validates `method` against `model` and creates its parameters in `store`.
    pub fn build(method: &Method, model: &dyn BaseModel, store: &mut ParamStore) -> Result<Self> {
        Self::build_with_diff(method, model, store, None)
    }

    /// As [`Delta::build`], with the positions and starting values of a
    /// [`Form::SparseDiff`] delta (read from an artifact or produced by a projection).
    pub fn build_with_diff(
        method: &Method,
        model: &dyn BaseModel,
        store: &mut ParamStore,
        sparse: Option<&SparseDiff>,
    ) -> Result<Self> {
        method.validate(&model.shape())?;
        let mut delta = Self {
            method: method.clone(),
            params: BTreeMap::new(),
            prompt: None,
            inputs: BTreeMap::new(),
            linears: BTreeMap::new(),
            sublayers: BTreeMap::new(),
            kv_banks: Vec::new(),
            heads: Vec::new(),
            diff: None,
        };
        for (index, spec) in method.deltas.iter().enumerate() {
            delta.add(index, spec, model, store, sparse)?;
        }
        Ok(delta)
    }

    fn add(
        &mut self,
        k: usize,
        spec: &DeltaSpec,
        model: &dyn BaseModel,
        store: &mut ParamStore,
        sparse: Option<&SparseDiff>,
    ) -> Result<()> {
        let shape = model.shape();
        let d = shape.hidden_size;
        let layers = spec.layers.select(shape.num_blocks());
        let dims = |p: Proj| shape.proj_dims(p);
        let projs_at = |l: usize, projs: &[Proj]| weights_at(&shape, l, projs);
        match (&spec.form, &spec.site) {
            (Form::Diff { l0, .. }, _) => {
                self.diff = Some(DiffDelta::dense(k, l0.as_ref(), &spec.layers, model, store)?);
            }
            (Form::SparseDiff {}, _) => {
                // Without positions it is the empty diff; they come with an artifact.
                let empty = SparseDiff::default();
                self.diff = Some(DiffDelta::sparse(k, sparse.unwrap_or(&empty), model, store)?);
            }
            (Form::Bias {} | Form::Dense {}, _) => {
                for (name, base) in selected_params(model, &spec.layers) {
                    let selected = match spec.form {
                        Form::Bias {} => name.ends_with(".bias"),
                        _ => true,
                    };
                    if selected {
                        let var = store.create(name, base.dims(), Init::Copy(base.clone()))?;
                        self.params.insert(name.clone(), var);
                    }
                }
            }
            (Form::Prompt { length }, _) => {
                let init = match spec.init {
                    InitScheme::Houlsby => Init::TruncatedNormal {
                        std: 0.01,
                        limit: 0.02,
                    },
                    _ => Init::Normal { std: 0.02 },
                };
                self.prompt = Some(store.create(&format!("delta{k}.prompt"), &[*length, d], init)?);
            }
            (Form::Scaling { scale_input }, Site::Weights(projs)) => {
                for &l in &layers {
                    for p in projs_at(l, projs) {
                        let (i, o) = dims(p);
                        let on_input = scale_input.contains(&p);
                        let name = format!("delta{k}.layer{l}.{}.scale", proj_name(p));
                        let var = store.create(&name, &[if on_input { i } else { o }], Init::Ones)?;
                        if on_input {
                            self.inputs.entry((l, p)).or_default().push(var);
                        } else {
                            self.linears
                                .entry((l, p))
                                .or_default()
                                .push(SiteDelta::scaling(var));
                        }
                    }
                }
            }
            (Form::Bottleneck { .. } | Form::LowRank { .. }, Site::Weights(projs)) => {
                for &l in &layers {
                    for p in projs_at(l, projs) {
                        let (input, output) = dims(p);
                        let prefix = format!("delta{k}.layer{l}.{}", proj_name(p));
                        let sd = SiteDelta::network(spec, &prefix, Widths { input, output }, store)?;
                        self.linears.entry((l, p)).or_default().push(sd);
                    }
                }
            }
            (Form::Bottleneck { .. } | Form::LowRank { .. }, site) => {
                for &l in &layers {
                    for (sublayer, label) in sublayers_at(&shape, l, site) {
                        let prefix = format!("delta{k}.layer{l}.{label}");
                        let widths = Widths { input: d, output: d };
                        let sd = SiteDelta::network(spec, &prefix, widths, store)?;
                        self.sublayers.entry((l, sublayer)).or_default().push(sd);
                    }
                }
            }
            (Form::Prefix { .. }, _) => {
                let banks = PrefixBanks::create(k, spec, &shape, &layers, store)?;
                if crate::prefix::is_concatenated(spec) {
                    self.kv_banks.push(banks);
                } else {
                    self.heads.push(HeadsDelta::create(spec, banks, store)?);
                }
            }
            (form, site) => unreachable!("validated: {} at {site}", form.kind()),
        }
        Ok(())
    }

    /// The method this delta implements.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// What an artifact stores of `store`: every parameter except prefix generators, plus the
    /// prefixes those generators produce now, under the names a flat prefix uses. Load it with
    /// [`Method::ejected`].
    pub fn stored_tensors(&self, store: &ParamStore) -> Result<BTreeMap<String, Tensor>> {
        let generators: Vec<&PrefixBank> = self
            .kv_banks
            .iter()
            .chain(self.heads.iter().map(HeadsDelta::banks))
            .flat_map(PrefixBanks::generators)
            .collect();
        let mut out = BTreeMap::new();
        for (name, t) in store.to_tensors()? {
            let in_sparse_file = self.diff.as_ref().is_some_and(|d| d.is_sparse_param(&name));
            if !in_sparse_file && !generators.iter().any(|b| name.starts_with(&b.generator_prefix())) {
                out.insert(name, t);
            }
        }
        for bank in generators {
            out.extend(bank.ejected()?);
        }
        Ok(out)
    }

    /// The expected-L0 penalty of a gated diff (added to the loss once per step).
    pub fn penalty(&self) -> Result<Option<Penalty>> {
        match &self.diff {
            Some(d) => d.penalty(),
            None => Ok(None),
        }
    }

    /// Whether parameter `name` is an L0 gate, trained by its own optimizer at a constant rate.
    pub fn is_gate_param(&self, name: &str) -> bool {
        self.diff.as_ref().is_some_and(|d| d.is_gate_param(name))
    }

    /// Whether parameter `name` holds sparse diff values (stored in the sparse file).
    pub fn is_sparse_param(&self, name: &str) -> bool {
        self.diff.as_ref().is_some_and(|d| d.is_sparse_param(name))
    }

    /// The diff this delta makes to each base tensor it covers — a diff's δ with the
    /// evaluation gate, or `θ − θ₀` for full fine-tuning and BitFit: what a projection ranks.
    /// `None` when the method changes no base parameter.
    pub fn dense_diffs(&self, model: &dyn BaseModel) -> Result<Option<BTreeMap<String, DenseDiff>>> {
        if let Some(d) = &self.diff {
            return d.dense_diffs().map(Some);
        }
        if self.params.is_empty() {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for (name, theta) in &self.params {
            let Some(base) = model.base_params().get(name) else {
                continue;
            };
            let delta = (theta.as_tensor() - base.to_dtype(theta.dtype())?)?;
            out.insert(
                name.clone(),
                DenseDiff {
                    shape: base.dims().to_vec(),
                    values: delta.flatten_all()?.to_vec1::<f32>()?,
                    tiebreak: None,
                },
            );
        }
        Ok(Some(out))
    }

    /// The sparse diff, for a method whose diff is a [`Form::SparseDiff`]; it is stored in
    /// its own file and left out of [`Delta::stored_tensors`].
    pub fn sparse_diff(&self) -> Result<Option<SparseDiff>> {
        match &self.diff {
            Some(d) => d.sparse_diff(),
            None => Ok(None),
        }
    }

    /// `P(z_g ≠ 0)` of each group gate, by base tensor (structured diff pruning).
    pub fn group_gate_probs(&self) -> Result<BTreeMap<String, f64>> {
        match &self.diff {
            Some(d) => d.group_gate_probs(),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Low-rank and IA³ deltas folded into their weights, keyed by base parameter name: the
    /// merged weight (and bias, for output scalings) to compute with.
    pub(crate) fn mergeable(&self, model: &dyn BaseModel) -> Result<BTreeMap<String, Tensor>> {
        let mut merged: BTreeMap<String, Tensor> = BTreeMap::new();
        let base = model.base_params();
        let current = |merged: &BTreeMap<String, Tensor>, name: &str| -> Option<Tensor> {
            merged
                .get(name)
                .cloned()
                .or_else(|| self.params.get(name).map(|v| v.as_tensor().clone()))
                .or_else(|| base.get(name).cloned())
        };
        for (&(l, p), scales) in &self.inputs {
            let Some(name) = model.weight_name(l, p) else {
                continue;
            };
            if let Some(mut w) = current(&merged, &name) {
                for s in scales {
                    w = w.broadcast_mul(&s.as_tensor().unsqueeze(0)?)?;
                }
                merged.insert(name, w);
            }
        }
        for (&(l, p), deltas) in &self.linears {
            if !self.linear_is_mergeable(l, p)? {
                continue;
            }
            let Some(name) = model.weight_name(l, p) else {
                continue;
            };
            let bias_name = format!("{}.bias", name.trim_end_matches(".weight"));
            for sd in deltas {
                let Some(w) = current(&merged, &name) else {
                    continue;
                };
                if let Some(dw) = sd.merged_weight()? {
                    merged.insert(name.clone(), (w + dw)?);
                } else if let Some(s) = sd.output_scale() {
                    let s = s.as_tensor();
                    merged.insert(name.clone(), w.broadcast_mul(&s.unsqueeze(1)?)?);
                    // Llama's projections have no bias to scale.
                    if let Some(b) = current(&merged, &bias_name) {
                        merged.insert(bias_name.clone(), (b * s)?);
                    }
                }
            }
        }
        Ok(merged)
    }

    /// Whether the delta at `(layer, proj)` is entirely folded by [`Self::mergeable`].
    pub(crate) fn linear_is_mergeable(&self, layer: usize, proj: Proj) -> Result<bool> {
        let Some(deltas) = self.linears.get(&(layer, proj)) else {
            return Ok(true);
        };
        for sd in deltas {
            if sd.merged_weight()?.is_none() && sd.output_scale().is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(crate) fn apply_linear(
        &self,
        layer: usize,
        proj: Proj,
        input: &Tensor,
        mut output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        if let Some(deltas) = self.linears.get(&(layer, proj)) {
            for sd in deltas {
                output = sd.apply(input, output, ctx)?;
            }
        }
        Ok(output)
    }
}

impl Hooks for Delta {
    fn param(&self, name: &str, base: &Tensor, ctx: &mut ForwardCtx) -> petl_models::Result<Option<Tensor>> {
        if let Some(v) = self.params.get(name) {
            return Ok(Some(v.as_tensor().clone()));
        }
        match &self.diff {
            Some(diff) => diff.param(name, base, ctx).map_err(into_model),
            None => Ok(None),
        }
    }

    fn embeddings(
        &self,
        words: Tensor,
        mask: Tensor,
        _ctx: &mut ForwardCtx,
    ) -> petl_models::Result<(Tensor, Tensor)> {
        let Some(prompt) = &self.prompt else {
            return Ok((words, mask));
        };
        let (batch, _, d) = words.dims3()?;
        let length = prompt.dim(0)?;
        let rows = prompt
            .as_tensor()
            .unsqueeze(0)?
            .broadcast_as((batch, length, d))?;
        let words = Tensor::cat(&[&rows.contiguous()?, &words], 1)?;
        let ones = Tensor::ones((batch, length), mask.dtype(), mask.device())?;
        Ok((words, Tensor::cat(&[&ones, &mask], 1)?))
    }

    fn position_offset(&self) -> usize {
        self.kv_banks
            .iter()
            .chain(self.heads.iter().map(HeadsDelta::banks))
            .map(PrefixBanks::position_shift)
            .sum()
    }

    fn linear_input(
        &self,
        layer: usize,
        proj: Proj,
        mut input: Tensor,
        _ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        if let Some(scales) = self.inputs.get(&(layer, proj)) {
            for s in scales {
                input = input.broadcast_mul(s.as_tensor())?;
            }
        }
        Ok(input)
    }

    fn linear(
        &self,
        layer: usize,
        proj: Proj,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        self.apply_linear(layer, proj, input, output, ctx)
            .map_err(into_model)
    }

    fn kv_prefix(
        &self,
        layer: usize,
        sublayer: Sublayer,
        batch: usize,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Option<KvPrefix>> {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for banks in &self.kv_banks {
            if let Some((k, v)) = banks.per_head(layer, sublayer, batch, ctx).map_err(into_model)? {
                keys.push(k);
                values.push(v);
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(KvPrefix {
            keys: Tensor::cat(&keys, 2)?,
            values: Tensor::cat(&values, 2)?,
        }))
    }

    fn changes_heads(&self, _layer: usize, _sublayer: Sublayer) -> bool {
        !self.heads.is_empty()
    }

    fn changes_linear(&self, layer: usize, proj: Proj) -> bool {
        // Replaced parameters (full fine-tuning, BitFit, diffs) are not indexed by projection:
        // any of them counts.
        !self.params.is_empty()
            || self.diff.is_some()
            || self.inputs.contains_key(&(layer, proj))
            || self.linears.contains_key(&(layer, proj))
    }

    fn heads(
        &self,
        layer: usize,
        site: HeadsSite<'_>,
        mut heads: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        for hd in &self.heads {
            heads = hd.apply(layer, site, heads, ctx).map_err(into_model)?;
        }
        Ok(heads)
    }

    fn output(
        &self,
        layer: usize,
        sublayer: Sublayer,
        input: &Tensor,
        mut output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> petl_models::Result<Tensor> {
        if let Some(deltas) = self.sublayers.get(&(layer, sublayer)) {
            for sd in deltas {
                output = sd.apply(input, output, ctx).map_err(into_model)?;
            }
        }
        Ok(output)
    }
}

/// The projections of block `layer` a weights-site delta naming `projs` acts on. A projection
/// the block lacks (a gate in a BERT block, cross-attention in an encoder block) is skipped
/// there (validation made sure some block has each one named); a self-attention role acts on
/// cross-attention too, as peft's `q_proj` target does on BART.
pub(crate) fn weights_at(shape: &ModelShape, layer: usize, projs: &[Proj]) -> Vec<Proj> {
    let mut out: Vec<Proj> = projs
        .iter()
        .copied()
        .filter(|&p| shape.has_proj(layer, p))
        .collect();
    for &p in projs {
        if let Some(c) = p.cross_counterpart() {
            if shape.has_proj(layer, c) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// The sub-layers of block `layer` an attention- or FFN-site delta acts on, with the name its
/// parameters take: every attention of the block (an encoder-decoder's decoder blocks have
/// self- and cross-attention, as in He et al.'s Table 9), or the FFN.
pub(crate) fn sublayers_at(shape: &ModelShape, layer: usize, site: &Site) -> Vec<(Sublayer, &'static str)> {
    match site {
        Site::Attention => shape
            .stack_of(layer)
            .map(|s| {
                s.attention
                    .iter()
                    .map(|kind| match kind {
                        AttentionKind::SelfAttention => (Sublayer::Attention, "attention"),
                        AttentionKind::CrossAttention => (Sublayer::CrossAttention, "cross_attention"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![(Sublayer::Ffn, "ffn")],
    }
}

/// The hook trait speaks the model's error type; a method error inside a forward pass is a
/// tensor error or a model error already.
pub(crate) fn into_model(e: crate::MethodError) -> petl_models::ModelError {
    match e {
        crate::MethodError::Model(m) => m,
        other => petl_models::ModelError::BadInput(other.to_string()),
    }
}
