//! ROUGE, BLEU and the Porter stemmer against the Python reference packages
//! (rouge-score 0.1.2 with nltk's stemmer, sacrebleu 2.6.0).
//!
//! The golden numbers in `tests/golden/{rouge,bleu,porter}.json` come from
//! `tests/golden/gen/make_text_golden.py` (run it with the reference venv,
//! `scripts/python-env.sh`). They hold numbers and row indices only;
//! the text is read here from the shared data folder and turned into inputs by
//! the same rules as the script (see its docstring and the functions below):
//!
//! - ROUGE, XSum rows 0..200: `lead1` = reference `summary`, prediction the first
//!   `"\n"`-line of `document`; `lead3_multiref` = reference `summary + "\n" +`
//!   the document's last line, prediction its first three lines joined by `"\n"`.
//! - BLEU, newstest2016 lines 0..500 (`ro` references): `perturbed` drops every
//!   word (split on " ") whose index % 5 == 4, swaps kept[j], kept[j+1] for
//!   j % 7 == 2, and is empty on lines with i % 50 == 7; `english` is the English
//!   source line; `truncated` keeps the first (len + 1) / 2 words.
//!
//! The shared data folder is `$PETL_SHARED_DATA`, or `../shared/data` next to
//! the repository root (where it sits in the petl workspace, as in
//! `sweeps/README.md`). These tests fail, naming the path, when it is missing.

use std::path::{Path, PathBuf};

use petl_metrics::bleu::{tokenize_13a, BleuTokenizer, Smoothing};
use petl_metrics::{corpus_bleu, porter_stem, sentence_bleu, BleuOptions, BleuScore, RougeScorer, RougeType};
use serde_json::Value;

/// ROUGE uses only integer counts and correctly rounded `+ * /` in the same
/// order as rouge-score, so it is bit-identical (the goldens are parsed exactly:
/// serde_json's `float_roundtrip`).
const ROUGE_TOL: f64 = 0.0;
/// BLEU goes through `exp` and `ln`, which may differ by an ulp between C
/// libraries; with glibc it is bit-identical too.
const BLEU_TOL: f64 = 1e-9;

// ------------------------------------------------------------------ inputs

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shared_data() -> PathBuf {
    let dir = match std::env::var_os("PETL_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("../../../shared/data"),
    };
    assert!(
        dir.is_dir(),
        "shared data folder {} not found: these tests read XSum and WMT16 text from it. \
         Set PETL_SHARED_DATA to the folder holding xsum/ and wmt16_en_ro/",
        dir.display()
    );
    dir
}

fn golden(name: &str) -> Value {
    let path = manifest_dir().join("tests/golden").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a shared data file, checking it is the one the goldens were made from.
fn read_data(meta: &Value) -> String {
    let rel = meta["path"].as_str().unwrap();
    let path = shared_data().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let newlines = text.bytes().filter(|&b| b == b'\n').count() as u64;
    assert_eq!(
        (text.len() as u64, newlines),
        (
            meta["bytes"].as_u64().unwrap(),
            meta["newlines"].as_u64().unwrap()
        ),
        "{} differs from the file the goldens were made from (bytes, newlines)",
        path.display()
    );
    text
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

/// Largest absolute difference seen, with where it was, for the report.
#[derive(Default)]
struct MaxDiff {
    diff: f64,
    at: String,
    checked: usize,
}

impl MaxDiff {
    fn check(&mut self, got: f64, want: f64, tol: f64, at: impl Fn() -> String) {
        let diff = (got - want).abs();
        assert!(
            diff <= tol,
            "{}: got {got}, want {want} (|diff| {diff:e} > {tol:e})",
            at()
        );
        self.checked += 1;
        if diff > self.diff || self.at.is_empty() {
            self.diff = self.diff.max(diff);
            self.at = at();
        }
    }
}

// ------------------------------------------------------------------ ROUGE

struct XsumRow {
    document: String,
    summary: String,
}

fn xsum_rows(meta: &Value) -> Vec<XsumRow> {
    read_data(meta)
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            XsumRow {
                document: v["document"].as_str().unwrap().to_owned(),
                summary: v["summary"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// `(reference, prediction)` for a golden set, by the rules in the module doc.
fn rouge_pair(set: &str, row: &XsumRow) -> (String, String) {
    let lines: Vec<&str> = row.document.split('\n').collect();
    match set {
        "lead1" => (row.summary.clone(), lines[0].to_owned()),
        "lead3_multiref" => (
            format!("{}\n{}", row.summary, lines[lines.len() - 1]),
            lines[..lines.len().min(3)].join("\n"),
        ),
        other => panic!("unknown golden set {other}"),
    }
}

fn score_row(scorer: &RougeScorer, reference: &str, prediction: &str) -> Vec<f64> {
    let scores = scorer.score(reference, prediction);
    RougeType::ALL
        .iter()
        .flat_map(|t| {
            let s = scores[t];
            [s.precision, s.recall, s.fmeasure]
        })
        .collect()
}

const COLUMNS: [&str; 3] = ["P", "R", "F"];

#[test]
fn rouge_matches_rouge_score_on_xsum() {
    let g = golden("rouge.json");
    let types: Vec<&str> = strs(&g["types"]);
    assert_eq!(types, RougeType::ALL.map(RougeType::name));
    let rows = xsum_rows(&g["data"]);
    let mut max = MaxDiff::default();
    let mut pairs = 0;
    for set in g["sets"].as_array().unwrap() {
        let name = set["name"].as_str().unwrap();
        let stem = set["use_stemmer"].as_bool().unwrap();
        let range = usizes(&set["rows"]);
        let scorer = RougeScorer::new(&RougeType::ALL, stem);
        let golden_rows = set["scores"].as_array().unwrap();
        assert_eq!(golden_rows.len(), range[1] - range[0]);
        let (mut refs, mut preds) = (Vec::new(), Vec::new());
        for (i, want) in (range[0]..range[1]).zip(golden_rows) {
            let (reference, prediction) = rouge_pair(name, &rows[i]);
            let got = score_row(&scorer, &reference, &prediction);
            for (k, (g, w)) in got.iter().zip(f64s(want)).enumerate() {
                max.check(*g, w, ROUGE_TOL, || {
                    format!("{name} stem={stem} row {i} {} {}", types[k / 3], COLUMNS[k % 3])
                });
            }
            refs.push(reference);
            preds.push(prediction);
            pairs += 1;
        }
        let mean = scorer.score_corpus(&refs, &preds).unwrap();
        let got: Vec<f64> = RougeType::ALL
            .iter()
            .flat_map(|t| [mean[t].precision, mean[t].recall, mean[t].fmeasure])
            .collect();
        for (k, (g, w)) in got.iter().zip(f64s(&set["mean"])).enumerate() {
            max.check(*g, w, ROUGE_TOL, || {
                format!("{name} stem={stem} mean {} {}", types[k / 3], COLUMNS[k % 3])
            });
        }
    }
    eprintln!(
        "ROUGE: {pairs} pairs, {} numbers within {ROUGE_TOL:e}; max |diff| {:e} ({})",
        max.checked, max.diff, max.at
    );
}

#[test]
fn rouge_edge_cases_match_rouge_score() {
    let g = golden("rouge.json");
    let mut max = MaxDiff::default();
    for case in g["edge_cases"].as_array().unwrap() {
        let reference = case["reference"].as_str().unwrap();
        let prediction = case["prediction"].as_str().unwrap();
        let stem = case["use_stemmer"].as_bool().unwrap();
        let at = format!("{reference:?} / {prediction:?} stem={stem}");
        assert_eq!(
            petl_metrics::rouge::tokenize(reference, stem),
            strs(&case["tokens_reference"]),
            "tokens of {at}"
        );
        assert_eq!(
            petl_metrics::rouge::tokenize(prediction, stem),
            strs(&case["tokens_prediction"]),
            "tokens of {at}"
        );
        let got = score_row(&RougeScorer::new(&RougeType::ALL, stem), reference, prediction);
        for (k, (g, w)) in got.iter().zip(f64s(&case["scores"])).enumerate() {
            max.check(*g, w, ROUGE_TOL, || {
                format!("{at} {} {}", RougeType::ALL[k / 3], COLUMNS[k % 3])
            });
        }
    }
    eprintln!(
        "ROUGE edge cases: {} numbers, max |diff| {:e}",
        max.checked, max.diff
    );
}

#[test]
fn porter_stemmer_matches_nltk() {
    let g = golden("porter.json");
    assert_eq!(g["mode"], "NLTK_EXTENSIONS");
    let pairs = g["pairs"].as_array().unwrap();
    let wrong: Vec<String> = pairs
        .iter()
        .filter_map(|p| {
            let (word, want) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
            let got = porter_stem(word);
            (got != want).then(|| format!("{word}: got {got}, nltk {want}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} stems differ:\n{}",
        wrong.len(),
        pairs.len(),
        wrong.join("\n")
    );
    eprintln!("Porter: {} words identical to nltk", pairs.len());
}

// ------------------------------------------------------------------ BLEU

fn lines(meta: &Value, n: usize) -> Vec<String> {
    read_data(meta).split('\n').take(n).map(str::to_owned).collect()
}

fn perturb(line: &str, i: usize) -> String {
    if i % 50 == 7 {
        return String::new();
    }
    let mut kept: Vec<&str> = line
        .split(' ')
        .enumerate()
        .filter(|(k, _)| k % 5 != 4)
        .map(|(_, w)| w)
        .collect();
    for j in 0..kept.len().saturating_sub(1) {
        if j % 7 == 2 {
            kept.swap(j, j + 1);
        }
    }
    kept.join(" ")
}

fn truncate(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    words[..words.len().div_ceil(2)].join(" ")
}

struct Systems {
    ro: Vec<String>,
    perturbed: Vec<String>,
    english: Vec<String>,
    truncated: Vec<String>,
}

impl Systems {
    fn load(g: &Value) -> Self {
        let n = usizes(&g["rows"])[1];
        let ro = lines(&g["data"][0], n);
        let english = lines(&g["data"][1], n);
        assert_eq!((ro.len(), english.len()), (n, n));
        Systems {
            perturbed: ro.iter().enumerate().map(|(i, l)| perturb(l, i)).collect(),
            truncated: ro.iter().map(|l| truncate(l)).collect(),
            english,
            ro,
        }
    }

    fn get(&self, name: &str) -> &[String] {
        match name {
            "ro" => &self.ro,
            "perturbed" => &self.perturbed,
            "english" => &self.english,
            "truncated" => &self.truncated,
            other => panic!("unknown system {other}"),
        }
    }
}

/// sacreBLEU keyword arguments as [`BleuOptions`].
fn options(v: &Value) -> BleuOptions {
    let mut o = BleuOptions::default();
    for (key, value) in v.as_object().unwrap() {
        match key.as_str() {
            "lowercase" => o.lowercase = value.as_bool().unwrap(),
            "effective_order" => o.effective_order = value.as_bool().unwrap(),
            "tokenize" => {
                assert_eq!(value, "none");
                o.tokenizer = BleuTokenizer::None;
            }
            "smooth_method" | "smooth_value" => {}
            other => panic!("unknown option {other}"),
        }
    }
    let value = v.get("smooth_value").and_then(Value::as_f64);
    o.smoothing = match v.get("smooth_method").and_then(Value::as_str) {
        None | Some("exp") => Smoothing::Exp,
        Some("none") => Smoothing::None,
        Some("floor") => Smoothing::Floor(value.unwrap_or(0.1)),
        Some("add-k") => Smoothing::AddK(value.unwrap_or(1.0)),
        Some(other) => panic!("unknown smoothing {other}"),
    };
    o
}

fn check_bleu(got: &BleuScore, want: &Value, max: &mut MaxDiff, at: &str) {
    max.check(got.score, want["score"].as_f64().unwrap(), BLEU_TOL, || {
        format!("{at} score")
    });
    max.check(got.bp, want["bp"].as_f64().unwrap(), BLEU_TOL, || {
        format!("{at} bp")
    });
    for (n, (g, w)) in got.precisions.iter().zip(f64s(&want["precisions"])).enumerate() {
        max.check(*g, w, BLEU_TOL, || format!("{at} precision {}", n + 1));
    }
    assert_eq!(
        got.sys_len,
        want["sys_len"].as_u64().unwrap() as usize,
        "{at} sys_len"
    );
    assert_eq!(
        got.ref_len,
        want["ref_len"].as_u64().unwrap() as usize,
        "{at} ref_len"
    );
    if !want["counts"].is_null() {
        assert_eq!(got.counts.to_vec(), usizes(&want["counts"]), "{at} counts");
        assert_eq!(got.totals.to_vec(), usizes(&want["totals"]), "{at} totals");
    }
    if let Some(sig) = want.get("signature") {
        assert_eq!(got.signature, sig.as_str().unwrap(), "{at} signature");
    }
    if let Some(line) = want.get("formatted") {
        assert_eq!(got.to_string(), line.as_str().unwrap(), "{at} formatted");
    }
}

#[test]
fn corpus_bleu_matches_sacrebleu_on_wmt16() {
    let g = golden("bleu.json");
    let systems = Systems::load(&g);
    let mut max = MaxDiff::default();
    let corpus = g["corpus"].as_array().unwrap();
    for case in corpus {
        let system = case["system"].as_str().unwrap();
        let refs: Vec<&[String]> = strs(&case["references"])
            .into_iter()
            .map(|r| systems.get(r))
            .collect();
        let opts = options(&case["options"]);
        let got = corpus_bleu(systems.get(system), &refs, &opts).unwrap();
        let at = format!("{system} vs {:?} {}", case["references"], case["options"]);
        check_bleu(&got, case, &mut max, &at);
    }
    eprintln!(
        "corpus BLEU: {} configurations, {} numbers within {BLEU_TOL:e}; max |diff| {:e} ({})",
        corpus.len(),
        max.checked,
        max.diff,
        max.at
    );
}

#[test]
fn segment_statistics_match_sacrebleu() {
    let g = golden("bleu.json");
    let systems = Systems::load(&g);
    let mut segments = 0;
    for (name, rows) in g["segment_stats"].as_object().unwrap() {
        for (i, want) in rows.as_array().unwrap().iter().enumerate() {
            let hyp = &systems.get(name)[i..=i];
            let refs = [&systems.ro[i..=i]];
            let b = corpus_bleu(hyp, &refs, &BleuOptions::default()).unwrap();
            let got: Vec<usize> = [b.sys_len, b.ref_len]
                .into_iter()
                .chain(b.counts)
                .chain(b.totals)
                .collect();
            assert_eq!(
                got,
                usizes(want),
                "{name} segment {i}: [hyp_len, ref_len, correct.., total..]"
            );
            segments += 1;
        }
    }
    eprintln!("segment statistics: {segments} segments identical");
}

#[test]
fn sentence_bleu_matches_sacrebleu() {
    let g = golden("bleu.json");
    let systems = Systems::load(&g);
    let mut max = MaxDiff::default();
    for case in g["sentence"].as_array().unwrap() {
        let i = case["row"].as_u64().unwrap() as usize;
        let got = sentence_bleu(&systems.perturbed[i], &[&systems.ro[i]], &BleuOptions::sentence()).unwrap();
        max.check(got.score, case["score"].as_f64().unwrap(), BLEU_TOL, || {
            format!("sentence {i}")
        });
        max.check(got.bp, case["bp"].as_f64().unwrap(), BLEU_TOL, || {
            format!("sentence {i} bp")
        });
        for (n, (g, w)) in got.precisions.iter().zip(f64s(&case["precisions"])).enumerate() {
            max.check(*g, w, BLEU_TOL, || format!("sentence {i} precision {}", n + 1));
        }
    }
    eprintln!(
        "sentence BLEU: {} numbers, max |diff| {:e}",
        max.checked, max.diff
    );
}

#[test]
fn bleu_edge_cases_match_sacrebleu() {
    let g = golden("bleu.json");
    let mut max = MaxDiff::default();
    for case in g["edge_cases"].as_array().unwrap() {
        let hyps = strs(&case["hypotheses"]);
        let refs: Vec<Vec<&str>> = case["references"].as_array().unwrap().iter().map(strs).collect();
        let got = corpus_bleu(&hyps, &refs, &options(&case["options"])).unwrap();
        let at = format!("{} {}", case["name"], case["options"]);
        check_bleu(&got, case, &mut max, &at);
    }
    eprintln!(
        "BLEU edge cases: {} numbers, max |diff| {:e}",
        max.checked, max.diff
    );
}

#[test]
fn tokenizer_13a_matches_sacrebleu() {
    let g = golden("bleu.json");
    let whitespace: Vec<char> = usizes(&g["python_whitespace"])
        .into_iter()
        .map(|c| char::from_u32(c as u32).unwrap())
        .collect();
    for case in g["tokenization"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        // sacreBLEU's preprocessing: lowercase, then Python's rstrip.
        let lowered = if case["lowercase"].as_bool().unwrap() {
            input.to_lowercase()
        } else {
            input.to_owned()
        };
        let stripped = lowered.trim_end_matches(|c| whitespace.contains(&c));
        assert_eq!(
            tokenize_13a(stripped),
            case["tokens"].as_str().unwrap(),
            "{input:?}"
        );
    }
}

/// Python's `str.split()` whitespace is what separates BLEU tokens: every
/// code point splits `a?b` exactly when Python's `isspace` is true for it.
#[test]
fn bleu_splits_on_python_whitespace_exactly() {
    let g = golden("bleu.json");
    let want: Vec<u32> = usizes(&g["python_whitespace"])
        .into_iter()
        .map(|c| c as u32)
        .collect();
    let opts = BleuOptions {
        tokenizer: BleuTokenizer::None,
        ..BleuOptions::default()
    };
    let mut got = Vec::new();
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        // Two tokens when c separates, one otherwise.
        let text = format!("a{c}b");
        let tokens = corpus_bleu(&[text.as_str()], &[[text.as_str()]], &opts)
            .unwrap()
            .sys_len;
        if tokens == 2 {
            got.push(c as u32);
        }
    }
    assert_eq!(got, want);
}
