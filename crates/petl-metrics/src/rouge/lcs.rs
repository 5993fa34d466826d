//! Longest common subsequences, as rouge-score computes them.

use std::collections::{BTreeSet, HashMap};

/// The dynamic-programming table: `t[i][j]` is the LCS length of `a[..i]` and
/// `b[..j]`, stored row-major with `b.len() + 1` columns.
struct Table {
    cols: usize,
    cells: Vec<u32>,
}

impl Table {
    fn new<T: PartialEq>(a: &[T], b: &[T]) -> Self {
        let cols = b.len() + 1;
        let mut cells = vec![0u32; (a.len() + 1) * cols];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                cells[i * cols + j] = if a[i - 1] == b[j - 1] {
                    cells[(i - 1) * cols + j - 1] + 1
                } else {
                    cells[(i - 1) * cols + j].max(cells[i * cols + j - 1])
                };
            }
        }
        Table { cols, cells }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.cols + j]
    }
}

/// Length of the longest common subsequence of `a` and `b`.
pub(crate) fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    Table::new(a, b).at(a.len(), b.len()) as usize
}

/// Indices into `reference` of one LCS with `candidate`: the one rouge-score's
/// `_backtrack_norec` reads out (on a tie it moves up, in `reference`). The
/// choice matters because summary-level LCS takes a union of these sets.
fn lcs_indices<T: PartialEq>(reference: &[T], candidate: &[T]) -> Vec<usize> {
    let t = Table::new(reference, candidate);
    let (mut i, mut j) = (reference.len(), candidate.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if reference[i - 1] == candidate[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t.at(i, j - 1) > t.at(i - 1, j) {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

/// Summary-level LCS hits (Lin 2004, §3.2, as ROUGE-1.5.5 and rouge-score
/// count them): for each reference sentence, the union of its LCS with every
/// candidate sentence; a token counts at most as often as it occurs in both
/// the whole reference and the whole candidate.
pub(crate) fn union_lcs_hits(reference: &[Vec<String>], candidate: &[Vec<String>]) -> usize {
    let mut left_r: HashMap<&str, usize> = HashMap::new();
    let mut left_c: HashMap<&str, usize> = HashMap::new();
    for t in reference.iter().flatten() {
        *left_r.entry(t).or_default() += 1;
    }
    for t in candidate.iter().flatten() {
        *left_c.entry(t).or_default() += 1;
    }
    let mut hits = 0;
    for r in reference {
        let union: BTreeSet<usize> = candidate.iter().flat_map(|c| lcs_indices(r, c)).collect();
        for i in union {
            let token = r[i].as_str();
            match (left_c.get_mut(token), left_r.get_mut(token)) {
                (Some(c), Some(rr)) if *c > 0 && *rr > 0 => {
                    hits += 1;
                    *c -= 1;
                    *rr -= 1;
                }
                _ => {}
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn lcs_length() {
        assert_eq!(lcs_len(&words("a b c d"), &words("a c d b")), 3);
        assert_eq!(lcs_len::<String>(&[], &words("a")), 0);
    }

    #[test]
    fn backtrack_prefers_moving_up_on_ties() {
        // Both "a" (index 0) and "b" (index 1) are LCSs of length 1; moving up
        // in the reference on the tie keeps the earlier token.
        assert_eq!(lcs_indices(&words("a b"), &words("b a")), [0]);
        assert_eq!(lcs_indices(&words("a b c"), &words("a x c")), [0, 2]);
    }

    #[test]
    fn union_lcs_of_the_paper_example() {
        // Lin (2004) §3.2: r = w1 w2 w3 w4 w5, c1 = w1 w2 w6 w7 w8,
        // c2 = w1 w3 w8 w9 w5: union LCS = w1 w2 w3 w5 (4 hits).
        let r = vec![words("w1 w2 w3 w4 w5")];
        let c = vec![words("w1 w2 w6 w7 w8"), words("w1 w3 w8 w9 w5")];
        assert_eq!(union_lcs_hits(&r, &c), 4);
    }

    #[test]
    fn union_hits_are_clipped_by_token_counts() {
        // "a" occurs once in the candidate, so it can be hit only once even
        // though both reference sentences match it.
        let r = vec![words("a"), words("a")];
        let c = vec![words("a")];
        assert_eq!(union_lcs_hits(&r, &c), 1);
    }
}
