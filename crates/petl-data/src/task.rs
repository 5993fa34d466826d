//! Task descriptions: label space and evaluation metrics.

use petl_metrics::{Headline, Metric};
use serde::{Deserialize, Serialize};

/// Whether a task predicts a class or a real number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Single-label classification.
    Classification {
        /// Label names in id order: `labels[i]` is class `i`.
        labels: Vec<String>,
    },
    /// Scalar regression.
    Regression,
}

/// A task: its name, label space and how it is scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Short task name (e.g. `"mrpc"`).
    pub name: String,
    /// Label space.
    pub kind: TaskKind,
    /// Metrics to report, in display order.
    pub metrics: Vec<Metric>,
    /// The single number used for model selection.
    pub headline: Headline,
}

impl TaskSpec {
    /// Width of the prediction head: the number of labels, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        match &self.kind {
            TaskKind::Classification { labels } => labels.len(),
            TaskKind::Regression => 1,
        }
    }

    /// Label names for classification tasks.
    pub fn labels(&self) -> Option<&[String]> {
        match &self.kind {
            TaskKind::Classification { labels } => Some(labels),
            TaskKind::Regression => None,
        }
    }

    /// Whether this is a regression task.
    pub fn is_regression(&self) -> bool {
        matches!(self.kind, TaskKind::Regression)
    }

    /// Default metrics for a user-supplied table: accuracy (plus F1 on the
    /// class with id 1 when binary), or Pearson/Spearman for regression.
    pub fn default_for(name: &str, kind: TaskKind) -> Self {
        let (metrics, headline) = match &kind {
            TaskKind::Classification { labels } if labels.len() == 2 => (
                vec![Metric::Accuracy, Metric::F1],
                Headline::Single(Metric::Accuracy),
            ),
            TaskKind::Classification { .. } => (vec![Metric::Accuracy], Headline::Single(Metric::Accuracy)),
            TaskKind::Regression => (
                vec![Metric::Pearson, Metric::Spearman],
                Headline::MeanOf(Metric::Pearson, Metric::Spearman),
            ),
        };
        TaskSpec {
            name: name.to_string(),
            kind,
            metrics,
            headline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_outputs() {
        let c = TaskSpec::default_for(
            "x",
            TaskKind::Classification {
                labels: vec!["a".into(), "b".into(), "c".into()],
            },
        );
        assert_eq!(c.num_outputs(), 3);
        assert_eq!(c.metrics, vec![Metric::Accuracy]);
        let r = TaskSpec::default_for("y", TaskKind::Regression);
        assert_eq!(r.num_outputs(), 1);
        assert!(r.is_regression());
    }

    #[test]
    fn serde_roundtrip() {
        let spec = TaskSpec::default_for(
            "bin",
            TaskKind::Classification {
                labels: vec!["neg".into(), "pos".into()],
            },
        );
        let json = serde_json::to_string(&spec).expect("serialize");
        let back: TaskSpec = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, spec);
        assert!(json.contains("\"classification\""), "{json}");
    }
}
