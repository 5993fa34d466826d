//! Per-segment BLEU sufficient statistics (sacreBLEU's
//! `_extract_reference_info` and `_compute_segment_statistics`).

use std::collections::HashMap;

use super::MAX_NGRAM_ORDER;

/// Matched and total n-gram counts of one segment or a whole corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stats {
    pub hyp_len: usize,
    pub ref_len: usize,
    pub correct: [usize; MAX_NGRAM_ORDER],
    pub total: [usize; MAX_NGRAM_ORDER],
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_NGRAM_ORDER {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }
}

/// Every n-gram of order 1 to [`MAX_NGRAM_ORDER`] with its count.
fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_NGRAM_ORDER {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// The reference length BLEU compares against: the one closest to the
/// hypothesis length, the shorter on a tie.
fn closest_ref_len(hyp_len: usize, ref_lens: impl IntoIterator<Item = usize>) -> usize {
    let mut best: Option<(usize, usize)> = None; // (distance, length)
    for len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            Some((d, l)) if diff > d || (diff == d && len >= l) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map_or(0, |(_, l)| l)
}

/// Statistics of one tokenized hypothesis against its tokenized references:
/// each hypothesis n-gram is matched at most as often as it occurs in the
/// reference where it is most frequent.
pub(crate) fn segment_stats(hypothesis: &[&str], references: &[Vec<&str>]) -> Stats {
    let mut max_ref: HashMap<&[&str], usize> = HashMap::new();
    for r in references {
        for (gram, count) in ngram_counts(r) {
            let slot = max_ref.entry(gram).or_insert(0);
            *slot = (*slot).max(count);
        }
    }
    let mut stats = Stats {
        hyp_len: hypothesis.len(),
        ref_len: closest_ref_len(hypothesis.len(), references.iter().map(Vec::len)),
        ..Stats::default()
    };
    for (gram, count) in ngram_counts(hypothesis) {
        let n = gram.len() - 1;
        stats.total[n] += count;
        stats.correct[n] += count.min(max_ref.get(gram).copied().unwrap_or(0));
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_length_prefers_shorter_on_ties() {
        assert_eq!(closest_ref_len(5, [7, 3]), 3);
        assert_eq!(closest_ref_len(5, [3, 7]), 3);
        assert_eq!(closest_ref_len(5, [9, 6, 4]), 4);
        assert_eq!(closest_ref_len(5, [5, 4]), 5);
    }

    #[test]
    fn clipped_counts() {
        // hyp "the the the" vs ref "the cat the": unigram "the" clipped to 2.
        let s = segment_stats(&["the", "the", "the"], &[vec!["the", "cat", "the"]]);
        assert_eq!(s.correct, [2, 0, 0, 0]);
        assert_eq!(s.total, [3, 2, 1, 0]);
        assert_eq!((s.hyp_len, s.ref_len), (3, 3));
    }

    #[test]
    fn multiple_references_take_the_max_count() {
        let s = segment_stats(&["a", "a", "b"], &[vec!["a", "b"], vec!["a", "a"]]);
        assert_eq!(s.correct, [3, 2, 0, 0]);
    }
}
