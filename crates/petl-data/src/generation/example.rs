//! Source/target text pairs and the datasets that hold them.

use std::path::PathBuf;

use crate::error::{DataError, Result};

/// One raw text-generation example: the model reads `source` and learns to
/// write `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenExample {
    /// Identifier from the file (XSum's `id`), else the 1-based line number.
    pub id: String,
    /// What the model is given: an article, a sentence to translate, a prompt.
    pub source: String,
    /// What the model should produce: a summary, a translation, a response.
    pub target: String,
}

/// What kind of generation a dataset asks for; it picks the default prompt
/// template ([`crate::PromptTemplate::default_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenKind {
    /// Summarize `source` (XSum: one sentence).
    Summarization,
    /// Translate `source` from one language to another.
    Translation {
        /// Language of the source, as named in prompts (e.g. `"English"`).
        source_lang: String,
        /// Language of the target, as named in prompts (e.g. `"Romanian"`).
        target_lang: String,
    },
    /// Follow the instruction in `source` (prompt/response data).
    Instruction,
}

/// Which side of a row was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptySide {
    /// Only the source is empty (or whitespace).
    Source,
    /// Only the target is empty (or whitespace).
    Target,
    /// Both are empty.
    Both,
}

/// A row that was read but not kept because its source or target is empty
/// or whitespace-only: such a row teaches nothing and cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedRow {
    /// The file the row is in (the source-side file for parallel text).
    pub path: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// Which side was empty.
    pub empty: EmptySide,
}

/// Source/target examples read from one file (or one pair of line-aligned
/// files), plus the rows that were dropped for being empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenDataset {
    /// Short dataset name (e.g. `"xsum"`, `"wmt16-en-ro"`).
    pub name: String,
    /// What is generated.
    pub kind: GenKind,
    /// The kept rows, in file order.
    pub examples: Vec<GenExample>,
    /// The files read: one, or source then target for parallel text.
    pub files: Vec<PathBuf>,
    /// Rows skipped because a side was empty, in file order. Readers never
    /// drop rows silently: `examples.len() + dropped.len()` is the number of
    /// rows in the file, and callers should log a non-empty list.
    pub dropped: Vec<DroppedRow>,
}

impl GenDataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Keeps only the first `n` examples (a `--limit`); no-op when there are fewer.
    pub fn truncate(&mut self, n: usize) {
        self.examples.truncate(n);
    }

    /// Splits into the first `n` examples and the rest, in file order (e.g.
    /// train on the first 800 XSum documents, evaluate on the others).
    ///
    /// Both parts keep the name, kind, files and dropped-row record of the
    /// whole, so either can be reported on its own.
    ///
    /// # Errors
    ///
    /// [`DataError::BadSplit`] unless `0 < n < self.len()`.
    pub fn split_at(self, n: usize) -> Result<(GenDataset, GenDataset)> {
        if n == 0 || n >= self.examples.len() {
            return Err(DataError::BadSplit {
                at: n,
                len: self.examples.len(),
            });
        }
        let GenDataset {
            name,
            kind,
            mut examples,
            files,
            dropped,
        } = self;
        let rest = examples.split_off(n);
        let second = GenDataset {
            name: name.clone(),
            kind: kind.clone(),
            examples: rest,
            files: files.clone(),
            dropped: dropped.clone(),
        };
        let first = GenDataset {
            name,
            kind,
            examples,
            files,
            dropped,
        };
        Ok((first, second))
    }
}

/// Which side of a pair is empty, if any.
pub(crate) fn empty_side(source: &str, target: &str) -> Option<EmptySide> {
    match (source.trim().is_empty(), target.trim().is_empty()) {
        (false, false) => None,
        (true, false) => Some(EmptySide::Source),
        (false, true) => Some(EmptySide::Target),
        (true, true) => Some(EmptySide::Both),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(n: usize) -> GenDataset {
        GenDataset {
            name: "t".into(),
            kind: GenKind::Summarization,
            examples: (0..n)
                .map(|i| GenExample {
                    id: i.to_string(),
                    source: format!("s{i}"),
                    target: format!("t{i}"),
                })
                .collect(),
            files: vec![PathBuf::from("f")],
            dropped: Vec::new(),
        }
    }

    #[test]
    fn split_and_truncate() {
        let (a, b) = ds(5).split_at(3).unwrap();
        assert_eq!(
            a.examples.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert_eq!(
            b.examples.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["3", "4"]
        );
        for bad in [0, 5, 6] {
            let err = ds(5).split_at(bad).unwrap_err();
            assert!(
                matches!(err, DataError::BadSplit { at, len: 5 } if at == bad),
                "{err:?}"
            );
        }
        let mut d = ds(5);
        d.truncate(2);
        assert_eq!(d.len(), 2);
        d.truncate(9);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn empty_sides() {
        assert_eq!(empty_side("a", "b"), None);
        assert_eq!(empty_side(" \n", "b"), Some(EmptySide::Source));
        assert_eq!(empty_side("a", ""), Some(EmptySide::Target));
        assert_eq!(empty_side("", "\t"), Some(EmptySide::Both));
    }
}
