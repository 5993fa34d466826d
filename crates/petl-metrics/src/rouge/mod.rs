//! ROUGE (Lin 2004), computed exactly as Google's `rouge-score` 0.1.2 does.
//!
//! [`RougeScorer`] scores one prediction against one reference for a set of
//! [`RougeType`]s, giving a [`RougeScore`] (precision, recall, F-measure) per
//! type; [`RougeScorer::score_corpus`] averages those over pairs.
//!
//! Compatibility with `rouge_score.rouge_scorer.RougeScorer(types, use_stemmer)`:
//!
//! - tokens come from [`tokenize`]: lowercase, split on everything outside
//!   `[a-z0-9]`, optionally Porter-stem tokens longer than three characters
//!   ([`porter_stem`](crate::porter_stem), nltk's default mode);
//! - ROUGE-N counts clipped n-gram overlaps; precision divides by the
//!   prediction's n-gram count, recall by the reference's (each at least 1);
//! - ROUGE-L uses the longest common subsequence of the two token lists, and is
//!   zero when either is empty;
//! - ROUGE-Lsum splits both texts on `"\n"` (dropping empty lines, not
//!   sentence-splitting otherwise: rouge-score's default `split_summaries=False`)
//!   and uses the summary-level union LCS with ROUGE-1.5.5's clipping;
//! - F = 2PR / (P + R), and 0 when P + R = 0.
//!
//! Per-pair numbers match rouge-score bit for bit on the golden pairs
//! (`tests/text_metrics.rs`).
//!
//! ```
//! use petl_metrics::rouge::{RougeScorer, RougeType};
//!
//! let scorer = RougeScorer::new(&[RougeType::Rouge1, RougeType::RougeL], true);
//! let scores = scorer.score("The quick brown fox jumps over the lazy dog",
//!                           "The quick brown dog jumps on the log.");
//! let r1 = scores[&RougeType::Rouge1];
//! assert!((r1.precision - 0.75).abs() < 1e-12);       // 6 of 8 predicted unigrams
//! assert!((r1.recall - 6.0 / 9.0).abs() < 1e-12);     // 6 of 9 reference unigrams
//! assert!((scores[&RougeType::RougeL].fmeasure - 0.5882352941176471).abs() < 1e-12);
//! ```

mod lcs;
mod tokenize;

use std::collections::{BTreeMap, HashMap};

pub use tokenize::tokenize;

use crate::error::{MetricsError, Result};

/// A ROUGE variant, named as in rouge-score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RougeType {
    /// `rouge1`: unigram overlap.
    Rouge1,
    /// `rouge2`: bigram overlap.
    Rouge2,
    /// `rougeL`: longest common subsequence of the whole texts.
    RougeL,
    /// `rougeLsum`: summary-level LCS over newline-separated sentences.
    RougeLsum,
}

impl RougeType {
    /// The four types, in the order rouge-score users usually list them.
    pub const ALL: [RougeType; 4] = [
        RougeType::Rouge1,
        RougeType::Rouge2,
        RougeType::RougeL,
        RougeType::RougeLsum,
    ];

    /// rouge-score's name: `rouge1`, `rouge2`, `rougeL` or `rougeLsum`.
    pub fn name(self) -> &'static str {
        match self {
            RougeType::Rouge1 => "rouge1",
            RougeType::Rouge2 => "rouge2",
            RougeType::RougeL => "rougeL",
            RougeType::RougeLsum => "rougeLsum",
        }
    }
}

impl std::fmt::Display for RougeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RougeType {
    type Err = MetricsError;

    fn from_str(s: &str) -> Result<Self> {
        RougeType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| MetricsError::UnknownMetric(s.to_owned()))
    }
}

/// Precision, recall and F-measure of one ROUGE type, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    /// Matches over the prediction's size.
    pub precision: f64,
    /// Matches over the reference's size.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub fmeasure: f64,
}

impl RougeScore {
    fn from_hits(hits: usize, predicted: usize, reference: usize) -> Self {
        Self::from_pr(hits as f64 / predicted as f64, hits as f64 / reference as f64)
    }

    fn from_pr(precision: f64, recall: f64) -> Self {
        // Same operation order as rouge-score's scoring.fmeasure, so the
        // result is bit-identical.
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        RougeScore {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// Scores predictions against references for a fixed set of ROUGE types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RougeScorer {
    types: Vec<RougeType>,
    use_stemmer: bool,
}

impl RougeScorer {
    /// A scorer for `types` (duplicates are ignored), with or without the
    /// Porter stemmer, as `RougeScorer(types, use_stemmer=use_stemmer)`.
    pub fn new(types: &[RougeType], use_stemmer: bool) -> Self {
        let mut types = types.to_vec();
        types.sort();
        types.dedup();
        RougeScorer { types, use_stemmer }
    }

    /// The types this scorer computes, sorted.
    pub fn types(&self) -> &[RougeType] {
        &self.types
    }

    /// Whether tokens are Porter-stemmed.
    pub fn use_stemmer(&self) -> bool {
        self.use_stemmer
    }

    /// Scores one `prediction` against its `reference` (rouge-score's
    /// `score(target, prediction)`; note the argument order).
    pub fn score(&self, reference: &str, prediction: &str) -> BTreeMap<RougeType, RougeScore> {
        // Only rougeLsum tokenizes line by line; skip the whole-text tokens
        // when nothing else needs them, as rouge-score does.
        let (ref_tokens, pred_tokens) = if self.types.iter().any(|&t| t != RougeType::RougeLsum) {
            (
                tokenize(reference, self.use_stemmer),
                tokenize(prediction, self.use_stemmer),
            )
        } else {
            Default::default()
        };
        self.types
            .iter()
            .map(|&t| {
                let score = match t {
                    RougeType::Rouge1 => ngram_score(&ref_tokens, &pred_tokens, 1),
                    RougeType::Rouge2 => ngram_score(&ref_tokens, &pred_tokens, 2),
                    RougeType::RougeL => lcs_score(&ref_tokens, &pred_tokens),
                    RougeType::RougeLsum => {
                        lsum_score(&self.sentences(reference), &self.sentences(prediction))
                    }
                };
                (t, score)
            })
            .collect()
    }

    /// The mean of each of precision, recall and F-measure over the pairs
    /// `(references[i], predictions[i])`.
    ///
    /// The mean F-measure is the corpus number Hugging Face `evaluate`'s
    /// `rouge` reports: exactly the mean of its `use_aggregator=False` output,
    /// and what its default bootstrap aggregate (`mid`, a median of resampled
    /// means) estimates. rouge-score's `BootstrapAggregator` itself is not
    /// reproduced.
    ///
    /// # Errors
    /// [`LengthMismatch`](MetricsError::LengthMismatch) (`predicted` counts
    /// predictions, `gold` references) or [`Empty`](MetricsError::Empty).
    pub fn score_corpus<R, P>(
        &self,
        references: &[R],
        predictions: &[P],
    ) -> Result<BTreeMap<RougeType, RougeScore>>
    where
        R: AsRef<str>,
        P: AsRef<str>,
    {
        if references.len() != predictions.len() {
            return Err(MetricsError::LengthMismatch {
                predicted: predictions.len(),
                gold: references.len(),
            });
        }
        if references.is_empty() {
            return Err(MetricsError::Empty);
        }
        let mut sums: BTreeMap<RougeType, RougeScore> = BTreeMap::new();
        for (r, p) in references.iter().zip(predictions) {
            for (t, s) in self.score(r.as_ref(), p.as_ref()) {
                let acc = sums.entry(t).or_default();
                acc.precision += s.precision;
                acc.recall += s.recall;
                acc.fmeasure += s.fmeasure;
            }
        }
        let n = references.len() as f64;
        Ok(sums
            .into_iter()
            .map(|(t, s)| {
                let mean = RougeScore {
                    precision: s.precision / n,
                    recall: s.recall / n,
                    fmeasure: s.fmeasure / n,
                };
                (t, mean)
            })
            .collect())
    }

    /// Tokenized non-empty lines, rouge-score's `get_sents` without
    /// `split_summaries`.
    fn sentences(&self, text: &str) -> Vec<Vec<String>> {
        text.split('\n')
            .filter(|line| !line.is_empty())
            .map(|line| tokenize(line, self.use_stemmer))
            .collect()
    }
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

fn ngram_score(reference: &[String], prediction: &[String], n: usize) -> RougeScore {
    let r = ngram_counts(reference, n);
    let p = ngram_counts(prediction, n);
    let overlap: usize = r
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let r_total: usize = r.values().sum();
    let p_total: usize = p.values().sum();
    RougeScore::from_hits(overlap, p_total.max(1), r_total.max(1))
}

fn lcs_score(reference: &[String], prediction: &[String]) -> RougeScore {
    if reference.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    RougeScore::from_hits(
        lcs::lcs_len(reference, prediction),
        prediction.len(),
        reference.len(),
    )
}

fn lsum_score(reference: &[Vec<String>], prediction: &[Vec<String>]) -> RougeScore {
    let m: usize = reference.iter().map(Vec::len).sum();
    let n: usize = prediction.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    RougeScore::from_hits(lcs::union_lcs_hits(reference, prediction), n, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(reference: &str, prediction: &str, stem: bool) -> BTreeMap<RougeType, RougeScore> {
        RougeScorer::new(&RougeType::ALL, stem).score(reference, prediction)
    }

    #[test]
    fn identical_texts_score_one() {
        for (_, s) in all("The cat sat on the mat.", "the cat sat on the mat", true) {
            assert_eq!(s.fmeasure, 1.0);
        }
    }

    #[test]
    fn empty_sides_score_zero() {
        for (r, p) in [("", ""), ("", "a b"), ("a b", ""), ("!!!", "a b")] {
            for (t, s) in all(r, p, true) {
                assert_eq!(s, RougeScore::default(), "{t} on {r:?} / {p:?}");
            }
        }
    }

    #[test]
    fn hand_computed_bigrams() {
        // ref bigrams: a b, b a, a b (3); pred: b a, a b (2); overlap 2.
        let s = all("a b a b", "b a b", false)[&RougeType::Rouge2];
        assert_eq!((s.precision, s.recall), (1.0, 2.0 / 3.0));
        assert!((s.fmeasure - 0.8).abs() < 1e-15);
    }

    #[test]
    fn names_round_trip() {
        for t in RougeType::ALL {
            assert_eq!(t.to_string().parse::<RougeType>(), Ok(t));
        }
        assert_eq!(
            "rouge3".parse::<RougeType>(),
            Err(MetricsError::UnknownMetric("rouge3".into()))
        );
    }

    #[test]
    fn scorer_dedups_types() {
        let s = RougeScorer::new(&[RougeType::RougeL, RougeType::Rouge1, RougeType::RougeL], false);
        assert_eq!(s.types(), [RougeType::Rouge1, RougeType::RougeL]);
        assert_eq!(s.score("a", "a").len(), 2);
    }

    #[test]
    fn corpus_errors() {
        let s = RougeScorer::new(&RougeType::ALL, true);
        assert_eq!(
            s.score_corpus(&["a"], &["a", "b"]),
            Err(MetricsError::LengthMismatch {
                predicted: 2,
                gold: 1
            })
        );
        assert_eq!(s.score_corpus::<&str, &str>(&[], &[]), Err(MetricsError::Empty));
    }

    #[test]
    fn corpus_mean_averages_pairs() {
        let s = RougeScorer::new(&[RougeType::Rouge1], false);
        let mean = s.score_corpus(&["a b", "c d"], &["a b", "x y"]).unwrap();
        assert_eq!(mean[&RougeType::Rouge1].fmeasure, 0.5);
    }
}
