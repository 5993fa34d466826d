//! A diff on the base parameters as hooks: `θ = θ₀ + δ` for every selected tensor, with δ
//! either dense and gated (`δ = z ⊙ z_g ⊙ w`, the L0 stage), dense and ungated (the
//! non-adaptive baseline's first stage), or sparse at fixed positions (after projection).

use super::config::{EvalGate, GroupGates, L0Gates};
use super::fused::{ExpectedNonzero, GatedDiff};
use super::gates::{logistic_noise, HardConcrete};
use super::project::DenseDiff;
use crate::error::{bad_input, Result};
use candle_core::{DType, Tensor, Var};
use petl_models::{BaseModel, ForwardCtx, Init, ParamStore};
use petl_ops::DropoutRng;
use petl_sparse::{SparseDiff, SparseTensor};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The stream the evaluation gate of [`EvalGate::Sample`] draws from: fixed, so every
/// evaluation, the saved artifact and the projection see the same z.
const EVAL_GATE_SEED: u64 = 0;

/// Diffs of one delta on the base parameters it selects.
#[derive(Debug, Clone)]
pub(crate) struct DiffDelta {
    gates: Option<(L0Gates, HardConcrete)>,
    entries: BTreeMap<String, Entry>,
    /// `delta{k}.`: the names of this delta's own parameters start with it.
    prefix: String,
}

#[derive(Debug, Clone)]
struct Entry {
    shape: Vec<usize>,
    /// λ bucket: 0 embeddings, 1 + block, blocks + 1 for the rest.
    bucket: usize,
    /// Position in name order: the eval gate's stream.
    index: u64,
    kind: EntryKind,
}

#[derive(Debug, Clone)]
enum EntryKind {
    Dense {
        w: Var,
        log_alpha: Option<Var>,
        group_log_alpha: Option<Var>,
    },
    Sparse {
        positions: Tensor,
        values: Var,
    },
}

/// The expected-L0 term of one step.
#[derive(Debug, Clone)]
pub struct Penalty {
    /// `Σ λ_bucket · E‖δ‖₀` (per the group form), differentiable in the log-alphas.
    pub loss: Tensor,
    /// Expected fraction of diff entries that are nonzero (`P(zᵢ ≠ 0)·P(z_g ≠ 0)` averaged).
    pub expected_density: f64,
}

/// The base tensors a parameter delta covers: those of the selected blocks, plus embeddings
/// and pooler when every block is selected.
pub(crate) fn selected_params<'a>(
    model: &'a dyn BaseModel,
    layers: &'a crate::spec::Layers,
) -> impl Iterator<Item = (&'a String, &'a Tensor)> + 'a {
    model
        .base_params()
        .iter()
        .filter(move |(name, _)| match model.layer_of(name) {
            Some(l) => layers.contains(l),
            None => *layers == crate::spec::Layers::All,
        })
}

fn bucket_of(model: &dyn BaseModel, name: &str) -> usize {
    match model.layer_of(name) {
        Some(l) => l + 1,
        None if name.starts_with("embeddings.") => 0,
        None => model.shape().num_blocks() + 1,
    }
}

impl DiffDelta {
    /// Dense trainable diffs, gated when `gates` is given, all starting at δ = 0.
    pub(crate) fn dense(
        k: usize,
        gates: Option<&L0Gates>,
        layers: &crate::spec::Layers,
        model: &dyn BaseModel,
        store: &mut ParamStore,
    ) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (index, (name, base)) in selected_params(model, layers).enumerate() {
            let shape = base.dims().to_vec();
            let w = store.create(&format!("delta{k}.diff.{name}"), &shape, Init::Zeros)?;
            let (log_alpha, group_log_alpha) = match gates {
                Some(g) => (
                    Some(store.create(
                        &format!("delta{k}.log_alpha.{name}"),
                        &shape,
                        Init::Constant(g.alpha_init),
                    )?),
                    match g.groups {
                        GroupGates::None => None,
                        _ => Some(store.create(
                            &format!("delta{k}.group_log_alpha.{name}"),
                            &[1],
                            Init::Constant(g.alpha_init),
                        )?),
                    },
                ),
                None => (None, None),
            };
            entries.insert(
                name.clone(),
                Entry {
                    shape,
                    bucket: bucket_of(model, name),
                    index: index as u64,
                    kind: EntryKind::Dense {
                        w,
                        log_alpha,
                        group_log_alpha,
                    },
                },
            );
        }
        Ok(Self {
            gates: gates.map(|g| (g.clone(), HardConcrete::new(g))),
            entries,
            prefix: format!("delta{k}."),
        })
    }

    /// A sparse diff at the positions of `diff`, its values trainable and starting at `diff`'s.
    pub(crate) fn sparse(
        k: usize,
        diff: &SparseDiff,
        model: &dyn BaseModel,
        store: &mut ParamStore,
    ) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (index, (name, t)) in diff.tensors.iter().enumerate() {
            let base = base_tensor_for(model, name, t)?;
            let n = t.positions.len();
            let positions = to_index_tensor(&t.positions, base.elem_count(), name, base.device())?;
            let values = store.create(
                &format!("delta{k}.sparse.{name}"),
                &[n],
                Init::Copy(Tensor::from_slice(&t.values, n, base.device())?),
            )?;
            entries.insert(
                name.clone(),
                Entry {
                    shape: t.shape.clone(),
                    bucket: bucket_of(model, name),
                    index: index as u64,
                    kind: EntryKind::Sparse { positions, values },
                },
            );
        }
        Ok(Self {
            gates: None,
            entries,
            prefix: format!("delta{k}."),
        })
    }

    /// `θ₀ + δ` for base tensor `name`, or `None` if this delta does not cover it.
    pub(crate) fn param(&self, name: &str, base: &Tensor, ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        if let EntryKind::Sparse { positions, values } = &entry.kind {
            let flat = base.flatten_all()?;
            let theta = flat.index_add(positions, &values.as_tensor().to_dtype(base.dtype())?, 0)?;
            return Ok(Some(theta.reshape(base.shape())?));
        }
        let delta = self.delta(entry, ctx)?;
        Ok(Some((base + delta.to_dtype(base.dtype())?)?))
    }

    /// δ of a dense entry: `w` itself, or `z ⊙ z_g ⊙ w` with gates drawn for this pass — fresh
    /// in training passes, the evaluation gate otherwise — differentiable in `w` and the
    /// log-alphas.
    fn delta(&self, entry: &Entry, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let EntryKind::Dense {
            w,
            log_alpha,
            group_log_alpha,
        } = &entry.kind
        else {
            return Err(bad_input("a sparse diff has no dense form"));
        };
        let (Some((cfg, family)), Some(alpha)) = (&self.gates, log_alpha) else {
            return Ok(w.as_tensor().clone());
        };
        let n = alpha.elem_count();
        let mut eval_rng;
        let rng = match ctx.rng() {
            Some(rng) => Some(rng),
            None if cfg.eval_gate == EvalGate::Sample => {
                eval_rng = DropoutRng::for_step(EVAL_GATE_SEED, entry.index);
                Some(&mut eval_rng)
            }
            None => None,
        };
        let (noise, group_noise) = match rng {
            Some(r) => {
                let noise: Vec<f32> = r.uniform(n).par_iter().map(|&u| logistic_noise(u)).collect();
                let g = group_log_alpha
                    .as_ref()
                    .map_or(0.0, |_| logistic_noise(r.uniform(1)[0]));
                (Some(Arc::new(noise)), g)
            }
            None => (None, 0.0),
        };
        let op = GatedDiff::new(*family, noise, group_noise);
        let (w, alpha) = (w.as_tensor(), alpha.as_tensor());
        if !w.device().is_cpu() {
            return Ok(op.composed(w, alpha, group_log_alpha.as_ref().map(Var::as_tensor))?);
        }
        Ok(match group_log_alpha {
            Some(g) => w.apply_op3(alpha, g.as_tensor(), op)?,
            None => w.apply_op2(alpha, op)?,
        })
    }

    /// The expected-L0 penalty, when the diff is gated.
    pub(crate) fn penalty(&self) -> Result<Option<Penalty>> {
        let Some((cfg, hc)) = &self.gates else {
            return Ok(None);
        };
        let shift = hc.log_ratio();
        let mut loss: Option<Tensor> = None;
        let (mut expected, mut total) = (0f64, 0usize);
        for entry in self.entries.values() {
            let EntryKind::Dense {
                log_alpha: Some(alpha),
                group_log_alpha,
                ..
            } = &entry.kind
            else {
                continue;
            };
            let lambda = cfg.lambda_of(entry.bucket);
            let p = expected_nonzero(alpha.as_tensor(), shift)?;
            let p_value = p.to_scalar::<f32>()? as f64;
            let (term, nonzero) = match group_log_alpha {
                Some(g) => {
                    let pg = expected_nonzero(g.as_tensor(), shift)?;
                    let pg_value = pg.to_scalar::<f32>()? as f64;
                    let term = match cfg.groups {
                        GroupGates::Additive => (p + pg)?,
                        _ => (p * pg)?,
                    };
                    (term, p_value * pg_value)
                }
                None => (p, p_value),
            };
            expected += nonzero;
            total += alpha.elem_count();
            let term = (term * lambda)?;
            loss = Some(match loss {
                Some(l) => (l + term)?,
                None => term,
            });
        }
        Ok(loss.map(|loss| Penalty {
            loss,
            expected_density: expected / total.max(1) as f64,
        }))
    }

    /// Whether `name` is a gate parameter (trained by its own optimizer, constant rate).
    pub(crate) fn is_gate_param(&self, name: &str) -> bool {
        self.own(name)
            .is_some_and(|rest| rest.starts_with("log_alpha.") || rest.starts_with("group_log_alpha."))
    }

    /// Whether `name` is a sparse value vector (stored in the sparse file, not safetensors).
    pub(crate) fn is_sparse_param(&self, name: &str) -> bool {
        self.own(name).is_some_and(|rest| rest.starts_with("sparse."))
    }

    /// `name` without this delta's `delta{k}.` prefix, if it is one of its parameters.
    fn own<'n>(&self, name: &'n str) -> Option<&'n str> {
        name.strip_prefix(self.prefix.as_str())
    }

    /// The diff each covered tensor gets now, dense, with the evaluation gate.
    pub(crate) fn dense_diffs(&self) -> Result<BTreeMap<String, DenseDiff>> {
        let mut ctx = ForwardCtx::eval();
        let mut out = BTreeMap::new();
        for (name, entry) in &self.entries {
            let n: usize = entry.shape.iter().product();
            // A gated diff ranks entries its gates closed by the ungated |w|.
            let tiebreak = match &entry.kind {
                EntryKind::Dense {
                    w,
                    log_alpha: Some(_),
                    ..
                } => Some(w.as_tensor().flatten_all()?.to_vec1::<f32>()?),
                _ => None,
            };
            let values = match &entry.kind {
                EntryKind::Dense { .. } => self.delta(entry, &mut ctx)?.flatten_all()?.to_vec1::<f32>()?,
                EntryKind::Sparse { positions, values } => {
                    let zeros = Tensor::zeros(n, DType::F32, values.device())?;
                    zeros
                        .index_add(positions, values.as_tensor(), 0)?
                        .to_vec1::<f32>()?
                }
            };
            out.insert(
                name.clone(),
                DenseDiff {
                    shape: entry.shape.clone(),
                    values,
                    tiebreak,
                },
            );
        }
        Ok(out)
    }

    /// The sparse diff as it stands, when this delta is one.
    pub(crate) fn sparse_diff(&self) -> Result<Option<SparseDiff>> {
        let mut tensors = BTreeMap::new();
        for (name, entry) in &self.entries {
            let EntryKind::Sparse { positions, values } = &entry.kind else {
                return Ok(None);
            };
            let positions: Vec<u64> = positions.to_vec1::<u32>()?.into_iter().map(u64::from).collect();
            let values = values.as_tensor().to_vec1::<f32>()?;
            let t = SparseTensor::new(entry.shape.clone(), positions, values)
                .map_err(|e| bad_input(e.to_string()))?;
            tensors.insert(name.clone(), t);
        }
        Ok(Some(SparseDiff { tensors }))
    }

    /// Group gates' `P(z_g ≠ 0)` by tensor, when the diff has group gates.
    pub(crate) fn group_gate_probs(&self) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        if let Some((_, hc)) = &self.gates {
            for (name, entry) in &self.entries {
                if let EntryKind::Dense {
                    group_log_alpha: Some(g),
                    ..
                } = &entry.kind
                {
                    let a = g.as_tensor().to_vec1::<f32>()?[0] as f64;
                    out.insert(name.clone(), hc.prob_nonzero(a));
                }
            }
        }
        Ok(out)
    }
}

/// `Σ P(zᵢ ≠ 0)` over the gates with log-alphas `alpha`: the fused kernel on the CPU, composed
/// tensor ops elsewhere.
fn expected_nonzero(alpha: &Tensor, shift: f64) -> Result<Tensor> {
    let op = ExpectedNonzero::new(shift as f32);
    Ok(if alpha.device().is_cpu() {
        alpha.apply_op1(op)?
    } else {
        op.composed(alpha)?
    })
}

/// The base tensor a sparse diff's tensor `name` changes, checked to exist with its shape.
pub(crate) fn base_tensor_for<'m>(
    model: &'m dyn BaseModel,
    name: &str,
    t: &SparseTensor,
) -> Result<&'m Tensor> {
    let base = model.base_params().get(name).ok_or_else(|| {
        bad_input(format!(
            "the diff changes {name}, which this base model does not have"
        ))
    })?;
    if base.dims() != t.shape.as_slice() {
        return Err(bad_input(format!(
            "the diff of {name} has shape {:?}; the base tensor is {:?}",
            t.shape,
            base.dims()
        )));
    }
    Ok(base)
}

/// Positions as the `u32` index tensor `index_add` takes, checked against the tensor size.
pub(crate) fn to_index_tensor(
    positions: &[u64],
    numel: usize,
    name: &str,
    device: &candle_core::Device,
) -> Result<Tensor> {
    if numel > u32::MAX as usize {
        return Err(bad_input(format!(
            "{name} has {numel} elements, more than a u32 position can address"
        )));
    }
    if let Some(&p) = positions.iter().find(|&&p| p as usize >= numel) {
        return Err(bad_input(format!(
            "the sparse diff of {name} has position {p} past its {numel} elements"
        )));
    }
    let idx: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
    Ok(Tensor::from_vec(idx, positions.len(), device)?)
}
