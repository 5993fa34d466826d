//! TextEncoder against a tiny in-test tokenizer, and optionally a real one.

use std::path::{Path, PathBuf};

use petl_data::{collate, BatchLabels, DataError, Dataset, Example, Label, TaskKind, TaskSpec, TextEncoder};
use serde_json::json;

/// A WordLevel tokenizer with BERT-style post-processing that, like many
/// exported tokenizer.json files, carries fixed padding and truncation that
/// `TextEncoder` must override.
fn tiny_tokenizer(padding: bool, pad_token: &str) -> serde_json::Value {
    json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": if padding {
            json!({"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                   "pad_id": 7, "pad_type_id": 0, "pad_token": "bar"})
        } else {
            serde_json::Value::Null
        },
        "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
        "decoder": null,
        "model": {
            "type": "WordLevel",
            "vocab": {(pad_token): 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3,
                      "hello": 4, "world": 5, "foo": 6, "bar": 7},
            "unk_token": "[UNK]"
        }
    })
}

fn write_tokenizer(dir: &Path, value: &serde_json::Value) -> PathBuf {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, serde_json::to_string(value).unwrap()).unwrap();
    path
}

fn ex(a: &str, b: Option<&str>, label: Label) -> Example {
    Example {
        text_a: a.to_string(),
        text_b: b.map(str::to_string),
        label,
    }
}

#[test]
fn tiny_tokenizer_single_pair_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tokenizer(dir.path(), &tiny_tokenizer(true, "[PAD]"));
    let enc = TextEncoder::from_file(&path, 6).unwrap();
    assert_eq!(enc.max_len(), 6);
    // The configured padding's id wins over the vocabulary's [PAD].
    assert_eq!(enc.pad_id(), 7);

    // No fixed padding to 16: the file's padding is disabled.
    let e = enc.encode(&ex("Hello world", None, Label::Class(1))).unwrap();
    assert_eq!(e.input_ids, vec![1, 4, 5, 2]);
    assert_eq!(e.type_ids, vec![0, 0, 0, 0]);
    assert_eq!(e.label, Label::Class(1));

    let e = enc
        .encode(&ex("hello", Some("foo bar"), Label::Score(2.5)))
        .unwrap();
    assert_eq!(e.input_ids, vec![1, 4, 2, 6, 7, 2]);
    assert_eq!(e.type_ids, vec![0, 0, 0, 1, 1, 1]);

    // 4 + 3 tokens into a budget of 6 - 3 specials: longest-first leaves 2 + 1,
    // and the closing [SEP] survives.
    let e = enc
        .encode(&ex(
            "hello world foo bar",
            Some("foo bar hello"),
            Label::Unlabeled,
        ))
        .unwrap();
    assert_eq!(e.input_ids, vec![1, 4, 5, 2, 6, 2]);
    assert_eq!(e.type_ids, vec![0, 0, 0, 0, 1, 1]);

    let e = enc
        .encode(&ex("hello world foo bar hello world", None, Label::Unlabeled))
        .unwrap();
    assert_eq!(e.input_ids, vec![1, 4, 5, 6, 7, 2]);
}

#[test]
fn encode_all_matches_encode_and_collates() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tokenizer(dir.path(), &tiny_tokenizer(false, "[PAD]"));
    let enc = TextEncoder::from_file(&path, 32).unwrap();
    assert_eq!(enc.pad_id(), 0);
    let ds = Dataset {
        spec: TaskSpec::default_for(
            "t",
            TaskKind::Classification {
                labels: vec!["a".into(), "b".into()],
            },
        ),
        examples: vec![
            ex("hello", None, Label::Class(0)),
            ex("foo bar world", Some("hello unknown"), Label::Class(1)),
            ex("", None, Label::Class(0)),
        ],
        source: PathBuf::from("mem"),
    };
    let all = enc.encode_all(&ds).unwrap();
    let one_by_one: Vec<_> = ds.examples.iter().map(|e| enc.encode(e).unwrap()).collect();
    assert_eq!(all, one_by_one);
    assert_eq!(all[1].input_ids, vec![1, 6, 7, 5, 2, 4, 3, 2]);
    assert_eq!(all[2].input_ids, vec![1, 2]);

    let refs: Vec<_> = all.iter().collect();
    let batch = collate(&refs, enc.pad_id()).unwrap();
    assert_eq!(batch.seq_len, 8);
    assert_eq!(&batch.input_ids[..8], &[1, 4, 2, 0, 0, 0, 0, 0]);
    assert_eq!(&batch.attention_mask[16..], &[1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(batch.labels, BatchLabels::Classes(vec![0, 1, 0]));
}

#[test]
fn pad_id_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    // Give "<pad>" a non-zero id so the lookup is distinguishable from the default.
    let mut v = tiny_tokenizer(false, "<pad>");
    v["model"]["vocab"] = json!({"[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "<pad>": 5});
    let path = write_tokenizer(dir.path(), &v);
    assert_eq!(TextEncoder::from_file(&path, 8).unwrap().pad_id(), 5);

    v["model"]["vocab"] = json!({"[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "hello": 4});
    let path = write_tokenizer(dir.path(), &v);
    assert_eq!(TextEncoder::from_file(&path, 8).unwrap().pad_id(), 0);
}

#[test]
fn load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = TextEncoder::from_file(&missing, 16).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile { path, .. } if path == &missing),
        "{err:?}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"model\": 3}").unwrap();
    let err = TextEncoder::from_file(&bad, 16).unwrap_err();
    assert!(
        matches!(&err, DataError::TokenizerLoad { path, .. } if path == &bad),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("cannot load tokenizer "), "{err}");

    let path = write_tokenizer(dir.path(), &tiny_tokenizer(true, "[PAD]"));
    let err = TextEncoder::from_file(&path, 3).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::MaxLenTooSmall {
                max_len: 3,
                special_tokens: 3
            }
        ),
        "{err:?}"
    );
}

/// Checks a real BERT WordPiece tokenizer (e.g. all-MiniLM-L6-v2's) when
/// `PETL_TEST_TOKENIZER` points to its tokenizer.json.
#[test]
fn real_bert_tokenizer() {
    let Some(path) = std::env::var_os("PETL_TEST_TOKENIZER") else {
        eprintln!("note: PETL_TEST_TOKENIZER not set; skipping the real-tokenizer test");
        return;
    };
    let enc = TextEncoder::from_file(Path::new(&path), 16).unwrap();
    assert_eq!(enc.pad_id(), 0);
    let e = enc.encode(&ex("hello world", None, Label::Class(0))).unwrap();
    assert_eq!(e.input_ids, vec![101, 7592, 2088, 102]);

    let e = enc
        .encode(&ex("hello world", Some("hello"), Label::Class(0)))
        .unwrap();
    assert_eq!(e.input_ids, vec![101, 7592, 2088, 102, 7592, 102]);
    assert_eq!(e.type_ids, vec![0, 0, 0, 0, 1, 1]);

    let long = "hello world ".repeat(20);
    let e = enc.encode(&ex(&long, Some(&long), Label::Unlabeled)).unwrap();
    assert_eq!(e.input_ids.len(), 16);
    assert_eq!(e.input_ids[0], 101);
    assert_eq!(*e.input_ids.last().unwrap(), 102);
    // Longest-first splits the 13-token budget 6 / 7 when both sides are long.
    assert_eq!(e.type_ids.iter().filter(|&&t| t == 0).count(), 8);
    assert_eq!(e.type_ids.iter().filter(|&&t| t == 1).count(), 8);
    assert_eq!(e.input_ids[7], 102);
}
