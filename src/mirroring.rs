//! Following a ledger over HTTP (SPEC §8 mirror): the I/O around [`Ledger::follow`].
//!
//! Each round reads the followed ledger's `/checkpoint`, checks it against the checkpoint the
//! mirror holds (a smaller tree is a rollback, a different root at the same size or a failed
//! consistency proof is a fork: following stops, with both checkpoints logged as evidence),
//! then fetches the new entries as C2SP tlog-tiles entry bundles (`/tile/entries/...`), the
//! seal of each new certificate (`GET /api/v1/certificates/{id}`: a mirror cannot sign seals)
//! and, for a catch-up split into steps, consistency proofs (`GET /api/v1/proof/consistency`).
//! What the followed ledger answers is never trusted: [`Ledger::follow`] verifies it.

use crate::certificate::CertificateId;
use crate::checkpoint::Checkpoint;
use crate::client::{Client, ClientError};
use crate::entry::Entry;
use crate::ledger::Ledger;
use crate::merkle;
use crate::mirror::{FollowStep, MirrorError};
use crate::payload::{self, Payload};
use crate::tiles::{self, Tile, TileKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most entries appended in one step (one atomic commit): bounds a catch-up's memory.
pub const STEP_ENTRIES: u64 = 16 * tiles::WIDTH;

/// What a mirror is doing, for `/healthz` and the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MirrorState {
    /// Following: every round so far was verified (or could not read the followed ledger
    /// and will try again).
    #[default]
    Following,
    /// Stopped following: the followed log failed a check (the reason, with the evidence).
    /// The mirror goes on serving what it verified before.
    Stopped(String),
}

/// The followed ledger, shared between the follower and the HTTP handlers.
#[derive(Debug)]
pub struct MirrorStatus {
    /// The followed ledger's base URL.
    pub upstream: String,
    state: Mutex<MirrorState>,
}

impl MirrorStatus {
    /// A mirror of the ledger at `upstream`, following.
    pub fn new(upstream: &str) -> MirrorStatus {
        MirrorStatus {
            upstream: upstream.to_owned(),
            state: Mutex::new(MirrorState::Following),
        }
    }

    /// What the mirror is doing now.
    pub fn state(&self) -> MirrorState {
        crate::store::lock(&self.state).clone()
    }

    fn stop(&self, why: String) {
        *crate::store::lock(&self.state) = MirrorState::Stopped(why);
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
    /// The mirror's tree size after it.
    pub size: u64,
}

/// One round: brings the mirror up to the followed ledger's current checkpoint, in steps of
/// at most `step_entries` entries, each verified and committed before the next is fetched.
pub fn sync(ledger: &Ledger, client: &Client, step_entries: u64) -> Result<Round, MirrorError> {
    let text = client.get_path("/checkpoint", "text/plain").map_err(read)?;
    let text = String::from_utf8(text)
        .map_err(|_| MirrorError::Checkpoint("the checkpoint is not UTF-8".into()))?;
    let cp = Checkpoint::open(&text, ledger.log_key())
        .map_err(|e| MirrorError::Checkpoint(e.to_string()))?;
    let head = ledger.head();
    let start = head.size;
    if !head.checkpoint.is_empty() {
        let held = Checkpoint::open(&head.checkpoint, ledger.log_key())
            .map_err(|e| MirrorError::Checkpoint(format!("the checkpoint held: {e}")))?;
        let evidence = || format!("held:\n{}\nserved now:\n{text}", head.checkpoint);
        if cp.size < held.size {
            tracing::error!(evidence = %evidence(), "the followed log rolled back");
            return Err(MirrorError::Rollback {
                had: held.size,
                now: cp.size,
            });
        }
        if cp.size == held.size && cp.root != held.root {
            tracing::error!(evidence = %evidence(), "the followed log forked");
            return Err(MirrorError::Fork(format!(
                "it signed two different trees of {} entries",
                cp.size
            )));
        }
        // A new checkpoint must extend the one held before anything it covers is fetched:
        // a fork is then named as one, with both checkpoints as evidence (the steps' own
        // checks would also refuse it, as a broken chain or a wrong root).
        if cp.size > held.size && held.size > 0 {
            let proof = client.consistency_proof(held.size, cp.size).map_err(read)?;
            if let Err(e) =
                merkle::verify_consistency(held.size, cp.size, &held.root, &cp.root, &proof)
            {
                tracing::error!(evidence = %evidence(), "the followed log forked");
                return Err(MirrorError::Fork(format!(
                    "its checkpoints of {} and {} entries are not consistent ({e})",
                    held.size, cp.size
                )));
            }
        }
    }
    while ledger.head().size < cp.size {
        let from = ledger.head().size;
        let step = fetch_step(client, from, &cp, &text, step_entries)?;
        ledger.follow(step).inspect_err(|e| {
            if !e.is_transient() {
                tracing::error!(error = %e, checkpoint = %text, "refused what the followed log served");
            }
        })?;
    }
    Ok(Round {
        appended: cp.size.saturating_sub(start),
        size: cp.size,
    })
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
) -> Result<FollowStep, MirrorError> {
    let width = tiles::WIDTH;
    let boundary = (from + step_entries.max(1)) / width * width;
    let next_tile = (from / width + 1) * width;
    let end = cp.size.min(boundary.max(next_tile));
    let mut entries = Vec::with_capacity((end - from) as usize);
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
                entries.push(e.to_vec());
            }
        }
    }
    // Entries that do not parse are refused by `follow`, which says why.
    let certificates: Vec<(u64, CertificateId)> = (from..)
        .zip(&entries)
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
    let mut seals = std::collections::BTreeMap::new();
    for (i, seal) in fetched {
        seals.insert(certificates[i as usize].0, seal?);
    }
    let consistency = if end < cp.size {
        client.consistency_proof(end, cp.size).map_err(read)?
    } else {
        Vec::new()
    };
    Ok(FollowStep {
        entries,
        seals,
        checkpoint: text.to_owned(),
        consistency,
    })
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

/// Follows until the task is dropped or the followed log fails a check (then `status` says
/// why and following stops; what was verified goes on being served). Failures to read the
/// followed ledger are retried, waiting longer each time (up to a minute).
pub async fn run(ledger: Arc<Ledger>, config: FollowConfig, status: Arc<MirrorStatus>) {
    let client = match Client::with_timeout(&config.upstream, Duration::from_secs(30)) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            status.stop(format!("cannot follow {}: {e}", config.upstream));
            return;
        }
    };
    let mut wait = config.interval;
    loop {
        let (l, c) = (ledger.clone(), client.clone());
        let step = config.step_entries;
        let round = tokio::task::spawn_blocking(move || sync(&l, &c, step)).await;
        match round {
            Ok(Ok(r)) => {
                if r.appended > 0 {
                    tracing::info!(appended = r.appended, size = r.size, "mirrored new entries");
                }
                wait = config.interval;
            }
            Ok(Err(e)) if e.is_transient() => {
                tracing::warn!(error = %e, retry_s = wait.as_secs_f64(), "cannot follow now; trying again");
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "stopped following; serving what was verified");
                status.stop(e.to_string());
                return;
            }
            Err(e) => {
                status.stop(format!("the follower failed: {e}"));
                return;
            }
        }
        tokio::time::sleep(wait).await;
    }
}
