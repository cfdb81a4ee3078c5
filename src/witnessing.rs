//! The ledger's side of C2SP `tlog-witness` (SPEC §8): each new checkpoint is sent to the
//! configured witnesses with a consistency proof from the tree each cosigned last, and the
//! cosignatures they answer are served with that checkpoint (`GET /checkpoint`, tlog-proofs).
//!
//! Witnessing never holds back an append: it runs beside the sequencer, and receipts carry
//! the latest checkpoint. Answers (lookups, proofs, tiles, `/checkpoint`) are made against the
//! newest checkpoint every witness (or a quorum of them) has cosigned, served with their
//! cosignatures. Under load the witnesses cosign some checkpoints, not every one (at most one
//! a round, as fast as the quorum's slowest witness answers), so answers lag the receipts by
//! that much; if the witnesses do not move them on for a while, they are made against the
//! latest, without. A cosignature is kept only once it verifies under the witness's pinned
//! cosigner key.

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
    /// Parses `VKEY@URL`: the witness's cosigner key (or a file holding it, whose path may
    /// hold an `@`), `@`, its URL.
    pub fn parse(arg: &str) -> Result<WitnessConfig, String> {
        let at = ["@http://", "@https://"]
            .iter()
            .filter_map(|sep| arg.rfind(sep))
            .max()
            .ok_or_else(|| {
                format!(
                    "--witness {arg:?}: expected VKEY@URL (the witness's cosigner key, @, its URL starting with http:// or https://)"
                )
            })?;
        let (vkey, url) = (&arg[..at], &arg[at + 1..]);
        let key = crate::keyfile::read_witness_key(vkey)
            .map_err(|e| format!("--witness {arg:?}: {e}"))?;
        Ok(WitnessConfig {
            url: url.trim_end_matches('/').to_owned(),
            key,
        })
    }
}

/// The cosignatures gathered for the newest checkpoints the witnesses answered for: a slow
/// witness may answer for an older checkpoint than the others.
#[derive(Debug, Default)]
struct Cosignatures {
    /// Tree heads and one cosignature line per witness that cosigned each, oldest first; at
    /// most [`KEPT`].
    recent: Vec<(Head, Vec<String>)>,
}

/// How many recent checkpoints' cosignatures are kept.
const KEPT: usize = 8;

impl Cosignatures {
    /// The newest head `quorum` witnesses have cosigned, its checkpoint with their lines.
    fn newest_complete(&self, quorum: usize) -> Option<Head> {
        self.recent
            .iter()
            .rev()
            .find(|(_, lines)| lines.len() >= quorum)
            .map(|(head, lines)| Head {
                checkpoint: lines
                    .iter()
                    .fold(head.checkpoint.to_string(), |t, l| t + l)
                    .into(),
                ..head.clone()
            })
    }

    fn record(&mut self, head: &Head, line: String) {
        let at = match self
            .recent
            .iter()
            .position(|(h, _)| *h.checkpoint == *head.checkpoint)
        {
            Some(at) => at,
            None => {
                let at = self.recent.partition_point(|(h, _)| h.size <= head.size);
                self.recent.insert(at, (head.clone(), Vec::new()));
                if self.recent.len() <= KEPT {
                    at
                } else if at == 0 {
                    // Older than every checkpoint kept: of no use.
                    self.recent.remove(0);
                    return;
                } else {
                    self.recent.remove(0);
                    at - 1
                }
            }
        };
        if let Some((_, lines)) = self.recent.get_mut(at)
            && !lines.contains(&line)
        {
            lines.push(line);
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
    /// The tree size of the last checkpoint it cosigned for this ledger.
    sent: u64,
    /// The tree size of the checkpoint it is being asked to cosign, while a request is out:
    /// it is asked nothing else meanwhile.
    asking: Option<u64>,
    /// Rounds to skip after a failure (grows to a minute, so a witness that is down is not
    /// asked 5 times a second).
    backoff: u32,
    skip: u32,
}

/// One witness's answer: which witness, the head it was asked to cosign, what is now known of
/// the size it cosigned, and its cosignature line.
type Answer = (usize, Head, (Option<u64>, Result<String, String>));

/// Asks the witnesses to cosign the ledger's checkpoints, until the task is dropped. Answers
/// are made against the newest checkpoint `quorum` of them (`None`: all) have cosigned
/// ([`Ledger::gate_answers`]), served with the cosignatures gathered as soon as the quorum is
/// reached.
///
/// All witnesses are asked the same checkpoint (the *target*), so that their cosignatures
/// meet on one; the target moves to the latest head once it has its quorum, or once no
/// witness is still being asked about it (the others failed). A witness still answering an
/// older checkpoint is not waited for and is asked nothing else meanwhile: one that is slow,
/// or hangs until its request times out, holds back neither the others nor the answers
/// beyond what the quorum needs. When the served checkpoint has not moved for `wait` while the
/// log has grown (too many witnesses down), answers are made against the latest, with a
/// warning, so that lookups of new entries do not stop.
pub async fn run(
    ledger: Arc<Ledger>,
    witnesses: Vec<WitnessConfig>,
    wait: Duration,
    quorum: Option<usize>,
) {
    let n = witnesses.len();
    let quorum = match quorum {
        None => n.max(1),
        Some(k) if (1..=n).contains(&k) => k,
        Some(k) => {
            let used = k.clamp(1, n.max(1));
            tracing::warn!(
                quorum = k,
                witnesses = n,
                used,
                "witness quorum out of range"
            );
            used
        }
    };
    ledger.gate_answers();
    let _ungate = UngateOnDrop(ledger.clone());
    let mut out = Cosignatures::default();
    let mut advanced = std::time::Instant::now();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        // Witnesses close idle connections: see the client's own setting.
        .max_idle_age(crate::client::IDLE_REUSE)
        .build()
        .new_agent();
    let mut asked: Vec<Asked> = witnesses
        .into_iter()
        .map(|config| Asked {
            config,
            known: None,
            sent: 0,
            asking: None,
            backoff: 0,
            skip: 0,
        })
        .collect();
    // Requests out, across rounds; task IDs name the witness, so that one whose task failed
    // can be asked again.
    let mut out_now: tokio::task::JoinSet<Answer> = tokio::task::JoinSet::new();
    let mut tasks: std::collections::HashMap<tokio::task::Id, usize> = Default::default();
    let mut target = ledger.head();
    loop {
        let round_end = tokio::time::Instant::now() + PERIOD;
        // Answers that came meanwhile, before anyone is asked again.
        while let Some(done) = out_now.try_join_next_with_id() {
            take_answer(done, &mut asked, &mut tasks, &mut out);
            serve_newest(&ledger, &out, quorum, &mut advanced);
        }
        let complete = out
            .newest_complete(quorum)
            .is_some_and(|h| h.size >= target.size);
        if complete || !asked.iter().any(|w| w.asking == Some(target.size)) {
            target = ledger.head();
        }
        for (i, w) in asked.iter_mut().enumerate() {
            if w.asking.is_some() || w.sent >= target.size {
                continue;
            }
            if w.skip > 0 {
                w.skip -= 1;
                continue;
            }
            w.asking = Some(target.size);
            let (ledger, agent, head) = (Arc::downgrade(&ledger), agent.clone(), target.clone());
            let (config, known) = (w.config.clone(), w.known);
            let task = out_now.spawn_blocking(move || {
                let answer = ask(&ledger, &agent, &config, known, &head);
                (i, head, answer)
            });
            tasks.insert(task.id(), i);
        }
        // Answers as they come, until the target has its quorum, nobody is still asked about
        // it, or the round ends (at most one target a round: witnesses are not asked to cosign
        // every checkpoint of a busy log).
        while asked.iter().any(|w| w.asking == Some(target.size)) {
            match tokio::time::timeout_at(round_end, out_now.join_next_with_id()).await {
                Ok(Some(done)) => take_answer(done, &mut asked, &mut tasks, &mut out),
                Ok(None) | Err(_) => break,
            }
            serve_newest(&ledger, &out, quorum, &mut advanced);
            if out
                .newest_complete(quorum)
                .is_some_and(|h| h.size >= target.size)
            {
                break;
            }
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
        tokio::time::sleep_until(round_end).await;
    }
}

/// Serves the newest checkpoint with a quorum of cosignatures, if it is newer than the one
/// served, or the same with other cosignatures.
fn serve_newest(
    ledger: &Ledger,
    out: &Cosignatures,
    quorum: usize,
    advanced: &mut std::time::Instant,
) {
    let Some(cosigned) = out.newest_complete(quorum) else {
        return;
    };
    let served = ledger.served_head();
    if cosigned.size > served.size
        || (cosigned.size == served.size && cosigned.checkpoint != served.checkpoint)
    {
        ledger.serve_head(cosigned);
        *advanced = std::time::Instant::now();
    }
}

/// Takes one witness's answer (or its task's failure) into what is known of it.
fn take_answer(
    done: Result<(tokio::task::Id, Answer), tokio::task::JoinError>,
    asked: &mut [Asked],
    tasks: &mut std::collections::HashMap<tokio::task::Id, usize>,
    out: &mut Cosignatures,
) {
    let (i, head, (known, result)) = match done {
        Ok((id, answer)) => {
            tasks.remove(&id);
            answer
        }
        Err(e) => {
            tracing::error!(error = %e, "witnessing task failed");
            if let Some(w) = tasks.remove(&e.id()).and_then(|i| asked.get_mut(i)) {
                w.asking = None;
                w.backoff = (w.backoff * 2).clamp(1, 300);
                w.skip = w.backoff;
            }
            return;
        }
    };
    let Some(w) = asked.get_mut(i) else { return };
    w.asking = None;
    w.known = known;
    match result {
        Ok(line) => {
            w.sent = head.size;
            w.backoff = 0;
            out.record(&head, line);
        }
        Err(e) => {
            w.backoff = (w.backoff * 2).clamp(1, 300);
            w.skip = w.backoff;
            tracing::warn!(witness = %w.config.url, error = %e, "no cosignature");
        }
    }
}

/// One round with one witness: the cosignature line of `head`, and what is now known of the
/// size it cosigned. A 409 naming another size is answered once more from that size.
fn ask(
    ledger: &std::sync::Weak<Ledger>,
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
            // The ledger only for the proof: a request out must not keep a closing ledger open.
            let Some(ledger) = ledger.upgrade() else {
                return (known, Err("the ledger is closing".into()));
            };
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
            // Without a size: the witness holds another tree of the size sent.
            409 if old == head.size => {
                let e = format!(
                    "the witness cosigned another tree of {old} entries of this log: the log forked ({})",
                    text.trim_end()
                );
                return (Some(old), Err(e));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(size: u64) -> Head {
        Head {
            size,
            root: [0; 32],
            checkpoint: format!("log\n{size}\nroot\n\n").into(),
        }
    }

    #[test]
    fn the_newest_checkpoint_with_a_quorum_of_cosignatures_is_served_whatever_the_order() {
        let mut c = Cosignatures::default();
        assert!(c.newest_complete(1).is_none());
        c.record(&head(5), "— a 5\n".into());
        c.record(&head(7), "— a 7\n".into());
        // A slow witness answers for an older checkpoint after the fast one's newer one.
        c.record(&head(5), "— b 5\n".into());
        c.record(&head(5), "— b 5\n".into());
        let one = c.newest_complete(1).unwrap();
        assert_eq!((one.size, &*one.checkpoint), (7, "log\n7\nroot\n\n— a 7\n"));
        let two = c.newest_complete(2).unwrap();
        assert_eq!(two.size, 5);
        assert_eq!(&*two.checkpoint, "log\n5\nroot\n\n— a 5\n— b 5\n");
        assert!(c.newest_complete(3).is_none());
    }

    #[test]
    fn only_the_newest_checkpoints_are_kept() {
        let mut c = Cosignatures::default();
        for size in 10..20 {
            c.record(&head(size), format!("— a {size}\n"));
        }
        assert_eq!(c.recent.len(), KEPT);
        assert_eq!(c.recent[0].0.size, 12);
        // An answer older than every checkpoint kept is of no use.
        c.record(&head(3), "— b 3\n".into());
        assert_eq!(c.recent.len(), KEPT);
        assert_eq!(c.recent[0].0.size, 12);
        // One in between takes its place in order; the oldest goes.
        c.record(&head(15), "— b 15\n".into());
        c.record(&head(30), "— b 30\n".into());
        let sizes: Vec<u64> = c.recent.iter().map(|(h, _)| h.size).collect();
        assert_eq!(sizes, [13, 14, 15, 16, 17, 18, 19, 30]);
        assert_eq!(c.newest_complete(2).unwrap().size, 15);
    }
}
