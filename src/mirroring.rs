//! Following a ledger over HTTP (SPEC §8 mirror): the I/O around [`Ledger::follow`].
//!
//! Each round reads the followed ledger's `/checkpoint`, a consistency proof from the
//! checkpoint held to it (`GET /api/v1/proof/consistency`, or made from its Merkle tiles when
//! it has no proof API: a static export), then, step by step, the new entries as C2SP
//! tlog-tiles entry bundles (`/tile/entries/...`), the seals of their certificates from the
//! seal tiles beside them (`/seals/...`; a mirror cannot sign seals; a certificate the tiles
//! hold no seal for is asked for at `GET /api/v1/certificates/{id}`) and, for a step that
//! ends before the checkpoint, a consistency proof to it. Nothing the followed ledger answers is
//! trusted: [`Ledger::follow`] verifies it, and says which refusals prove that the log
//! misbehaved (following stops, with the evidence) and which may be tried again.

use crate::certificate::CertificateId;
use crate::checkpoint::Checkpoint;
use crate::client::{Client, ClientError};
use crate::entry::Entry;
use crate::ledger::Ledger;
use crate::merkle::{self, Hash, NodeId};
use crate::mirror::{Evidence, FollowStep, MirrorError};
use crate::payload::{self, Payload};
use crate::store::StoreError;
use crate::tiles::{self, Tile, TileKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most entries appended in one step (one atomic commit): bounds a catch-up's memory.
pub const STEP_ENTRIES: u64 = 16 * tiles::WIDTH;

/// A step also ends at the first tile boundary after this many bytes of entries (entries of
/// up to 64 KiB would otherwise make a step of [`STEP_ENTRIES`] a quarter of a gigabyte).
const STEP_BYTES: usize = 32 * 1024 * 1024;

/// What a mirror is doing, for `/healthz` and the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MirrorState {
    /// Following (rounds that could not be completed are tried again: see
    /// [`MirrorStatus::last_error`]).
    #[default]
    Following,
    /// Stopped following: the followed log signed something that proves it misbehaved, or
    /// the mirror's storage failed. The mirror goes on serving what it verified before.
    Stopped {
        /// Why.
        reason: String,
        /// The two checkpoints, for a fork.
        evidence: Option<Evidence>,
    },
}

/// The last round that failed and will be tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// What failed.
    pub error: String,
    /// The two checkpoints, for a rollback or a failed consistency proof.
    pub evidence: Option<Evidence>,
    /// Rounds failed in a row.
    pub failures: u64,
}

/// The followed ledger, shared between the follower and the HTTP handlers.
#[derive(Debug)]
pub struct MirrorStatus {
    /// The followed ledger's base URL.
    pub upstream: String,
    state: Mutex<(MirrorState, Option<LastError>)>,
    /// Set when the server stops: a catch-up in progress ends after its current step.
    cancel: AtomicBool,
}

impl MirrorStatus {
    /// A mirror of the ledger at `upstream`, following.
    pub fn new(upstream: &str) -> MirrorStatus {
        MirrorStatus {
            upstream: upstream.to_owned(),
            state: Mutex::new((MirrorState::Following, None)),
            cancel: AtomicBool::new(false),
        }
    }

    /// What the mirror is doing now.
    pub fn state(&self) -> MirrorState {
        crate::store::lock(&self.state).0.clone()
    }

    /// The last failed round, unless a round has succeeded since.
    pub fn last_error(&self) -> Option<LastError> {
        crate::store::lock(&self.state).1.clone()
    }

    fn stop(&self, e: &MirrorError) {
        self.stopped(e.to_string(), e.evidence().cloned());
    }

    fn stopped(&self, reason: String, evidence: Option<Evidence>) {
        crate::store::lock(&self.state).0 = MirrorState::Stopped { reason, evidence };
    }

    fn failed(&self, e: &MirrorError) {
        let mut s = crate::store::lock(&self.state);
        let failures = s.1.as_ref().map_or(0, |l| l.failures) + 1;
        s.1 = Some(LastError {
            error: e.to_string(),
            evidence: e.evidence().cloned(),
            failures,
        });
    }

    fn succeeded(&self) {
        crate::store::lock(&self.state).1 = None;
    }
}

fn read(e: ClientError) -> MirrorError {
    MirrorError::Read(e.to_string())
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Entries appended.
    pub appended: u64,
    /// Entries the mirror stores after it.
    pub size: u64,
}

/// One round: brings the mirror up to the followed ledger's current checkpoint, in steps of
/// at most `step_entries` entries (at least one tile), each verified and committed before
/// the next is fetched; returns early, after a step, once `cancel` is set.
pub fn sync(
    ledger: &Ledger,
    client: &Client,
    step_entries: u64,
    cancel: &AtomicBool,
) -> Result<Round, MirrorError> {
    let text = client.get_path("/checkpoint", "text/plain").map_err(read)?;
    let text = String::from_utf8(text)
        .map_err(|_| MirrorError::Checkpoint("the checkpoint is not UTF-8".into()))?;
    let cp = Checkpoint::open(&text, ledger.log_key())
        .map_err(|e| MirrorError::Checkpoint(e.to_string()))?;
    let start = ledger.stored_size();
    let held = ledger.held_checkpoint()?;
    if held.as_deref() == Some(text.as_str()) && start == cp.size {
        return Ok(Round {
            appended: 0,
            size: start,
        });
    }
    // One proof that the new checkpoint extends the one held, for the round's first step.
    let mut extends = match held.map(|h| Checkpoint::open(&h, ledger.log_key())) {
        Some(Ok(had)) if had.size > 0 && cp.size > had.size => {
            consistency_proof(client, had.size, cp.size)?
        }
        _ => Vec::new(),
    };
    loop {
        let from = ledger.stored_size();
        let mut step = fetch_step(client, from, &cp, &text, step_entries, true)?;
        step.extends = extends.clone();
        match ledger.follow(step) {
            // A seal tile that holds a wrong seal (a damaged copy a cache keeps for good, say):
            // the step is fetched again with each seal from the certificate's own answer.
            Err(seal @ MirrorError::Seal { .. }) => {
                tracing::warn!(error = %seal, "a seal tile does not verify: asking for each seal of the step");
                // Where there is no API to ask (a static copy), the seal is what is wrong.
                let mut step = fetch_step(client, from, &cp, &text, step_entries, false).map_err(
                    |e| match e {
                        MirrorError::Read(_) => seal,
                        e => e,
                    },
                )?;
                step.extends = extends.clone();
                ledger.follow(step)?;
            }
            followed => {
                followed?;
            }
        }
        extends.clear();
        let size = ledger.stored_size();
        if size >= cp.size || cancel.load(Ordering::SeqCst) {
            return Ok(Round {
                appended: size - start,
                size,
            });
        }
    }
}

/// The entries from `from` up to at most `step_entries` later (ending on a tile boundary or
/// at the checkpoint), with their seals and, ending before the checkpoint, a consistency
/// proof to it.
fn fetch_step(
    client: &Client,
    from: u64,
    cp: &Checkpoint,
    text: &str,
    step_entries: u64,
    seal_tiles: bool,
) -> Result<FollowStep, MirrorError> {
    let width = tiles::WIDTH;
    if from >= cp.size {
        return Ok(FollowStep {
            checkpoint: text.to_owned(),
            ..FollowStep::default()
        });
    }
    let boundary = from.saturating_add(step_entries) / width * width;
    let next_tile = (from / width + 1) * width;
    let mut end = cp.size.min(boundary.max(next_tile));
    let mut entries = Vec::with_capacity((end - from) as usize);
    let mut tiled_seals: std::collections::BTreeMap<u64, [u8; 64]> = Default::default();
    let mut bytes_held = 0usize;
    for index in from / width..end.div_ceil(width) {
        let first = index * width;
        let tile = Tile {
            kind: TileKind::Entries,
            index,
            width: (cp.size - first).min(width) as u16,
        };
        let path = format!("/{}", tile.path());
        let bytes = client
            .get_path(&path, "application/octet-stream")
            .map_err(read)?;
        let bundle =
            tiles::decode_bundle(&bytes).map_err(|e| MirrorError::Read(format!("{path}: {e}")))?;
        if bundle.len() != usize::from(tile.width) {
            return Err(MirrorError::Read(format!(
                "{path}: {} entries instead of {}",
                bundle.len(),
                tile.width
            )));
        }
        for (i, e) in (first..).zip(bundle) {
            if (from..end).contains(&i) {
                bytes_held += e.len();
                entries.push(e.to_vec());
            }
        }
        let sealed = if seal_tiles {
            seal_tile(client, &tile)?
        } else {
            Vec::new()
        };
        for (i, sig) in (first..).zip(sealed) {
            if (from..end).contains(&i) && sig != [0; 64] {
                tiled_seals.insert(i, sig);
            }
        }
        // Large entries: the step ends at this tile's end instead.
        let tile_end = first + width;
        if bytes_held >= STEP_BYTES && tile_end < end {
            end = tile_end;
            break;
        }
    }
    // Entries that do not parse are refused by `follow`, which says why.
    // Seals the seal tiles did not hold (a ledger of an earlier version, an export of
    // certificates logged before seals were kept) are asked for one by one.
    let certificates: Vec<(u64, CertificateId)> = (from..)
        .zip(&entries)
        .filter(|(index, _)| !tiled_seals.contains_key(index))
        .filter_map(|(index, bytes)| Some((index, certificate_id(bytes)?)))
        .collect();
    let mut fetched = crate::audit::in_parallel(
        0..certificates.len() as u64,
        SEAL_JOBS,
        |i| {
            let (index, id) = &certificates[i as usize];
            fetch_seal(client, *index, id)
        },
        Result::is_err,
    );
    // The first failure in log order is the one reported.
    fetched.sort_unstable_by_key(|(i, _)| *i);
    // A seal on an entry that is not a certificate is refused by `follow`.
    let mut seals = tiled_seals;
    for (i, seal) in fetched {
        seals.insert(certificates[i as usize].0, seal?);
    }
    let consistency = if end < cp.size {
        consistency_proof(client, end, cp.size)?
    } else {
        Vec::new()
    };
    Ok(FollowStep {
        entries,
        seals,
        checkpoint: text.to_owned(),
        extends: Vec::new(),
        consistency,
    })
}

/// The seal signatures of an entry bundle's entries, from its seal tile ([`Tile::seal_path`]):
/// all zeros (none held) when the followed ledger serves no seal tiles.
fn seal_tile(client: &Client, tile: &Tile) -> Result<Vec<[u8; 64]>, MirrorError> {
    let path = format!("/{}", tile.seal_path());
    let width = usize::from(tile.width);
    let bytes = match client.get_path(&path, "application/octet-stream") {
        Ok(bytes) => bytes,
        // Not found (an object store without list rights answers 403).
        Err(e) if matches!(e.status(), Some(404 | 403)) => return Ok(vec![[0; 64]; width]),
        Err(e) => return Err(read(e)),
    };
    if bytes.len() != width * tiles::SEAL_BYTES {
        return Err(MirrorError::Read(format!(
            "{path}: {} bytes instead of {}",
            bytes.len(),
            width * tiles::SEAL_BYTES
        )));
    }
    Ok(bytes
        .chunks_exact(tiles::SEAL_BYTES)
        .filter_map(|c| c.try_into().ok())
        .collect())
}

/// A consistency proof between two sizes of the followed log: from its proof API, or, where
/// it has none (a static export: 404), made from its Merkle tiles of the tree of `second`.
/// Either way it is verified against the signed roots before anything is stored.
fn consistency_proof(client: &Client, first: u64, second: u64) -> Result<Vec<Hash>, MirrorError> {
    match client.consistency_proof(first, second) {
        Err(e) if matches!(e.status(), Some(404 | 403)) => {
            let tiles = TileHashes {
                client,
                size: second,
                read: Default::default(),
            };
            merkle::consistency_proof(first, second, &tiles).map_err(|e| match e {
                merkle::ReadError::Read(e) => e,
                merkle::ReadError::Merkle(e) => MirrorError::Read(e.to_string()),
            })
        }
        answer => answer.map_err(read),
    }
}

/// The followed log's Merkle nodes, as its hash tiles of a tree of `size` entries give them:
/// a node of level 8·L + k is the root of 2^k consecutive hashes of a level-L tile.
struct TileHashes<'a> {
    client: &'a Client,
    size: u64,
    /// The tiles read so far, by level and index.
    read: std::cell::RefCell<std::collections::HashMap<(u8, u64), Vec<Hash>>>,
}

impl TileHashes<'_> {
    fn tile(&self, level: u8, index: u64) -> Result<Vec<Hash>, MirrorError> {
        if let Some(t) = self.read.borrow().get(&(level, index)) {
            return Ok(t.clone());
        }
        let complete = self.size >> (u32::from(level) * u32::from(tiles::HEIGHT));
        let width = complete
            .saturating_sub(index * tiles::WIDTH)
            .min(tiles::WIDTH);
        let tile = Tile {
            kind: TileKind::Hashes(level),
            index,
            width: width as u16,
        };
        let path = format!("/{}", tile.path());
        let bytes = self
            .client
            .get_path(&path, "application/octet-stream")
            .map_err(read)?;
        if width == 0 || bytes.len() as u64 != 32 * width {
            return Err(MirrorError::Read(format!(
                "{path}: {} bytes instead of {}",
                bytes.len(),
                32 * width
            )));
        }
        let hashes: Vec<Hash> = bytes
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        self.read
            .borrow_mut()
            .insert((level, index), hashes.clone());
        Ok(hashes)
    }

    fn node(&self, id: NodeId) -> Result<Hash, MirrorError> {
        let level = id.level / tiles::HEIGHT;
        let k = id.level % tiles::HEIGHT;
        let first = id.index << k;
        let tile = self.tile(level, first / tiles::WIDTH)?;
        let at = (first % tiles::WIDTH) as usize;
        let mut layer = tile
            .get(at..at + (1usize << k))
            .ok_or_else(|| MirrorError::Read(format!("no tile holds Merkle node {id:?}")))?
            .to_vec();
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| merkle::node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(layer[0])
    }
}

impl merkle::HashReader for TileHashes<'_> {
    type Error = MirrorError;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, MirrorError> {
        ids.iter().map(|id| self.node(*id)).collect()
    }
}

/// Seals fetched at once, each over a connection of its own: one request per certificate is
/// most of a catch-up's time.
const SEAL_JOBS: usize = 8;

/// The seal signature the followed ledger serves for certificate `id` of entry `index`; its
/// header must name that entry and certificate (the signature is checked by `follow`).
fn fetch_seal(client: &Client, index: u64, id: &CertificateId) -> Result<[u8; 64], MirrorError> {
    let view = client.certificate(&id.to_string()).map_err(read)?;
    let seal = view
        .get("seal")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| crate::seal::Seal::from_base64url(s).ok())
        .ok_or_else(|| MirrorError::Seal {
            index,
            problem: format!("the followed ledger serves certificate {id} without a valid seal"),
        })?;
    if seal.index != index || seal.certificate_id != id.0 {
        return Err(MirrorError::Seal {
            index,
            problem: format!(
                "the followed ledger serves certificate {id} with a seal for entry {} (certificate {})",
                seal.index,
                CertificateId(seal.certificate_id)
            ),
        });
    }
    Ok(seal.signature)
}

/// The certificate ID of a certificate entry.
fn certificate_id(bytes: &[u8]) -> Option<CertificateId> {
    let entry = Entry::parse_stored(bytes).ok()?;
    let p = payload::parse(&entry.envelope.payload_type, &entry.envelope.payload).ok()?;
    matches!(p, Payload::Certificate(_)).then(|| CertificateId::of_payload(&entry.envelope.payload))
}

/// How a mirror follows: where, how often, in what steps.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The followed ledger's base URL.
    pub upstream: String,
    /// The pause between rounds.
    pub interval: Duration,
    /// Most entries per step ([`STEP_ENTRIES`] by default).
    pub step_entries: u64,
}

/// Records durably why following stopped, with the evidence: a restarted mirror does not
/// follow again until the operator has looked ([`resume`]).
fn record_stop(ledger: &Ledger, e: &MirrorError) -> Result<(), MirrorError> {
    let ev = e.evidence();
    let record = serde_json::json!({
        "reason": e.to_string(),
        "held": ev.map(|e| e.held.as_str()),
        "presented": ev.map(|e| e.presented.as_str()),
    });
    Ok(ledger
        .store()
        .set_mirror_stopped(Some(record.to_string().as_bytes()))?)
}

/// Why following stopped earlier, if it did (see [`record_stop`]).
fn stop_record(ledger: &Ledger) -> Result<Option<(String, Option<Evidence>)>, MirrorError> {
    let Some(bytes) = ledger.store().mirror_stopped()? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Corrupt(format!("the mirror's stop record: {e}")))?;
    let text = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let evidence = text("held")
        .zip(text("presented"))
        .map(|(held, presented)| Evidence { held, presented });
    Ok(Some((
        text("reason").unwrap_or_else(|| "stopped earlier".to_owned()),
        evidence,
    )))
}

/// Clears the record of an earlier stop, so that the mirror follows again (`mirror --resume`);
/// returns the reason recorded, if there was one.
pub fn resume(ledger: &Ledger) -> Result<Option<String>, MirrorError> {
    let reason = stop_record(ledger)?.map(|(r, _)| r);
    if reason.is_some() {
        ledger.store().set_mirror_stopped(None)?;
    }
    Ok(reason)
}

/// Sets the cancel flag when dropped: an aborted follower task ends its catch-up after the
/// step in progress, so that the ledger can be closed.
struct CancelOnDrop(Arc<MirrorStatus>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::SeqCst);
    }
}

/// Follows until the task is dropped or the followed log proves it misbehaved (then
/// `status` says why and following stops; what was verified goes on being served). Rounds
/// that fail otherwise are tried again, waiting longer each time (up to a minute), and
/// `status` shows the last failure.
pub async fn run(ledger: Arc<Ledger>, config: FollowConfig, status: Arc<MirrorStatus>) {
    let _cancel = CancelOnDrop(status.clone());
    // Stopped before: not again until the operator says so (`mirror --resume`).
    match stop_record(&ledger) {
        Ok(Some((reason, evidence))) => {
            tracing::error!(reason = %reason, "this mirror stopped following earlier; serving what it verified (investigate, then run it with --resume)");
            status.stopped(reason, evidence);
            return;
        }
        Ok(None) => {}
        Err(e) => {
            status.stop(&e);
            return;
        }
    }
    let client = match Client::with_timeout(&config.upstream, Duration::from_secs(30)) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            status.stop(&MirrorError::Read(format!(
                "cannot follow {}: {e}",
                config.upstream
            )));
            return;
        }
    };
    let mut wait = config.interval;
    loop {
        let (l, c, s) = (ledger.clone(), client.clone(), status.clone());
        let step = config.step_entries;
        let round = tokio::task::spawn_blocking(move || sync(&l, &c, step, &s.cancel)).await;
        match round {
            Ok(Ok(r)) => {
                if r.appended > 0 {
                    tracing::info!(
                        appended = r.appended,
                        size = r.size,
                        behind = ?ledger.behind(),
                        "mirrored new entries"
                    );
                }
                status.succeeded();
                wait = config.interval;
            }
            Ok(Err(e)) if e.is_transient() => {
                match e.evidence() {
                    Some(ev) => {
                        tracing::warn!(error = %e, held = %ev.held, presented = %ev.presented, retry_s = wait.as_secs_f64(), "refused; trying again")
                    }
                    None => {
                        tracing::warn!(error = %e, retry_s = wait.as_secs_f64(), "cannot follow now; trying again")
                    }
                }
                status.failed(&e);
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            Ok(Err(e)) => {
                match e.evidence() {
                    Some(ev) => {
                        tracing::error!(error = %e, held = %ev.held, presented = %ev.presented, "stopped following; serving what was verified")
                    }
                    None => {
                        tracing::error!(error = %e, "stopped following; serving what was verified")
                    }
                }
                status.stop(&e);
                // What the followed log signed stays a stop after a restart; the mirror's own
                // storage failing does not (a restart on a mended disk follows again).
                if !matches!(e, MirrorError::Store(_))
                    && let Err(w) = record_stop(&ledger, &e)
                {
                    tracing::error!(error = %w, "cannot record why following stopped");
                }
                return;
            }
            Err(e) => {
                status.stop(&MirrorError::Read(format!("the follower failed: {e}")));
                return;
            }
        }
        tokio::time::sleep(wait).await;
    }
}
