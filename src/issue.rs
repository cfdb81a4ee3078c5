//! `issue`: signs and submits many payloads in one step (a remanufacturer's daily production),
//! with a summary of what was logged, already logged or refused, and the QR codes.
//!
//! Inputs are payload files, directories of `*.json` payload files (sorted by name) and JSON
//! Lines files (`*.jsonl`, one payload per line). Each payload is checked locally with the
//! ledger's own rules first: one that is not valid is refused here, with its reason, and never
//! sent. The rest are signed and submitted over several keep-alive connections. A network
//! failure stops the run (what was not sent is reported as such): submitting is idempotent, so
//! running the same command again finishes the job.

use crate::certificate::{CertificateError, CertificateId};
use crate::client::{Client, ClientError};
use crate::dsse::Envelope;
use crate::keys::{PrivateKey, PublicKey};
use crate::payload::{self, Payload, PayloadError, PayloadType};
use crate::receipt::{self, RemoteReceipt};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The most parallel connections `issue` (and `audit --server`) open.
pub const MAX_JOBS: usize = 64;

/// Why `issue` could not run (as opposed to items being refused).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// An input or output file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The inputs hold no payload.
    #[error(
        "no payload found in the inputs (expected payload .json files, directories of them, or .jsonl files)"
    )]
    NoInput,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IssueError + '_ {
    move |source| IssueError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One payload to issue, with where it came from (`file` or `file:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The file, and the line for JSON Lines input.
    pub source: String,
    /// The payload bytes.
    pub bytes: Vec<u8>,
}

/// Reads the payloads of the inputs, in order: a directory gives its `*.json` files sorted by
/// name, a `*.jsonl` file one payload per non-blank line, any other file one payload.
pub fn read_inputs(paths: &[PathBuf]) -> Result<Vec<Item>, IssueError> {
    let mut items = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            for e in std::fs::read_dir(path).map_err(io(path))? {
                let p = e.map_err(io(path))?.path();
                if p.extension().is_some_and(|x| x == "json") && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            for f in files {
                let bytes = std::fs::read(&f).map_err(io(&f))?;
                items.push(Item {
                    source: f.display().to_string(),
                    bytes,
                });
            }
        } else if path.extension().is_some_and(|x| x == "jsonl") {
            let bytes = std::fs::read(path).map_err(io(path))?;
            items.extend(jsonl_items(&path.display().to_string(), &bytes));
        } else {
            let bytes = std::fs::read(path).map_err(io(path))?;
            items.push(Item {
                source: path.display().to_string(),
                bytes,
            });
        }
    }
    if items.is_empty() {
        return Err(IssueError::NoInput);
    }
    Ok(items)
}

/// The payloads of a JSON Lines file: one per non-blank line, named `name:line` (from 1).
pub fn jsonl_items(name: &str, bytes: &[u8]) -> Vec<Item> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (!line.iter().all(u8::is_ascii_whitespace)).then(|| Item {
                source: format!("{name}:{}", i + 1),
                bytes: line.to_vec(),
            })
        })
        .collect()
}

/// Checks a payload with the ledger's rules, as it will be signed. A certificate whose
/// `product.gtin` is a GTIN-8, -12 or -13 is first left-padded with zeros to a GTIN-14
/// (SPEC §3.2: the client pads), which re-serializes the JSON (keys keep their order).
pub fn prepare(kind: PayloadType, bytes: Vec<u8>) -> Result<(Vec<u8>, Payload), PayloadError> {
    match payload::parse(kind.media_type(), &bytes) {
        Ok(p) => Ok((bytes, p)),
        Err(PayloadError::Certificate(CertificateError::GtinFormat(g))) => {
            let original = PayloadError::Certificate(CertificateError::GtinFormat(g.clone()));
            let Some(padded) = crate::gs1::pad_to_gtin14(&g).and_then(|g14| with_gtin(&bytes, g14))
            else {
                return Err(original);
            };
            let p = payload::parse(kind.media_type(), &padded)?;
            Ok((padded, p))
        }
        Err(e) => Err(e),
    }
}

/// For a payload refused as `kind` with `error`: when it does not have the shape of `kind`
/// but is valid as another payload type, says so (" (a valid event payload: give --type
/// event)"); a missing or wrong `--type` is the usual cause. Empty otherwise.
pub fn type_hint(kind: PayloadType, bytes: &[u8], error: &PayloadError) -> String {
    if !matches!(error, PayloadError::Schema { .. }) {
        return String::new();
    }
    PayloadType::ALL
        .into_iter()
        .filter(|t| *t != kind)
        .find(|t| prepare(*t, bytes.to_vec()).is_ok())
        .map_or_else(String::new, |t| {
            format!(" (a valid {0} payload: give --type {0})", t.name())
        })
}

fn with_gtin(bytes: &[u8], gtin14: String) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    let slot = v.get_mut("product")?.get_mut("gtin")?;
    *slot = Value::String(gtin14);
    serde_json::to_vec(&v).ok()
}

/// What became of one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Logged by this run (201).
    Logged,
    /// Logged before: the existing entry (200).
    AlreadyLogged,
    /// Refused, locally or by the ledger (4xx), with the reason.
    Refused,
    /// Accepted, but the receipt does not verify under the pinned log key.
    ReceiptInvalid,
    /// The ledger could not be reached, failed (5xx), or a file could not be written.
    Failed,
    /// Not submitted: the run stopped after a failure.
    NotSent,
}

/// The result of one payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemResult {
    /// Where the payload came from (`file` or `file:line`).
    pub source: String,
    /// What became of it.
    pub status: Status,
    /// The ledger's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The entry index, when logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The certificate ID, for certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// The unit's GTIN, for certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtin: Option<String>,
    /// The unit's serial, for certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The QR content the ledger answered, for certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_url: Option<String>,
    /// The QR image written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_file: Option<PathBuf>,
}

impl ItemResult {
    fn new(source: &str, status: Status) -> ItemResult {
        ItemResult {
            source: source.to_owned(),
            status,
            http_status: None,
            reason: None,
            index: None,
            certificate_id: None,
            gtin: None,
            serial: None,
            qr_url: None,
            qr_file: None,
        }
    }

    fn because(mut self, reason: impl ToString) -> ItemResult {
        self.reason = Some(reason.to_string());
        self
    }
}

/// How to issue.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// What the payloads are.
    pub kind: PayloadType,
    /// Parallel connections (1..=[`MAX_JOBS`]).
    pub jobs: usize,
    /// The pinned log key: when given, every receipt is verified (checkpoint, inclusion, the
    /// entry itself, the seal) before it counts as logged.
    pub log_key: Option<PublicKey>,
    /// Where to write the QR PNGs of logged certificates, and `index.csv`.
    pub qr_dir: Option<PathBuf>,
    /// The QR images' side in pixels.
    pub qr_size: u32,
}

/// The outcome of an `issue` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueSummary {
    /// Payloads read.
    pub total: usize,
    /// Logged by this run.
    pub logged: usize,
    /// Logged before.
    pub already_logged: usize,
    /// Refused (locally or by the ledger).
    pub refused: usize,
    /// Receipts that did not verify.
    pub receipt_invalid: usize,
    /// Failures (network, server, files).
    pub failed: usize,
    /// Not submitted because the run stopped.
    pub not_sent: usize,
    /// Whether receipts were verified under a pinned log key.
    pub receipts_verified: bool,
    /// The QR index file, when QR codes were written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_index: Option<PathBuf>,
    /// Every payload's result, in input order.
    pub items: Vec<ItemResult>,
}

impl IssueSummary {
    /// SPEC §7 exit code: 2 when the run is incomplete (failures, not sent), else 1 when
    /// anything was refused or a receipt did not verify, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.failed + self.not_sent > 0 {
            2
        } else if self.refused + self.receipt_invalid > 0 {
            1
        } else {
            0
        }
    }
}

/// Signs and submits `items` with `key` to the ledger of `client`; `progress` is called once
/// per finished item (from worker threads). Items are refused, not errors; an error is only
/// returned when the QR directory or its index cannot be written.
pub fn issue(
    client: &Client,
    key: &PrivateKey,
    items: &[Item],
    opts: &IssueOptions,
    progress: &(dyn Fn(&ItemResult) + Sync),
) -> Result<IssueSummary, IssueError> {
    if let Some(dir) = &opts.qr_dir {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let workers = opts.jobs.clamp(1, MAX_JOBS).min(items.len().max(1));
    let mut results: Vec<(usize, ItemResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let r = if stop.load(Ordering::Relaxed) {
                            ItemResult::new(&item.source, Status::NotSent)
                                .because("not submitted: the run stopped after a failure")
                        } else {
                            let r = issue_one(client, key, item, opts);
                            if r.status == Status::Failed {
                                stop.store(true, Ordering::Relaxed);
                            }
                            r
                        };
                        progress(&r);
                        done.push((i, r));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let items: Vec<ItemResult> = results.into_iter().map(|(_, r)| r).collect();
    let count = |s: Status| items.iter().filter(|r| r.status == s).count();
    let mut summary = IssueSummary {
        total: items.len(),
        logged: count(Status::Logged),
        already_logged: count(Status::AlreadyLogged),
        refused: count(Status::Refused),
        receipt_invalid: count(Status::ReceiptInvalid),
        failed: count(Status::Failed),
        not_sent: count(Status::NotSent),
        receipts_verified: opts.log_key.is_some(),
        qr_index: None,
        items,
    };
    if let Some(dir) = &opts.qr_dir {
        let path = dir.join("index.csv");
        std::fs::write(&path, qr_index_csv(&summary.items)).map_err(io(&path))?;
        summary.qr_index = Some(path);
    }
    Ok(summary)
}

/// Prepares, signs, submits and checks one payload; writes its QR code when asked.
fn issue_one(client: &Client, key: &PrivateKey, item: &Item, opts: &IssueOptions) -> ItemResult {
    let refused = |reason: String| ItemResult::new(&item.source, Status::Refused).because(reason);
    let (bytes, payload) = match prepare(opts.kind, item.bytes.clone()) {
        Ok(p) => p,
        Err(e) => {
            let hint = type_hint(opts.kind, &item.bytes, &e);
            return refused(format!("refused locally, not sent: {e}{hint}"));
        }
    };
    let envelope = match Envelope::sign(opts.kind.media_type(), bytes, key) {
        Ok(e) => e,
        Err(e) => return refused(format!("refused locally, not sent: {e}")),
    };
    let mut r = ItemResult::new(&item.source, Status::Failed);
    if let Payload::Certificate(c) = &payload {
        r.gtin = Some(c.product.gtin.clone());
        r.serial = Some(c.product.serial.clone());
        r.certificate_id = Some(CertificateId::of_payload(&envelope.payload).to_string());
    }
    let answer = match client.submit(envelope.to_json().as_bytes()) {
        Ok(a) => a,
        Err(e) => {
            r.http_status = e.status();
            return match &e {
                ClientError::Status {
                    status,
                    title,
                    detail,
                    ..
                } if (400..500).contains(status) && !RETRY_STATUSES.contains(status) => {
                    r.status = Status::Refused;
                    r.because(refusal_text(*status, title, detail))
                }
                _ => r.because(e),
            };
        }
    };
    r.http_status = Some(answer.status);
    let receipt = match RemoteReceipt::from_json(&answer.body) {
        Ok(rc) => rc,
        Err(e) => {
            r.status = Status::ReceiptInvalid;
            return r.because(e);
        }
    };
    r.index = Some(receipt.index);
    r.qr_url.clone_from(&receipt.qr_url);
    if let Some(log_key) = &opts.log_key
        && let Err(e) = check_receipt(client, &receipt, log_key, &envelope, &payload)
    {
        if matches!(e, ReceiptCheckError::Invalid(_)) {
            r.status = Status::ReceiptInvalid;
        }
        return r.because(e);
    }
    r.status = if answer.status == 201 {
        Status::Logged
    } else {
        Status::AlreadyLogged
    };
    // A certificate logged before and revoked or superseded since: no label for it.
    if let Some(why) = receipt.not_in_force() {
        r.status = Status::Refused;
        return r.because(format!(
            "already logged as entry {}, but {why}; no label written",
            receipt.index
        ));
    }
    if let (Some(dir), Some(url), Some(id), Some(gtin), Some(serial)) = (
        &opts.qr_dir,
        &r.qr_url,
        &r.certificate_id,
        &r.gtin,
        &r.serial,
    ) {
        let path = dir.join(qr_file_name(gtin, serial, id));
        let written = crate::qr::png(url, opts.qr_size)
            .map_err(|e| e.to_string())
            .and_then(|png| {
                std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))
            });
        match written {
            Ok(()) => r.qr_file = Some(path),
            Err(e) => {
                r.status = Status::Failed;
                return r.because(format!("logged, but its QR code was not written: {e}"));
            }
        }
    }
    r
}

/// Client-error statuses that are not refusals of the payload but a busy or slow moment
/// (408 request timeout, 429 too many requests): the item failed and is worth sending again.
const RETRY_STATUSES: [u16; 2] = [408, 429];

/// "HTTP 409 Conflicts with the log: detail".
fn refusal_text(status: u16, title: &str, detail: &str) -> String {
    if detail.is_empty() {
        format!("HTTP {status} {title}")
    } else {
        format!("HTTP {status} {title}: {detail}")
    }
}

/// Why a receipt could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptCheckError {
    /// The entry could not be fetched (no answer, or a server error): nothing was checked,
    /// so it is an I/O failure to retry, not a verdict.
    #[error("cannot fetch the logged entry to check it: {0}")]
    Unreachable(ClientError),
    /// The receipt, or the entry the server serves for it, does not verify.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies a receipt under the pinned key, with the entry the server serves at its index.
pub fn check_receipt(
    client: &Client,
    receipt: &RemoteReceipt,
    log_key: &PublicKey,
    envelope: &Envelope,
    payload: &Payload,
) -> Result<receipt::VerifiedReceipt, ReceiptCheckError> {
    let entry = client.entry(receipt.index).map_err(|e| match e.status() {
        Some(s) if (400..500).contains(&s) => {
            ReceiptCheckError::Invalid(format!("the server does not serve the logged entry: {e}"))
        }
        _ => ReceiptCheckError::Unreachable(e),
    })?;
    receipt::verify(receipt, log_key, envelope, payload, Some(&entry.leaf))
        .map_err(|e| ReceiptCheckError::Invalid(e.to_string()))
}

/// `<gtin>_<serial>_<first 8 hex of the certificate ID>.png`, the serial reduced to
/// characters that are safe in file names everywhere (others become `_`).
pub fn qr_file_name(gtin: &str, serial: &str, certificate_id: &str) -> String {
    let safe: String = serial
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = certificate_id.get(..8).unwrap_or(certificate_id);
    format!("{gtin}_{safe}_{id}.png")
}

/// `index.csv` of the QR directory (RFC 4180): one row per QR image written, in input order.
pub fn qr_index_csv(items: &[ItemResult]) -> String {
    let mut out = String::from("file,source,gtin,serial,certificate_id,index,qr_url\r\n");
    for r in items {
        let Some(file) = &r.qr_file else { continue };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let index = r.index.map(|i| i.to_string()).unwrap_or_default();
        let row = [
            name.as_str(),
            r.source.as_str(),
            r.gtin.as_deref().unwrap_or(""),
            r.serial.as_deref().unwrap_or(""),
            r.certificate_id.as_deref().unwrap_or(""),
            index.as_str(),
            r.qr_url.as_deref().unwrap_or(""),
        ];
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_lines_are_numbered_from_one_and_blank_lines_skipped() {
        let items = jsonl_items("b.jsonl", b"{\"a\":1}\r\n\n  \n{\"b\":2}");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].source, "b.jsonl:1");
        assert_eq!(items[0].bytes, b"{\"a\":1}");
        assert_eq!(items[1].source, "b.jsonl:4");
    }

    #[test]
    fn qr_file_names_are_safe() {
        assert_eq!(
            qr_file_name("09506000999995", "RM/2025 ä,1", "0123456789abcdef"),
            "09506000999995_RM_2025___1_01234567.png"
        );
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
