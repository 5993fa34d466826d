//! Metric identifiers and the per-task headline number.

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;
use crate::evaluate::Scores;

/// An evaluation metric.
///
/// Serialized (and displayed) as its snake_case name, which is also the key
/// under which [`evaluate`](crate::evaluate) stores it in [`Scores`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of exactly matching class labels.
    Accuracy,
    /// Binary F1 of the positive class (label `1`).
    F1,
    /// Matthews correlation coefficient (multiclass form).
    Matthews,
    /// Pearson product-moment correlation of scores.
    Pearson,
    /// Spearman rank correlation of scores.
    Spearman,
}

impl Metric {
    /// Every metric, in declaration order.
    pub const ALL: [Metric; 5] = [
        Metric::Accuracy,
        Metric::F1,
        Metric::Matthews,
        Metric::Pearson,
        Metric::Spearman,
    ];

    /// The snake_case name, identical to the serde and `Display` form.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Matthews => "matthews",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }

    /// The kind of predictions this metric consumes.
    pub fn kind(self) -> PredictionKind {
        match self {
            Metric::Accuracy | Metric::F1 | Metric::Matthews => PredictionKind::Classes,
            Metric::Pearson | Metric::Spearman => PredictionKind::Scores,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Metric {
    type Err = MetricsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| MetricsError::UnknownMetric(s.to_owned()))
    }
}

/// Whether predictions are discrete class labels or real-valued scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionKind {
    /// Class indices (classification tasks).
    Classes,
    /// Real-valued scores (regression tasks such as STS-B).
    Scores,
}

impl std::fmt::Display for PredictionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PredictionKind::Classes => "class",
            PredictionKind::Scores => "score",
        })
    }
}

/// The single number a benchmark reports for a task.
///
/// GLUE reports some tasks as the mean of two metrics (MRPC and QQP: F1 and
/// accuracy; STS-B: Pearson and Spearman), so a headline is either one metric
/// or the unweighted mean of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headline {
    /// Report one metric as is.
    Single(Metric),
    /// Report the arithmetic mean of two metrics.
    MeanOf(Metric, Metric),
}

impl Headline {
    /// A stable label: `"accuracy"` or `"mean(f1,accuracy)"`.
    pub fn name(&self) -> String {
        match self {
            Headline::Single(m) => m.to_string(),
            Headline::MeanOf(a, b) => format!("mean({a},{b})"),
        }
    }

    /// The metrics that must be evaluated for [`compute`](Self::compute) to
    /// succeed.
    pub fn metrics(&self) -> Vec<Metric> {
        match *self {
            Headline::Single(m) => vec![m],
            Headline::MeanOf(a, b) => vec![a, b],
        }
    }

    /// The headline value, or `None` if a required metric is missing from
    /// `scores`.
    pub fn compute(&self, scores: &Scores) -> Option<f64> {
        match *self {
            Headline::Single(m) => scores.get(m),
            Headline::MeanOf(a, b) => Some((scores.get(a)? + scores.get(b)?) / 2.0),
        }
    }
}

impl std::fmt::Display for Headline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_serde_agree_on_names() {
        let want = ["accuracy", "f1", "matthews", "pearson", "spearman"];
        for (m, name) in Metric::ALL.into_iter().zip(want) {
            assert_eq!(m.to_string(), name);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Metric>(&format!("\"{name}\"")).unwrap(), m);
            assert_eq!(name.parse::<Metric>().unwrap(), m);
        }
        assert_eq!(
            "bleu".parse::<Metric>(),
            Err(MetricsError::UnknownMetric("bleu".into()))
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(Metric::Accuracy.kind(), PredictionKind::Classes);
        assert_eq!(Metric::F1.kind(), PredictionKind::Classes);
        assert_eq!(Metric::Matthews.kind(), PredictionKind::Classes);
        assert_eq!(Metric::Pearson.kind(), PredictionKind::Scores);
        assert_eq!(Metric::Spearman.kind(), PredictionKind::Scores);
    }

    #[test]
    fn headline_names() {
        assert_eq!(Headline::Single(Metric::Accuracy).name(), "accuracy");
        assert_eq!(
            Headline::MeanOf(Metric::F1, Metric::Accuracy).name(),
            "mean(f1,accuracy)"
        );
        assert_eq!(
            Headline::MeanOf(Metric::Pearson, Metric::Spearman).to_string(),
            "mean(pearson,spearman)"
        );
    }

    #[test]
    fn headline_mean_of_computes_mean() {
        let mut scores = Scores::default();
        scores.insert(Metric::F1, 0.8);
        scores.insert(Metric::Accuracy, 0.7);
        // (0.8 + 0.7) / 2 = 0.75
        let got = Headline::MeanOf(Metric::F1, Metric::Accuracy)
            .compute(&scores)
            .unwrap();
        assert!((got - 0.75).abs() < 1e-12, "{got}");
        assert_eq!(Headline::Single(Metric::Accuracy).compute(&scores), Some(0.7));
    }

    #[test]
    fn headline_missing_metric_is_none() {
        let mut scores = Scores::default();
        scores.insert(Metric::F1, 0.8);
        assert_eq!(
            Headline::MeanOf(Metric::F1, Metric::Accuracy).compute(&scores),
            None
        );
        assert_eq!(Headline::Single(Metric::Matthews).compute(&scores), None);
        assert_eq!(
            Headline::MeanOf(Metric::F1, Metric::Accuracy).metrics(),
            vec![Metric::F1, Metric::Accuracy]
        );
    }

    #[test]
    fn headline_serde_round_trip() {
        for h in [
            Headline::Single(Metric::Matthews),
            Headline::MeanOf(Metric::Pearson, Metric::Spearman),
        ] {
            let json = serde_json::to_string(&h).unwrap();
            assert_eq!(serde_json::from_str::<Headline>(&json).unwrap(), h);
        }
        assert_eq!(
            serde_json::to_string(&Headline::Single(Metric::Matthews)).unwrap(),
            r#"{"single":"matthews"}"#
        );
    }
}
