//! One optimizer step, whatever the task: the forward and backward passes a task supplies,
//! then the diff-pruning penalty, clipping, loss scaling and the AdamW updates. Classification
//! training, generation training and `petl bench` all run exactly this.

use crate::loss_scale::{LossScaler, ScaledStep};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::{Result, TrainError};
use candle_core::Tensor;
use petl_methods::Delta;
use petl_models::{ForwardCtx, ParamStore, Precision};
use petl_ops::DropoutRng;
use std::collections::BTreeMap;

/// The trainable state an optimizer step updates: the task's parameters and the delta that
/// says which of them are L0 gates and what penalty they carry.
#[derive(Clone, Copy)]
pub(crate) struct Trained<'a> {
    pub(crate) params: &'a ParamStore,
    pub(crate) delta: &'a Delta,
}

/// What a step's forward and backward passes produced: the loss (unscaled, already the mean
/// over the step), how many units (examples or target tokens) it covered, and the gradients
/// (of the loss times the loss scale).
pub(crate) struct Accumulated {
    pub(crate) loss: f64,
    pub(crate) units: usize,
    pub(crate) grads: BTreeMap<String, Tensor>,
}

/// The optimizers of a run. L0 gates learn with their own AdamW at a constant rate, without
/// decay, as in Guo et al.'s code; everything else follows the run's schedule.
pub(crate) struct Optimizers {
    /// Every trainable parameter except the gates.
    pub(crate) main: AdamW,
    /// The L0 gates' log-alphas (empty for methods without gates).
    pub(crate) gates: AdamW,
    /// The gates' constant learning rate, when the method has gates.
    gate_lr: Option<f64>,
    /// Dynamic loss scaling, for f16 mixed precision.
    scaler: Option<LossScaler>,
}

impl Optimizers {
    pub(crate) fn new(trained: Trained<'_>, adam: AdamWConfig, precision: Precision) -> Result<Self> {
        let (gate_params, main_params): (Vec<_>, Vec<_>) = trained
            .params
            .iter()
            .partition(|(name, _)| trained.delta.is_gate_param(name));
        Ok(Self {
            main: AdamW::new(main_params, adam)?,
            gates: AdamW::new(
                gate_params,
                AdamWConfig {
                    weight_decay: 0.0,
                    ..adam
                },
            )?,
            gate_lr: gate_learning_rate(trained.delta.method()),
            scaler: precision.needs_loss_scaling().then(LossScaler::new),
        })
    }
}

/// What one optimizer step needs besides the model, the data and the optimizers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepSettings {
    /// The run seed: with `step`, it fixes the dropout masks and gate noise of the step.
    pub(crate) seed: u64,
    /// Optimizer steps taken before this one.
    pub(crate) step: u64,
    /// Learning rate of the main optimizer.
    pub(crate) lr: f64,
    /// Gradient-norm clip (0 disables).
    pub(crate) max_grad_norm: f64,
    /// Activation checkpointing per block.
    pub(crate) checkpoint: bool,
}

/// What one optimizer step reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepOutcome {
    /// Task loss, averaged over the step's units.
    pub(crate) loss: f64,
    /// Examples (classification) or target tokens (generation) in the step.
    pub(crate) units: usize,
    /// The expected-L0 penalty and expected density, for gated diffs.
    pub(crate) penalty: Option<(f64, f64)>,
    /// Gradient norm of the main parameters before clipping.
    pub(crate) grad_norm: f64,
}

impl Optimizers {
    /// Both optimizers' moments, as a checkpoint stores them.
    pub(crate) fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let (mut state, _) = self.main.state()?;
        state.extend(self.gates.state()?.0);
        Ok(state)
    }

    /// Restores both optimizers from a checkpoint's `state` taken after `step` steps.
    pub(crate) fn restore(&mut self, state: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        self.main.restore(state, step)?;
        self.gates.restore(state, step)
    }
}

/// One optimizer step: `passes(loss_scale, ctx)` runs the forward and backward passes of the
/// step's micro-batches in training mode; then the L0 penalty where the method has one,
/// unscaling, clipping and the AdamW updates.
pub(crate) fn optimizer_step(
    trained: Trained<'_>,
    settings: StepSettings,
    optims: &mut Optimizers,
    passes: impl FnOnce(f64, &mut ForwardCtx) -> Result<Accumulated>,
) -> Result<StepOutcome> {
    let mut ctx = ForwardCtx::train(DropoutRng::for_step(settings.seed, settings.step));
    let scale = optims.scaler.as_ref().map_or(1.0, LossScaler::scale);
    let Accumulated {
        loss,
        units,
        mut grads,
    } = passes(scale, &mut ctx)?;
    if scale != 1.0 {
        for g in grads.values_mut() {
            *g = (&*g * (1.0 / scale))?;
        }
    }
    let penalty = add_penalty(trained, &mut grads)?;
    let total_loss = loss + penalty.as_ref().map_or(0.0, |p| p.0);
    if !total_loss.is_finite() {
        return Err(TrainError::NonFiniteLoss {
            step: settings.step + 1,
            loss: total_loss as f32,
        });
    }
    let (mut gate_grads, mut grads): (BTreeMap<_, _>, BTreeMap<_, _>) = grads
        .into_iter()
        .partition(|(name, _)| trained.delta.is_gate_param(name));
    let grad_norm = clip_grad_norm(&mut grads, settings.max_grad_norm)?;
    let outcome = StepOutcome {
        loss,
        units,
        penalty,
        grad_norm,
    };
    if let Some(scaler) = optims.scaler.as_mut() {
        if scaler.update(grad_norm) == ScaledStep::Skip {
            // f16 gradients overflowed: no update this step, at half the loss scale next.
            tracing::debug!(
                "step {}: f16 gradients overflowed, skipped; loss scale now {}",
                settings.step + 1,
                scaler.scale()
            );
            return Ok(outcome);
        }
    }
    optims.main.step(&grads, settings.lr)?;
    if let Some(gate_lr) = optims.gate_lr {
        clip_grad_norm(&mut gate_grads, settings.max_grad_norm)?;
        optims.gates.step(&gate_grads, gate_lr)?;
    }
    Ok(outcome)
}

/// The constant learning rate of L0 gates, when the method has them.
fn gate_learning_rate(method: &petl_methods::Method) -> Option<f64> {
    method.deltas.iter().find_map(|d| match &d.form {
        petl_methods::Form::Diff { l0: Some(g), .. } => Some(g.alpha_lr),
        _ => None,
    })
}

/// Adds the expected-L0 penalty's gradient to `grads`, once per optimizer step however many
/// micro-batches it has; returns the penalty and the expected density.
fn add_penalty(trained: Trained<'_>, grads: &mut BTreeMap<String, Tensor>) -> Result<Option<(f64, f64)>> {
    let Some(p) = trained.delta.penalty()? else {
        return Ok(None);
    };
    let value = p.loss.to_scalar::<f32>()? as f64;
    add_gradients(trained.params, &p.loss.backward()?, grads)?;
    Ok(Some((value, p.expected_density)))
}

/// Backward of `loss · loss_scale`, its gradients added into `grads`.
pub(crate) fn add_scaled_backward(
    params: &ParamStore,
    loss: Tensor,
    loss_scale: f64,
    grads: &mut BTreeMap<String, Tensor>,
) -> Result<()> {
    let scaled = if loss_scale == 1.0 {
        loss
    } else {
        (loss * loss_scale)?
    };
    add_gradients(params, &scaled.backward()?, grads)
}

/// Adds the gradients `store` holds for the parameters in `params` into `grads`.
pub(crate) fn add_gradients(
    params: &ParamStore,
    store: &candle_core::backprop::GradStore,
    grads: &mut BTreeMap<String, Tensor>,
) -> Result<()> {
    for (name, var) in params.iter() {
        if let Some(g) = store.get(var) {
            add_gradient(grads, name, g.clone())?;
        }
    }
    Ok(())
}

/// Adds `g` into the gradient of `name` in `grads`.
pub(crate) fn add_gradient(grads: &mut BTreeMap<String, Tensor>, name: &str, g: Tensor) -> Result<()> {
    let g = match grads.remove(name) {
        Some(acc) => (acc + g)?,
        None => g,
    };
    grads.insert(name.to_string(), g);
    Ok(())
}
