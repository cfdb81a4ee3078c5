//! The ledger's side of C2SP `tlog-witness` (SPEC §8): each new checkpoint is sent to the
//! configured witnesses with a consistency proof from the tree each cosigned last, and the
//! cosignatures they answer are served with that checkpoint (`GET /checkpoint`, tlog-proofs).
//!
//! Witnessing never holds back an append: it runs beside the sequencer, and receipts carry
//! the latest checkpoint. Answers (lookups, proofs, tiles, `/checkpoint`) are made against the
//! newest checkpoint every witness (or a quorum of them) has cosigned, served with their
//! cosignatures (under load the witnesses cosign some checkpoints, not every one, so answers
//! lag the receipts by a round or two); if the witnesses do not move them on for a while,
//! against the latest, without. A cosignature is kept only once it verifies under the witness's pinned cosigner
//! key.

use crate::cosignature::CosignerKey;
use crate::ledger::{Head, Ledger};
use crate::merkle;
use crate::witness::{AddCheckpoint, SIZE_MEDIA_TYPE};
use std::sync::Arc;
use std::time::Duration;

/// A witness the ledger asks: where it listens and the key its cosignatures verify under.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// Its submission prefix, e.g. `http://127.0.0.1:8090` (`/add-checkpoint` is appended).
    pub url: String,
    /// Its cosigner key (type 0x04), as `reman-ledger witness` prints it.
    pub key: CosignerKey,
}

impl WitnessConfig {
    /// Parses `VKEY@URL`: the witness's cosigner key, `@`, its URL (a vkey holds no `@`).
    pub fn parse(arg: &str) -> Result<WitnessConfig, String> {
        let (vkey, url) = arg.split_once('@').ok_or_else(|| {
            format!("--witness {arg:?}: expected VKEY@URL (the witness's cosigner key, @, its URL)")
        })?;
        let key = CosignerKey::parse(vkey).map_err(|e| format!("--witness {arg:?}: {e}"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--witness {arg:?}: the URL must start with http:// or https://"
            ));
        }
        Ok(WitnessConfig {
            url: url.trim_end_matches('/').to_owned(),
            key,
        })
    }
}

/// The cosignatures gathered for the newest checkpoint the witnesses answered for.
#[derive(Debug, Default)]
struct Cosignatures {
    /// The checkpoint they cosign, and one line per witness that did.
    latest: (Arc<str>, Vec<String>),
}

impl Cosignatures {
    /// `checkpoint` with its cosignature lines, once `quorum` of them are gathered.
    fn complete(&self, checkpoint: &Arc<str>, quorum: usize) -> Option<String> {
        let (cosigned, lines) = &self.latest;
        (**cosigned == **checkpoint && lines.len() >= quorum)
            .then(|| lines.iter().fold(checkpoint.to_string(), |t, l| t + l))
    }

    fn record(&mut self, checkpoint: &Arc<str>, line: String) {
        if *self.latest.0 != **checkpoint {
            self.latest = (checkpoint.clone(), Vec::new());
        }
        if !self.latest.1.contains(&line) {
            self.latest.1.push(line);
        }
    }
}

/// Makes answers follow the latest head again when witnessing ends (the server stops, or the
/// task failed): they must not stay at an old checkpoint with nobody to move them on.
struct UngateOnDrop(Arc<Ledger>);

impl Drop for UngateOnDrop {
    fn drop(&mut self) {
        self.0.ungate_answers();
    }
}

/// How often the driver looks for a new checkpoint.
const PERIOD: Duration = Duration::from_millis(200);

/// How long one request to a witness may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the ledger knows of one witness.
struct Asked {
    config: WitnessConfig,
    /// The tree size it last cosigned, as far as the ledger knows (`None`: not yet asked).
    known: Option<u64>,
    /// The tree size of the last checkpoint sent to it (answered or not).
    sent: u64,
    /// Rounds to skip after a failure (grows to a minute, so a witness that is down is not
    /// asked 5 times a second).
    backoff: u32,
    skip: u32,
}

/// Asks the witnesses to cosign each new checkpoint, until the task is dropped. Answers are
/// made against the newest checkpoint `quorum` of them (`None`: all) have cosigned
/// ([`Ledger::gate_answers`]), served with the cosignatures gathered; when that has not moved
/// for `wait` while the log has grown (too many witnesses down), against the latest, with a
/// warning, so that lookups of new entries do not stop.
pub async fn run(
    ledger: Arc<Ledger>,
    witnesses: Vec<WitnessConfig>,
    wait: Duration,
    quorum: Option<usize>,
) {
    let quorum = quorum
        .unwrap_or(witnesses.len())
        .clamp(1, witnesses.len().max(1));
    ledger.gate_answers();
    let _ungate = UngateOnDrop(ledger.clone());
    let mut out = Cosignatures::default();
    let mut advanced = std::time::Instant::now();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .new_agent();
    let mut asked: Vec<Asked> = witnesses
        .into_iter()
        .map(|config| Asked {
            config,
            known: None,
            sent: 0,
            backoff: 0,
            skip: 0,
        })
        .collect();
    loop {
        let head = ledger.head();
        // All witnesses at once: a slow one does not hold the others' cosignatures back.
        let mut round = tokio::task::JoinSet::new();
        for (i, w) in asked.iter_mut().enumerate() {
            if w.sent == head.size {
                continue;
            }
            if w.skip > 0 {
                w.skip -= 1;
                continue;
            }
            let (ledger, agent, head_now) = (ledger.clone(), agent.clone(), head.clone());
            let (config, known) = (w.config.clone(), w.known);
            round.spawn_blocking(move || (i, ask(&ledger, &agent, &config, known, &head_now)));
        }
        while let Some(answer) = round.join_next().await {
            let (i, (known, result)) = match answer {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "witnessing task failed");
                    continue;
                }
            };
            let Some(w) = asked.get_mut(i) else { continue };
            w.known = known;
            match result {
                Ok(line) => {
                    w.sent = head.size;
                    w.backoff = 0;
                    out.record(&head.checkpoint, line);
                }
                Err(e) => {
                    w.backoff = (w.backoff * 2).clamp(1, 300);
                    w.skip = w.backoff;
                    tracing::warn!(witness = %w.config.url, error = %e, "no cosignature");
                }
            }
        }
        if let Some(cosigned) = out.complete(&head.checkpoint, quorum) {
            ledger.serve_head(Head {
                checkpoint: cosigned.into(),
                ..head.clone()
            });
            advanced = std::time::Instant::now();
        }
        if ledger.served_head().size >= ledger.head().size {
            advanced = std::time::Instant::now();
        } else if advanced.elapsed() >= wait {
            let latest = ledger.head();
            tracing::warn!(
                size = latest.size,
                waited_s = wait.as_secs_f64(),
                quorum,
                "serving a checkpoint fewer than the quorum of witnesses cosigned: they did not answer in time"
            );
            ledger.serve_head(latest);
            advanced = std::time::Instant::now();
        }
        tokio::time::sleep(PERIOD).await;
    }
}

/// One round with one witness: the cosignature line of `head`, and what is now known of the
/// size it cosigned. A 409 naming another size is answered once more from that size.
fn ask(
    ledger: &Ledger,
    agent: &ureq::Agent,
    w: &WitnessConfig,
    mut known: Option<u64>,
    head: &Head,
) -> (Option<u64>, Result<String, String>) {
    let url = format!("{}/add-checkpoint", w.url);
    for _ in 0..2 {
        let old = known.unwrap_or(0);
        if old > head.size {
            let e = format!(
                "the witness cosigned a tree of {old} entries of this log, which holds {}: the log was rolled back, or another log signs with its key",
                head.size
            );
            return (known, Err(e));
        }
        let proof = if old == 0 || old == head.size {
            Vec::new()
        } else {
            match merkle::consistency_proof(old, head.size, ledger.store()) {
                Ok(p) => p,
                Err(e) => return (known, Err(format!("consistency proof: {e}"))),
            }
        };
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: head.checkpoint.to_string(),
        }
        .to_body();
        let mut resp = match agent.post(&url).send(body.as_bytes()) {
            Ok(r) => r,
            Err(e) => return (known, Err(format!("{url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let is_size = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(SIZE_MEDIA_TYPE));
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        match status {
            200 => return (Some(head.size), verify_line(w, head, &text)),
            409 if is_size => match crate::c2sp::decimal(text.trim_end_matches('\n')) {
                // Its size is the one sent: same size, another root (tlog-witness's 409).
                Some(size) if size == old => {
                    let e = format!(
                        "the witness cosigned another tree of {size} entries of this log: the log forked"
                    );
                    return (Some(size), Err(e));
                }
                Some(size) => known = Some(size),
                None => return (known, Err(format!("{url}: 409 without a size: {text:?}"))),
            },
            _ => return (known, Err(format!("{url}: {status} {}", text.trim_end()))),
        }
    }
    (
        known,
        Err(format!("{url}: the size it cosigned keeps changing")),
    )
}

/// The witness's cosignature line among `answer`'s lines, verified over `head`'s checkpoint.
fn verify_line(w: &WitnessConfig, head: &Head, answer: &str) -> Result<String, String> {
    let note = crate::note::parse(&format!("{}{answer}", head.checkpoint))
        .map_err(|e| format!("the witness answered no note signature lines: {e}"))?;
    let sig = note
        .signatures
        .iter()
        .find(|s| w.key.signed(s))
        .ok_or_else(|| {
            format!(
                "no cosignature by the pinned key {} in the answer",
                w.key.to_vkey()
            )
        })?;
    w.key.verify(&note.text, sig).map_err(|e| e.to_string())?;
    Ok(sig.to_line())
}
