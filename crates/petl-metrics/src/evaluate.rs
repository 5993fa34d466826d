//! Evaluating several metrics at once over one set of predictions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classification::{accuracy, f1_binary, matthews_corrcoef};
use crate::correlation::{pearson, spearman};
use crate::error::{MetricsError, Result};
use crate::metric::{Metric, PredictionKind};

/// Model outputs paired with their references.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Predictions<'a> {
    /// Class indices, for classification tasks.
    Classes {
        /// Predicted class per example.
        predicted: &'a [usize],
        /// Gold class per example.
        gold: &'a [usize],
    },
    /// Real-valued scores, for regression tasks.
    Scores {
        /// Predicted score per example.
        predicted: &'a [f64],
        /// Gold score per example.
        gold: &'a [f64],
    },
}

impl Predictions<'_> {
    /// Whether these are class labels or scores.
    pub fn kind(&self) -> PredictionKind {
        match self {
            Predictions::Classes { .. } => PredictionKind::Classes,
            Predictions::Scores { .. } => PredictionKind::Scores,
        }
    }
}

/// Metric values keyed by [`Metric::name`].
///
/// Keyed by string rather than by [`Metric`] so that it serializes as a
/// plain JSON object (`{"accuracy": 0.9}`) and can carry entries written by
/// other tools.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scores(pub BTreeMap<String, f64>);

impl Scores {
    /// The value recorded for `m`, if any.
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.0.get(m.name()).copied()
    }

    /// Records `value` for `m`, replacing any previous value.
    pub fn insert(&mut self, m: Metric, value: f64) {
        self.0.insert(m.name().to_owned(), value);
    }
}

/// Computes each metric in `metrics` over `preds`.
///
/// [`Metric::F1`] is the F1 of class `1`, the positive class of every binary
/// GLUE task. Repeated metrics are computed once per occurrence and stored
/// once.
///
/// # Errors
/// [`WrongKind`](MetricsError::WrongKind) if a metric does not apply to the
/// kind of `preds`, checked for every metric before any is computed;
/// otherwise the first error of the individual metric functions.
pub fn evaluate(preds: &Predictions, metrics: &[Metric]) -> Result<Scores> {
    // Fail on a misconfigured metric list before spending time on the rest.
    if let Some(&metric) = metrics.iter().find(|m| m.kind() != preds.kind()) {
        return Err(MetricsError::WrongKind {
            metric,
            got: preds.kind(),
        });
    }
    let mut scores = Scores::default();
    for &metric in metrics {
        let value = match (*preds, metric) {
            (Predictions::Classes { predicted, gold }, Metric::Accuracy) => accuracy(predicted, gold)?,
            (Predictions::Classes { predicted, gold }, Metric::F1) => f1_binary(predicted, gold, 1)?,
            (Predictions::Classes { predicted, gold }, Metric::Matthews) => {
                matthews_corrcoef(predicted, gold)?
            }
            (Predictions::Scores { predicted, gold }, Metric::Pearson) => pearson(predicted, gold)?,
            (Predictions::Scores { predicted, gold }, Metric::Spearman) => spearman(predicted, gold)?,
            _ => unreachable!("metric kinds were checked above"),
        };
        scores.insert(metric, value);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < TOL, "got {got}, want {want}");
    }

    #[test]
    fn evaluate_classification() {
        let predicted = [1, 1, 1, 0, 0, 0, 0, 1];
        let gold = [1, 1, 0, 0, 0, 1, 0, 0];
        // TP = 2, FP = 2, FN = 1, TN = 3
        // accuracy = (2 + 3)/8 = 0.625
        // F1 = 2·2 / (4 + 2 + 1) = 4/7
        // MCC = (2·3 − 2·1) / √(4·3·5·4) = 4/√240 = 1/√15
        let scores = evaluate(
            &Predictions::Classes {
                predicted: &predicted,
                gold: &gold,
            },
            &[Metric::Accuracy, Metric::F1, Metric::Matthews],
        )
        .unwrap();
        assert_eq!(scores.0.len(), 3);
        close(scores.get(Metric::Accuracy).unwrap(), 0.625);
        close(scores.get(Metric::F1).unwrap(), 4.0 / 7.0);
        close(scores.get(Metric::Matthews).unwrap(), 1.0 / 15f64.sqrt());
        assert_eq!(scores.get(Metric::Pearson), None);
    }

    #[test]
    fn evaluate_regression_and_headline() {
        let x = [1.0, 2.0, 2.0, 3.0];
        let y = [1.0, 3.0, 2.0, 4.0];
        // Pearson on raw values equals Spearman here because x, y are already
        // rank-like: mean x = 2, mean y = 2.5
        // dx = [−1, 0, 0, 1], dy = [−1.5, 0.5, −0.5, 1.5]
        // Σdx·dy = 1.5 + 1.5 = 3, Σdx² = 2, Σdy² = 5 → r = 3/√10
        // Spearman (see correlation tests) = √0.9 = 3/√10 as well
        let scores = evaluate(
            &Predictions::Scores {
                predicted: &x,
                gold: &y,
            },
            &[Metric::Pearson, Metric::Spearman],
        )
        .unwrap();
        let r = 3.0 / 10f64.sqrt();
        close(scores.get(Metric::Pearson).unwrap(), r);
        close(scores.get(Metric::Spearman).unwrap(), r);
        let headline = crate::Headline::MeanOf(Metric::Pearson, Metric::Spearman);
        close(headline.compute(&scores).unwrap(), r);
    }

    #[test]
    fn wrong_kind_is_rejected() {
        let classes = Predictions::Classes {
            predicted: &[0, 1],
            gold: &[0, 1],
        };
        assert_eq!(
            evaluate(&classes, &[Metric::Accuracy, Metric::Pearson]),
            Err(MetricsError::WrongKind {
                metric: Metric::Pearson,
                got: PredictionKind::Classes
            })
        );
        let scores = Predictions::Scores {
            predicted: &[0.0, 1.0],
            gold: &[0.0, 1.0],
        };
        assert_eq!(
            evaluate(&scores, &[Metric::F1]),
            Err(MetricsError::WrongKind {
                metric: Metric::F1,
                got: PredictionKind::Scores
            })
        );
    }

    #[test]
    fn evaluate_propagates_input_errors() {
        let preds = Predictions::Classes {
            predicted: &[0, 1, 1],
            gold: &[0, 1],
        };
        assert_eq!(
            evaluate(&preds, &[Metric::Accuracy]),
            Err(MetricsError::LengthMismatch {
                predicted: 3,
                gold: 2
            })
        );
        let empty = Predictions::Scores {
            predicted: &[],
            gold: &[],
        };
        assert_eq!(evaluate(&empty, &[Metric::Spearman]), Err(MetricsError::Empty));
        // no metrics requested: nothing to validate, nothing computed
        assert_eq!(evaluate(&empty, &[]), Ok(Scores::default()));
    }

    #[test]
    fn scores_serialize_as_plain_object() {
        let mut scores = Scores::default();
        scores.insert(Metric::F1, 0.5);
        scores.insert(Metric::Accuracy, 0.25);
        let json = serde_json::to_string(&scores).unwrap();
        assert_eq!(json, r#"{"accuracy":0.25,"f1":0.5}"#);
        assert_eq!(serde_json::from_str::<Scores>(&json).unwrap(), scores);
    }
}
