//! `verify` (SPEC §7): is this label, link or certificate genuine, and is it still valid?
//!
//! **Offline**, with the log's public key alone: the QR code's GS1 Digital Link carries the
//! seal, which the log key signed over the log's origin, the GTIN, the serial, the entry index,
//! the time and the certificate ID. A seal that verifies proves the ledger logged a certificate
//! for exactly this unit; any changed character of the link makes it fail.
//!
//! **Online** (`--server`), it also asks the ledger and trusts nothing it answers without a
//! proof: the fresh checkpoint must be signed by the pinned log key and consistent with the
//! checkpoint this verifier saw last time (so a server that rewrote or rolled back history is
//! caught); the certificate's entry must be the exact bytes whose hash is in that checkpoint's
//! tree (inclusion proof), hold the certificate with this ID, GTIN and serial, and be signed by
//! the issuer's registered key; every event and the revocation shown must be entries of the
//! log (inclusion proofs) about this certificate. Each signer's registration in force (as the
//! server names it) must be an entry of the log; when it predates the entry it was in force
//! when the entry was logged, so the entry must be signed with its key, by an active party of
//! a role that may sign it (a `customs_released` signed by an importer, or under a key the
//! customs authority never registered, is caught here). Then the status decides: only `valid`
//! is VALID.
//!
//! What is not proven here, and said so: the status itself comes from the server, so a server
//! can still leave out entries (hide a revocation or an event, or a registration: a signer's
//! role is judged from the registration the server says is in force). A signer registered
//! again after it signed (a new role, status or key) is judged by its signature alone, and
//! the report says which entries were; one that rotated its key since is a warning, not a
//! pass. An `audit` of the whole log checks all of it, and a mirror (`mirror`) computes each
//! status from the entries it verified: verifying against a mirror one runs oneself makes the
//! status as trustworthy as the log. Witnesses only make sure everyone is shown the same log;
//! they say nothing of a server's answers about it.
//!
//! The verdict is a [`Report`]: every check with its result, the product, issuer, index, time,
//! status and events; [`Report::to_text`] and [`Report::to_json`] render it.

use crate::certificate::{Certificate, CertificateId};
use crate::checkpoint::Checkpoint;
use crate::client::{Client, ClientError, LogInfo};
use crate::cosignature::CosignerKey;
use crate::entry::{Entry, format_time_ms};
use crate::keys::PublicKey;
use crate::merkle::{self, Hash};
use crate::payload::{self, Payload, PayloadType};
use crate::qr::{self, QrError};
use crate::seal::{self, DigitalLink, Seal};
use crate::tlog_proof::{self, ProofError, TlogProof};
use crate::trust::{self, Compared, State, TrustError, TrustedKeys};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The most events of one certificate that are fetched and checked (each costs two requests).
pub const MAX_EVENTS: usize = 256;

/// Why a verification could not be carried out (SPEC §7 exit code 2). A target that was
/// checked and found not valid is not an error: it is a [`Report`] with `valid == false`.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Wrong usage: what to do instead is in the message.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The image could not be read as a QR label.
    #[error("{path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// Why no code was read.
        source: QrError,
    },
    /// The trust file, `--log-key` or the state file is not usable.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The server could not be asked (unreachable, failing, or answering nonsense).
    #[error("cannot check with the server: {0}")]
    Client(#[from] ClientError),
    /// The ledger's checkpoint did not come to carry a required witness's cosignature while
    /// `verify` waited: the witness has not vouched for the current tree yet.
    #[error(
        "the ledger's checkpoint carries no cosignature of witness {witness} after {waited_s} s: that witness has not vouched for its current tree yet (a ledger taking many entries, or a witness that is down); try again, or verify a .tlog-proof saved once it was cosigned"
    )]
    NotWitnessed {
        /// The witness's name.
        witness: String,
        /// How long `verify` waited, in seconds.
        waited_s: u64,
    },
}

/// How long online verification waits for the ledger's checkpoint to carry the cosignatures
/// `--witness` requires (a witness cosigns a new checkpoint a moment after it is signed).
const WITNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The ledger's checkpoint, once it carries a cosignature line of each of `witnesses` (each
/// checked later), asking again for at most [`WITNESS_WAIT`].
fn witnessed_checkpoint(client: &Client, witnesses: &[CosignerKey]) -> Result<String, VerifyError> {
    let deadline = std::time::Instant::now() + WITNESS_WAIT;
    loop {
        let text = client.checkpoint()?;
        let missing = match crate::note::parse(&text) {
            Ok(note) => witnesses
                .iter()
                .find(|w| !note.signatures.iter().any(|s| w.signed(s))),
            // Not a note: the checkpoint check says so.
            Err(_) => None,
        };
        let Some(w) = missing else {
            return Ok(text);
        };
        if std::time::Instant::now() >= deadline {
            return Err(VerifyError::NotWitnessed {
                witness: w.name().to_owned(),
                waited_s: WITNESS_WAIT.as_secs(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// What `verify` is asked to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A QR code's content: a GS1 Digital Link URL with a seal.
    Url(String),
    /// A photo or scan of a QR label (PNG or JPEG).
    Image(PathBuf),
    /// A certificate ID (needs a server).
    Certificate(CertificateId),
    /// A C2SP tlog-proof file (`.tlog-proof`) of a certificate's entry, as
    /// `GET /api/v1/certificates/{id}/proof` gives it: checked offline with the log key.
    Proof(PathBuf),
}

impl Target {
    /// Reads the TARGET argument: an `http(s)://` URL, 32 hex digits (a certificate ID, in
    /// either case), a file named `*.tlog-proof`, or else the path of an image file.
    pub fn parse(arg: &str) -> Target {
        let t = arg.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Target::Url(t.to_owned());
        }
        if let Ok(id) = lower.parse::<CertificateId>() {
            return Target::Certificate(id);
        }
        if lower.ends_with(&format!(".{}", tlog_proof::EXTENSION)) {
            return Target::Proof(PathBuf::from(arg));
        }
        Target::Image(PathBuf::from(arg))
    }
}

/// The options of `verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The TARGET argument (see [`Target::parse`]).
    pub target: String,
    /// `--log-key`: a vkey, or a file holding one or more.
    pub log_key: Option<String>,
    /// `--trust`: the trust file (default: see [`trust::trust_path`]).
    pub trust: Option<PathBuf>,
    /// `--server`: the ledger to ask.
    pub server: Option<String>,
    /// `--state`: the state file (default: see [`trust::state_path`]).
    pub state: Option<PathBuf>,
    /// `--trust-on-first-use`: with no key pinned or remembered, accept the key the server
    /// presents (and remember it). Without it, an unpinned online check is refused: a
    /// counterfeiter's own ledger would otherwise answer VALID for its own labels.
    pub trust_on_first_use: bool,
    /// `--witness`: cosigner keys of the witnesses whose cosignatures a tlog-proof's
    /// checkpoint must carry.
    pub witnesses: Vec<String>,
    /// `--time-limit`: the longest the server's answers may take together (see
    /// [`Client::with_time_limit`]).
    pub time_limit: std::time::Duration,
}

/// The default of [`VerifyOptions::time_limit`]: two minutes, for the few hundred requests a
/// certificate with the most events checked ([`MAX_EVENTS`]) takes on a slow network.
pub const DEFAULT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The final word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every check passed.
    #[serde(rename = "VALID")]
    Valid,
    /// A check failed: see the report's `reason`.
    #[serde(rename = "INVALID")]
    Invalid,
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `label`, `seal`, `proof`, `witness`, `log_key`, `checkpoint`, `consistency`,
    /// `certificate`, `entry`, `inclusion`, `issuer`, `events`, `revocation` or `status`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The unit the certificate is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProductInfo {
    /// GTIN-14.
    pub gtin: String,
    /// Serial number (GS1 AI 21).
    pub serial: String,
    /// Product name (from the logged certificate; not in the seal).
    pub name: Option<String>,
    /// HS code.
    pub hs_code: Option<String>,
    /// Warranty in months.
    pub warranty_months: Option<u32>,
    /// Date of issue.
    pub issued: Option<String>,
}

impl ProductInfo {
    /// What a logged certificate says of its unit.
    fn of(cert: &Certificate) -> ProductInfo {
        ProductInfo {
            gtin: cert.product.gtin.clone(),
            serial: cert.product.serial.clone(),
            name: Some(cert.product.name.clone()),
            hs_code: Some(cert.product.hs_code.clone()),
            warranty_months: Some(cert.warranty_months),
            issued: Some(cert.issued.clone()),
        }
    }
}

/// The remanufacturer that signed the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuerInfo {
    /// Party name (its key name).
    pub name: String,
    /// Registered display name.
    pub display_name: Option<String>,
    /// Registered country.
    pub country: Option<String>,
}

/// The log key the verification relied on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogUsed {
    /// The log's origin (the key's name).
    pub origin: String,
    /// The key ID, 8 hex digits.
    pub key_id: String,
    /// Where the key came from: `--log-key`, the trust file, the state file, or the server
    /// (trusted on first use).
    pub key_source: String,
}

/// A tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// Tree size.
    pub tree_size: u64,
    /// Root hash, hex.
    pub root: String,
}

/// A traceability event, as logged (each checked to be in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventInfo {
    /// Entry index.
    pub index: u64,
    /// When it happened (as the signer stated it).
    pub time: String,
    /// What happened.
    pub event: String,
    /// Where: place, if given.
    pub place: Option<String>,
    /// Where: country.
    pub country: Option<String>,
    /// A reference (declaration number, bill of lading...).
    pub reference: Option<String>,
    /// Who signed it.
    pub signer: String,
}

/// A revocation, as logged (checked to be in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationInfo {
    /// Entry index.
    pub index: u64,
    /// When it was logged.
    pub integrated_time: String,
    /// Why.
    pub reason: String,
    /// Free text.
    pub note: Option<String>,
    /// Who signed it.
    pub signer: String,
}

/// Two signed checkpoints of one log that no append-only history can explain: proof, to show
/// anyone, that the log's operator signed two histories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The checkpoint seen before (from the state file, or the tlog-proof file verified).
    pub remembered: String,
    /// The checkpoint the server presents now.
    pub presented: String,
}

/// The outcome of a verification: the verdict, what was verified and every check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// VALID or INVALID.
    pub verdict: Verdict,
    /// `verdict == VALID`.
    pub valid: bool,
    /// Why it is not valid (the failed check's detail).
    pub reason: Option<String>,
    /// The server asked, if any (`None`: offline).
    pub server: Option<String>,
    /// The TARGET as given.
    pub target: String,
    /// The QR code's content, when the target was a URL or an image.
    pub qr_url: Option<String>,
    /// The certificate ID.
    pub certificate_id: Option<String>,
    /// The unit.
    pub product: Option<ProductInfo>,
    /// The issuer (online only: the seal does not name it).
    pub issuer: Option<IssuerInfo>,
    /// The entry index.
    pub index: Option<u64>,
    /// When the log sequenced the certificate (RFC 3339 UTC).
    pub integrated_time: Option<String>,
    /// The log key used.
    pub log: Option<LogUsed>,
    /// valid, revoked or superseded (online only).
    pub status: Option<String>,
    /// The revocation, if revoked.
    pub revocation: Option<RevocationInfo>,
    /// The certificate that replaced this one, if superseded.
    pub superseded_by: Option<String>,
    /// The certificate's events, oldest first (online only).
    pub events: Vec<EventInfo>,
    /// The fresh checkpoint checked against (online only).
    pub checkpoint: Option<CheckpointInfo>,
    /// The checkpoint seen before, from the state file.
    pub previous_checkpoint: Option<CheckpointInfo>,
    /// Two conflicting signed checkpoints, when the log rewrote or rolled back history.
    pub evidence: Option<Evidence>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Things to know that do not change the verdict (e.g. a key trusted on first use).
    pub warnings: Vec<String>,
}

/// How the check sequence ended early.
enum Stop {
    /// A check failed and is recorded in the report.
    Invalid,
    /// The verification could not be carried out.
    Error(VerifyError),
}

impl<E: Into<VerifyError>> From<E> for Stop {
    fn from(e: E) -> Stop {
        Stop::Error(e.into())
    }
}

type Step<T> = Result<T, Stop>;

impl Report {
    fn new(opts: &VerifyOptions) -> Report {
        Report {
            verdict: Verdict::Invalid,
            valid: false,
            reason: None,
            server: opts.server.clone(),
            target: opts.target.clone(),
            qr_url: None,
            certificate_id: None,
            product: None,
            issuer: None,
            index: None,
            integrated_time: None,
            log: None,
            status: None,
            revocation: None,
            superseded_by: None,
            events: Vec::new(),
            checkpoint: None,
            previous_checkpoint: None,
            evidence: None,
            checks: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            ok: true,
            detail: detail.into(),
        });
    }

    /// Records a failed check; the verification stops there.
    fn fail(&mut self, name: &'static str, detail: impl Into<String>) -> Stop {
        let detail = detail.into();
        self.reason.get_or_insert_with(|| detail.clone());
        self.checks.push(Check {
            name,
            ok: false,
            detail,
        });
        Stop::Invalid
    }

    fn finish(mut self) -> Report {
        self.valid = !self.checks.is_empty() && self.checks.iter().all(|c| c.ok);
        self.verdict = if self.valid {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        self
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Whether a label's link was read (a URL or photo target), as opposed to a certificate
    /// ID or proof file.
    fn label_read(&self) -> bool {
        self.checks.iter().any(|c| c.name == "label" && c.ok)
    }

    /// The report for people: the facts, the checks, and a last line `VALID` or
    /// `INVALID: <reason>`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut line = |label: &str, value: &str| {
            let _ = writeln!(s, "{:<13}{value}", format!("{label}:"));
        };
        if let Some(p) = &self.product {
            if let Some(name) = &p.name {
                line("product", name);
            }
            line("GTIN", &p.gtin);
            line("serial", &p.serial);
            if let Some(w) = p.warranty_months {
                line("warranty", &format!("{w} months"));
            }
            if let Some(d) = &p.issued {
                line("issued", d);
            }
        }
        if let Some(id) = &self.certificate_id {
            line("certificate", id);
        }
        if self.label_read()
            && let Some(base) = self.qr_url.as_deref().and_then(web_base)
        {
            line("link", &format!("{base} (where the label's QR code leads)"));
        }
        match &self.issuer {
            Some(i) => {
                let mut v = i.display_name.clone().unwrap_or_else(|| i.name.clone());
                if i.display_name.is_some() {
                    let _ = write!(v, " ({}", i.name);
                    if let Some(c) = &i.country {
                        let _ = write!(v, ", {c}");
                    }
                    v.push(')');
                } else if let Some(c) = &i.country {
                    let _ = write!(v, " ({c})");
                }
                line("issuer", &v);
            }
            None if self.server.is_none() && self.qr_url.is_some() => line(
                "issuer",
                "not in the seal (verify with --server URL to see it)",
            ),
            None if self.server.is_none() && self.product.is_some() => line(
                "issuer",
                "not checked offline (verify with --server URL to see it)",
            ),
            None => {}
        }
        if let Some(i) = self.index {
            line("index", &i.to_string());
        }
        if let Some(t) = &self.integrated_time {
            line("logged", t);
        }
        if let Some(l) = &self.log {
            line(
                "log",
                &format!("{} (key {}, {})", l.origin, l.key_id, l.key_source),
            );
        }
        if let Some(c) = &self.checkpoint {
            line(
                "checkpoint",
                &format!("tree size {}, root {}", c.tree_size, c.root),
            );
        }
        match &self.status {
            Some(st) => line("status", st),
            None if self.server.is_none() && self.certificate_id.is_some() => line(
                "status",
                "not checked offline: a revocation is known only to the ledger (verify with --server URL)",
            ),
            None => {}
        }
        if let Some(r) = &self.revocation {
            let mut v = format!("{} on {} by {}", r.reason, r.integrated_time, r.signer);
            if let Some(n) = r.note.as_deref().filter(|n| !n.is_empty()) {
                let _ = write!(v, ": {n}");
            }
            line("revoked", &v);
        }
        if let Some(succ) = &self.superseded_by {
            line("superseded", &format!("by certificate {succ}"));
        }
        if self.server.is_some() && self.status.is_some() {
            if self.events.is_empty() {
                line("events", "none");
            } else {
                let _ = writeln!(s, "events:");
                for e in &self.events {
                    let place = match (&e.place, &e.country) {
                        (Some(p), Some(c)) => format!("{p} ({c})"),
                        (Some(p), None) => p.clone(),
                        (None, Some(c)) => c.clone(),
                        (None, None) => String::new(),
                    };
                    let _ = writeln!(
                        s,
                        "  {}  {:<22} {}  by {}",
                        e.time, e.event, place, e.signer
                    );
                }
            }
        }
        if let Some(ev) = &self.evidence {
            let _ = writeln!(
                s,
                "evidence: two checkpoints signed by the log that no append-only history explains:"
            );
            let _ = writeln!(s, "--- remembered ---\n{}", ev.remembered.trim_end());
            let _ = writeln!(s, "--- presented ---\n{}", ev.presented.trim_end());
        }
        let _ = writeln!(s, "checks:");
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  {:<5} {:<12} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        match (&self.verdict, &self.reason) {
            (Verdict::Valid, _) => s.push_str("VALID\n"),
            (Verdict::Invalid, Some(r)) => {
                let _ = writeln!(s, "INVALID: {r}");
            }
            (Verdict::Invalid, None) => s.push_str("INVALID\n"),
        }
        s
    }
}

/// The JSON printed instead of a report when the verification could not be carried out.
pub fn error_json(e: &VerifyError) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "verdict": "ERROR",
        "valid": false,
        "error": e.to_string(),
    }))
    .unwrap_or_default()
}

/// Runs `verify`, reading the environment for the default trust and state files.
pub fn verify(opts: &VerifyOptions) -> Result<Report, VerifyError> {
    verify_with_env(opts, |k| std::env::var_os(k))
}

/// Runs `verify` with `env` in place of the process environment.
pub fn verify_with_env(
    opts: &VerifyOptions,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Report, VerifyError> {
    let mut report = Report::new(opts);
    match run(opts, &env, &mut report) {
        Ok(()) | Err(Stop::Invalid) => Ok(report.finish()),
        Err(Stop::Error(e)) => Err(e),
    }
}

/// The seal's claims and the label they were read from.
struct Label {
    /// The link as read.
    url: String,
    link: DigitalLink,
    seal: Seal,
}

/// Where the keys to check against come from, for messages.
struct Pinned {
    keys: TrustedKeys,
    source: String,
    trust_on_first_use: bool,
}

fn run(
    opts: &VerifyOptions,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    r: &mut Report,
) -> Step<()> {
    let mut target = Target::parse(&opts.target);
    // A proof saved under another name (`curl -o proof ...`) is known by its first line.
    if let Target::Image(path) = &target
        && starts_with_proof_header(path)
    {
        target = Target::Proof(path.clone());
    }
    let mut pinned = pinned_keys(opts, env)?;
    if let Target::Proof(path) = &target
        && pinned.keys.is_empty()
        && opts.server.is_some()
    {
        remembered_for_proof(&mut pinned, opts, env, path)?;
    }
    let witnesses = opts
        .witnesses
        .iter()
        .map(|w| {
            crate::keyfile::read_witness_key(w)
                .map_err(|e| VerifyError::Usage(format!("--witness: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !witnesses.is_empty() && !matches!(target, Target::Proof(_)) && opts.server.is_none() {
        return Err(VerifyError::Usage(
            "--witness needs a checkpoint to find the cosignatures on: a .tlog-proof file, or --server URL (a QR code's seal carries none)".into(),
        )
        .into());
    }
    let mut from_proof = None;
    if let Target::Proof(path) = &target {
        if pinned.keys.is_empty() {
            return Err(VerifyError::Usage(format!(
                "a tlog-proof is checked against the log's key: pass --log-key VKEY (or the log's .pub file), or list the log's key in the {} (with --server, a key remembered in the state file from an earlier online check of this log is used too)",
                pinned.source
            ))
            .into());
        }
        // Offline first; with --server, the ledger is then asked about that certificate, and
        // its history must extend the one the proof's checkpoint signed.
        let seen = check_proof(r, &pinned, path)?;
        check_cosignatures(
            r,
            (&witnesses, &seen.key),
            &seen.checkpoint_text,
            "the proof's checkpoint",
        )?;
        target = Target::Certificate(seen.id);
        if opts.server.is_none() {
            return Ok(());
        }
        from_proof = Some(seen);
    }
    if opts.server.is_none() {
        if matches!(target, Target::Certificate(_)) {
            return Err(VerifyError::Usage(
                "a certificate ID can only be verified by asking the ledger: add --server URL (offline, verify the QR code's URL or a photo of the label)".into(),
            )
            .into());
        }
        if pinned.keys.is_empty() {
            return Err(VerifyError::Usage(format!(
                "no log key to verify against: pass --log-key VKEY (or the log's .pub file), list the log's key in the {}, or add --server URL to ask the ledger",
                pinned.source
            ))
            .into());
        }
    }
    let label = match &target {
        Target::Url(url) => Some(read_label(r, url)?),
        Target::Image(path) => {
            let url = decode_photo(r, path)?;
            Some(read_label(r, &url)?)
        }
        Target::Certificate(id) => {
            r.certificate_id = Some(id.to_string());
            None
        }
        Target::Proof(_) => None,
    };
    match &opts.server {
        None => {
            let Some(label) = label else {
                return Ok(());
            };
            let key = pick_key(r, &pinned, &label)?;
            r.log = Some(log_used(&key, &pinned.source));
            check_seal(r, &key, &label)
        }
        Some(server) => {
            let state_file = trust::state_path(opts.state.as_deref(), env).ok_or_else(|| {
                VerifyError::Usage(
                    "no home directory to keep the state file in: pass --state FILE".into(),
                )
            })?;
            let client = Client::new(server)
                .map_err(|e| VerifyError::Usage(format!("--server: {e}")))?
                .with_time_limit(opts.time_limit);
            online(
                r,
                &client,
                &state_file.path,
                &pinned,
                label.as_ref(),
                &target,
                // A proof's cosignatures were required on its own checkpoint.
                if from_proof.is_some() {
                    &[]
                } else {
                    &witnesses
                },
            )?;
            match from_proof {
                Some(seen) => proof_agrees_with_ledger(r, &client, &seen),
                None => Ok(()),
            }
        }
    }
}

/// With `--server` and no key pinned, a proof is checked under the keys the state file
/// remembers for its log (the origin on its checkpoint's first line), as an online check of
/// a label or certificate uses them.
fn remembered_for_proof(
    pinned: &mut Pinned,
    opts: &VerifyOptions,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    path: &std::path::Path,
) -> Result<(), VerifyError> {
    let Some(state_file) = trust::state_path(opts.state.as_deref(), env) else {
        return Ok(());
    };
    let state = trust::load_state(&state_file.path)?;
    // What the file holds is checked afterwards; here only its log's name is wanted.
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_PROOF_BYTES);
    let origin = small
        .then(|| std::fs::read_to_string(path).ok())
        .flatten()
        .and_then(|text| TlogProof::parse(&text).ok())
        .and_then(|p| p.checkpoint.lines().next().map(str::to_owned))
        .unwrap_or_default();
    for log in state.by_origin(&origin) {
        if let Ok(key) = log.public_key() {
            pinned
                .keys
                .add(key, &state_file.path.display().to_string())?;
        }
    }
    if !pinned.keys.is_empty() {
        pinned.source = format!(
            "the state file {} (remembered from an earlier online check)",
            state_file.path.display()
        );
    }
    Ok(())
}

fn pinned_keys(
    opts: &VerifyOptions,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Pinned, VerifyError> {
    if let Some(arg) = &opts.log_key {
        return Ok(Pinned {
            keys: trust::log_key_arg(arg)?,
            source: "--log-key".into(),
            trust_on_first_use: opts.trust_on_first_use,
        });
    }
    let located = trust::trust_path(opts.trust.as_deref(), env);
    let keys = trust::load_trust(located.as_ref())?;
    let source = located.map_or_else(
        || "trust file (none: no home directory, use --trust FILE)".to_owned(),
        |l| format!("trust file {}", l.path.display()),
    );
    Ok(Pinned {
        keys,
        source,
        trust_on_first_use: opts.trust_on_first_use,
    })
}

fn log_used(key: &PublicKey, source: &str) -> LogUsed {
    LogUsed {
        origin: key.name().to_owned(),
        key_id: key.id().to_string(),
        key_source: source.to_owned(),
    }
}

/// What is wrong with a TARGET that is no file but looks like a mistyped certificate ID (28
/// to 36 characters, all but at most two of them hex digits): said as such, not as a missing
/// file.
fn id_mistake(target: &str) -> Option<String> {
    let len = target.chars().count();
    let other = target.chars().filter(|c| !c.is_ascii_hexdigit()).count();
    if !(28..=36).contains(&len) || other > 2 {
        return None;
    }
    let what = match target.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        Some((i, c)) => format!("{c:?} at position {} is not a hex digit", i + 1),
        None => format!("it has {} digits", target.chars().count()),
    };
    Some(format!(
        "{target} is not a certificate ID (32 hex digits): {what}; nor is it a file"
    ))
}

/// The largest photo file `verify` reads (a label photo is a few MB).
pub const MAX_PHOTO_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the QR photo; the first code holding a Digital Link wins.
fn decode_photo(r: &mut Report, path: &std::path::Path) -> Step<String> {
    // A label photo is a few MB at most; refuse anything far larger before reading it.
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() > MAX_PHOTO_BYTES
    {
        return Err(VerifyError::Usage(format!(
            "{}: {} bytes is not a photo of a label (at most {MAX_PHOTO_BYTES} bytes)",
            path.display(),
            meta.len()
        ))
        .into());
    }
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound
            && let Some(mistake) = path.to_str().and_then(id_mistake)
        {
            return VerifyError::Usage(mistake);
        }
        let hint = if source.kind() == std::io::ErrorKind::NotFound {
            std::io::Error::new(
                source.kind(),
                "no such file (TARGET is a QR URL starting with http:// or https://, a PNG or JPEG photo of a QR label, or a 32-hex-digit certificate ID)",
            )
        } else {
            source
        };
        VerifyError::Io {
            path: path.to_owned(),
            source: hint,
        }
    })?;
    let texts = qr::decode_image(&bytes).map_err(|source| VerifyError::Image {
        path: path.to_owned(),
        source,
    })?;
    if texts.len() > 1 {
        r.warnings.push(format!(
            "the image holds {} QR codes; the first GS1 Digital Link among them is verified",
            texts.len()
        ));
    }
    let pick = texts
        .iter()
        .find(|t| seal::parse_digital_link(t).is_ok())
        .or(texts.first())
        .cloned()
        .unwrap_or_default();
    Ok(pick)
}

/// The largest tlog-proof file `verify` reads: an entry is at most 64 KiB (87 KiB of base64).
pub const MAX_PROOF_BYTES: u64 = 1024 * 1024;

/// What a tlog-proof file showed once checked: its certificate, entry and signed checkpoint.
struct ProofSeen {
    id: CertificateId,
    index: u64,
    key: PublicKey,
    checkpoint: Checkpoint,
    checkpoint_text: String,
}

/// Whether the file at `path` starts with the tlog-proof header line.
fn starts_with_proof_header(path: &std::path::Path) -> bool {
    let mut head = [0u8; tlog_proof::HEADER.len() + 1];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head.starts_with(tlog_proof::HEADER.as_bytes()) && head.ends_with(b"\n"))
}

/// Checks a tlog-proof file offline: its checkpoint is signed by a pinned log key, the entry
/// it carries is in that checkpoint's tree at its index, and that entry is a certificate.
fn check_proof(r: &mut Report, pinned: &Pinned, path: &std::path::Path) -> Step<ProofSeen> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_PROOF_BYTES {
        return Err(VerifyError::Usage(format!(
            "{}: {len} bytes is not a tlog-proof of a certificate (at most {MAX_PROOF_BYTES} bytes)",
            path.display()
        ))
        .into());
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        r.fail(
            "proof",
            "not a c2sp.org/tlog-proof@v1 proof: not UTF-8 text",
        )
    })?;
    let proof = TlogProof::parse(&text).map_err(|e| r.fail("proof", e.to_string()))?;
    let origin = proof
        .checkpoint
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let keys: Vec<PublicKey> = pinned
        .keys
        .keys()
        .iter()
        .filter(|k| k.name() == origin)
        .cloned()
        .collect();
    if keys.is_empty() {
        return Err(r.fail(
            "proof",
            format!(
                "the proof's checkpoint is of the log {origin:?}, whose key is not in {}: the proof comes from a log you do not trust",
                pinned.source
            ),
        ));
    }
    let mut last = None;
    for key in &keys {
        match proof.verify_entry(key) {
            Ok((cp, entry)) => return accept_proof(r, pinned, key, &proof, &cp, entry),
            Err(e) => last = Some(e),
        }
    }
    let why = match last {
        Some(ProofError::Checkpoint(e)) => format!(
            "its checkpoint is not signed by the log key of {origin}: {e}; the proof is forged or altered"
        ),
        Some(e) => format!("{e}: the proof is forged or altered"),
        None => "no log key to check it with".into(),
    };
    Err(r.fail("proof", why))
}

/// Records a proof that verified, and checks the entry it carries is a certificate.
fn accept_proof(
    r: &mut Report,
    pinned: &Pinned,
    key: &PublicKey,
    proof: &TlogProof,
    cp: &Checkpoint,
    entry: &[u8],
) -> Step<ProofSeen> {
    r.log = Some(log_used(key, &pinned.source));
    r.checkpoint = Some(CheckpointInfo {
        tree_size: cp.size,
        root: hex::encode(cp.root),
    });
    r.pass(
        "proof",
        format!(
            "c2sp.org/tlog-proof@v1: its entry is entry {} of the tree of size {} that the log key of {} signed (inclusion proof)",
            proof.index,
            cp.size,
            key.name()
        ),
    );
    let entry = Entry::parse_stored(entry).map_err(|e| {
        r.fail(
            "proof",
            format!("the entry it carries is not a log entry: {e}"),
        )
    })?;
    if entry.index != proof.index {
        return Err(r.fail(
            "proof",
            format!(
                "the entry it carries says it is entry {}, the proof places it at {}",
                entry.index, proof.index
            ),
        ));
    }
    if entry.envelope.payload_type != PayloadType::Certificate.media_type() {
        return Err(r.fail(
            "proof",
            format!(
                "entry {} is logged, but it is not a certificate: it is a {}",
                entry.index, entry.envelope.payload_type
            ),
        ));
    }
    let id = CertificateId::of_payload(&entry.envelope.payload);
    let cert = check_certificate_entry(&entry, &id, None).map_err(|e| r.fail("proof", e))?;
    r.pass(
        "proof",
        format!(
            "entry {} holds certificate {id} for GTIN {}, serial {}",
            entry.index, cert.product.gtin, cert.product.serial
        ),
    );
    r.certificate_id = Some(id.to_string());
    r.index = Some(entry.index);
    r.integrated_time = Some(entry.integrated_time());
    r.product = Some(ProductInfo::of(&cert));
    Ok(ProofSeen {
        id,
        index: entry.index,
        key: key.clone(),
        checkpoint: cp.clone(),
        checkpoint_text: proof.checkpoint.clone(),
    })
}

/// Refuses a required witness whose key pair is the log's own: the log could make those
/// "cosignatures" itself, so they would vouch for nothing.
fn no_log_key_as_witness(witnesses: &[CosignerKey], log: &PublicKey) -> Result<(), VerifyError> {
    match witnesses.iter().find(|w| w.same_key_as(log)) {
        Some(w) => Err(VerifyError::Usage(format!(
            "--witness {}: that is the log's own key pair ({}): a witness is an independent party with its own key, which `reman-ledger witness` prints",
            w.to_vkey(),
            log.name()
        ))),
        None => Ok(()),
    }
}

/// Each required witness cosigned `checkpoint` (C2SP tlog-cosignature; `what` names it): it
/// saw that tree and found it consistent with every earlier one it saw of this log.
fn check_cosignatures(
    r: &mut Report,
    (witnesses, log): (&[CosignerKey], &PublicKey),
    checkpoint: &str,
    what: &str,
) -> Step<()> {
    if witnesses.is_empty() {
        return Ok(());
    }
    no_log_key_as_witness(witnesses, log)?;
    let note = crate::note::parse(checkpoint)
        .map_err(|e| r.fail("witness", format!("{what} does not parse: {e}")))?;
    for w in witnesses {
        let Some(sig) = note.signatures.iter().find(|s| w.signed(s)) else {
            return Err(r.fail(
                "witness",
                format!(
                    "{what} carries no cosignature of witness {}: that witness has not vouched for this tree (ask again once it has, or the log is hiding it from the witness)",
                    w.name()
                ),
            ));
        };
        let time = w
            .verify(&note.text, sig)
            .map_err(|e| r.fail("witness", e.to_string()))?;
        r.pass(
            "witness",
            format!("cosigned by witness {} at {}", w.name(), seal_time(time)),
        );
    }
    Ok(())
}

/// With `--server`, after the online checks: the ledger holds the certificate at the entry
/// the proof names, and its current tree extends the tree the proof's checkpoint signed.
/// Two signed checkpoints of one log that do not agree are a fork: both are kept as evidence.
fn proof_agrees_with_ledger(r: &mut Report, client: &Client, seen: &ProofSeen) -> Step<()> {
    if r.index != Some(seen.index) {
        return Err(r.fail(
            "proof",
            format!(
                "the proof places certificate {} at entry {}, the ledger at entry {}: two histories of one log",
                seen.id,
                seen.index,
                r.index.map_or("none".into(), |i| i.to_string())
            ),
        ));
    }
    let text = client.checkpoint()?;
    let cp = Checkpoint::open(&text, &seen.key).map_err(|e| {
        r.fail(
            "checkpoint",
            format!("the server's checkpoint is not signed by the log key: {e}"),
        )
    })?;
    let evidence = |r: &mut Report| {
        r.evidence = Some(Evidence {
            remembered: seen.checkpoint_text.clone(),
            presented: text.clone(),
        });
    };
    let (first, second) = (seen.checkpoint.size, cp.size);
    if first > second {
        evidence(r);
        return Err(r.fail(
            "proof",
            format!(
                "the proof's checkpoint has {first} entries, the ledger's only {second}: the ledger rolled its history back (both checkpoints are in the report as evidence)"
            ),
        ));
    }
    let proof = match client.consistency_proof(first, second) {
        Ok(p) => p,
        Err(e) => match refused(e) {
            Ok(e) => {
                return Err(r.fail(
                    "proof",
                    format!("the ledger cannot prove its tree extends the proof's: {e}"),
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
    if let Err(e) =
        merkle::verify_consistency(first, second, &seen.checkpoint.root, &cp.root, &proof)
    {
        evidence(r);
        return Err(r.fail(
            "proof",
            format!(
                "the ledger's tree of {second} entries does not extend the proof's tree of {first} ({e}): the log forked (both checkpoints are in the report as evidence)"
            ),
        ));
    }
    r.pass(
        "proof",
        format!(
            "the ledger's tree of {second} entries extends the proof's tree of {first} (consistency proof)"
        ),
    );
    Ok(())
}

/// Parses the label's link and seal: what the label claims.
fn read_label(r: &mut Report, url: &str) -> Step<Label> {
    r.qr_url = Some(url.to_owned());
    if web_base(url).is_none() {
        return Err(r.fail(
            "label",
            format!(
                "the QR code holds {url:?}, not a web link (http:// or https://): a ledger's label links to the ledger"
            ),
        ));
    }
    let link = seal::parse_digital_link(url).map_err(|e| {
        let why = match e {
            seal::SealError::NotDigitalLink(_) => format!(
                "the QR code does not hold a ledger link (GS1 Digital Link /01/<GTIN>/21/<serial>?seal=...): {e}"
            ),
            _ => format!("the seal in the link is damaged or altered: {e}"),
        };
        r.fail("label", why)
    })?;
    r.product = Some(ProductInfo {
        gtin: link.gtin.clone(),
        serial: link.serial.clone(),
        ..ProductInfo::default()
    });
    let Some(seal) = link.seal else {
        return Err(r.fail(
            "label",
            "the link carries no seal (?seal=...): it was not issued by a ledger, or the seal was cut off",
        ));
    };
    r.certificate_id = Some(hex::encode(seal.certificate_id));
    r.index = Some(seal.index);
    r.integrated_time = Some(seal_time(seal.integrated_time));
    r.pass(
        "label",
        format!(
            "GS1 Digital Link for GTIN {}, serial {}, with a seal",
            link.gtin, link.serial
        ),
    );
    Ok(Label {
        url: url.to_owned(),
        link,
        seal,
    })
}

/// The web site a link leads to, `scheme://host[:port]` in lower case, or `None` for a link
/// that is not `http(s)://` with a host. The seal does not cover it: a label reprinted with a
/// genuine seal and another site's link still verifies, so the report shows it.
///
/// It is the site a browser would open: a user name before `@` is dropped (in
/// `https://ledger.example@evil.example/…` the site is evil.example), `\` ends the host as
/// `/` does, and a default port and a trailing dot are left out.
fn web_base(url: &str) -> Option<String> {
    // A browser drops tabs and line breaks anywhere in a link, and opens no host holding
    // other control characters, spaces or these: such a "site" is no site (and printed, it
    // could forge lines of the report).
    let lower: String = url
        .trim()
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect::<String>()
        .to_ascii_lowercase();
    let (scheme, rest) = lower
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| lower.strip_prefix("http://").map(|r| ("http", r)))?;
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
        _ => (host_port, ""),
    };
    let host = host.trim_end_matches('.');
    let forbidden = |c: char| c.is_control() || c.is_whitespace() || "<>^|\"%{}`".contains(c);
    if host.is_empty() || host.contains(forbidden) {
        return None;
    }
    // An empty port is none; a port is a number (`:0443` is 443), at most 65535.
    let port: Option<u16> = match port {
        "" => None,
        p => Some(p.parse().ok()?),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    Some(match port.filter(|p| *p != default_port) {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Unix seconds as RFC 3339 UTC.
fn seal_time(secs: u64) -> String {
    let t = format_time_ms(secs.saturating_mul(1000));
    t.strip_suffix(".000Z")
        .map_or(t.clone(), |s| format!("{s}Z"))
}

/// The trusted key that made this label's seal, picked by the seal's key ID. A key ID is 4
/// bytes: should two trusted keys share one (a key made to collide with a trusted log's), the
/// one under which the seal verifies is picked, so that the collision cannot make a genuine
/// label fail.
fn pick_key(r: &mut Report, pinned: &Pinned, label: &Label) -> Step<PublicKey> {
    let id = label.seal.key_id;
    let mut candidates = pinned.keys.keys().iter().filter(|k| k.id() == id);
    if let Some(first) = candidates.next() {
        let seals = |k: &PublicKey| {
            label
                .seal
                .verify(k, k.name(), &label.link.gtin, &label.link.serial)
                .is_ok()
        };
        let chosen = std::iter::once(first)
            .chain(candidates)
            .find(|k| seals(k))
            .unwrap_or(first);
        return Ok(chosen.clone());
    }
    if let [only] = pinned.keys.keys() {
        return Err(r.fail(
            "seal",
            format!(
                "the seal was made by log key {id}, not by the log key {} ({}) given with {}: the label comes from another log, or it is forged",
                only.id(),
                only.name(),
                pinned.source
            ),
        ));
    }
    Err(r.fail(
        "seal",
        format!(
            "the seal was made by log key {id}, which is none of the {} keys of {}: the label comes from a log you do not trust, or it is forged",
            pinned.keys.keys().len(),
            pinned.source
        ),
    ))
}

fn check_seal(r: &mut Report, key: &PublicKey, label: &Label) -> Step<()> {
    match label
        .seal
        .verify(key, key.name(), &label.link.gtin, &label.link.serial)
    {
        Ok(()) => {
            r.pass(
                "seal",
                format!(
                    "signed by the log key of {} for this GTIN and serial",
                    key.name()
                ),
            );
            Ok(())
        }
        Err(e) => Err(r.fail(
            "seal",
            format!("{e}: the label is not genuine or was altered"),
        )),
    }
}

/// A client error that means "the server cannot prove it" (it answered, with a refusal)
/// becomes a failed check; one that means "could not ask" stays an error.
fn refused(e: ClientError) -> Result<ClientError, ClientError> {
    match e.status() {
        Some(s) if (400..500).contains(&s) => Ok(e),
        _ => Err(e),
    }
}

fn online(
    r: &mut Report,
    client: &Client,
    state_path: &std::path::Path,
    pinned: &Pinned,
    label: Option<&Label>,
    target: &Target,
    witnesses: &[CosignerKey],
) -> Step<()> {
    let server = client.base_url().to_owned();
    let state = trust::load_state(state_path)?;
    let info = client.log()?;
    let key = choose_key(r, client, pinned, &state, &info, label)?;
    no_log_key_as_witness(witnesses, &key)?;
    if let Some(label) = label {
        check_seal(r, &key, label)?;
    }

    // The fresh checkpoint, and the history since the one seen last time.
    let cp_text = witnessed_checkpoint(client, witnesses)?;
    let cp = Checkpoint::open(&cp_text, &key).map_err(|e| {
        r.fail(
            "checkpoint",
            format!("the server's checkpoint is not signed by the log key: {e}"),
        )
    })?;
    r.checkpoint = Some(CheckpointInfo {
        tree_size: cp.size,
        root: hex::encode(cp.root),
    });
    r.pass(
        "checkpoint",
        format!("signed by the log key; tree size {}", cp.size),
    );
    check_cosignatures(r, (witnesses, &key), &cp_text, "the ledger's checkpoint")?;
    check_consistency(r, client, &state, &key, &cp, &cp_text, state_path)?;
    let mut fresh_state = trust::load_state(state_path)?;
    fresh_state.remember(&key, &cp, &cp_text, &server, &now());
    trust::save_state(state_path, &fresh_state)?;

    // The certificate: its entry, proven in the checkpoint's tree.
    let id = match (label, target) {
        (Some(l), _) => CertificateId(l.seal.certificate_id),
        (None, Target::Certificate(id)) => *id,
        (None, _) => return Err(VerifyError::Usage("nothing to verify".into()).into()),
    };
    let view = match client.certificate(&id.to_string()) {
        Ok(v) => v,
        Err(e) if e.status() == Some(404) => {
            return Err(r.fail(
                "certificate",
                format!(
                    "the ledger has no certificate {id}: it was never logged there (a forged label, or one of another log)"
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let index = match (label, view.get("index").and_then(Value::as_u64)) {
        (Some(l), _) => l.seal.index,
        (None, Some(i)) => i,
        (None, None) => {
            return Err(ClientError::BadAnswer {
                url: format!("{server}/api/v1/certificates/{id}"),
                reason: "no entry index".into(),
            }
            .into());
        }
    };
    let entry = fetch_included(r, client, &cp, index, "certificate")?;
    let cert = check_certificate_entry(&entry, &id, label).map_err(|e| r.fail("entry", e))?;
    r.pass(
        "entry",
        format!(
            "entry {index} holds certificate {id} for GTIN {}, serial {}",
            cert.product.gtin, cert.product.serial
        ),
    );
    r.pass(
        "inclusion",
        format!(
            "entry {index} is in the log's tree of size {} (inclusion proof)",
            cp.size
        ),
    );
    r.certificate_id = Some(id.to_string());
    r.index = Some(index);
    r.integrated_time = Some(entry.integrated_time());
    r.product = Some(ProductInfo::of(&cert));
    match label {
        None => check_view_seal(r, &key, &view, &id, index, &cert)?,
        Some(l) => elsewhere_warning(r, &l.url, &view),
    }
    let mut regs = Registrations::new();
    check_issuer(r, client, &cp, &mut regs, &entry)?;
    let issuer = entry.envelope.signature.keyid.name.clone();
    check_history(r, client, &cp, &mut regs, &view, &id, &issuer)?;
    check_status(r, &view)
}

/// Chooses the log key for this server: a pinned key (flag or trust file), else the one
/// remembered in the state file, else, only with `--trust-on-first-use`, the server's own
/// (otherwise a usage error).
fn choose_key(
    r: &mut Report,
    client: &Client,
    pinned: &Pinned,
    state: &State,
    info: &LogInfo,
    label: Option<&Label>,
) -> Step<PublicKey> {
    let server_key = PublicKey::parse(&info.log_key);
    let presented = || match &server_key {
        Ok(k) if k.name() == info.origin => format!("{} (key {})", k.name(), k.id()),
        Ok(k) => format!(
            "{} with the key of {} (key {})",
            info.origin,
            k.name(),
            k.id()
        ),
        Err(e) => format!("a malformed key ({e})"),
    };
    let (key, source) = if !pinned.keys.is_empty() {
        let key = match label {
            Some(l) => pick_key(r, pinned, l)?,
            None => match pinned.keys.by_vkey(&info.log_key) {
                Some(k) => k.clone(),
                None => {
                    return Err(r.fail(
                        "log_key",
                        format!(
                            "the server {} presents the log {}, whose key is none of the keys of {}",
                            client.base_url(),
                            presented(),
                            pinned.source
                        ),
                    ));
                }
            },
        };
        (key, pinned.source.clone())
    } else {
        let remembered = state
            .by_server(client.base_url())
            .or_else(|| label.and_then(|l| state.by_key_id(l.seal.key_id)))
            .or_else(|| state.by_origin(&info.origin).next());
        match remembered.map(|l| (l, l.public_key())) {
            Some((l, Ok(k))) => (
                k,
                format!(
                    "remembered in the state file, first trusted from {}",
                    l.servers.first().map_or("a server", String::as_str)
                ),
            ),
            Some((_, Err(e))) => {
                return Err(VerifyError::Usage(format!("state file: {e}")).into());
            }
            None if !pinned.trust_on_first_use => {
                return Err(VerifyError::Usage(
                    "no log key is pinned for this log: give --log-key (the ledger's vkey or .pub file, from its operator) or a trust file; or, knowingly, --trust-on-first-use to accept the key the server presents and remember it".to_owned(),
                )
                .into());
            }
            None => match &server_key {
                Ok(k) => {
                    r.warnings.push(format!(
                        "no log key is pinned: trusting, on first use, the key the server presents: {}. Check it with the ledger's operator, then pin it with --log-key or in the trust file; it is remembered in the state file from now on",
                        k.to_vkey()
                    ));
                    (
                        k.clone(),
                        "presented by the server, trusted on first use".to_owned(),
                    )
                }
                Err(e) => {
                    return Err(r.fail(
                        "log_key",
                        format!("the server presents a malformed log key: {e}"),
                    ));
                }
            },
        }
    };
    r.log = Some(log_used(&key, &source));
    if server_key.as_ref().ok() != Some(&key) || info.origin != key.name() {
        return Err(r.fail(
            "log_key",
            format!(
                "the server {} presents the log {}, not the log {} (key {}) you trust ({source}): it is another log or an impostor",
                client.base_url(),
                presented(),
                key.name(),
                key.id()
            ),
        ));
    }
    r.pass(
        "log_key",
        format!(
            "the server presents the log key of {} ({source})",
            key.name()
        ),
    );
    Ok(key)
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    format_time_ms(ms)
}

/// Checks the fresh checkpoint against the one seen before; the failure carries both
/// signed checkpoints as evidence.
fn check_consistency(
    r: &mut Report,
    client: &Client,
    state: &State,
    key: &PublicKey,
    cp: &Checkpoint,
    cp_text: &str,
    state_path: &std::path::Path,
) -> Step<()> {
    let seen = state.log(key);
    if let Some(s) = seen {
        r.previous_checkpoint = Some(CheckpointInfo {
            tree_size: s.tree_size,
            root: s.root.clone(),
        });
    }
    let evidence = |r: &mut Report| {
        if let Some(s) = seen {
            r.warnings.push(s.rewritten_hint(state_path));
            r.evidence = Some(Evidence {
                remembered: s.checkpoint.clone(),
                presented: cp_text.to_owned(),
            });
        }
    };
    match state.compare(key, cp) {
        Compared::FirstSight => {
            r.pass(
                "consistency",
                format!(
                    "first checkpoint of this log seen here; remembered in {} to check the next one against",
                    state_path.display()
                ),
            );
        }
        Compared::Same => {
            r.pass(
                "consistency",
                format!("the same tree as seen before (size {})", cp.size),
            );
        }
        Compared::Rollback { seen } => {
            evidence(r);
            return Err(r.fail(
                "consistency",
                format!(
                    "the log was rolled back: it shows {} entries, but a checkpoint with {seen} was seen before (a log's tree never shrinks: this is a rollback, or a fork onto a shorter branch); the server rewrote its history",
                    cp.size
                ),
            ));
        }
        Compared::Fork { size } => {
            evidence(r);
            return Err(r.fail(
                "consistency",
                format!(
                    "not consistent: the log signed two different trees of size {size}; the server rewrote its history"
                ),
            ));
        }
        Compared::Grown { first, first_root } => {
            let proof = match client.consistency_proof(first, cp.size) {
                Ok(p) => p,
                Err(e) => {
                    // With a checkpoint seen before, any answer but a valid proof (a refusal,
                    // a server error, a malformed proof) is a failure to prove consistency:
                    // a fork must not hide behind errors. Only no answer at all, or none in
                    // the check's time, leaves the question open (exit 2): a slow server is
                    // not accused.
                    if matches!(
                        e,
                        ClientError::Transport { .. } | ClientError::TimeLimit { .. }
                    ) {
                        return Err(e.into());
                    }
                    evidence(r);
                    return Err(r.fail(
                        "consistency",
                        format!(
                            "not consistent: the server does not prove that its tree of size {} extends the one of size {first} seen before ({e}); a server that kept its history can: until it does, treat it as rewritten",
                            cp.size
                        ),
                    ));
                }
            };
            if let Err(e) =
                merkle::verify_consistency(first, cp.size, &first_root, &cp.root, &proof)
            {
                evidence(r);
                return Err(r.fail(
                    "consistency",
                    format!(
                        "not consistent: the tree of size {} does not extend the one of size {first} seen before ({e}); the server rewrote its history",
                        cp.size
                    ),
                ));
            }
            r.pass(
                "consistency",
                format!(
                    "the tree of size {} extends the one of size {first} seen before (consistency proof)",
                    cp.size
                ),
            );
        }
    }
    Ok(())
}

/// Fetches entry `index` and proves it is in the checkpoint's tree: the exact bytes served
/// must hash to a leaf that the inclusion proof connects to the signed root.
fn fetch_included(
    r: &mut Report,
    client: &Client,
    cp: &Checkpoint,
    index: u64,
    what: &str,
) -> Step<Entry> {
    if index >= cp.size {
        return Err(r.fail(
            "inclusion",
            format!(
                "the {what} entry {index} is not in the log's tree of size {}",
                cp.size
            ),
        ));
    }
    let remote = match client.entry(index) {
        Ok(e) => e,
        Err(e) => {
            let e = refused(e)?;
            return Err(r.fail(
                "entry",
                format!("the server does not serve the {what} entry {index}: {e}"),
            ));
        }
    };
    let entry = Entry::parse(&remote.leaf).map_err(|e| {
        r.fail(
            "entry",
            format!("the {what} entry {index} as served is not a log entry: {e}"),
        )
    })?;
    if entry.index != index || remote.index != index {
        return Err(r.fail(
            "entry",
            format!(
                "asked for entry {index}, the server served entry {}",
                entry.index
            ),
        ));
    }
    let leaf: Hash = merkle::leaf_hash(&remote.leaf);
    let proof = match client.inclusion_proof(index, cp.size) {
        Ok(p) => p,
        Err(e) => {
            let e = refused(e)?;
            return Err(r.fail(
                "inclusion",
                format!("the server cannot prove that the {what} entry {index} is in the log: {e}"),
            ));
        }
    };
    merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root).map_err(|e| {
        r.fail(
            "inclusion",
            format!(
                "the {what} entry {index} as served is not in the log's signed tree ({e}): the server altered it"
            ),
        )
    })?;
    Ok(entry)
}

/// Who placed the certificate at the entry that does not hold it: the seal, or the server.
fn index_mismatch(label: Option<&Label>) -> &'static str {
    match label {
        Some(_) => "the seal does not match the log",
        None => "the server names the wrong entry for it",
    }
}

/// Checks that a logged entry holds the certificate `id` (and, from a label, its GTIN, serial
/// and time); returns the certificate.
fn check_certificate_entry(
    entry: &Entry,
    id: &CertificateId,
    label: Option<&Label>,
) -> Result<Certificate, String> {
    let env = &entry.envelope;
    if env.payload_type != PayloadType::Certificate.media_type() {
        return Err(format!(
            "entry {} is not a certificate but a {}: {}",
            entry.index,
            env.payload_type,
            index_mismatch(label)
        ));
    }
    let found = CertificateId::of_payload(&env.payload);
    if found != *id {
        return Err(format!(
            "entry {} holds certificate {found}, not {id}: {}",
            entry.index,
            index_mismatch(label)
        ));
    }
    let cert = match payload::parse(&env.payload_type, &env.payload) {
        Ok(Payload::Certificate(c)) => c,
        Ok(_) => return Err("the entry's payload is not a certificate".into()),
        Err(e) => return Err(format!("the logged certificate does not parse: {e}")),
    };
    if let Some(l) = label {
        if cert.product.gtin != l.link.gtin || cert.product.serial != l.link.serial {
            return Err(format!(
                "the logged certificate is for GTIN {}, serial {}, but the label says GTIN {}, serial {}",
                cert.product.gtin, cert.product.serial, l.link.gtin, l.link.serial
            ));
        }
        if entry.integrated_time_ms / 1000 != l.seal.integrated_time {
            return Err(format!(
                "the entry was logged at {}, but the seal says {}",
                entry.integrated_time(),
                seal_time(l.seal.integrated_time)
            ));
        }
    }
    Ok(cert)
}

/// A label whose link leads to another site than the ledger's own links: the seal still
/// proves the unit is certified, but a phone scanning the label opens that site.
fn elsewhere_warning(r: &mut Report, label_url: &str, view: &Value) {
    let ledger = view
        .get("qr_url")
        .and_then(Value::as_str)
        .and_then(web_base);
    if let (Some(label), Some(ledger)) = (web_base(label_url), ledger)
        && label != ledger
    {
        r.warnings.push(format!(
            "the label's QR code leads to {label}, but this ledger's labels lead to {ledger}: a phone scanning it opens {label}, not the ledger (a relabelled unit, or a ledger that moved)"
        ));
    }
}

/// For a certificate ID target: the seal the server shows must verify too.
fn check_view_seal(
    r: &mut Report,
    key: &PublicKey,
    view: &Value,
    id: &CertificateId,
    index: u64,
    cert: &Certificate,
) -> Step<()> {
    let text = view.get("seal").and_then(Value::as_str).unwrap_or_default();
    let checked = Seal::from_base64url(text)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.verify(key, key.name(), &cert.product.gtin, &cert.product.serial)
                .map_err(|e| e.to_string())?;
            if s.index != index || s.certificate_id != *id.as_bytes() {
                return Err("it names another entry or certificate".into());
            }
            Ok(())
        });
    match checked {
        Ok(()) => {
            r.qr_url = view
                .get("qr_url")
                .and_then(Value::as_str)
                .map(str::to_owned);
            r.pass(
                "seal",
                "the certificate's seal is signed by the log key for its GTIN and serial",
            );
            Ok(())
        }
        Err(e) => Err(r.fail(
            "seal",
            format!("the seal the server shows is not valid: {e}"),
        )),
    }
}

/// A party's registration as the server names it, proven to be an entry of the log.
struct Registration {
    /// The entry that holds it.
    index: u64,
    /// What it registers.
    party: crate::party::Party,
}

/// The registrations fetched during one verification, by party name: a party that signed
/// several of the entries checked is fetched and proven once.
type Registrations = std::collections::HashMap<String, Registration>;

/// Fetches the registration in force of the party that signed `entry` (as the server names
/// it) and proves it is an entry of the log registering that name. `signer_of` names what the
/// party signed, for messages; failures are reported under `check`.
fn registration<'a>(
    r: &mut Report,
    client: &Client,
    cp: &Checkpoint,
    regs: &'a mut Registrations,
    entry: &Entry,
    check: &'static str,
    signer_of: &str,
) -> Step<&'a Registration> {
    let name = entry.envelope.signature.keyid.name.clone();
    let vacant = match regs.entry(name.clone()) {
        std::collections::hash_map::Entry::Occupied(known) => return Ok(known.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => v,
    };
    let served = match client.party(&name) {
        Ok(p) => p,
        Err(e) => {
            let e = refused(e)?;
            return Err(r.fail(
                check,
                format!("the signer of {signer_of}, {name}, is not a registered party: {e}"),
            ));
        }
    };
    let Some(index) = served.get("index").and_then(Value::as_u64) else {
        return Err(r.fail(
            check,
            format!("the server does not say where the registration of {name} is logged"),
        ));
    };
    let reg = fetch_included(r, client, cp, index, "registration")?;
    match payload::parse(&reg.envelope.payload_type, &reg.envelope.payload) {
        Ok(Payload::Party(party)) if party.name == name => {
            Ok(vacant.insert(Registration { index, party }))
        }
        _ => Err(r.fail(
            check,
            format!("entry {index} is not the registration of {name}"),
        )),
    }
}

/// Who may sign a kind of entry (SPEC §3), for messages: "only customs may sign ...".
fn only(roles: &[crate::party::Role], kind: &str) -> String {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    format!("only {} may sign {kind}", roles.join(" or "))
}

/// What was checked of an entry's signer against its registration in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signed {
    /// The registration predates the entry, so it was in force when the entry was logged:
    /// the party was active, of a role that may sign it, and its key verifies the signature.
    InForce = 0,
    /// The party was registered again after the entry (a new role, status or display name):
    /// its registered key verifies the signature; its role and status back then are not
    /// judged here (an audit replays every registration).
    RegisteredSince = 1,
    /// Registered again after the entry with another key (a key rotated since): not checked
    /// here; the caller warns.
    OtherKeySince = 2,
}

/// Checks `entry` (described as `what`, of a kind `roles` may sign) against its signer's
/// registration in force. A registration that predates the entry was in force when it was
/// logged (the log takes a signer's current key only): the entry must then be signed with
/// its key, by an active party of one of `roles`. A registration newer than the entry says
/// nothing of back then: only its key, if it is the one that signed, is checked.
fn check_signed(
    r: &mut Report,
    reg: &Registration,
    entry: &Entry,
    (roles, kind): (&[crate::party::Role], &str),
    check: &'static str,
    what: &str,
) -> Step<Signed> {
    let (party, signer) = (&reg.party, &entry.envelope.signature.keyid);
    let in_force = reg.index < entry.index;
    if party.key.id() != signer.id {
        if in_force {
            return Err(r.fail(
                check,
                format!(
                    "{what} is signed with key {} of {}, but the registration in force since entry {} carries key {}: the log took a signature under a key that was not registered",
                    signer.id,
                    party.name,
                    reg.index,
                    party.key.id()
                ),
            ));
        }
        return Ok(Signed::OtherKeySince);
    }
    if in_force {
        if party.status == crate::party::PartyStatus::Suspended {
            return Err(r.fail(
                check,
                format!(
                    "{} was suspended (registration in entry {}) when {what} was logged",
                    party.name, reg.index
                ),
            ));
        }
        if !roles.contains(&party.role) {
            return Err(r.fail(
                check,
                format!(
                    "{} was registered as {} (entry {}) when {what} was logged, and {}",
                    party.name,
                    party.role,
                    reg.index,
                    only(roles, kind)
                ),
            ));
        }
    }
    entry.envelope.verify(&party.key).map_err(|e| {
        r.fail(
            check,
            format!(
                "the signature of {what} does not verify under {}'s registered key: {e}",
                party.name
            ),
        )
    })?;
    Ok(if in_force {
        Signed::InForce
    } else {
        Signed::RegisteredSince
    })
}

/// The warning for an entry signed with a key of its signer other than the registered one,
/// registered after the entry.
fn other_key_warning(reg: &Registration, entry: &Entry, what: &str) -> String {
    format!(
        "{what} is signed with a key of {} ({}) that is not its registered key now ({}, registered in entry {}, after it): a key rotated since, or a key never registered. This verifier cannot tell which; an audit of the log (reman-ledger audit --server) re-checks every signature under the key in force",
        reg.party.name,
        entry.envelope.signature.keyid.id,
        reg.party.key.id(),
        reg.index
    )
}

/// The issuer: its registration (in the log) and its signature on the certificate.
fn check_issuer(
    r: &mut Report,
    client: &Client,
    cp: &Checkpoint,
    regs: &mut Registrations,
    entry: &Entry,
) -> Step<()> {
    r.issuer = Some(IssuerInfo {
        name: entry.envelope.signature.keyid.name.clone(),
        display_name: None,
        country: None,
    });
    let reg = registration(r, client, cp, regs, entry, "issuer", "the certificate")?;
    let party = &reg.party;
    r.issuer = Some(IssuerInfo {
        name: party.name.clone(),
        display_name: party.display_name.clone(),
        country: party.country.clone(),
    });
    let rule = (payload::CERTIFICATE_SIGNERS, "certificates");
    let detail = match check_signed(r, reg, entry, rule, "issuer", "the certificate")? {
        Signed::InForce => format!(
            "signed by {}, a registered {} (registration in entry {})",
            party.name, party.role, reg.index
        ),
        Signed::RegisteredSince => format!(
            "signed with the registered key of {}, registered again since (entry {}, as {}): its role when it issued the certificate is not judged here",
            party.name, reg.index, party.role
        ),
        Signed::OtherKeySince => {
            r.warnings
                .push(other_key_warning(reg, entry, "the certificate"));
            format!(
                "{} ({}), registered in entry {}; signed with another key ({}), NOT checked here (see the warning)",
                party.name, party.role, reg.index, entry.envelope.signature.keyid.id
            )
        }
    };
    r.pass("issuer", detail);
    Ok(())
}

/// The events and revocation the server shows, each proven to be in the log, about this
/// certificate, and signed by a registered party that may sign it (see [`check_signed`]).
fn check_history(
    r: &mut Report,
    client: &Client,
    cp: &Checkpoint,
    regs: &mut Registrations,
    view: &Value,
    id: &CertificateId,
    issuer: &str,
) -> Step<()> {
    let mut items = view
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cert_index = r.index.unwrap_or(0);
    let mut indices = Vec::with_capacity(items.len());
    for item in &items {
        let Some(index) = item.get("index").and_then(Value::as_u64) else {
            return Err(r.fail("events", "an event without an entry index"));
        };
        if index <= cert_index {
            return Err(r.fail(
                "events",
                format!(
                    "the server lists entry {index} as an event of certificate {id}, which is logged at entry {cert_index}: an event comes after its certificate"
                ),
            ));
        }
        indices.push(index);
    }
    // Shown in the log's order, each once: a server listing one event twice (a customs
    // release shown three times) would make the history look other than it is.
    indices.sort_unstable();
    if let Some(w) = indices.windows(2).find(|w| w[0] == w[1]) {
        return Err(r.fail(
            "events",
            format!(
                "the server lists entry {} more than once among the certificate's events",
                w[0]
            ),
        ));
    }
    items.sort_by_key(|item| item.get("index").and_then(Value::as_u64));
    if items.len() > MAX_EVENTS {
        r.warnings.push(format!(
            "the certificate has {} events; the first {MAX_EVENTS} are checked and shown",
            items.len()
        ));
    }
    // How many events' signers were checked each way ([`Signed`]).
    let mut counts = [0usize; 3];
    for item in items.iter().take(MAX_EVENTS) {
        let Some(index) = item.get("index").and_then(Value::as_u64) else {
            return Err(r.fail("events", "an event without an entry index"));
        };
        let entry = fetch_included(r, client, cp, index, "event")?;
        let (event, roles) =
            match payload::parse(&entry.envelope.payload_type, &entry.envelope.payload) {
                Ok(p) => {
                    let roles = p.signer_roles();
                    match p {
                        Payload::Event(e) if e.certificate_id == *id => (e, roles),
                        _ => return Err(not_an_event(r, index, id)),
                    }
                }
                Err(_) => return Err(not_an_event(r, index, id)),
            };
        let kind = event.event.as_str();
        let what = format!("the {kind} event (entry {index})");
        let reg = registration(r, client, cp, regs, &entry, "events", &what)?;
        let rule = (roles, format!("{kind} events"));
        let signed = check_signed(r, reg, &entry, (rule.0, &rule.1), "events", &what)?;
        if signed == Signed::OtherKeySince {
            let warning = other_key_warning(reg, &entry, &what);
            r.warnings.push(warning);
        }
        counts[signed as usize] += 1;
        r.events.push(EventInfo {
            index,
            time: event.time.clone(),
            event: kind.to_owned(),
            place: event.location.as_ref().and_then(|l| l.place.clone()),
            country: event.location.as_ref().map(|l| l.country.clone()),
            reference: event.reference.clone().filter(|s| !s.is_empty()),
            signer: entry.envelope.signature.keyid.name.clone(),
        });
    }
    r.pass("events", events_checked(r.events.len(), counts));
    check_revocation(r, client, cp, regs, view, id, issuer)
}

fn not_an_event(r: &mut Report, index: u64, id: &CertificateId) -> Stop {
    r.fail(
        "events",
        format!("entry {index} is not an event of certificate {id}"),
    )
}

/// The `events` check's line: how each event's signer was checked.
fn events_checked(n: usize, [in_force, since, other_key]: [usize; 3]) -> String {
    if since == 0 && other_key == 0 {
        return format!(
            "{n} event(s), each in the log, signed with its party's registered key by a party of a role that may sign it"
        );
    }
    let mut parts = vec![format!("{n} event(s), each in the log")];
    if in_force > 0 {
        parts.push(format!(
            "{in_force} signed by a party of a role that may sign it"
        ));
    }
    if since > 0 {
        parts.push(format!(
            "{since} signed with the registered key of a party registered again since (its role then not judged here)"
        ));
    }
    if other_key > 0 {
        parts.push(format!(
            "{other_key} signed with another key of its party, NOT checked here (see the warnings)"
        ));
    }
    parts.join("; ")
}

/// The revocation the server shows, if any: in the log, of this certificate, signed by its
/// issuer or an operator.
fn check_revocation(
    r: &mut Report,
    client: &Client,
    cp: &Checkpoint,
    regs: &mut Registrations,
    view: &Value,
    id: &CertificateId,
    issuer: &str,
) -> Step<()> {
    let revocation = view.get("revocation").filter(|v| !v.is_null());
    let Some(revocation) = revocation else {
        return Ok(());
    };
    let Some(index) = revocation.get("index").and_then(Value::as_u64) else {
        return Err(r.fail(
            "revocation",
            "the server shows a revocation without its entry index: it cannot be checked",
        ));
    };
    let cert_index = r.index.unwrap_or(0);
    if index <= cert_index {
        return Err(r.fail(
            "revocation",
            format!(
                "the server shows entry {index} as the revocation of certificate {id}, which is logged at entry {cert_index}: a revocation comes after its certificate"
            ),
        ));
    }
    let entry = fetch_included(r, client, cp, index, "revocation")?;
    let rev = match payload::parse(&entry.envelope.payload_type, &entry.envelope.payload) {
        Ok(Payload::Revocation(rv)) if rv.certificate_id == *id => rv,
        _ => {
            return Err(r.fail(
                "revocation",
                format!("entry {index} is not a revocation of certificate {id}"),
            ));
        }
    };
    let what = format!("the revocation (entry {index})");
    let reg = registration(r, client, cp, regs, &entry, "revocation", &what)?;
    let rule = (payload::REVOCATION_SIGNERS, "revocations");
    let signed = check_signed(r, reg, &entry, rule, "revocation", &what)?;
    // Only the issuer or an operator revokes: another remanufacturer may not.
    let signer = &reg.party.name;
    if signed == Signed::InForce && !crate::state::may_revoke(signer, reg.party.role, issuer) {
        return Err(r.fail(
            "revocation",
            format!(
                "{what} is signed by {signer}, registered as {} (entry {}), which did not issue the certificate ({issuer} did); only the issuing remanufacturer or an operator may revoke a certificate",
                reg.party.role, reg.index
            ),
        ));
    }
    if signed == Signed::OtherKeySince {
        let warning = other_key_warning(reg, &entry, &what);
        r.warnings.push(warning);
    }
    r.revocation = Some(RevocationInfo {
        index,
        integrated_time: entry.integrated_time(),
        reason: rev.reason.as_str().to_owned(),
        note: rev.note.clone(),
        signer: entry.envelope.signature.keyid.name.clone(),
    });
    Ok(())
}

fn check_status(r: &mut Report, view: &Value) -> Step<()> {
    let status = view
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    r.status = Some(status.clone());
    r.superseded_by = view
        .get("superseded_by")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match (status.as_str(), &r.revocation) {
        ("valid", None) => {
            r.pass(
                "status",
                "valid, as the server says: it shows no revocation or replacement (a revocation it leaves out is not caught by this check; a mirror you run computes the status from the log itself)",
            );
            Ok(())
        }
        ("valid", Some(rv)) => {
            let detail = format!(
                "the server says valid, but shows a revocation (entry {})",
                rv.index
            );
            Err(r.fail("status", detail))
        }
        ("revoked", Some(rv)) => {
            let detail = format!(
                "REVOKED ({}) on {} by {}",
                rv.reason, rv.integrated_time, rv.signer
            );
            Err(r.fail("status", detail))
        }
        ("revoked", None) => Err(r.fail("status", "REVOKED")),
        ("superseded", _) => {
            let detail = match &r.superseded_by {
                Some(s) => format!(
                    "SUPERSEDED by certificate {s} (as the ledger says): this certificate was replaced; verify the new one"
                ),
                None => "SUPERSEDED: this certificate was replaced".to_owned(),
            };
            Err(r.fail("status", detail))
        }
        (other, _) => {
            let detail = format!("unknown status {other:?}");
            Err(r.fail("status", detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(
            Target::parse("https://l.example/01/09506000999995/21/X?seal=a"),
            Target::Url(_)
        ));
        assert!(matches!(
            Target::parse("HTTP://L.EXAMPLE/01/1/21/X"),
            Target::Url(_)
        ));
        let id = "00112233445566778899AABBCCDDEEFF";
        assert_eq!(
            Target::parse(id),
            Target::Certificate(id.to_ascii_lowercase().parse().unwrap())
        );
        assert_eq!(
            Target::parse("label.jpg"),
            Target::Image(PathBuf::from("label.jpg"))
        );
    }

    #[test]
    fn a_links_site_is_the_one_a_browser_opens() {
        for (url, site) in [
            (
                "https://ledger.example/01/x",
                Some("https://ledger.example"),
            ),
            (
                "HTTPS://Ledger.Example:443/01/x",
                Some("https://ledger.example"),
            ),
            (
                "http://ledger.example:80/01/x",
                Some("http://ledger.example"),
            ),
            ("http://127.0.0.1:8080/01/x", Some("http://127.0.0.1:8080")),
            (
                "https://ledger.example./01/x",
                Some("https://ledger.example"),
            ),
            (
                "https://ledger.example@evil.example/01/x",
                Some("https://evil.example"),
            ),
            (
                "https://a@ledger.example:1@evil.example:8443/01",
                Some("https://evil.example:8443"),
            ),
            (
                "https://evil.example\\@ledger.example/01",
                Some("https://evil.example"),
            ),
            ("https://[::1]:8080/01/x", Some("https://[::1]:8080")),
            (
                "https://ledger.example:/01/x",
                Some("https://ledger.example"),
            ),
            (
                "https://ledger.example:0443/01/x",
                Some("https://ledger.example"),
            ),
            (
                "https://ledger.example:08443/01/x",
                Some("https://ledger.example:8443"),
            ),
            ("https://ledger.example:65536/01/x", None),
            (
                "https://ledger.\nexample/01/x",
                Some("https://ledger.example"),
            ),
            ("https://evil.example\u{1b}[8m/01/x", None),
            ("https://evil example/01/x", None),
            ("https://ledger%2eexample/01/x", None),
            (
                "https://ledger.example?seal=x",
                Some("https://ledger.example"),
            ),
            ("https:///01/x", None),
            ("https://user@/01/x", None),
            ("ftp://ledger.example/01/x", None),
            ("ledger.example/01/x", None),
        ] {
            assert_eq!(web_base(url).as_deref(), site, "{url}");
        }
    }

    #[test]
    fn seal_times_are_rfc3339() {
        assert_eq!(seal_time(1_795_896_000), "2026-11-28T20:00:00Z");
    }
}
