//! The GLUE benchmark tasks in their original TSV layout.

use std::path::{Path, PathBuf};

use petl_metrics::{Headline, Metric};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::example::Dataset;
use crate::table::{
    build_dataset, read_headed_tsv, read_tsv_body, ColumnIdx, ColumnSel, LabelColumn, LineReader,
};
use crate::task::{TaskKind, TaskSpec};

/// A GLUE task. MNLI appears twice because its two dev sets are scored separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability.
    Cola,
    /// Stanford Sentiment Treebank (binary).
    Sst2,
    /// Microsoft Research Paraphrase Corpus.
    Mrpc,
    /// Semantic Textual Similarity Benchmark (regression).
    Stsb,
    /// Quora Question Pairs.
    Qqp,
    /// MultiNLI, matched dev set.
    Mnli,
    /// MultiNLI, mismatched dev set.
    MnliMismatched,
    /// Question NLI (from SQuAD).
    Qnli,
    /// Recognizing Textual Entailment.
    Rte,
    /// Winograd NLI.
    Wnli,
}

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training data.
    Train,
    /// Development (validation) data; GLUE reports on this.
    Dev,
    /// Test data, without gold labels.
    Test,
}

impl Split {
    /// Lowercase name: `"train"`, `"dev"` or `"test"`.
    pub fn name(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

const ALL: [GlueTask; 10] = [
    GlueTask::Cola,
    GlueTask::Sst2,
    GlueTask::Mrpc,
    GlueTask::Stsb,
    GlueTask::Qqp,
    GlueTask::Mnli,
    GlueTask::MnliMismatched,
    GlueTask::Qnli,
    GlueTask::Rte,
    GlueTask::Wnli,
];

/// How the text and label columns of a task's files are found.
enum Layout {
    /// CoLA train/dev: no header; fixed positions.
    Fixed { width: usize, text: usize, label: usize },
    /// A header row names the columns.
    Headed(ColumnSel),
}

impl GlueTask {
    /// Parses a task name case-insensitively; accepts the common spellings
    /// (`"sst2"`/`"sst-2"`, `"stsb"`/`"sts-b"`, `"mnli-m"`, `"mnli-mm"`, ...).
    pub fn from_name(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Some(match norm.as_str() {
            "cola" => GlueTask::Cola,
            "sst2" | "sst-2" => GlueTask::Sst2,
            "mrpc" => GlueTask::Mrpc,
            "stsb" | "sts-b" => GlueTask::Stsb,
            "qqp" => GlueTask::Qqp,
            "mnli" | "mnli-m" => GlueTask::Mnli,
            "mnli-mm" => GlueTask::MnliMismatched,
            "qnli" => GlueTask::Qnli,
            "rte" => GlueTask::Rte,
            "wnli" => GlueTask::Wnli,
            _ => return None,
        })
    }

    /// Canonical short name, accepted by [`GlueTask::from_name`].
    pub fn name(&self) -> &'static str {
        match self {
            GlueTask::Cola => "cola",
            GlueTask::Sst2 => "sst2",
            GlueTask::Mrpc => "mrpc",
            GlueTask::Stsb => "stsb",
            GlueTask::Qqp => "qqp",
            GlueTask::Mnli => "mnli",
            GlueTask::MnliMismatched => "mnli-mm",
            GlueTask::Qnli => "qnli",
            GlueTask::Rte => "rte",
            GlueTask::Wnli => "wnli",
        }
    }

    /// Every task, in the GLUE paper's order.
    pub fn all() -> &'static [GlueTask] {
        &ALL
    }

    /// Directory of the task under the GLUE data root (the layout produced
    /// by the standard `download_glue_data.py`).
    pub fn dir_name(&self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Stsb => "STS-B",
            GlueTask::Qqp => "QQP",
            GlueTask::Mnli | GlueTask::MnliMismatched => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
            GlueTask::Wnli => "WNLI",
        }
    }

    /// File name of a split inside [`GlueTask::dir_name`].
    pub fn split_file(&self, split: Split) -> &'static str {
        match (self, split) {
            (_, Split::Train) => "train.tsv",
            (GlueTask::Mnli, Split::Dev) => "dev_matched.tsv",
            (GlueTask::MnliMismatched, Split::Dev) => "dev_mismatched.tsv",
            (GlueTask::Mnli, Split::Test) => "test_matched.tsv",
            (GlueTask::MnliMismatched, Split::Test) => "test_mismatched.tsv",
            (_, Split::Dev) => "dev.tsv",
            (_, Split::Test) => "test.tsv",
        }
    }

    /// Label space and the metrics the GLUE leaderboard reports.
    pub fn spec(&self) -> TaskSpec {
        let labels = |ls: &[&str]| TaskKind::Classification {
            labels: ls.iter().map(|l| l.to_string()).collect(),
        };
        let binary = labels(&["0", "1"]);
        let entail = labels(&["entailment", "not_entailment"]);
        let acc = || (vec![Metric::Accuracy], Headline::Single(Metric::Accuracy));
        let acc_f1 = || {
            (
                vec![Metric::Accuracy, Metric::F1],
                Headline::MeanOf(Metric::F1, Metric::Accuracy),
            )
        };
        let (kind, (metrics, headline)) = match self {
            GlueTask::Cola => (
                binary,
                (vec![Metric::Matthews], Headline::Single(Metric::Matthews)),
            ),
            GlueTask::Sst2 | GlueTask::Wnli => (binary, acc()),
            GlueTask::Mrpc | GlueTask::Qqp => (binary, acc_f1()),
            GlueTask::Stsb => (
                TaskKind::Regression,
                (
                    vec![Metric::Pearson, Metric::Spearman],
                    Headline::MeanOf(Metric::Pearson, Metric::Spearman),
                ),
            ),
            GlueTask::Mnli | GlueTask::MnliMismatched => {
                (labels(&["contradiction", "entailment", "neutral"]), acc())
            }
            GlueTask::Qnli | GlueTask::Rte => (entail, acc()),
        };
        TaskSpec {
            name: self.name().to_string(),
            kind,
            metrics,
            headline,
        }
    }

    /// Path of a split's file under the GLUE root `data_dir`.
    pub fn path(&self, data_dir: &Path, split: Split) -> PathBuf {
        data_dir.join(self.dir_name()).join(self.split_file(split))
    }

    fn layout(&self, split: Split) -> Layout {
        let named = |a: &str, b: Option<&str>, label: &str| {
            Layout::Headed(ColumnSel {
                text_a: a.to_string(),
                text_b: b.map(str::to_string),
                // Test files ship without gold labels.
                label: if split == Split::Test {
                    LabelColumn::Absent
                } else {
                    LabelColumn::Named(label.to_string())
                },
            })
        };
        match self {
            GlueTask::Cola if split != Split::Test => Layout::Fixed {
                width: 4,
                text: 3,
                label: 1,
            },
            // CoLA's test file, unlike train/dev, has an `index\tsentence` header.
            GlueTask::Cola | GlueTask::Sst2 => named("sentence", None, "label"),
            GlueTask::Mrpc => named("#1 String", Some("#2 String"), "Quality"),
            GlueTask::Stsb => named("sentence1", Some("sentence2"), "score"),
            GlueTask::Qqp => named("question1", Some("question2"), "is_duplicate"),
            GlueTask::Mnli | GlueTask::MnliMismatched => {
                let mut layout = named("sentence1", Some("sentence2"), "gold_label");
                // The gold label is the last column, but train and dev have a
                // different number of annotator columns before it.
                if let Layout::Headed(sel) = &mut layout {
                    if split != Split::Test {
                        sel.label = LabelColumn::Last;
                    }
                }
                layout
            }
            GlueTask::Qnli => named("question", Some("sentence"), "label"),
            GlueTask::Rte | GlueTask::Wnli => named("sentence1", Some("sentence2"), "label"),
        }
    }

    /// Reads one split from the GLUE root `data_dir` (the directory holding
    /// `CoLA/`, `SST-2/`, ...).
    pub fn read(&self, data_dir: &Path, split: Split) -> Result<Dataset> {
        let path = self.path(data_dir, split);
        let hint = format!(
            "expected the GLUE layout {}/{} under {}",
            self.dir_name(),
            self.split_file(split),
            data_dir.display()
        );
        let mut reader = LineReader::open(&path, Some(hint))?;
        let rows = match self.layout(split) {
            Layout::Fixed { width, text, label } => {
                let idx = ColumnIdx {
                    text_a: text,
                    text_b: None,
                    label: Some(label),
                };
                read_tsv_body(&mut reader, width, idx)?
            }
            Layout::Headed(sel) => read_headed_tsv(&mut reader, &sel)?,
        };
        build_dataset(self.spec(), rows, &path)
    }
}

impl std::fmt::Display for GlueTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
