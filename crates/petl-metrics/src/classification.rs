//! Metrics over discrete class labels.

use std::collections::BTreeMap;

use crate::error::{check_pair, Result};

/// Fraction of positions where `predicted` equals `gold`.
///
/// # Errors
/// [`LengthMismatch`](crate::MetricsError::LengthMismatch) or
/// [`Empty`](crate::MetricsError::Empty).
pub fn accuracy(predicted: &[usize], gold: &[usize]) -> Result<f64> {
    check_pair(predicted, gold)?;
    let correct = predicted.iter().zip(gold).filter(|(p, g)| p == g).count();
    Ok(correct as f64 / predicted.len() as f64)
}

/// F1 score of the class `positive`, treating every other label as negative.
///
/// Matches `sklearn.metrics.f1_score(average="binary", zero_division=0)`:
/// `2·TP / (2·TP + FP + FN)`, and `0.0` when there are neither predicted nor
/// gold positives (the ratio would be `0/0`).
///
/// # Errors
/// [`LengthMismatch`](crate::MetricsError::LengthMismatch) or
/// [`Empty`](crate::MetricsError::Empty).
pub fn f1_binary(predicted: &[usize], gold: &[usize], positive: usize) -> Result<f64> {
    check_pair(predicted, gold)?;
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&p, &g) in predicted.iter().zip(gold) {
        match (p == positive, g == positive) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    // The 2TP form is algebraically the harmonic mean of precision and recall
    // but avoids dividing twice and needs only one zero-division check.
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        return Ok(0.0);
    }
    Ok((2 * tp) as f64 / denom as f64)
}

/// Matthews correlation coefficient over any number of classes.
///
/// Uses the multiclass generalisation (Gorodkin 2004) that
/// `sklearn.metrics.matthews_corrcoef` implements. With `t_k`/`p_k` the
/// number of times class `k` occurs in gold/predicted, `c` the number of
/// correct predictions and `s` the number of samples:
///
/// ```text
///            c·s − Σ t_k·p_k
/// MCC = ─────────────────────────────────
///       √(s² − Σ p_k²) · √(s² − Σ t_k²)
/// ```
///
/// For two classes this reduces to the familiar
/// `(TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN))`. Returns `0.0` when
/// either input holds a single class (zero denominator), as sklearn does.
///
/// # Errors
/// [`LengthMismatch`](crate::MetricsError::LengthMismatch) or
/// [`Empty`](crate::MetricsError::Empty).
pub fn matthews_corrcoef(predicted: &[usize], gold: &[usize]) -> Result<f64> {
    check_pair(predicted, gold)?;
    // Only marginal counts and the trace are needed, so labels may be sparse
    // (e.g. 0 and 1000) without allocating a dense confusion matrix.
    let mut marginals: BTreeMap<usize, (i128, i128)> = BTreeMap::new();
    let mut correct: i128 = 0;
    for (&p, &g) in predicted.iter().zip(gold) {
        marginals.entry(g).or_default().0 += 1;
        marginals.entry(p).or_default().1 += 1;
        correct += i128::from(p == g);
    }
    let s = predicted.len() as i128;
    // Integer sums keep the covariances exact; rounding happens only in the
    // final division, so e.g. an all-one-class input is exactly 0.
    let (mut tp_dot, mut pp_dot, mut tt_dot) = (0i128, 0i128, 0i128);
    for &(t, p) in marginals.values() {
        tp_dot += t * p;
        pp_dot += p * p;
        tt_dot += t * t;
    }
    let cov_ytyp = correct * s - tp_dot;
    let cov_ypyp = s * s - pp_dot;
    let cov_ytyt = s * s - tt_dot;
    if cov_ypyp == 0 || cov_ytyt == 0 {
        return Ok(0.0);
    }
    // One sqrt of the exact product keeps perfect squares exact; the split
    // form only serves inputs of billions of samples where i128 overflows.
    let denom = match cov_ypyp.checked_mul(cov_ytyt) {
        Some(prod) => (prod as f64).sqrt(),
        None => (cov_ypyp as f64).sqrt() * (cov_ytyt as f64).sqrt(),
    };
    Ok((cov_ytyp as f64 / denom).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsError;

    const TOL: f64 = 1e-12;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < TOL, "got {got}, want {want}");
    }

    #[test]
    fn accuracy_hand_computed() {
        // matches at positions 0, 1, 3 → 3 of 5 = 0.6
        let got = accuracy(&[0, 1, 1, 0, 2], &[0, 1, 0, 0, 1]).unwrap();
        close(got, 3.0 / 5.0);
    }

    #[test]
    fn accuracy_extremes() {
        close(accuracy(&[2, 2], &[2, 2]).unwrap(), 1.0);
        close(accuracy(&[0, 1], &[1, 0]).unwrap(), 0.0);
    }

    #[test]
    fn f1_with_positives() {
        let predicted = [1, 1, 1, 0, 0];
        let gold = [1, 1, 0, 0, 1];
        // positive = 1: TP = {0,1} = 2, FP = {2} = 1, FN = {4} = 1, TN = {3} = 1
        // F1 = 2·2 / (2·2 + 1 + 1) = 4/6 (precision = recall = 2/3)
        close(f1_binary(&predicted, &gold, 1).unwrap(), 4.0 / 6.0);
        // positive = 0: TP = {3} = 1, FP = {4} = 1, FN = {2} = 1
        // F1 = 2·1 / (2·1 + 1 + 1) = 2/4 = 0.5
        close(f1_binary(&predicted, &gold, 0).unwrap(), 0.5);
    }

    #[test]
    fn f1_unbalanced_precision_and_recall() {
        // positive = 1: TP = {0} = 1, FP = {1,2} = 2, FN = {4} = 1
        // precision = 1/3, recall = 1/2, F1 = 2·(1/3)(1/2)/(1/3 + 1/2) = (1/3)/(5/6) = 2/5
        // and via counts: 2·1 / (2·1 + 2 + 1) = 2/5
        let got = f1_binary(&[1, 1, 1, 0, 0], &[1, 0, 0, 0, 1], 1).unwrap();
        close(got, 2.0 / 5.0);
    }

    #[test]
    fn f1_zero_positives_is_zero() {
        // TP = FP = FN = 0 → 0/0, sklearn zero_division=0 → 0.0
        assert_eq!(f1_binary(&[0, 0, 0], &[0, 0, 0], 1).unwrap(), 0.0);
        // TP = 0, FP = 1, FN = 0 → 0 / (0 + 1 + 0) = 0
        assert_eq!(f1_binary(&[1, 0], &[0, 0], 1).unwrap(), 0.0);
        // TP = 0, FP = 0, FN = 2 → 0 / 2 = 0
        assert_eq!(f1_binary(&[0, 0], &[1, 1], 1).unwrap(), 0.0);
    }

    #[test]
    fn mcc_binary_hand_computed() {
        let predicted = [1, 1, 1, 0, 0, 0, 0, 1];
        let gold = [1, 1, 0, 0, 0, 1, 0, 0];
        // TP = {0,1} = 2, FP = {2,7} = 2, FN = {5} = 1, TN = {3,4,6} = 3
        // MCC = (2·3 − 2·1) / √((2+2)(2+1)(3+2)(3+1)) = 4 / √240 = 1/√15
        // General form agrees: t = [5, 3], p = [4, 4], c = 5, s = 8
        //   (5·8 − (20+12)) / √((64 − 32)(64 − 34)) = 8 / √960 = 1/√15
        let got = matthews_corrcoef(&predicted, &gold).unwrap();
        close(got, 1.0 / 15f64.sqrt());
    }

    #[test]
    fn mcc_three_class_hand_computed() {
        let gold = [0, 0, 0, 1, 1, 2, 2];
        let predicted = [0, 0, 1, 1, 2, 2, 1];
        // Confusion C[gold][pred]:
        //        p0 p1 p2
        //   g0 [ 2, 1, 0 ]   t0 = 3
        //   g1 [ 0, 1, 1 ]   t1 = 2
        //   g2 [ 0, 1, 1 ]   t2 = 2
        //   p_k = [2, 3, 2], c = trace = 4, s = 7
        // cov(yt,yp) = 4·7 − (3·2 + 2·3 + 2·2) = 28 − 16 = 12
        // cov(yp,yp) = 49 − (4 + 9 + 4)       = 32
        // cov(yt,yt) = 49 − (9 + 4 + 4)       = 32
        // MCC = 12 / √(32·32) = 12/32 = 0.375
        let got = matthews_corrcoef(&predicted, &gold).unwrap();
        close(got, 0.375);
    }

    #[test]
    fn mcc_single_class_is_zero() {
        // gold and predictions all class 1: s² − Σ t² = 9 − 9 = 0 → 0.0
        assert_eq!(matthews_corrcoef(&[1, 1, 1], &[1, 1, 1]).unwrap(), 0.0);
        // only predictions constant: s² − Σ p² = 16 − 16 = 0 → 0.0
        assert_eq!(matthews_corrcoef(&[0, 0, 0, 0], &[0, 1, 0, 1]).unwrap(), 0.0);
    }

    #[test]
    fn mcc_perfect_and_inverted() {
        // perfect: c = s, so numerator = s² − Σ t² = denominator
        close(matthews_corrcoef(&[0, 1, 2, 1], &[0, 1, 2, 1]).unwrap(), 1.0);
        // binary inverted: TP = TN = 0, FP = FN = 2 → (0 − 4)/√(2·2·2·2) = −1
        close(matthews_corrcoef(&[1, 1, 0, 0], &[0, 0, 1, 1]).unwrap(), -1.0);
    }

    #[test]
    fn mcc_sparse_labels() {
        // Same structure as the binary case with 0 → 7 and 1 → 1000.
        let map = |v: &[usize]| -> Vec<usize> { v.iter().map(|&x| if x == 1 { 1000 } else { 7 }).collect() };
        let predicted = map(&[1, 1, 1, 0, 0, 0, 0, 1]);
        let gold = map(&[1, 1, 0, 0, 0, 1, 0, 0]);
        close(matthews_corrcoef(&predicted, &gold).unwrap(), 1.0 / 15f64.sqrt());
    }

    #[test]
    fn length_mismatch_and_empty() {
        let mismatch = MetricsError::LengthMismatch {
            predicted: 2,
            gold: 1,
        };
        assert_eq!(accuracy(&[0, 1], &[0]), Err(mismatch.clone()));
        assert_eq!(f1_binary(&[0, 1], &[0], 1), Err(mismatch.clone()));
        assert_eq!(matthews_corrcoef(&[0, 1], &[0]), Err(mismatch));
        assert_eq!(accuracy(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(f1_binary(&[], &[], 1), Err(MetricsError::Empty));
        assert_eq!(matthews_corrcoef(&[], &[]), Err(MetricsError::Empty));
    }
}
