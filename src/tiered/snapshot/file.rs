//! The snapshot file: its format, and writing and reading it safely.
//!
//! Two parts: a header line (JSON: the format's name and version, the prefix, when it was
//! written, how many flags, and a checksum of the rest), then the flags (a JSON array of
//! definitions). Written atomically: a temporary file beside it, created anew (`O_EXCL`, so
//! never a file or a link someone left there) with mode 0600 and named after the process, then
//! `fsync`, a rename over the old file, and an `fsync` of the directory, so a crash at any
//! point leaves the old snapshot or the new one, whole.

use crate::error::{Error, ErrorKind, Result};
use crate::flag::FlagDefinition;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The format's name, first in every header.
const FORMAT: &str = "flagcache-snapshot";
/// The format's version; a reader refuses others.
const VERSION: u32 = 1;
/// The largest snapshot read: beyond it, a file is refused unread.
const MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    prefix: String,
    /// Milliseconds since the Unix epoch.
    written_at_ms: u64,
    flags: usize,
    /// `fnv1a64:` and 16 hex digits, of the bytes after the header's line.
    checksum: String,
}

/// A snapshot read back and checked.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) defs: Vec<FlagDefinition>,
    /// How old it is.
    pub(crate) age: Duration,
}

/// Writes `defs` as the snapshot of `prefix` at `path`, atomically; returns the bytes written.
pub(crate) fn write(path: &Path, prefix: &str, defs: &[&FlagDefinition]) -> Result<usize> {
    let body = serde_json::to_vec(defs)
        .map_err(|e| io_error(path, "encoding the snapshot", e.to_string()))?;
    let header = Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        prefix: prefix.to_owned(),
        written_at_ms: now_ms(),
        flags: defs.len(),
        checksum: checksum(&body),
    };
    let mut bytes = serde_json::to_vec(&header)
        .map_err(|e| io_error(path, "encoding the snapshot", e.to_string()))?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    let temporary = temporary_path(path);
    let written = (|| {
        // A leftover of this process's (a write that failed half-way) or of a process that
        // had its id: removed, not reused (a link there is removed, not followed).
        match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = open_private(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        sync_directory(path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        io_error(path, "writing the snapshot", e.to_string())
    })?;
    Ok(bytes.len())
}

/// Reads the snapshot at `path` and checks it: its format and version, its prefix, its
/// checksum, its age (at most `max_age`) and every definition (an invalid one is left out
/// and counted in the second value).
pub(crate) fn read(path: &Path, prefix: &str, max_age: Duration) -> Result<(Loaded, usize)> {
    let size = std::fs::metadata(path)
        .map_err(|e| io_error(path, "reading the snapshot", e.to_string()))?
        .len();
    if size > MAX_BYTES {
        return Err(corrupt(
            path,
            &format!("it is {size} bytes, over {MAX_BYTES}"),
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| io_error(path, "reading the snapshot", e.to_string()))?;
    let split = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt(path, "no header line"))?;
    let (head, body) = (&bytes[..split], &bytes[split + 1..]);
    let header: Header = serde_json::from_slice(head)
        .map_err(|e| corrupt(path, &format!("its header does not parse: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(corrupt(
            path,
            &format!(
                "it is {} version {}, not {FORMAT} version {VERSION}",
                header.format, header.version
            ),
        ));
    }
    if header.prefix != prefix {
        return Err(Error::invalid_config(format!(
            "the snapshot {} is of the prefix {:?}, not {prefix:?}",
            path.display(),
            header.prefix
        )));
    }
    if header.checksum != checksum(body) {
        return Err(corrupt(
            path,
            "its checksum does not match (truncated or damaged)",
        ));
    }
    let age = Duration::from_millis(now_ms().saturating_sub(header.written_at_ms));
    if age > max_age {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the snapshot {} is {age:?} old, over the maximum age {max_age:?}",
                path.display()
            ),
        ));
    }
    let mut defs: Vec<FlagDefinition> = serde_json::from_slice(body)
        .map_err(|e| corrupt(path, &format!("its flags do not parse: {e}")))?;
    let before = defs.len();
    defs.retain(|d| d.validate().is_ok());
    let invalid = before - defs.len();
    Ok((Loaded { defs, age }, invalid))
}

/// `{path}.{pid}.tmp`: two processes writing one snapshot file never share a temporary file.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(name)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Makes the rename durable: the directory's entry is what a crash could lose.
#[cfg(unix)]
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// FNV-1a (64 bits) of `bytes`, as the header writes it: against truncation and damage, not
/// against an attacker (the file is the process's own, mode 0600).
fn checksum(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{hash:016x}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("the snapshot {} is not usable: {why}", path.display()),
    )
}

fn io_error(path: &Path, what: &str, e: String) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("{what} {}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Vec<FlagDefinition> {
        (0..3)
            .map(|i| FlagDefinition::new_boolean(&format!("f{i}"), "F", true).unwrap())
            .collect()
    }

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("flagcache-snap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_snapshot_reads_back_as_written_and_is_private() {
        let dir = dir("roundtrip");
        let path = dir.join("flags.snapshot");
        let defs = defs();
        write(&path, "app", &defs.iter().collect::<Vec<_>>()).unwrap();
        let (loaded, invalid) = read(&path, "app", Duration::from_secs(60)).unwrap();
        assert_eq!((loaded.defs, invalid), (defs, 0));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!temporary_path(&path).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damaged_foreign_and_old_snapshots_are_refused() {
        let dir = dir("refused");
        let path = dir.join("flags.snapshot");
        let defs = defs();
        write(&path, "app", &defs.iter().collect::<Vec<_>>()).unwrap();
        let kind = |r: Result<(Loaded, usize)>| r.unwrap_err().kind();
        assert_eq!(
            kind(read(&path, "other", Duration::from_secs(60))),
            ErrorKind::InvalidConfig
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            kind(read(&path, "app", Duration::from_millis(1))),
            ErrorKind::InvalidConfig
        );
        let bytes = std::fs::read(&path).unwrap();
        // Truncated, a byte flipped, no header, garbage.
        for damaged in [
            bytes[..bytes.len() - 3].to_vec(),
            {
                let mut b = bytes.clone();
                let last = b.len() - 10;
                b[last] ^= 1;
                b
            },
            bytes[bytes.iter().position(|&b| b == b'\n').unwrap() + 1..].to_vec(),
            b"\x00\xff garbage".to_vec(),
        ] {
            std::fs::write(&path, damaged).unwrap();
            assert_eq!(
                kind(read(&path, "app", Duration::from_secs(60))),
                ErrorKind::Corrupt
            );
        }
        assert_eq!(
            kind(read(&dir.join("missing"), "app", Duration::from_secs(60))),
            ErrorKind::Backend
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
