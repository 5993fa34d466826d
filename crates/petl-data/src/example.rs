//! In-memory examples and datasets.

use std::path::PathBuf;

use crate::task::TaskSpec;

/// The supervision target of one example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// A class id, indexing the task's label list.
    Class(usize),
    /// A regression target.
    Score(f32),
    /// No gold label (e.g. GLUE test splits).
    Unlabeled,
}

impl Label {
    /// A short name of the label's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Label::Class(_) => "class",
            Label::Score(_) => "score",
            Label::Unlabeled => "unlabeled",
        }
    }
}

/// One raw (untokenized) example: a text or text pair and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The first (or only) text.
    pub text_a: String,
    /// The second text of a pair task.
    pub text_b: Option<String>,
    /// The target.
    pub label: Label,
}

/// A task description plus its examples, as read from one file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// What the labels mean and how to evaluate.
    pub spec: TaskSpec,
    /// The rows, in file order.
    pub examples: Vec<Example>,
    /// The file the examples were read from.
    pub source: PathBuf,
}

impl Dataset {
    /// Keeps only the first `n` examples (no-op when there are fewer).
    pub fn truncate(&mut self, n: usize) {
        self.examples.truncate(n);
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}
