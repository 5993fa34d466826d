//! Correlation metrics over real-valued scores.

use crate::error::{check_pair, MetricsError, Result, Side};

/// Pearson product-moment correlation coefficient of `x` and `y`.
///
/// Computed in two passes (means first, then centered sums) so that large
/// offsets such as scores near 1e9 do not cancel catastrophically. The result
/// is clamped to `[-1, 1]` to absorb rounding, as scipy does.
///
/// # Errors
/// [`LengthMismatch`](MetricsError::LengthMismatch),
/// [`Empty`](MetricsError::Empty), [`NonFinite`](MetricsError::NonFinite),
/// or [`ZeroVariance`](MetricsError::ZeroVariance) when either input is
/// constant (including a single sample), where the coefficient is undefined.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y)?;
    check_finite(x, Side::Predicted)?;
    check_finite(y, Side::Gold)?;
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return Err(MetricsError::ZeroVariance {
            side: Side::Predicted,
        });
    }
    if syy == 0.0 {
        return Err(MetricsError::ZeroVariance { side: Side::Gold });
    }
    // Separate square roots avoid overflow/underflow of sxx·syy for extreme
    // magnitudes.
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman rank correlation: Pearson of the average [`ranks`] of `x` and `y`.
///
/// Tied values share the mean of the ranks they span, matching
/// `scipy.stats.spearmanr`.
///
/// # Errors
/// As [`pearson`]; [`ZeroVariance`](MetricsError::ZeroVariance) here means
/// every value of one input is tied.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y)?;
    // Ranks of NaN are meaningless, so reject before ranking hides them.
    check_finite(x, Side::Predicted)?;
    check_finite(y, Side::Gold)?;
    pearson(&ranks(x), &ranks(y))
}

/// 1-based fractional ranks: tied values all receive the mean of the ranks
/// they occupy (scipy's `rankdata(method="average")`).
///
/// `ranks(&[10., 20., 20., 5.])` is `[2.0, 3.5, 3.5, 1.0]`. NaNs sort after
/// every other value and never tie (NaN ≠ NaN); `-0.0` ties with `0.0`.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    // total_cmp gives a total order in which equal values stay adjacent
    // (−0.0 sorts directly before 0.0), so runs of `==` are contiguous.
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let v = x[order[start]];
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == v {
            end += 1;
        }
        // Positions start..end hold 1-based ranks start+1..=end; their mean
        // is the midpoint.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

fn check_finite(v: &[f64], side: Side) -> Result<()> {
    match v.iter().position(|a| !a.is_finite()) {
        Some(index) => Err(MetricsError::NonFinite { side, index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < TOL, "got {got}, want {want}");
    }

    #[test]
    fn pearson_hand_computed() {
        // mean x = 2.5, mean y = 5
        // dx = [−1.5, −0.5, 0.5, 1.5], dy = [−3, −1, 0, 4]
        // Σdx·dy = 4.5 + 0.5 + 0 + 6 = 11
        // Σdx²   = 2.25 + 0.25 + 0.25 + 2.25 = 5
        // Σdy²   = 9 + 1 + 0 + 16 = 26
        // r = 11 / √(5·26) = 11/√130 ≈ 0.96476
        let got = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).unwrap();
        close(got, 11.0 / 130f64.sqrt());
    }

    #[test]
    fn pearson_linear_is_plus_minus_one() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let up: Vec<f64> = x.iter().map(|v| 2.0 * v + 1.0).collect();
        let down: Vec<f64> = x.iter().map(|v| -3.0 * v + 7.0).collect();
        close(pearson(&x, &up).unwrap(), 1.0);
        close(pearson(&x, &down).unwrap(), -1.0);
    }

    #[test]
    fn pearson_is_stable_under_large_offset() {
        // Shifting both inputs by 1e9 leaves r unchanged mathematically; the
        // two-pass form keeps it exact here because the deviations (±0.5,
        // ±1.5, …) are representable next to 1e9.
        let x = [1.0, 2.0, 3.0, 4.0].map(|v| v + 1e9);
        let y = [2.0, 4.0, 5.0, 9.0].map(|v| v + 1e9);
        close(pearson(&x, &y).unwrap(), 11.0 / 130f64.sqrt());
    }

    #[test]
    fn pearson_constant_is_zero_variance() {
        assert_eq!(
            pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            Err(MetricsError::ZeroVariance {
                side: Side::Predicted
            })
        );
        assert_eq!(
            pearson(&[1.0, 2.0, 3.0], &[4.0, 4.0, 4.0]),
            Err(MetricsError::ZeroVariance { side: Side::Gold })
        );
        // one sample has no spread either
        assert_eq!(
            pearson(&[1.0], &[2.0]),
            Err(MetricsError::ZeroVariance {
                side: Side::Predicted
            })
        );
    }

    #[test]
    fn spearman_with_ties() {
        // ranks x = [1, 2.5, 2.5, 4] (the two 2s share ranks 2 and 3)
        // ranks y = [1, 3, 2, 4]; both rank means = 2.5
        // dx = [−1.5, 0, 0, 1.5], dy = [−1.5, 0.5, −0.5, 1.5]
        // Σdx·dy = 2.25 + 0 + 0 + 2.25 = 4.5
        // Σdx² = 4.5, Σdy² = 2.25 + 0.25 + 0.25 + 2.25 = 5
        // ρ = 4.5 / √(4.5·5) = √(4.5/5) = √0.9 ≈ 0.94868
        let got = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        close(got, 0.9f64.sqrt());
    }

    #[test]
    fn spearman_monotone_nonlinear_is_one() {
        // y = x² is monotone on positives: identical ranks [1..5] → ρ = 1
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 4.0, 9.0, 16.0, 25.0];
        close(spearman(&x, &y).unwrap(), 1.0);
        // reversed ranks → ρ = −1
        let rev = [25.0, 16.0, 9.0, 4.0, 1.0];
        close(spearman(&x, &rev).unwrap(), -1.0);
    }

    #[test]
    fn spearman_all_tied_is_zero_variance() {
        assert_eq!(
            spearman(&[1.0, 2.0], &[3.0, 3.0]),
            Err(MetricsError::ZeroVariance { side: Side::Gold })
        );
    }

    #[test]
    fn rank_averaging() {
        // sorted: 5 (idx 3) → 1, 10 (idx 0) → 2, three 20s span ranks 3,4,5 → (3+4+5)/3 = 4
        assert_eq!(
            ranks(&[10.0, 20.0, 20.0, 5.0, 20.0]),
            vec![2.0, 4.0, 4.0, 1.0, 4.0]
        );
        // pair tie: 20s span ranks 3 and 4 → 3.5
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // all tied: ranks 1..=4 → mean 2.5
        assert_eq!(ranks(&[7.0; 4]), vec![2.5; 4]);
        // signed zeros are equal values
        assert_eq!(ranks(&[0.0, -0.0, -1.0]), vec![2.5, 2.5, 1.0]);
        assert!(ranks(&[]).is_empty());
    }

    #[test]
    fn length_mismatch_empty_and_non_finite() {
        let mismatch = MetricsError::LengthMismatch {
            predicted: 1,
            gold: 2,
        };
        assert_eq!(pearson(&[1.0], &[1.0, 2.0]), Err(mismatch.clone()));
        assert_eq!(spearman(&[1.0], &[1.0, 2.0]), Err(mismatch));
        assert_eq!(pearson(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(spearman(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(
            pearson(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(MetricsError::NonFinite {
                side: Side::Predicted,
                index: 1
            })
        );
        assert_eq!(
            spearman(&[1.0, 2.0], &[f64::INFINITY, 2.0]),
            Err(MetricsError::NonFinite {
                side: Side::Gold,
                index: 0
            })
        );
    }
}
