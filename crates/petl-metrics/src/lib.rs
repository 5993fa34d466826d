//! Evaluation metrics for petl: pure functions over predictions and gold
//! labels, with no tensor dependencies.
//!
//! Classification and regression metrics (GLUE) live at the crate root;
//! text-generation metrics live in two modules that reproduce the Python
//! reference packages number for number:
//!
//! - [`rouge`]: ROUGE-1/2/L/Lsum as Google's `rouge-score` 0.1.2
//!   ([`RougeScorer`], [`RougeType`], [`RougeScore`]), with and without its
//!   Porter stemmer ([`porter_stem`], nltk's default mode);
//! - [`bleu`]: corpus and sentence BLEU as `sacrebleu` 2.6.0
//!   ([`corpus_bleu`], [`sentence_bleu`], [`BleuOptions`], [`BleuScore`]),
//!   including its 13a tokenizer and signature string.
//!
//! ```
//! use petl_metrics::{corpus_bleu, BleuOptions, RougeScorer, RougeType};
//!
//! let refs = ["the cat sat on the mat"];
//! let preds = ["the cat is on the mat"];
//! let rouge = RougeScorer::new(&RougeType::ALL, true).score_corpus(&refs, &preds)?;
//! assert!((rouge[&RougeType::Rouge1].fmeasure - 5.0 / 6.0).abs() < 1e-12);
//!
//! let bleu = corpus_bleu(&preds, &[refs], &BleuOptions::default())?;
//! assert_eq!(bleu.counts, [5, 3, 1, 0]);
//! # Ok::<(), petl_metrics::MetricsError>(())
//! ```
//!
//! For classification, the principal types are:
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

pub mod bleu;
mod classification;
mod correlation;
mod error;
mod evaluate;
mod metric;
mod porter;
pub mod rouge;

pub use bleu::{corpus_bleu, sentence_bleu, BleuOptions, BleuScore};
pub use classification::{accuracy, f1_binary, matthews_corrcoef};
pub use correlation::{pearson, ranks, spearman};
pub use error::{MetricsError, Result, Side};
pub use evaluate::{evaluate, Predictions, Scores};
pub use metric::{Headline, Metric, PredictionKind};
pub use porter::porter_stem;
pub use rouge::{RougeScore, RougeScorer, RougeType};
