//! Evaluation metrics for petl: pure functions over predictions and gold
//! labels, with no tensor dependencies.
//!
//! The principal types are:
//!
//! - [`Metric`]: which metric to compute (accuracy, F1, Matthews, Pearson,
//!   Spearman);
//! - [`Predictions`]: class labels or real-valued scores paired with gold;
//! - [`Scores`]: the computed values, keyed by metric name;
//! - [`Headline`]: the single number a benchmark reports for a task, either
//!   one metric or the mean of two;
//! - [`MetricsError`]: why a metric could not be computed.
//!
//! [`evaluate`] computes several metrics at once; the individual functions
//! ([`accuracy`], [`f1_binary`], [`matthews_corrcoef`], [`pearson`],
//! [`spearman`]) follow scikit-learn and SciPy semantics so that numbers are
//! comparable with published results.
//!
//! ```
//! use petl_metrics::{evaluate, Headline, Metric, Predictions};
//!
//! let preds = Predictions::Classes { predicted: &[1, 0, 1, 1], gold: &[1, 0, 0, 1] };
//! let scores = evaluate(&preds, &[Metric::F1, Metric::Accuracy])?;
//! assert_eq!(scores.get(Metric::Accuracy), Some(0.75));
//! assert_eq!(scores.get(Metric::F1), Some(0.8)); // TP=2, FP=1, FN=0: 4/5
//!
//! let headline = Headline::MeanOf(Metric::F1, Metric::Accuracy);
//! assert_eq!(headline.name(), "mean(f1,accuracy)");
//! assert!((headline.compute(&scores).unwrap() - 0.775).abs() < 1e-12);
//! # Ok::<(), petl_metrics::MetricsError>(())
//! ```
#![deny(missing_docs)]

mod classification;
mod correlation;
mod error;
mod evaluate;
mod metric;

pub use classification::{accuracy, f1_binary, matthews_corrcoef};
pub use correlation::{pearson, ranks, spearman};
pub use error::{MetricsError, Result, Side};
pub use evaluate::{evaluate, Predictions, Scores};
pub use metric::{Headline, Metric, PredictionKind};
