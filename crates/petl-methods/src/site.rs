//! Deltas that act on a vector representation: a sub-layer's output or a projection's output.
//! One type serves bottleneck adapters, LoRA and IA³, because the paper's point is that they
//! differ only along the design dimensions this type is parameterised by.

use crate::error::Result;
use crate::spec::{
    AdapterActivation, AdapterNorm, Composition, DeltaSpec, Form, InitScheme, Insertion, Scale,
};
use candle_core::{Tensor, Var};
use petl_models::{ForwardCtx, Init, ParamStore};
use petl_ops::{Activation, Dropout};

/// LayerNorm epsilon of adapter-owned norms (PyTorch's default).
const ADAPTER_NORM_EPS: f64 = 1e-5;

/// One delta at one site instance (a block's FFN, or one block's W_q, …).
#[derive(Debug, Clone)]
pub(crate) struct SiteDelta {
    insertion: Insertion,
    body: Body,
    combine: Combine,
}

#[derive(Debug, Clone)]
enum Body {
    /// down → f → up, with optional biases and norms.
    Net(Net),
    /// `h ⊙ l`.
    Scale(Var),
}

#[derive(Debug, Clone)]
struct Net {
    norm_in: Option<(Var, Var)>,
    down: Var,
    down_bias: Option<Var>,
    activation: Option<Activation>,
    up: Var,
    up_bias: Option<Var>,
    norm_out: Option<(Var, Var)>,
    dropout: Dropout,
    /// LoRA drops the input; adapters drop the bottleneck activation.
    dropout_on_input: bool,
}

#[derive(Debug, Clone)]
enum Combine {
    Add,
    Fixed(f64),
    Learned(Var),
    /// `σ(x·w + b)` per token.
    Gate(Var, Var),
}

/// Widths of one site instance: what the delta reads (`src`) and what it writes (`out`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Widths {
    /// Width of the site's input.
    pub input: usize,
    /// Width of the site's output.
    pub output: usize,
}

impl SiteDelta {
    /// Creates the parameters of `spec` (a bottleneck or low-rank form) at one site instance,
    /// named `{prefix}.down.weight` etc.
    pub(crate) fn network(
        spec: &DeltaSpec,
        prefix: &str,
        widths: Widths,
        store: &mut ParamStore,
    ) -> Result<Self> {
        let src = match spec.insertion {
            Insertion::Parallel => widths.input,
            Insertion::Sequential => widths.output,
        };
        let out = widths.output;
        let (r, biases, activation, norm) = match &spec.form {
            Form::Bottleneck {
                r,
                activation,
                layer_norm,
            } => (*r, true, activation_of(*activation), *layer_norm),
            Form::LowRank { r } => (*r, false, None, AdapterNorm::None),
            other => unreachable!("validated: {} is not a network form", other.kind()),
        };
        let (down_init, up_init) = match spec.init {
            InitScheme::Bert => (Init::Normal { std: 0.02 }, Init::Normal { std: 0.02 }),
            // PyTorch's kaiming_uniform_(a=√5) on a [r, src] weight: bound 1/√src.
            InitScheme::Lora => (
                Init::Uniform {
                    bound: 1.0 / (src as f64).sqrt(),
                },
                Init::Zeros,
            ),
            InitScheme::Houlsby => {
                let t = Init::TruncatedNormal {
                    std: 0.01,
                    limit: 0.02,
                };
                (t.clone(), t)
            }
        };
        let name = |t: &str| format!("{prefix}.{t}");
        let norm_pair = |store: &mut ParamStore, width: usize| -> Result<(Var, Var)> {
            Ok((
                store.create(&name("norm.weight"), &[width], Init::Ones)?,
                store.create(&name("norm.bias"), &[width], Init::Zeros)?,
            ))
        };
        let norm_in = match norm {
            AdapterNorm::In => Some(norm_pair(store, src)?),
            _ => None,
        };
        let down = store.create(&name("down.weight"), &[r, src], down_init)?;
        let down_bias = biases
            .then(|| store.create(&name("down.bias"), &[r], Init::Zeros))
            .transpose()?;
        let up = store.create(&name("up.weight"), &[out, r], up_init)?;
        let up_bias = biases
            .then(|| store.create(&name("up.bias"), &[out], Init::Zeros))
            .transpose()?;
        let norm_out = match norm {
            AdapterNorm::Out => Some(norm_pair(store, out)?),
            _ => None,
        };
        let net = Net {
            norm_in,
            down,
            down_bias,
            activation,
            up,
            up_bias,
            norm_out,
            dropout: Dropout::new(spec.dropout as f32),
            dropout_on_input: matches!(spec.form, Form::LowRank { .. }),
        };
        Ok(Self {
            insertion: spec.insertion,
            body: Body::Net(net),
            combine: Combine::create(spec.composition, prefix, src, store)?,
        })
    }

    /// IA³'s output scaling `h ⊙ l`, l starting at 1.
    pub(crate) fn scaling(var: Var) -> Self {
        Self {
            insertion: Insertion::Parallel,
            body: Body::Scale(var),
            combine: Combine::Add,
        }
    }

    /// The site's new output given its input `x` and current output `h`.
    pub(crate) fn apply(&self, x: &Tensor, h: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let net = match &self.body {
            Body::Scale(l) => return Ok(h.broadcast_mul(l.as_tensor())?),
            Body::Net(net) => net,
        };
        let src = match self.insertion {
            Insertion::Parallel => x,
            Insertion::Sequential => &h,
        };
        // A low-rank net folds a fixed scale (and its input dropout) into one op.
        let folded_scale = match &self.combine {
            Combine::Add => Some(1.0),
            Combine::Fixed(s) => Some(*s),
            _ => None,
        };
        if let (true, Some(scale)) = (net.is_low_rank(), folded_scale) {
            let delta = net.low_rank(src, scale, ctx)?;
            return Ok((h + delta)?);
        }
        let delta = net.forward(src, ctx)?;
        let delta = match &self.combine {
            Combine::Add => delta,
            Combine::Fixed(s) => (delta * *s)?,
            Combine::Learned(s) => delta.broadcast_mul(s.as_tensor())?,
            Combine::Gate(w, b) => {
                let g = petl_ops::sigmoid(&petl_ops::linear(src, w.as_tensor(), Some(b.as_tensor()))?)?;
                delta.broadcast_mul(&g)?
            }
        };
        Ok((h + delta)?)
    }

    /// For a low-rank delta that can be folded into its weight: `s·W_up·W_down` `[out, in]`.
    pub(crate) fn merged_weight(&self) -> Result<Option<Tensor>> {
        let Body::Net(net) = &self.body else {
            return Ok(None);
        };
        let linear_only = net.activation.is_none()
            && net.down_bias.is_none()
            && net.up_bias.is_none()
            && net.norm_in.is_none()
            && net.norm_out.is_none()
            && self.insertion == Insertion::Parallel;
        let scale = match &self.combine {
            Combine::Add => 1.0,
            Combine::Fixed(s) => *s,
            Combine::Learned(s) => s.as_tensor().flatten_all()?.to_vec1::<f32>()?[0] as f64,
            Combine::Gate(..) => return Ok(None),
        };
        if !linear_only {
            return Ok(None);
        }
        Ok(Some((net.up.as_tensor().matmul(net.down.as_tensor())? * scale)?))
    }

    /// The scaling vector of an IA³ output scaling.
    pub(crate) fn output_scale(&self) -> Option<&Var> {
        match &self.body {
            Body::Scale(l) => Some(l),
            Body::Net(_) => None,
        }
    }
}

impl Net {
    /// A bare low-rank product (LoRA): no norms, biases or activation.
    fn is_low_rank(&self) -> bool {
        self.dropout_on_input
            && self.norm_in.is_none()
            && self.down_bias.is_none()
            && self.activation.is_none()
            && self.up_bias.is_none()
            && self.norm_out.is_none()
    }

    /// A low-rank net's `scale · dropout(src)·Aᵀ·Bᵀ`, dropout and scale inside the one op.
    fn low_rank(&self, src: &Tensor, scale: f64, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let mask = ctx.dropout_mask(&self.dropout, src.elem_count());
        Ok(petl_ops::low_rank(
            src,
            self.down.as_tensor(),
            self.up.as_tensor(),
            scale,
            mask.as_ref(),
        )?)
    }

    fn forward(&self, src: &Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        if self.is_low_rank() {
            return self.low_rank(src, 1.0, ctx);
        }
        let mut z = src.clone();
        if let Some((g, b)) = &self.norm_in {
            z = petl_ops::layer_norm(&z, g.as_tensor(), b.as_tensor(), ADAPTER_NORM_EPS)?;
        }
        if self.dropout_on_input {
            z = ctx.dropout(&self.dropout, &z)?;
        }
        z = petl_ops::linear(
            &z,
            self.down.as_tensor(),
            self.down_bias.as_ref().map(Var::as_tensor),
        )?;
        if let Some(act) = self.activation {
            z = act.forward(&z)?;
        }
        if !self.dropout_on_input {
            z = ctx.dropout(&self.dropout, &z)?;
        }
        z = petl_ops::linear(&z, self.up.as_tensor(), self.up_bias.as_ref().map(Var::as_tensor))?;
        if let Some((g, b)) = &self.norm_out {
            z = petl_ops::layer_norm(&z, g.as_tensor(), b.as_tensor(), ADAPTER_NORM_EPS)?;
        }
        Ok(z)
    }
}

impl Combine {
    fn create(composition: Composition, prefix: &str, src: usize, store: &mut ParamStore) -> Result<Self> {
        Ok(match composition {
            Composition::Add => Self::Add,
            Composition::Scaled(Scale::Fixed(s)) => Self::Fixed(s),
            Composition::Scaled(Scale::Learned) => {
                Self::Learned(store.create(&format!("{prefix}.scale"), &[1], Init::Ones)?)
            }
            Composition::Gated => Self::Gate(
                store.create(
                    &format!("{prefix}.gate.weight"),
                    &[1, src],
                    Init::Normal { std: 0.02 },
                )?,
                store.create(&format!("{prefix}.gate.bias"), &[1], Init::Zeros)?,
            ),
        })
    }
}

fn activation_of(a: AdapterActivation) -> Option<Activation> {
    match a {
        AdapterActivation::Relu => Some(Activation::Relu),
        AdapterActivation::Swish => Some(Activation::Silu),
        AdapterActivation::Gelu => Some(Activation::Gelu),
        AdapterActivation::Tanh => Some(Activation::Tanh),
        AdapterActivation::Identity => None,
    }
}
