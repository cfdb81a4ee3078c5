//! Exports the log as static `tlog-tiles` files (SPEC §8): a directory that any static web
//! server, CDN or object store serves unchanged as the log's read path.
//!
//! The directory holds `checkpoint`, `tile/...` and `seals/...`, byte for byte what
//! `GET /checkpoint`, `GET /tile/...` and `GET /seals/...` answer for the same tree (but for
//! witness cosignatures, which a running ledger gathers, and the seal tiles of bundles holding
//! a certificate whose seal the store does not keep, which only a ledger holding the log key
//! can sign: those are left out). Exports are incremental: the directory's own
//! checkpoint says which tree it already holds, and once that checkpoint verifies under the
//! log's key and its root is the stored tree's root at its size, the tiles of that tree are
//! kept (a tile's path names its width, so its bytes never change) and only the rest is
//! written. A directory holding another
//! log's export, or a fork of this one, is refused. Every file is written under a temporary
//! name and renamed into place, the checkpoint last, so that the directory never offers a
//! checkpoint whose tiles are not there yet.

use crate::checkpoint::Checkpoint;
use crate::keys::PublicKey;
use crate::merkle;
use crate::store::{Store, StoreError};
use crate::tiles::{self, Tile, TileKind};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an export failed. Files written before the failure are complete and correct; the
/// directory's checkpoint is the previous one until an export succeeds.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read.
    #[error("cannot read the ledger: {0}")]
    Store(#[from] StoreError),
    /// The store holds no log.
    #[error("the ledger holds no log yet: run `reman-ledger init` (or `serve`) first")]
    NotInitialized,
    /// The store's own checkpoint does not hold: audit it (`reman-ledger audit --data`).
    #[error(
        "the ledger's checkpoint does not hold, so nothing was exported: {0}; run `reman-ledger audit --data` on it"
    )]
    BadLedger(String),
    /// The output directory holds an export that is not an earlier state of this log.
    #[error(
        "{dir} holds an export that is not an earlier state of this log ({why}); export to an \
         empty directory"
    )]
    Foreign {
        /// The output directory.
        dir: PathBuf,
        /// What does not match.
        why: String,
    },
    /// The output directory holds a later state of this log than the store: exporting
    /// would roll the copy back.
    #[error(
        "{dir} holds an export of this log at {exported} entries, ahead of this ledger's \
         {size}: this data directory is older than the export (a restored backup?); nothing \
         was written, so the copy is not rolled back"
    )]
    Ahead {
        /// The output directory.
        dir: PathBuf,
        /// The size of the export there.
        exported: u64,
        /// The store's size.
        size: u64,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The tree size of the exported checkpoint.
    pub size: u64,
    /// The tree size the directory held before (0 for a new export).
    pub previous_size: u64,
    /// Files written (tiles, bundles and the checkpoint).
    pub written: u64,
    /// Tiles and bundles of the previous export kept as they were.
    pub kept: u64,
    /// Certificates written now whose seal the store does not keep (logged before seals
    /// were kept, or by a ledger that stopped without closing and has not opened since):
    /// their seal tiles are left out, so a mirror of the copy cannot follow past them.
    pub unsealed: u64,
}

/// Exports the tree of `store`'s latest checkpoint into `out` (created if missing).
pub fn export(store: &Store, out: &Path) -> Result<ExportReport, ExportError> {
    let key = store.log_key()?.ok_or(ExportError::NotInitialized)?;
    let key = PublicKey::parse(&key).map_err(|e| ExportError::BadLedger(e.to_string()))?;
    let text = store.checkpoint()?.ok_or(ExportError::NotInitialized)?;
    let cp = Checkpoint::open(&text, &key).map_err(|e| ExportError::BadLedger(e.to_string()))?;
    let root = root_at(store, cp.size)?;
    if root != cp.root {
        return Err(ExportError::BadLedger(format!(
            "its root is not the stored tree's root at size {}",
            cp.size
        )));
    }
    let previous_size = previous_export(store, &key, out)?;

    let written = AtomicU64::new(0);
    let kept = AtomicU64::new(0);
    let unsealed = AtomicU64::new(0);
    tiles::tiles_of(cp.size)
        .par_iter()
        .try_for_each(|tile| -> Result<(), ExportError> {
            let path = out.join(tile.path());
            // A tile's path names its width, so a tile the previous export wrote is still
            // right (and a full one is so forever): kept, unless its length shows it is not
            // what was written (the bytes are not read again: that is a whole new export).
            let mut bundle = None;
            if tile.is_in(previous_size) && plausible(tile, &path) {
                kept.fetch_add(1, Ordering::Relaxed);
            } else {
                let bytes = store.tile(tile, cp.size)?.ok_or_else(|| missing(tile))?;
                write_atomic(&path, &bytes)?;
                written.fetch_add(1, Ordering::Relaxed);
                bundle = Some(bytes);
            }
            // Beside a bundle, its seal tile, written only whole: one that lacks a
            // certificate's seal is left out (the next export tries again), so that what is
            // there is what the ledger serves.
            let Some(range) = tile.entries().filter(|_| tile.kind == TileKind::Entries) else {
                return Ok(());
            };
            let seal_path = out.join(tile.seal_path());
            let width = u64::from(tile.width);
            if bundle.is_none() && is_file_of(&seal_path, tiles::SEAL_BYTES as u64 * width) {
                return Ok(());
            }
            // Which entries are certificates: the bundle kept says, unread from the store
            // (unless it does not decode: then it is written again).
            let kept_bundle = match bundle {
                Some(_) => None,
                None => std::fs::read(&path).ok(),
            };
            let made = match kept_bundle.map(|b| seal_tile(store, range.clone(), &b)) {
                Some(Ok(made)) => made,
                _ => {
                    let bytes = match bundle {
                        Some(bytes) => bytes,
                        None => {
                            let bytes = store.tile(tile, cp.size)?.ok_or_else(|| missing(tile))?;
                            write_atomic(&path, &bytes)?;
                            written.fetch_add(1, Ordering::Relaxed);
                            bytes
                        }
                    };
                    seal_tile(store, range, &bytes)?
                }
            };
            let (seals, missing) = made;
            if missing == 0 {
                write_atomic(&seal_path, &seals)?;
                written.fetch_add(1, Ordering::Relaxed);
            }
            unsealed.fetch_add(missing, Ordering::Relaxed);
            Ok(())
        })?;
    // The tiles' directory entries are durable before the checkpoint that needs them.
    let mut dirs: Vec<PathBuf> = tiles::tiles_of(cp.size)
        .iter()
        .flat_map(|t| {
            let seals = (t.kind == TileKind::Entries).then(|| out.join(t.seal_path()));
            [Some(out.join(t.path())), seals]
        })
        .filter_map(|p| Some(p?.parent()?.to_path_buf()))
        // A seal tile left out may leave its directory unmade.
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.par_iter().try_for_each(|d| sync_dir(d))?;
    write_atomic(&out.join("checkpoint"), text.as_bytes())?;
    sync_dir(out)?;
    Ok(ExportReport {
        size: cp.size,
        previous_size,
        written: written.into_inner() + 1,
        kept: kept.into_inner(),
        unsealed: unsealed.into_inner(),
    })
}

/// The seal tile of the entries of `range` ([`Tile::seal_path`]), whose bundle is `bundle`,
/// from the seals the store keeps, and how many certificates it has no seal for (the export
/// holds no key to sign them).
fn seal_tile(
    store: &Store,
    range: std::ops::Range<u64>,
    bundle: &[u8],
) -> Result<(Vec<u8>, u64), ExportError> {
    let kept = store.seal_signatures(range)?;
    let entries =
        tiles::decode_bundle(bundle).map_err(|e| ExportError::BadLedger(e.to_string()))?;
    let missing = kept
        .iter()
        .zip(entries)
        .filter(|(sig, entry)| {
            sig.is_none()
                && crate::entry::Entry::parse_stored(entry)
                    .is_ok_and(|e| e.certificate_id().is_some())
        })
        .count() as u64;
    let bytes = kept
        .into_iter()
        .flat_map(|sig| sig.unwrap_or([0; tiles::SEAL_BYTES]))
        .collect();
    Ok((bytes, missing))
}

/// Whether an existing file can be the tile: a Merkle tile is exactly 32 bytes per hash, a
/// bundle at least a 2-byte length per entry.
fn plausible(tile: &Tile, path: &Path) -> bool {
    let width = u64::from(tile.width);
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    meta.is_file()
        && match tile.kind {
            TileKind::Hashes(_) => meta.len() == 32 * width,
            TileKind::Entries => meta.len() >= 2 * width,
        }
}

/// Whether `path` is a file of `len` bytes.
fn is_file_of(path: &Path, len: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == len)
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ExportError::Io {
            path: dir.to_owned(),
            source,
        })
}

fn missing(tile: &Tile) -> ExportError {
    ExportError::BadLedger(format!("{} cannot be read", tile.path()))
}

fn root_at(store: &Store, size: u64) -> Result<merkle::Hash, ExportError> {
    merkle::root(size, store).map_err(|e| match e {
        merkle::ReadError::Read(e) => ExportError::Store(e),
        merkle::ReadError::Merkle(e) => ExportError::BadLedger(e.to_string()),
    })
}

/// The tree size of the export already in `out` (0 if none), once its checkpoint is shown to
/// be this log's at an earlier (or the same) size.
fn previous_export(store: &Store, key: &PublicKey, out: &Path) -> Result<u64, ExportError> {
    let path = out.join("checkpoint");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(ExportError::Io { path, source }),
    };
    let foreign = |why: String| ExportError::Foreign {
        dir: out.to_owned(),
        why,
    };
    let cp = Checkpoint::open(&text, key)
        .map_err(|e| foreign(format!("its checkpoint is not this log's: {e}")))?;
    let size = store.size()?;
    if cp.size > size {
        return Err(ExportError::Ahead {
            dir: out.to_owned(),
            exported: cp.size,
            size,
        });
    }
    if root_at(store, cp.size)? != cp.root {
        return Err(foreign(format!(
            "its root at size {} is not this log's: a fork",
            cp.size
        )));
    }
    Ok(cp.size)
}

/// Writes `bytes` to `path` under a temporary name first, then renames it into place: a
/// reader sees the old file or the whole new one, never a part.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io { path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // Synced before the rename: after a crash the name holds the whole file or nothing new.
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()
    };
    let written = write().and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // Nothing half-written is left for a static server to serve.
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io(path))
}
