//! The decoder measurement: a Llama-family decoder trained as a causal language model, with
//! the loss and the accumulation of the generation trainer.

use super::{BenchSpec, Workload};
use crate::generation::{CausalLm, EncodedSet, TokenPasses};
use crate::step::{optimizer_step, Optimizers, StepOutcome, StepSettings, Trained};
use crate::{Result, TrainConfig, TrainError};
use petl_data::CausalEncoded;
use petl_methods::{Delta, Form, Method};
use petl_models::{BaseModel, DecoderInput, DecoderModel, ForwardCtx, ParamStore};

/// Any id: the batch has no padding.
const PAD: u32 = 0;

/// The token ids of a decoder measurement: `batch` rows of `seq` ids below `vocab`, the
/// SplitMix64 stream from `seed` taken modulo `vocab`, row after row. The PyTorch twin draws
/// the same ids with the same arithmetic, so both sides score the very same batch.
pub fn random_token_ids(batch: usize, seq: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let vocab = vocab.max(1) as u64;
    (0..batch)
        .map(|_| (0..seq).map(|_| (next() % vocab) as u32).collect())
        .collect()
}

/// A method's delta on a decoder with its one batch.
pub(super) struct DecoderWork<'m> {
    model: &'m DecoderModel,
    store: ParamStore,
    delta: Delta,
    /// The batch as the generation trainer holds its data.
    data: EncodedSet,
    /// The whole batch as one micro-batch.
    micro: Vec<Vec<usize>>,
    /// The batch as model input, for inference.
    input: DecoderInput,
    label_smoothing: f64,
}

impl<'m> DecoderWork<'m> {
    /// `method` on `model` and the batch `spec` asks for.
    ///
    /// # Errors
    /// Rows shorter than two tokens (nothing to predict), and a method that trains nothing on
    /// this model (BitFit on a Llama: it has no bias terms).
    pub(super) fn new(model: &'m DecoderModel, method: &Method, spec: &BenchSpec) -> Result<Self> {
        if spec.seq < 2 {
            return Err(TrainError::Config {
                field: "seq",
                reason: "must be at least 2 on a decoder: the first token is never predicted".into(),
            });
        }
        let mut store = ParamStore::new(model.device(), spec.seed);
        let delta = Delta::build(method, model, &mut store)?;
        if store.num_elements() == 0 {
            return Err(nothing_to_train(method, model));
        }
        let rows = random_token_ids(spec.batch, spec.seq, model.config().vocab_size, spec.seed);
        let mask = vec![1u32; spec.batch * spec.seq];
        let input = DecoderInput::from_host(&rows.concat(), &mask, spec.batch, spec.seq, model.device())?;
        let data = EncodedSet::Causal(
            rows.iter()
                .map(|ids| CausalEncoded::from_parts(&[], ids))
                .collect(),
        );
        Ok(Self {
            model,
            store,
            delta,
            data,
            micro: vec![(0..spec.batch).collect()],
            input,
            label_smoothing: TrainConfig::default().label_smoothing,
        })
    }
}

/// Why `method` has nothing to train on `model`.
fn nothing_to_train(method: &Method, model: &DecoderModel) -> TrainError {
    let model_type = model.config().family.model_type();
    let wants_biases = method.deltas.iter().any(|d| matches!(d.form, Form::Bias {}));
    let has_biases = model.base_params().keys().any(|n| n.ends_with(".bias"));
    let reason = if wants_biases && !has_biases {
        format!(
            "`{}` trains bias terms, and this {model_type} model has none (Llama-family decoders have \
             no biases): there is nothing to train or measure",
            method.name
        )
    } else {
        format!(
            "`{}` trains no parameter of this {model_type} model: there is nothing to measure",
            method.name
        )
    };
    TrainError::Config {
        field: "method",
        reason,
    }
}

impl Workload for DecoderWork<'_> {
    fn trained(&self) -> Trained<'_> {
        Trained {
            params: &self.store,
            delta: &self.delta,
        }
    }

    fn train_step(&self, settings: StepSettings, optims: &mut Optimizers) -> Result<StepOutcome> {
        let lm = CausalLm {
            model: self.model,
            delta: &self.delta,
            params: &self.store,
        };
        let passes = TokenPasses {
            pad: PAD,
            label_smoothing: self.label_smoothing,
            checkpoint: settings.checkpoint,
        };
        optimizer_step(self.trained(), settings, optims, |scale, ctx| {
            passes.run(&lm, &self.data, &self.micro, scale, ctx)
        })
    }

    fn infer(&self) -> Result<()> {
        let ctx = &mut ForwardCtx::eval();
        let out = self.model.forward(&self.input, &self.delta, ctx)?;
        self.model.lm_logits(&out.hidden, &self.delta, ctx)?;
        // A GPU queues kernels; the forward is finished only when the device says so.
        self.model.device().synchronize()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{measure, BenchResult};
    use candle_core::Device;
    use petl_models::{ModelDir, NoHooks, Precision};
    use std::path::PathBuf;

    fn tiny_llama() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-llama")
    }

    fn spec(method: &str) -> BenchSpec {
        BenchSpec {
            model_dir: tiny_llama(),
            method: method.into(),
            batch: 2,
            seq: 9,
            warmup: 0,
            steps: 2,
            seed: 7,
            checkpoint: false,
            device: "cpu".into(),
            precision: Precision::F32,
        }
    }

    /// The frozen model's mean next-token loss on the measurement's batch, from the full
    /// logits and a log-softmax written out here.
    fn frozen_loss(model: &DecoderModel, s: &BenchSpec) -> Result<f64> {
        let rows = random_token_ids(s.batch, s.seq, model.config().vocab_size, s.seed);
        let mask = vec![1u32; s.batch * s.seq];
        let input = DecoderInput::from_host(&rows.concat(), &mask, s.batch, s.seq, &Device::Cpu)?;
        let ctx = &mut ForwardCtx::eval();
        let hidden = model.forward(&input, &NoHooks, ctx)?.hidden;
        let logits: Vec<Vec<Vec<f32>>> = model.lm_logits(&hidden, &NoHooks, ctx)?.to_vec3()?;
        let mut total = 0f64;
        for (row, ids) in rows.iter().enumerate() {
            for t in 1..s.seq {
                let z = &logits[row][t - 1];
                let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                total += lse - z[ids[t] as usize] as f64;
            }
        }
        Ok(total / (s.batch * (s.seq - 1)) as f64)
    }

    #[test]
    fn token_ids_are_seeded_and_in_range() {
        let a = random_token_ids(3, 5, 100, 1);
        assert_eq!(a, random_token_ids(3, 5, 100, 1));
        assert_ne!(a, random_token_ids(3, 5, 100, 2));
        assert_eq!((a.len(), a[0].len()), (3, 5));
        assert!(a.iter().flatten().all(|&i| i < 100));
        // SplitMix64's published first output from state 0 is 0xE220A8397B1DCDAF.
        assert_eq!(random_token_ids(1, 1, 1 << 32, 0)[0][0], 0x7B1D_CDAF);
        // The ids the PyTorch twin draws with the same arithmetic (scripts/bench_torch.py,
        // `splitmix64_ids(1, 3, 49152, 42)`).
        assert_eq!(random_token_ids(1, 3, 49152, 42)[0], [28_309, 12_547, 24_402]);
    }

    /// Every decoder method the twin knows runs on a tiny Llama: finite losses, the method's
    /// exact trainable count, and — where the delta starts at zero (LoRA's B, a dense diff) —
    /// a first loss equal to the frozen model's on the same positions.
    #[test]
    fn decoder_measurements_run_on_a_tiny_llama() -> Result<()> {
        let model = DecoderModel::load(&ModelDir::open(tiny_llama())?, &Device::Cpu)?;
        let frozen = frozen_loss(&model, &spec("lora"))?;
        assert!(frozen.is_finite() && frozen > 0.0);
        for method in ["lora", "full", "pa-ffn", "mam", "prefix", "diff-pruning"] {
            let r: BenchResult = measure(&spec(method))?;
            let counted = petl_methods::preset(method)?;
            let counted = crate::diff_pipeline::without_projection(&counted);
            assert_eq!(
                r.trainable_params,
                counted.count(&model.shape()).trainable,
                "{method}"
            );
            assert!(
                r.loss_first.is_finite() && r.loss_last.is_finite(),
                "{method}: {r:?}"
            );
            assert_eq!(r.step_ms.len(), 2);
            assert!(r.step_ms_median > 0.0 && r.infer_ms_median > 0.0);
            assert!((r.tokens_per_s - 18e3 / r.step_ms_median).abs() < 1e-6);
            if method == "lora" || method == "full" {
                assert!(
                    (r.loss_first - frozen).abs() < 1e-5,
                    "{method}: first loss {} vs frozen {frozen}",
                    r.loss_first
                );
                assert!(r.loss_last < r.loss_first, "{method} did not train: {r:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn bitfit_on_a_llama_is_a_clear_error() {
        let err = measure(&spec("bitfit")).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("bias") && err.contains("llama"), "{err}");
    }

    /// Activation checkpointing recomputes the blocks in the backward and changes nothing
    /// else: the same losses, step after step (LoRA's dropout masks come from the same stream).
    #[test]
    fn checkpointed_steps_give_the_same_losses() -> Result<()> {
        let plain = measure(&spec("lora"))?;
        let mut s = spec("lora");
        s.checkpoint = true;
        let checkpointed = measure(&s)?;
        assert!((plain.loss_first - checkpointed.loss_first).abs() < 1e-5);
        assert!(
            (plain.loss_last - checkpointed.loss_last).abs() < 1e-4,
            "plain {plain:?}\ncheckpointed {checkpointed:?}"
        );
        Ok(())
    }

    #[test]
    fn seq_of_one_is_refused() {
        let mut s = spec("lora");
        s.seq = 1;
        let err = measure(&s).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("at least 2"), "{err}");
    }
}
