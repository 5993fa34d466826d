//! `log2_binomial` against exact values and independent summations.

use petl_sparse::log2_binomial;

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// log2 C(n,k) by summing log2((n-i)/(i+1)) with Neumaier compensation: slow but independent.
fn by_sum(n: u64, k: u64) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for i in 0..k {
        let t = ((n - i) as f64 / (i + 1) as f64).log2();
        let u = s + t;
        c += if s.abs() >= t.abs() {
            (s - u) + t
        } else {
            (t - u) + s
        };
        s = u;
    }
    s + c
}

#[test]
fn exact_small_cases() {
    assert!(rel(log2_binomial(10, 3), 120f64.log2()) < 1e-14);
    assert!(rel(log2_binomial(10, 7), 120f64.log2()) < 1e-14);
    assert!(rel(log2_binomial(52, 5), 2_598_960f64.log2()) < 1e-14);
    assert!(rel(log2_binomial(64, 32), 1_832_624_140_942_590_534f64.log2()) < 1e-14);
    assert_eq!(log2_binomial(1, 1), 0.0);
    assert!(rel(log2_binomial(2, 1), 1.0) < 1e-15);
}

#[test]
fn edge_cases_k_zero_k_n_and_k_above_n() {
    for n in [0u64, 1, 7, 1 << 40, u64::MAX] {
        assert_eq!(log2_binomial(n, 0), 0.0);
        assert_eq!(log2_binomial(n, n), 0.0);
    }
    assert!(log2_binomial(5, 6).is_nan(), "k > n is NaN (documented)");
    assert!(log2_binomial(0, 1).is_nan());
}

#[test]
fn c_1000_500_matches_sum_of_logs() {
    let want = by_sum(1000, 500);
    let got = log2_binomial(1000, 500);
    println!("log2 C(1000,500): {got} vs sum {want}");
    assert!(rel(got, want) < 1e-12, "{got} vs {want}");
    // Known to be ~ 995.1 bits.
    assert!((got - 995.0).abs() < 1.0);
}

#[test]
fn large_n_matches_compensated_sum() {
    let n = 10_000_000_000u64;
    for k in [1u64, 2, 16, 17, 1000, 100_000, 3_000_000] {
        let want = by_sum(n, k);
        let got = log2_binomial(n, k);
        assert!(
            rel(got, want) < 1e-10,
            "C({n},{k}): {got} vs {want}, rel {}",
            rel(got, want)
        );
    }
    // Moderate n, k close to n/2 where both n and n-k matter.
    for (n, k) in [
        (22_020_096u64, 220_201u64),
        (2_000_000, 1_000_000),
        (100_000, 99_000),
    ] {
        let want = by_sum(n, k.min(n - k));
        assert!(rel(log2_binomial(n, k), want) < 1e-10, "C({n},{k})");
    }
}

#[test]
fn huge_k_is_consistent_with_pascal_steps_and_symmetry() {
    // At n = 1e10, k = 1e8 the value is ~8e8 bits; the step identity
    // log2 C(n,k+1) - log2 C(n,k) = log2((n-k)/(k+1)) must hold to ~1e-6 absolute, which
    // requires relative accuracy ~1e-15 of each value.
    let n = 10_000_000_000u64;
    for k in [99_999_999u64, 100_000_000, 1_234_567_890, 4_999_999_999] {
        let step = log2_binomial(n, k + 1) - log2_binomial(n, k);
        let want = ((n - k) as f64 / (k + 1) as f64).log2();
        let tol = 1e-6 + 1e-14 * log2_binomial(n, k);
        assert!((step - want).abs() < tol, "k={k}: step {step} vs {want}");
        assert_eq!(log2_binomial(n, k), log2_binomial(n, n - k));
    }
    // And the entropy approximation n·H(k/n) − ½log2(2π n p (1-p)) is within 1e-6 relative.
    let k = 100_000_000u64;
    let p = k as f64 / n as f64;
    let h = -(p * p.log2() + (1.0 - p) * (1.0 - p).log2());
    let approx = n as f64 * h - 0.5 * (2.0 * std::f64::consts::PI * n as f64 * p * (1.0 - p)).log2();
    assert!(rel(log2_binomial(n, k), approx) < 1e-9);
}
