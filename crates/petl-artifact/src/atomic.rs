use crate::{ArtifactError, Result};
use candle_core::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and then
/// renamed over `path`: readers see the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".petl-tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Serialises `value` as pretty JSON (with a trailing newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ArtifactError::BadMeta {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes tensors as safetensors atomically. Keys are written in sorted order, so the same
/// tensors give the same bytes.
pub fn write_safetensors_atomic(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let map: HashMap<&str, Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let bytes = safetensors::serialize(map.iter().map(|(k, v)| (*k, v)), None).map_err(|e| {
        ArtifactError::BadWeights {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
        let e = write_atomic(&dir.path().join("missing/x"), b"").unwrap_err();
        assert!(e.to_string().contains("missing/x"), "{e}");
    }
}
