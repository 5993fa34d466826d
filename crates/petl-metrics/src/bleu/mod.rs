//! BLEU (Papineni et al. 2002), computed exactly as sacreBLEU 2.6.0 does.
//!
//! [`corpus_bleu`] is `sacrebleu.corpus_bleu(hypotheses, references)`:
//! hypotheses are one stream of segments, references are one or more streams
//! of the same length, and the result is a [`BleuScore`] on sacreBLEU's 0–100
//! scale with the n-gram precisions, brevity penalty, lengths and the
//! reproducibility signature. [`BleuOptions`] mirrors sacreBLEU's arguments;
//! its default is sacreBLEU's default (13a tokenizer, mixed case, `exp`
//! smoothing, no effective order). [`sentence_bleu`] scores one segment, with
//! [`BleuOptions::sentence`] giving `sacrebleu.sentence_bleu`'s defaults.
//!
//! How sacreBLEU computes it, and so this module:
//!
//! - each segment is optionally lowercased, right-stripped and tokenized
//!   ([`tokenize_13a`]), then split on whitespace;
//! - n-grams of orders 1–4 are matched against the references with clipping
//!   (each n-gram at most as often as in the reference where it is most
//!   frequent); the reference length of a segment is the one closest to the
//!   hypothesis length (the shorter on a tie);
//! - counts and lengths are summed over the corpus; precision `p_n = 100 ·
//!   correct_n / total_n` (smoothed per [`Smoothing`] where `correct_n = 0`);
//!   the score is `BP · exp(mean log p_n)`, `log 0` being floored to
//!   `-9999999999`, with `BP = exp(1 − ref_len / sys_len)` when the system is
//!   shorter, and 0 with every precision reported as 0 when nothing matches.
//!
//! ```
//! use petl_metrics::bleu::{corpus_bleu, BleuOptions};
//!
//! let hyps = ["The cat sat on the mat today.", "It rains."];
//! let refs = [["The cat sat on the mat today.", "It is raining."]];
//! let bleu = corpus_bleu(&hyps, &refs, &BleuOptions::default())?;
//! assert_eq!((bleu.sys_len, bleu.ref_len), (11, 12));
//! assert_eq!(bleu.counts, [10, 7, 6, 5]);
//! assert_eq!(bleu.totals, [11, 9, 7, 5]);
//! assert!((bleu.score - 80.56523855938848).abs() < 1e-9); // sacrebleu 2.6.0
//! assert_eq!(bleu.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
//! # Ok::<(), petl_metrics::MetricsError>(())
//! ```

mod stats;
mod tokenize;

pub use tokenize::tokenize_13a;

use crate::error::{MetricsError, Result};
use stats::{segment_stats, Stats};
use tokenize::{python_rstrip, python_split};

/// The highest n-gram order BLEU counts (sacreBLEU's `MAX_NGRAM_ORDER`).
pub const MAX_NGRAM_ORDER: usize = 4;

/// The sacreBLEU version whose numbers and signature this module reproduces.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// `log` of a zero precision, as sacreBLEU's `my_log` floors it.
const LOG_ZERO: f64 = -9_999_999_999.0;

/// How segments are split into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BleuTokenizer {
    /// `13a`, the mteval-v13a.pl tokenizer ([`tokenize_13a`]); sacreBLEU's default.
    #[default]
    Tok13a,
    /// `none`: split on whitespace only (for pre-tokenized text).
    None,
}

impl BleuTokenizer {
    /// sacreBLEU's name for it, as in the signature's `tok:` field.
    pub fn name(self) -> &'static str {
        match self {
            BleuTokenizer::Tok13a => "13a",
            BleuTokenizer::None => "none",
        }
    }
}

/// What a precision with no matched n-grams becomes (Chen & Cherry 2014,
/// "A Systematic Comparison of Smoothing Techniques for Sentence-Level BLEU").
///
/// Smoothing values must be finite and non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Smoothing {
    /// `exp` (sacreBLEU's default, NIST's method 3): the k-th order with no
    /// matches gets precision `100 / (2^k · total_n)`.
    #[default]
    Exp,
    /// `none`: a zero precision stays zero (so the score is 0).
    None,
    /// `floor` (method 1): zero matches count as the given value (sacreBLEU's
    /// default 0.1, [`Smoothing::FLOOR`]).
    Floor(f64),
    /// `add-k` (method 2): add the value to matches and totals of orders 2 and
    /// up (sacreBLEU's default 1, [`Smoothing::ADD_K`]).
    AddK(f64),
}

impl Smoothing {
    /// `floor` with sacreBLEU's default value 0.1.
    pub const FLOOR: Smoothing = Smoothing::Floor(0.1);
    /// `add-k` with sacreBLEU's default value 1.
    pub const ADD_K: Smoothing = Smoothing::AddK(1.0);

    /// The signature's `smooth:` field: `exp`, `none`, `floor[0.10]`, `add-k[1.00]`.
    pub fn signature(self) -> String {
        match self {
            Smoothing::Exp => "exp".to_owned(),
            Smoothing::None => "none".to_owned(),
            Smoothing::Floor(v) => format!("floor[{v:.2}]"),
            Smoothing::AddK(v) => format!("add-k[{v:.2}]"),
        }
    }

    fn validate(self) -> Result<()> {
        let (method, value) = match self {
            Smoothing::Exp | Smoothing::None => return Ok(()),
            Smoothing::Floor(v) => ("floor", v),
            Smoothing::AddK(v) => ("add-k", v),
        };
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(MetricsError::InvalidSmoothing {
                method,
                value: value.to_string(),
            })
        }
    }
}

/// sacreBLEU's BLEU arguments. The default equals `sacrebleu.corpus_bleu`'s.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BleuOptions {
    /// Lowercase hypotheses and references first (signature `case:lc`).
    /// Default `false` (`case:mixed`).
    pub lowercase: bool,
    /// The tokenizer. Default [`BleuTokenizer::Tok13a`].
    pub tokenizer: BleuTokenizer,
    /// Smoothing of zero precisions. Default [`Smoothing::Exp`].
    pub smoothing: Smoothing,
    /// Average only over the n-gram orders the hypotheses have at all (up to
    /// the highest with a non-zero total), so short segments are not scored 0.
    /// Default `false`; `true` in [`BleuOptions::sentence`].
    pub effective_order: bool,
}

impl BleuOptions {
    /// `sacrebleu.sentence_bleu`'s defaults: as [`Default`] but with
    /// [`effective_order`](Self::effective_order) on.
    pub fn sentence() -> Self {
        BleuOptions {
            effective_order: true,
            ..Self::default()
        }
    }

    /// sacreBLEU's signature for these options with `nrefs` reference
    /// streams, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
    pub fn signature(&self, nrefs: usize) -> String {
        format!(
            "nrefs:{nrefs}|case:{}|eff:{}|tok:{}|smooth:{}|version:{SACREBLEU_VERSION}",
            if self.lowercase { "lc" } else { "mixed" },
            if self.effective_order { "yes" } else { "no" },
            self.tokenizer.name(),
            self.smoothing.signature(),
        )
    }

    /// Lowercases, right-strips and tokenizes a segment (sacreBLEU's
    /// `_preprocess_segment`).
    fn preprocess(&self, segment: &str) -> String {
        let lowered;
        let segment = if self.lowercase {
            lowered = segment.to_lowercase();
            &lowered
        } else {
            segment
        };
        let segment = python_rstrip(segment);
        match self.tokenizer {
            BleuTokenizer::Tok13a => tokenize_13a(segment),
            BleuTokenizer::None => segment.to_owned(),
        }
    }
}

/// A BLEU score with the statistics behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU on sacreBLEU's 0–100 scale.
    pub score: f64,
    /// Smoothed n-gram precisions for orders 1–4, in percent. All zero when no
    /// n-gram matched at all.
    pub precisions: [f64; MAX_NGRAM_ORDER],
    /// Matched n-grams per order, summed over segments (before any add-k).
    pub counts: [usize; MAX_NGRAM_ORDER],
    /// Hypothesis n-grams per order, summed over segments (before any add-k).
    pub totals: [usize; MAX_NGRAM_ORDER],
    /// Brevity penalty in `[0, 1]`.
    pub bp: f64,
    /// Total hypothesis tokens.
    pub sys_len: usize,
    /// Total length of the closest references.
    pub ref_len: usize,
    /// sacreBLEU's reproducibility signature ([`BleuOptions::signature`]).
    pub signature: String,
}

impl BleuScore {
    /// `sys_len / ref_len`, or 0 when there are no reference tokens.
    pub fn ratio(&self) -> f64 {
        if self.ref_len == 0 {
            0.0
        } else {
            self.sys_len as f64 / self.ref_len as f64
        }
    }
}

/// The line sacreBLEU prints, e.g.
/// `BLEU|nrefs:1|…|version:2.6.0 = 28.43 100.0/49.2/26.6/13.6 (BP = 0.779 ratio = 0.800 hyp_len = 10242 ref_len = 12806)`.
impl std::fmt::Display for BleuScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precisions: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        write!(
            f,
            "BLEU|{} = {:.2} {} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.signature,
            self.score,
            precisions.join("/"),
            self.bp,
            self.ratio(),
            self.sys_len,
            self.ref_len
        )
    }
}

/// Corpus BLEU of `hypotheses` against one or more reference streams, as
/// `sacrebleu.corpus_bleu(hypotheses, references, …)`.
///
/// `references[k][i]` is the k-th reference of segment `i`; every stream must
/// be as long as `hypotheses`.
///
/// # Errors
/// [`Empty`](MetricsError::Empty) without hypotheses,
/// [`NoReferences`](MetricsError::NoReferences) without reference streams,
/// [`ReferenceStreamLength`](MetricsError::ReferenceStreamLength) when a
/// stream's length differs from the hypotheses', and
/// [`InvalidSmoothing`](MetricsError::InvalidSmoothing) for a negative or
/// non-finite smoothing value.
pub fn corpus_bleu<H, S, R>(hypotheses: &[H], references: &[S], options: &BleuOptions) -> Result<BleuScore>
where
    H: AsRef<str>,
    S: AsRef<[R]>,
    R: AsRef<str>,
{
    options.smoothing.validate()?;
    if hypotheses.is_empty() {
        return Err(MetricsError::Empty);
    }
    if references.is_empty() {
        return Err(MetricsError::NoReferences);
    }
    for (stream, refs) in references.iter().enumerate() {
        if refs.as_ref().len() != hypotheses.len() {
            return Err(MetricsError::ReferenceStreamLength {
                stream,
                hypotheses: hypotheses.len(),
                references: refs.as_ref().len(),
            });
        }
    }
    let mut corpus = Stats::default();
    for (i, hyp) in hypotheses.iter().enumerate() {
        let hyp = options.preprocess(hyp.as_ref());
        let refs: Vec<String> = references
            .iter()
            .map(|stream| options.preprocess(stream.as_ref()[i].as_ref()))
            .collect();
        let ref_tokens: Vec<Vec<&str>> = refs.iter().map(|r| python_split(r).collect()).collect();
        let hyp_tokens: Vec<&str> = python_split(&hyp).collect();
        corpus += segment_stats(&hyp_tokens, &ref_tokens);
    }
    Ok(score_from_stats(&corpus, options, references.len()))
}

/// BLEU of one hypothesis against its references, as
/// `sacrebleu.sentence_bleu(hypothesis, references)` when `options` is
/// [`BleuOptions::sentence`].
///
/// # Errors
/// As [`corpus_bleu`]: [`NoReferences`](MetricsError::NoReferences) without
/// references, [`InvalidSmoothing`](MetricsError::InvalidSmoothing).
pub fn sentence_bleu<R: AsRef<str>>(
    hypothesis: &str,
    references: &[R],
    options: &BleuOptions,
) -> Result<BleuScore> {
    let streams: Vec<[&str; 1]> = references.iter().map(|r| [r.as_ref()]).collect();
    corpus_bleu(&[hypothesis], &streams, options)
}

/// sacreBLEU's `compute_bleu` on summed statistics.
fn score_from_stats(stats: &Stats, options: &BleuOptions, nrefs: usize) -> BleuScore {
    let (sys_len, ref_len) = (stats.hyp_len, stats.ref_len);
    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };
    let mut result = BleuScore {
        score: 0.0,
        precisions: [0.0; MAX_NGRAM_ORDER],
        counts: stats.correct,
        totals: stats.total,
        bp,
        sys_len,
        ref_len,
        signature: options.signature(nrefs),
    };
    if stats.correct.iter().all(|&c| c == 0) {
        return result;
    }
    let mut smooth_mteval = 1.0;
    let mut eff_order = MAX_NGRAM_ORDER;
    for n in 0..MAX_NGRAM_ORDER {
        let (mut correct, mut total) = (stats.correct[n] as f64, stats.total[n] as f64);
        if let Smoothing::AddK(k) = options.smoothing {
            if n > 0 {
                correct += k;
                total += k;
            }
        }
        if total == 0.0 {
            break;
        }
        if options.effective_order {
            eff_order = n + 1;
        }
        result.precisions[n] = if correct == 0.0 {
            match options.smoothing {
                Smoothing::Exp => {
                    smooth_mteval *= 2.0;
                    100.0 / (smooth_mteval * total)
                }
                Smoothing::Floor(v) => 100.0 * v / total,
                Smoothing::None | Smoothing::AddK(_) => 0.0,
            }
        } else {
            100.0 * correct / total
        };
    }
    let log_sum: f64 = result.precisions[..eff_order]
        .iter()
        .map(|&p| if p == 0.0 { LOG_ZERO } else { p.ln() })
        .sum();
    result.score = bp * (log_sum / eff_order as f64).exp();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bleu(hyps: &[&str], refs: &[&[&str]], options: BleuOptions) -> Result<BleuScore> {
        corpus_bleu(hyps, refs, &options)
    }

    #[test]
    fn identical_long_segment_scores_100() {
        let s = "the cat sat on the mat today";
        let b = bleu(&[s], &[&[s]], BleuOptions::default()).unwrap();
        assert!((b.score - 100.0).abs() < 1e-9, "{}", b.score);
        assert_eq!(b.precisions, [100.0; 4]);
        assert_eq!(b.bp, 1.0);
    }

    #[test]
    fn no_match_is_zero_with_zero_precisions() {
        let b = bleu(&["x y z"], &[&["a b c"]], BleuOptions::default()).unwrap();
        assert_eq!(b.score, 0.0);
        assert_eq!(b.precisions, [0.0; 4]);
        assert_eq!(b.totals, [3, 2, 1, 0]);
    }

    #[test]
    fn exp_smoothing_halves_each_empty_order() {
        // 5 unigrams (3 matched), 4 bigrams, 3 trigrams, 2 four-grams, none matched.
        let b = bleu(
            &["one x two y three"],
            &[&["one two three four five"]],
            BleuOptions::default(),
        )
        .unwrap();
        assert_eq!(b.counts, [3, 0, 0, 0]);
        assert_eq!(
            b.precisions,
            [
                60.0,
                100.0 / (2.0 * 4.0),
                100.0 / (4.0 * 3.0),
                100.0 / (8.0 * 2.0)
            ]
        );
    }

    #[test]
    fn short_hypothesis_gets_brevity_penalty() {
        let b = bleu(&["a b c d"], &[&["a b c d e f g h"]], BleuOptions::default()).unwrap();
        assert!((b.bp - (1.0f64 - 2.0).exp()).abs() < 1e-15);
        assert_eq!(b.precisions, [100.0; 4]);
    }

    #[test]
    fn empty_hypothesis() {
        let b = bleu(&[""], &[&["a b"]], BleuOptions::default()).unwrap();
        assert_eq!((b.score, b.bp, b.sys_len, b.ref_len), (0.0, 0.0, 0, 2));
    }

    #[test]
    fn errors_name_the_problem() {
        let o = BleuOptions::default();
        assert_eq!(bleu(&[], &[&[]], o), Err(MetricsError::Empty));
        assert_eq!(bleu(&["a"], &[], o), Err(MetricsError::NoReferences));
        assert_eq!(
            bleu(&["a", "b"], &[&["a", "b"], &["a"]], o),
            Err(MetricsError::ReferenceStreamLength {
                stream: 1,
                hypotheses: 2,
                references: 1
            })
        );
        let bad = BleuOptions {
            smoothing: Smoothing::Floor(f64::NAN),
            ..o
        };
        assert_eq!(
            bleu(&["a"], &[&["a"]], bad),
            Err(MetricsError::InvalidSmoothing {
                method: "floor",
                value: "NaN".into()
            })
        );
    }

    #[test]
    fn signatures() {
        assert_eq!(
            BleuOptions::default().signature(1),
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
        );
        let o = BleuOptions {
            lowercase: true,
            tokenizer: BleuTokenizer::None,
            smoothing: Smoothing::FLOOR,
            effective_order: true,
        };
        assert_eq!(
            o.signature(2),
            "nrefs:2|case:lc|eff:yes|tok:none|smooth:floor[0.10]|version:2.6.0"
        );
        assert_eq!(Smoothing::ADD_K.signature(), "add-k[1.00]");
    }

    #[test]
    fn sentence_bleu_uses_effective_order() {
        // Three tokens have no 4-grams: without effective order the missing
        // order makes the score 0, with it the score is 100.
        let b = sentence_bleu("a b c", &["a b c"], &BleuOptions::sentence()).unwrap();
        assert!((b.score - 100.0).abs() < 1e-9);
        let b = sentence_bleu("a b c", &["a b c"], &BleuOptions::default()).unwrap();
        assert_eq!(b.score, 0.0);
    }
}
