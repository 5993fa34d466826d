//! Generic CSV / TSV / JSONL tables, plus the line reader and label
//! resolution shared with the GLUE readers.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::example::{Dataset, Example, Label};
use crate::task::{TaskKind, TaskSpec};

/// On-disk layout of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// Comma-separated values with RFC 4180 quoting (fields may span lines).
    Csv,
    /// Tab-separated values with a header row and no quoting.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl TableFormat {
    /// Infers the format from the extension: `.csv`, `.tsv`, `.jsonl` or `.json`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(TableFormat::Csv),
            "tsv" => Some(TableFormat::Tsv),
            "jsonl" | "json" => Some(TableFormat::Jsonl),
            _ => None,
        }
    }
}

/// Label space of a user-supplied table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Classification.
    Classification {
        /// Label names in id order; `None` takes the sorted unique labels of
        /// the file (numerically when every label is an integer, so that
        /// `"10"` follows `"9"`).
        labels: Option<Vec<String>>,
    },
    /// Regression on a numeric label column.
    Regression,
}

/// Where a table is and which columns to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// The file to read.
    pub path: PathBuf,
    /// Explicit format; `None` infers it from the extension.
    pub format: Option<TableFormat>,
    /// Column holding the first text.
    pub text_column: String,
    /// Column holding the second text, for pair tasks.
    pub text_pair_column: Option<String>,
    /// Column holding the label.
    pub label_column: String,
    /// Label space.
    pub kind: TableKind,
}

/// Reads a CSV, TSV or JSONL table into a [`Dataset`] whose task is called `name`.
///
/// Classification tables get accuracy (plus F1 when binary) as metrics,
/// regression tables Pearson and Spearman.
pub fn read_table(spec: &TableSpec, name: &str) -> Result<Dataset> {
    let path = &spec.path;
    let format = match spec.format {
        Some(f) => f,
        None => {
            TableFormat::from_path(path).ok_or_else(|| DataError::UnknownFormat { path: path.clone() })?
        }
    };
    let rows = match format {
        TableFormat::Csv => read_csv_rows(spec)?,
        TableFormat::Tsv => {
            let mut reader = LineReader::open(path, None)?;
            let cols = ColumnSel {
                text_a: spec.text_column.clone(),
                text_b: spec.text_pair_column.clone(),
                label: LabelColumn::Named(spec.label_column.clone()),
            };
            read_headed_tsv(&mut reader, &cols)?
        }
        TableFormat::Jsonl => read_jsonl_rows(spec)?,
    };
    let kind = match &spec.kind {
        TableKind::Regression => TaskKind::Regression,
        TableKind::Classification { labels: Some(l) } => TaskKind::Classification { labels: l.clone() },
        TableKind::Classification { labels: None } => TaskKind::Classification {
            labels: infer_labels(&rows),
        },
    };
    let task = TaskSpec::default_for(name, kind);
    build_dataset(task, rows, path)
}

/// Sorted unique labels; numeric order when all are integers.
fn infer_labels(rows: &[RawRow]) -> Vec<String> {
    let unique: BTreeSet<&str> = rows.iter().filter_map(|r| r.label.as_deref()).collect();
    let mut labels: Vec<String> = unique.into_iter().map(str::to_string).collect();
    let numeric: Option<Vec<i64>> = labels.iter().map(|l| l.parse::<i64>().ok()).collect();
    if let Some(nums) = numeric {
        let mut pairs: Vec<(i64, String)> = nums.into_iter().zip(labels).collect();
        pairs.sort();
        labels = pairs.into_iter().map(|(_, l)| l).collect();
    }
    labels
}

/// A row before its label is interpreted.
#[derive(Debug)]
pub(crate) struct RawRow {
    pub line: u64,
    pub text_a: String,
    pub text_b: Option<String>,
    /// `None` when the file has no label column (test splits).
    pub label: Option<String>,
}

/// Turns raw rows into examples according to `spec.kind`.
pub(crate) fn build_dataset(spec: TaskSpec, rows: Vec<RawRow>, path: &Path) -> Result<Dataset> {
    if rows.is_empty() {
        return Err(DataError::EmptyDataset {
            path: path.to_path_buf(),
        });
    }
    let mut examples = Vec::with_capacity(rows.len());
    for row in rows {
        let label = match (&row.label, &spec.kind) {
            (None, _) => Label::Unlabeled,
            (Some(raw), TaskKind::Classification { labels }) => match labels.iter().position(|l| l == raw) {
                Some(id) => Label::Class(id),
                None => {
                    return Err(DataError::UnknownLabel {
                        path: path.to_path_buf(),
                        line: row.line,
                        label: raw.clone(),
                        known: labels.clone(),
                    })
                }
            },
            (Some(raw), TaskKind::Regression) => match raw.trim().parse::<f32>() {
                Ok(v) if v.is_finite() => Label::Score(v),
                _ => {
                    return Err(DataError::BadScore {
                        path: path.to_path_buf(),
                        line: row.line,
                        value: raw.clone(),
                    })
                }
            },
        };
        examples.push(Example {
            text_a: row.text_a,
            text_b: row.text_b,
            label,
        });
    }
    tracing::debug!(path = %path.display(), rows = examples.len(), task = %spec.name, "read dataset");
    Ok(Dataset {
        spec,
        examples,
        source: path.to_path_buf(),
    })
}

/// Streams a text file line by line, keeping 1-based line numbers and
/// normalising the quirks of GLUE files (BOM, CRLF).
pub(crate) struct LineReader {
    path: PathBuf,
    inner: BufReader<File>,
    line_no: u64,
    buf: Vec<u8>,
}

impl LineReader {
    pub(crate) fn open(path: &Path, hint: Option<String>) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::from_open(path.to_path_buf(), e, hint))?;
        Ok(LineReader {
            path: path.to_path_buf(),
            inner: BufReader::new(file),
            line_no: 0,
            buf: Vec::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The next non-blank line and its number, without the line terminator.
    ///
    /// Blank lines are skipped rather than rejected: a trailing empty line is
    /// common in hand-edited files and carries no example.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, String)>> {
        loop {
            self.buf.clear();
            let n = self
                .inner
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| DataError::Io {
                    path: self.path.clone(),
                    source: e,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let mut bytes = &self.buf[..];
            if let Some(rest) = bytes.strip_suffix(b"\n") {
                bytes = rest;
            }
            if let Some(rest) = bytes.strip_suffix(b"\r") {
                bytes = rest;
            }
            if self.line_no == 1 {
                if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                    bytes = rest;
                }
            }
            if bytes.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(bytes).map_err(|e| DataError::MalformedRow {
                path: self.path.clone(),
                line: self.line_no,
                reason: format!("invalid utf-8: {e}"),
            })?;
            return Ok(Some((self.line_no, text.to_string())));
        }
    }
}

/// Which column holds the label.
#[derive(Debug, Clone)]
pub(crate) enum LabelColumn {
    /// Found by header name.
    Named(String),
    /// Always the last field (MNLI's `gold_label`, whose position varies by split).
    Last,
    /// The file has no labels.
    Absent,
}

/// Columns to extract from a headed file, by name.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSel {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: LabelColumn,
}

fn find_column(header: &[String], name: &str, path: &Path) -> Result<usize> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            header: header.to_vec(),
        })
}

/// Column indices resolved against a header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnIdx {
    pub text_a: usize,
    pub text_b: Option<usize>,
    pub label: Option<usize>,
}

impl ColumnIdx {
    fn resolve(sel: &ColumnSel, header: &[String], path: &Path) -> Result<Self> {
        Ok(ColumnIdx {
            text_a: find_column(header, &sel.text_a, path)?,
            text_b: sel
                .text_b
                .as_deref()
                .map(|n| find_column(header, n, path))
                .transpose()?,
            label: match &sel.label {
                LabelColumn::Named(n) => Some(find_column(header, n, path)?),
                LabelColumn::Last => Some(header.len().saturating_sub(1)),
                LabelColumn::Absent => None,
            },
        })
    }

    fn extract<S: AsRef<str>>(&self, line: u64, fields: &[S]) -> RawRow {
        RawRow {
            line,
            text_a: fields[self.text_a].as_ref().to_string(),
            text_b: self.text_b.map(|i| fields[i].as_ref().to_string()),
            label: self.label.map(|i| fields[i].as_ref().to_string()),
        }
    }
}

/// Reads a headed TSV, split literally on tabs (no quoting, like GLUE's
/// own processors), requiring every row to match the header's width.
pub(crate) fn read_headed_tsv(reader: &mut LineReader, sel: &ColumnSel) -> Result<Vec<RawRow>> {
    let Some((_, header_line)) = reader.next_line()? else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header_line.split('\t').map(str::to_string).collect();
    let idx = ColumnIdx::resolve(sel, &header, reader.path())?;
    read_tsv_body(reader, header.len(), idx)
}

/// Reads TSV rows of a fixed width with known column positions.
pub(crate) fn read_tsv_body(reader: &mut LineReader, width: usize, idx: ColumnIdx) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    while let Some((line, text)) = reader.next_line()? {
        let fields: Vec<&str> = text.split('\t').collect();
        if fields.len() != width {
            return Err(DataError::FieldCount {
                path: reader.path().to_path_buf(),
                line,
                expected: width,
                found: fields.len(),
            });
        }
        rows.push(idx.extract(line, &fields));
    }
    Ok(rows)
}

fn read_csv_rows(spec: &TableSpec) -> Result<Vec<RawRow>> {
    let path = &spec.path;
    let file = File::open(path).map_err(|e| DataError::from_open(path.clone(), e, None))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::new(file));
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, e, 1))?
        .iter()
        .map(str::to_string)
        .collect();
    let sel = ColumnSel {
        text_a: spec.text_column.clone(),
        text_b: spec.text_pair_column.clone(),
        label: LabelColumn::Named(spec.label_column.clone()),
    };
    let idx = ColumnIdx::resolve(&sel, &header, path)?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = reader.position().line();
                return Err(csv_error(path, e, line));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let fields: Vec<&str> = record.iter().collect();
        rows.push(idx.extract(line, &fields));
    }
    Ok(rows)
}

fn csv_error(path: &Path, err: csv::Error, fallback_line: u64) -> DataError {
    let line = err.position().map_or(fallback_line, |p| p.line());
    match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => DataError::FieldCount {
            path: path.to_path_buf(),
            line,
            expected: *expected_len as usize,
            found: *len as usize,
        },
        csv::ErrorKind::Io(_) => DataError::Io {
            path: path.to_path_buf(),
            source: err.into(),
        },
        _ => DataError::MalformedRow {
            path: path.to_path_buf(),
            line,
            reason: err.to_string(),
        },
    }
}

fn read_jsonl_rows(spec: &TableSpec) -> Result<Vec<RawRow>> {
    let path = &spec.path;
    let mut reader = LineReader::open(path, None)?;
    let malformed = |line: u64, reason: String| DataError::MalformedRow {
        path: path.clone(),
        line,
        reason,
    };
    let mut rows = Vec::new();
    while let Some((line, text)) = reader.next_line()? {
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| malformed(line, format!("invalid json: {e}")))?;
        let text_field = |name: &str| -> Result<String> {
            match obj.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(malformed(line, format!("field `{name}` is not a string"))),
                None => Err(malformed(line, format!("missing field `{name}`"))),
            }
        };
        let text_a = text_field(&spec.text_column)?;
        let text_b = spec.text_pair_column.as_deref().map(text_field).transpose()?;
        let label = match obj.get(&spec.label_column) {
            Some(serde_json::Value::String(s)) => s.clone(),
            // Numbers keep their JSON spelling so `1` matches a label list of `["0","1"]`.
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(malformed(
                    line,
                    format!("field `{}` is not a string or number", spec.label_column),
                ))
            }
            None => return Err(malformed(line, format!("missing field `{}`", spec.label_column))),
        };
        rows.push(RawRow {
            line,
            text_a,
            text_b,
            label: Some(label),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn spec(path: PathBuf, kind: TableKind) -> TableSpec {
        TableSpec {
            path,
            format: None,
            text_column: "text".into(),
            text_pair_column: None,
            label_column: "label".into(),
            kind,
        }
    }

    fn auto() -> TableKind {
        TableKind::Classification { labels: None }
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(
            TableFormat::from_path(Path::new("a/b.CSV")),
            Some(TableFormat::Csv)
        );
        assert_eq!(TableFormat::from_path(Path::new("b.tsv")), Some(TableFormat::Tsv));
        assert_eq!(
            TableFormat::from_path(Path::new("b.json")),
            Some(TableFormat::Jsonl)
        );
        assert_eq!(
            TableFormat::from_path(Path::new("b.jsonl")),
            Some(TableFormat::Jsonl)
        );
        assert_eq!(TableFormat::from_path(Path::new("b.txt")), None);
        assert_eq!(TableFormat::from_path(Path::new("noext")), None);
    }

    #[test]
    fn csv_multiline_quoted_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imdb.csv");
        fs::write(
            &path,
            "\u{feff}text,label\n\
             \"A great film.\nSecond line, with a comma and \"\"quotes\"\".\",positive\n\
             plain,negative\n",
        )
        .unwrap();
        let ds = read_table(&spec(path.clone(), auto()), "imdb").unwrap();
        assert_eq!(
            ds.spec.kind,
            TaskKind::Classification {
                labels: vec!["negative".into(), "positive".into()]
            }
        );
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(
            ds.examples[0].text_a,
            "A great film.\nSecond line, with a comma and \"quotes\"."
        );
        assert_eq!(ds.examples[0].label, Label::Class(1));
        assert_eq!(ds.examples[1].text_a, "plain");
        assert_eq!(ds.examples[1].label, Label::Class(0));
        assert_eq!(ds.source, path);
    }

    #[test]
    fn csv_field_count_error_reports_start_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        // The bad record starts on line 4 because the quoted field spans two lines.
        fs::write(&path, "text,label\n\"multi\nline\",a\nok,b\nbad\n").unwrap();
        let err = read_table(&spec(path.clone(), auto()), "t").unwrap_err();
        match &err {
            DataError::FieldCount {
                path: p,
                line,
                expected,
                found,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*line, 5);
                assert_eq!((*expected, *found), (2, 1));
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("bad.csv:5:"), "{err}");
    }

    #[test]
    fn tsv_table_with_pair_and_explicit_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        fs::write(&path, "label\tq\ttext\nyes\tq1\tt1\r\nno\tq2\tt2\n\n").unwrap();
        let mut s = spec(
            path,
            TableKind::Classification {
                labels: Some(vec!["no".into(), "yes".into()]),
            },
        );
        s.text_pair_column = Some("q".into());
        let ds = read_table(&s, "pairs").unwrap();
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(ds.examples[0].text_a, "t1");
        assert_eq!(ds.examples[0].text_b.as_deref(), Some("q1"));
        assert_eq!(ds.examples[0].label, Label::Class(1));
        assert_eq!(ds.examples[1].label, Label::Class(0));
        assert_eq!(ds.spec.num_outputs(), 2);
    }

    #[test]
    fn jsonl_numeric_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        fs::write(
            &path,
            "{\"text\": \"a\", \"label\": 2}\n{\"text\": \"b\", \"label\": 10}\n\n{\"text\": \"c\", \"label\": \"2\"}\n",
        )
        .unwrap();
        let ds = read_table(&spec(path, auto()), "j").unwrap();
        // Integer labels sort numerically, so "10" comes after "2".
        assert_eq!(
            ds.spec.kind,
            TaskKind::Classification {
                labels: vec!["2".into(), "10".into()]
            }
        );
        let labels: Vec<Label> = ds.examples.iter().map(|e| e.label).collect();
        assert_eq!(labels, vec![Label::Class(0), Label::Class(1), Label::Class(0)]);
    }

    #[test]
    fn jsonl_regression_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        fs::write(
            &path,
            "{\"text\": \"a\", \"label\": 0.5}\n{\"text\": \"b\", \"label\": \"4\"}\n",
        )
        .unwrap();
        let ds = read_table(&spec(path.clone(), TableKind::Regression), "r").unwrap();
        assert_eq!(ds.examples[0].label, Label::Score(0.5));
        assert_eq!(ds.examples[1].label, Label::Score(4.0));
        assert!(ds.spec.is_regression());

        fs::write(
            &path,
            "{\"text\": \"a\", \"label\": 1}\n{\"text\": 3, \"label\": 1}\n",
        )
        .unwrap();
        let err = read_table(&spec(path.clone(), auto()), "r").unwrap_err();
        assert!(matches!(err, DataError::MalformedRow { line: 2, .. }), "{err:?}");

        fs::write(&path, "{\"text\": \"a\", \"label\": 1}\n{not json\n").unwrap();
        let err = read_table(&spec(path.clone(), auto()), "r").unwrap_err();
        assert!(matches!(err, DataError::MalformedRow { line: 2, .. }), "{err:?}");

        fs::write(&path, "{\"text\": \"a\", \"label\": \"x\"}\n").unwrap();
        let err = read_table(&spec(path, TableKind::Regression), "r").unwrap_err();
        assert!(matches!(err, DataError::BadScore { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn missing_column_lists_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        fs::write(&path, "review,label\nx,1\n").unwrap();
        let err = read_table(&spec(path, auto()), "m").unwrap_err();
        match &err {
            DataError::MissingColumn { column, header, .. } => {
                assert_eq!(column, "text");
                assert_eq!(header, &vec!["review".to_string(), "label".to_string()]);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("missing column `text`"), "{err}");
    }

    #[test]
    fn empty_and_missing_and_unknown_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        fs::write(&path, "text,label\n").unwrap();
        let err = read_table(&spec(path, auto()), "e").unwrap_err();
        assert!(matches!(err, DataError::EmptyDataset { .. }), "{err:?}");

        let missing = dir.path().join("nope.csv");
        let err = read_table(&spec(missing.clone(), auto()), "e").unwrap_err();
        assert!(
            matches!(&err, DataError::MissingFile { path, hint: None } if path == &missing),
            "{err:?}"
        );

        let txt = dir.path().join("x.txt");
        let err = read_table(&spec(txt, auto()), "e").unwrap_err();
        assert!(matches!(err, DataError::UnknownFormat { .. }), "{err:?}");
    }

    #[test]
    fn unknown_label_with_explicit_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.csv");
        fs::write(&path, "text,label\na,pos\nb,neutral\n").unwrap();
        let kind = TableKind::Classification {
            labels: Some(vec!["neg".into(), "pos".into()]),
        };
        let err = read_table(&spec(path, kind), "u").unwrap_err();
        match &err {
            DataError::UnknownLabel {
                line, label, known, ..
            } => {
                assert_eq!(*line, 3);
                assert_eq!(label, "neutral");
                assert_eq!(known.len(), 2);
            }
            other => panic!("unexpected error {other:?}"),
        }
    }
}
