//! The encoder measurement: a 2-class classifier trained as `petl train` trains one.

use super::{BenchSpec, Workload};
use crate::session::TaskModel;
use crate::step::{Optimizers, StepOutcome, StepSettings, Trained};
use crate::trainer::classification_step;
use crate::Result;
use petl_data::{collate, Batch, Encoded, Label, TaskKind, TaskSpec};
use petl_methods::Method;
use petl_models::{EncoderModel, ForwardCtx, Pooling};
use petl_ops::DropoutRng;

/// BERT's `[CLS]` id in the uncased WordPiece vocabulary every bench encoder uses.
const CLS_ID: u32 = 101;

/// The batch of an encoder measurement: `batch` rows of `seq` random ids (`[CLS]` first where
/// the vocabulary has it), no padding, random labels of 2 classes.
pub fn random_batch(batch: usize, seq: usize, vocab: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = DropoutRng::new(seed);
    (0..batch)
        .map(|_| {
            let draws = rng.uniform(seq + 1);
            let mut ids: Vec<u32> = draws[..seq]
                .iter()
                .map(|u| ((u * vocab as f32) as u32).min(vocab as u32 - 1))
                .collect();
            ids[0] = if (CLS_ID as usize) < vocab { CLS_ID } else { 0 };
            Encoded {
                input_ids: ids,
                type_ids: vec![0; seq],
                label: Label::Class(usize::from(draws[seq] >= 0.5)),
            }
        })
        .collect()
}

/// A classifier on an encoder with its one batch.
pub(super) struct EncoderWork<'m> {
    tm: TaskModel<'m>,
    data: Vec<Encoded>,
    /// The whole batch as one micro-batch.
    micro: [Vec<usize>; 1],
    /// The batch collated once, for inference.
    batch: Batch,
}

impl<'m> EncoderWork<'m> {
    /// `method` on `model` with a fresh 2-class CLS head, and the batch `spec` asks for.
    pub(super) fn new(model: &'m EncoderModel, method: &Method, spec: &BenchSpec) -> Result<Self> {
        let task = TaskSpec::default_for(
            "bench",
            TaskKind::Classification {
                labels: vec!["0".into(), "1".into()],
            },
        );
        let tm = TaskModel::new(model, method, task, Pooling::Cls, spec.seed)?;
        let data = random_batch(spec.batch, spec.seq, model.config().vocab_size, spec.seed);
        let batch = collate(&data.iter().collect::<Vec<_>>(), 0)?;
        Ok(Self {
            tm,
            micro: [(0..data.len()).collect()],
            data,
            batch,
        })
    }
}

impl Workload for EncoderWork<'_> {
    fn trained(&self) -> Trained<'_> {
        self.tm.trained()
    }

    fn train_step(&self, settings: StepSettings, optims: &mut Optimizers) -> Result<StepOutcome> {
        classification_step(&self.tm, &self.data, &self.micro, 0, settings, optims)
    }

    fn infer(&self) -> Result<()> {
        let logits = self.tm.logits(&self.batch, &mut ForwardCtx::eval())?;
        // Reading the logits back makes sure the forward has finished.
        logits.to_vec2::<f32>()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_batch_is_seeded_and_in_range() {
        let a = random_batch(3, 7, 120, 5);
        assert_eq!(a, random_batch(3, 7, 120, 5));
        assert_ne!(a, random_batch(3, 7, 120, 6));
        for e in &a {
            assert_eq!((e.input_ids.len(), e.input_ids[0]), (7, CLS_ID));
            assert!(e.input_ids.iter().all(|&i| i < 120));
        }
        assert!(random_batch(2, 4, 50, 1).iter().all(|e| e.input_ids[0] == 0));
    }
}
