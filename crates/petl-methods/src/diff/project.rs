//! Projection onto the L0 ball: keep exactly `k` entries of a dense diff, the largest in
//! magnitude (Guo et al. §3.2).
//!
//! The reference code bisects a threshold until the kept fraction is *at most* the target; a
//! selection gives the k-th largest magnitude directly, so the count is exact. Entries tied at
//! the threshold — in particular the zeros that fill the count when L0 training closed more
//! gates than the target allows — are ranked by a secondary score (the ungated `|w|` of a gated
//! diff), then kept in a fixed order (tensor name, then flat position), so the same diff always
//! projects to the same mask and the filler is the most promising entries, not the first ones.

use petl_sparse::{SparseDiff, SparseTensor};
use std::collections::BTreeMap;

/// A dense diff of one base tensor: its shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseDiff {
    /// The base tensor's shape.
    pub shape: Vec<usize>,
    /// δ, row-major.
    pub values: Vec<f32>,
    /// A score ranking entries whose `|δ|` ties (larger first), e.g. the ungated `|w|`.
    pub tiebreak: Option<Vec<f32>>,
}

/// Why a diff cannot be projected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProjectionError {
    /// A diff value is NaN, so it has no magnitude to rank.
    #[error("the diff of {tensor} holds NaN at position {position}; the run that produced it diverged")]
    NotANumber {
        /// Tensor name.
        tensor: String,
        /// Flat position.
        position: usize,
    },
    /// More entries requested than the diff has.
    #[error("cannot keep {keep} entries of a diff with {total}")]
    TooMany {
        /// Requested count.
        keep: usize,
        /// Entries available.
        total: usize,
    },
    /// A value and shape disagree.
    #[error("the diff of {tensor} has {values} values for shape {shape:?}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// Values given.
        values: usize,
        /// Shape given.
        shape: Vec<usize>,
    },
    /// The result violates the sparse format's rules (cannot happen for valid input).
    #[error("{0}")]
    Sparse(String),
}

/// Keeps exactly `keep` entries of `diffs` with the largest `|δ|`; returns them with their
/// values. When fewer than `keep` entries are nonzero, zeros fill the count in name/position
/// order (they are still positions the fixed-mask stage may train).
pub fn project(diffs: &BTreeMap<String, DenseDiff>, keep: usize) -> Result<SparseDiff, ProjectionError> {
    let mut total = 0usize;
    for (name, d) in diffs {
        let numel: usize = d.shape.iter().product();
        if numel != d.values.len() {
            return Err(ProjectionError::Shape {
                tensor: name.clone(),
                values: d.values.len(),
                shape: d.shape.clone(),
            });
        }
        if let Some(position) = d.values.iter().position(|v| v.is_nan()) {
            return Err(ProjectionError::NotANumber {
                tensor: name.clone(),
                position,
            });
        }
        total += numel;
    }
    if keep > total {
        return Err(ProjectionError::TooMany { keep, total });
    }
    let threshold = kth_largest_magnitude(diffs, total, keep);
    let above: usize = diffs
        .values()
        .map(|d| d.values.iter().filter(|v| v.abs() > threshold).count())
        .sum();
    let ties = keep - above;
    // Among the entries tied at the threshold, the `ties` best by secondary score: those above
    // the score threshold, then those at it in name/position order.
    let mut tie_scores: Vec<f32> = diffs
        .values()
        .flat_map(|d| {
            d.values
                .iter()
                .enumerate()
                .filter(move |(_, v)| v.abs() == threshold)
                .map(move |(i, _)| tiebreak_of(d, i))
        })
        .collect();
    let score_threshold = kth_largest(&mut tie_scores, ties);
    let above_score = tie_scores.iter().filter(|s| **s > score_threshold).count();
    let mut at_score_left = ties - above_score;
    let mut tensors = BTreeMap::new();
    for (name, d) in diffs {
        let mut positions = Vec::new();
        let mut values = Vec::new();
        for (i, &v) in d.values.iter().enumerate() {
            let m = v.abs();
            let kept = if m > threshold {
                true
            } else if m == threshold && keep > 0 && ties > 0 {
                let score = tiebreak_of(d, i);
                if score > score_threshold {
                    true
                } else if score == score_threshold && at_score_left > 0 {
                    at_score_left -= 1;
                    true
                } else {
                    false
                }
            } else {
                false
            };
            if kept {
                positions.push(i as u64);
                values.push(v);
            }
        }
        let t = SparseTensor::new(d.shape.clone(), positions, values)
            .map_err(|e| ProjectionError::Sparse(e.to_string()))?;
        tensors.insert(name.clone(), t);
    }
    Ok(SparseDiff { tensors })
}

/// The `keep`-th largest magnitude (`+∞` when nothing is kept, so nothing passes `>`).
fn kth_largest_magnitude(diffs: &BTreeMap<String, DenseDiff>, total: usize, keep: usize) -> f32 {
    let mut mags: Vec<f32> = Vec::with_capacity(total);
    for d in diffs.values() {
        mags.extend(d.values.iter().map(|v| v.abs()));
    }
    kth_largest(&mut mags, keep)
}

/// The `k`-th largest of `values` (`+∞` for k = 0); reorders `values`.
fn kth_largest(values: &mut [f32], k: usize) -> f32 {
    if k == 0 || values.is_empty() {
        return f32::INFINITY;
    }
    let n = values.len();
    let (_, kth, _) = values.select_nth_unstable_by(n - k.min(n), f32::total_cmp);
    *kth
}

/// The secondary score of entry `i` (0 without one; NaN scores rank last).
fn tiebreak_of(d: &DenseDiff, i: usize) -> f32 {
    d.tiebreak.as_ref().and_then(|t| t.get(i)).map_or(0.0, |s| {
        if s.is_nan() {
            f32::NEG_INFINITY
        } else {
            s.abs()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(values: Vec<f32>) -> DenseDiff {
        DenseDiff {
            shape: vec![values.len()],
            values,
            tiebreak: None,
        }
    }

    #[test]
    fn keeps_exactly_k_largest_with_deterministic_ties() {
        let diffs = BTreeMap::from([
            ("a".to_string(), diff(vec![0.5, -2.0, 0.5, 0.0])),
            ("b".to_string(), diff(vec![0.5, 3.0, -0.5, 0.1])),
        ]);
        let p = project(&diffs, 3).unwrap();
        assert_eq!(p.nnz(), 3);
        // 3.0 and -2.0, then the first 0.5 in name/position order.
        assert_eq!(p.tensors["a"].positions, vec![0, 1]);
        assert_eq!(p.tensors["a"].values, vec![0.5, -2.0]);
        assert_eq!(p.tensors["b"].positions, vec![1]);
        for keep in 0..=8 {
            assert_eq!(project(&diffs, keep).unwrap().nnz() as usize, keep, "keep {keep}");
        }
        // Fewer nonzeros than asked: zeros fill the count.
        let sparse = BTreeMap::from([("z".to_string(), diff(vec![0.0, 1.0, 0.0, 0.0]))]);
        let p = project(&sparse, 2).unwrap();
        assert_eq!(p.tensors["z"].positions, vec![0, 1]);
        assert!(matches!(
            project(&sparse, 5),
            Err(ProjectionError::TooMany { .. })
        ));
    }

    #[test]
    fn large_random_diff_projects_to_the_exact_count() {
        let mut rng = petl_ops::DropoutRng::new(11);
        let mut diffs = BTreeMap::new();
        for (i, n) in [100_000usize, 3_333, 1, 77_777].iter().enumerate() {
            // Coarse values: many exact ties.
            let v: Vec<f32> = rng
                .uniform(*n)
                .iter()
                .map(|u| ((u - 0.5) * 64.0).round() / 8.0)
                .collect();
            diffs.insert(format!("t{i}"), diff(v));
        }
        let total: usize = diffs.values().map(|d| d.values.len()).sum();
        let keep = (total as f64 * 0.005).round() as usize;
        let p = project(&diffs, keep).unwrap();
        assert_eq!(p.nnz() as usize, keep);
        let kept_min = p
            .tensors
            .values()
            .flat_map(|t| t.values.iter().map(|v| v.abs()))
            .fold(f32::INFINITY, f32::min);
        let dropped_max = diffs
            .iter()
            .flat_map(|(name, d)| {
                let kept = &p.tensors[name].positions;
                d.values
                    .iter()
                    .enumerate()
                    .filter(move |(i, _)| kept.binary_search(&(*i as u64)).is_err())
                    .map(|(_, v)| v.abs())
            })
            .fold(0f32, f32::max);
        assert!(kept_min >= dropped_max, "kept {kept_min} < dropped {dropped_max}");
    }

    /// When fewer entries are nonzero than kept, the filler zeros are those with the largest
    /// secondary score, not the first in name order.
    #[test]
    fn zeros_fill_the_count_by_secondary_score() {
        let diffs = BTreeMap::from([
            (
                "a".to_string(),
                DenseDiff {
                    tiebreak: Some(vec![0.1, 0.0, 0.9, 0.3]),
                    ..diff(vec![0.0, 2.0, 0.0, 0.0])
                },
            ),
            (
                "b".to_string(),
                DenseDiff {
                    tiebreak: Some(vec![0.5, -0.7]),
                    ..diff(vec![0.0, 0.0])
                },
            ),
        ]);
        let p = project(&diffs, 3).unwrap();
        // 2.0, then the zeros with |score| 0.9 (a[2]) and 0.7 (b[1]).
        assert_eq!(p.tensors["a"].positions, vec![1, 2]);
        assert_eq!(p.tensors["b"].positions, vec![1]);
        for keep in 0..=6 {
            assert_eq!(project(&diffs, keep).unwrap().nnz() as usize, keep);
        }
    }

    #[test]
    fn nan_is_named() {
        let diffs = BTreeMap::from([("w".to_string(), diff(vec![0.0, f32::NAN]))]);
        let e = project(&diffs, 1).unwrap_err().to_string();
        assert!(
            e.contains("w") && e.contains("NaN") && e.contains("position 1"),
            "{e}"
        );
    }
}
