//! The error type shared by every metric.

use crate::metric::{Metric, PredictionKind};

/// Which of the two inputs of a metric an error refers to.
///
/// Correlation functions take `(x, y)`; `x` is reported as
/// [`Side::Predicted`] and `y` as [`Side::Gold`], matching the argument order
/// of every metric function in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first argument: model predictions.
    Predicted,
    /// The second argument: reference labels or scores.
    Gold,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Predicted => "predicted",
            Side::Gold => "gold",
        })
    }
}

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Predictions and gold values have different lengths.
    #[error("length mismatch: {predicted} predicted vs {gold} gold")]
    LengthMismatch {
        /// Number of predicted values.
        predicted: usize,
        /// Number of gold values.
        gold: usize,
    },
    /// Both inputs are empty, so the metric is undefined.
    #[error("empty input")]
    Empty,
    /// The metric does not apply to this kind of prediction (e.g. Pearson on
    /// class labels).
    #[error("metric {metric} does not apply to {got} predictions")]
    WrongKind {
        /// The metric that was requested.
        metric: Metric,
        /// The kind of predictions it was given.
        got: PredictionKind,
    },
    /// A score is NaN or infinite.
    #[error("non-finite {side} value at index {index}")]
    NonFinite {
        /// Which input holds the value.
        side: Side,
        /// Position of the first offending value in that input.
        index: usize,
    },
    /// One input is constant, so a correlation coefficient is undefined.
    #[error("zero variance in {side} values")]
    ZeroVariance {
        /// Which input is constant (the predicted side is checked first).
        side: Side,
    },
    /// A metric name that does not match any [`Metric`] (or
    /// [`RougeType`](crate::rouge::RougeType)).
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    /// BLEU was given no reference streams.
    #[error("no reference streams")]
    NoReferences,
    /// A BLEU reference stream does not have one segment per hypothesis.
    #[error("reference stream {stream} has {references} segments for {hypotheses} hypotheses")]
    ReferenceStreamLength {
        /// Position of the stream among the reference streams.
        stream: usize,
        /// Number of hypotheses.
        hypotheses: usize,
        /// Number of segments in that stream.
        references: usize,
    },
    /// A BLEU smoothing value is negative, infinite or NaN.
    #[error("{method} smoothing value {value} is not finite and non-negative")]
    InvalidSmoothing {
        /// The smoothing method (`floor` or `add-k`).
        method: &'static str,
        /// The offending value, as Rust displays it.
        value: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;

/// Validates the preconditions every paired metric shares.
///
/// Length is checked before emptiness so that `([], [x])` reports the more
/// informative mismatch.
pub(crate) fn check_pair<T>(predicted: &[T], gold: &[T]) -> Result<()> {
    if predicted.len() != gold.len() {
        return Err(MetricsError::LengthMismatch {
            predicted: predicted.len(),
            gold: gold.len(),
        });
    }
    if predicted.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_short_and_lower_case() {
        let cases = [
            (
                MetricsError::LengthMismatch {
                    predicted: 3,
                    gold: 2,
                },
                "length mismatch: 3 predicted vs 2 gold",
            ),
            (MetricsError::Empty, "empty input"),
            (
                MetricsError::WrongKind {
                    metric: Metric::Pearson,
                    got: PredictionKind::Classes,
                },
                "metric pearson does not apply to class predictions",
            ),
            (
                MetricsError::NonFinite {
                    side: Side::Gold,
                    index: 4,
                },
                "non-finite gold value at index 4",
            ),
            (
                MetricsError::ZeroVariance {
                    side: Side::Predicted,
                },
                "zero variance in predicted values",
            ),
            (
                MetricsError::UnknownMetric("bleu".into()),
                "unknown metric \"bleu\"",
            ),
            (MetricsError::NoReferences, "no reference streams"),
            (
                MetricsError::ReferenceStreamLength {
                    stream: 1,
                    hypotheses: 5,
                    references: 4,
                },
                "reference stream 1 has 4 segments for 5 hypotheses",
            ),
            (
                MetricsError::InvalidSmoothing {
                    method: "floor",
                    value: "-1".into(),
                },
                "floor smoothing value -1 is not finite and non-negative",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn check_pair_prefers_length_mismatch_over_empty() {
        assert_eq!(
            check_pair::<u8>(&[], &[1]),
            Err(MetricsError::LengthMismatch {
                predicted: 0,
                gold: 1
            })
        );
        assert_eq!(check_pair::<u8>(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(check_pair(&[1], &[2]), Ok(()));
    }
}
