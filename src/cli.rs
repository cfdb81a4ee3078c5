//! The command-line commands of SPEC §7, as library functions over the core.
//!
//! `main.rs` only parses arguments and calls these; each returns what to print and a typed
//! error whose [`CliError::exit_code`] is SPEC §7's: 0 ok, 1 checked and not valid,
//! 2 usage or I/O error.

use crate::audit::{AuditError, AuditReport, audit_remote, audit_store};
use crate::client::{Client, ClientError};
use crate::dsse::Envelope;
use crate::issue::IssueError;
use crate::keyfile::{self, KeyFileError};
use crate::keys::{KeyError, PrivateKey, PublicKey};
use crate::ledger::{Ledger, LedgerConfig, LedgerError, OperatorDetails};
use crate::payload::{self, PayloadError, PayloadType};
use crate::receipt::RemoteReceipt;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A key file problem.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The ledger could not be created or opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The payload to sign is not valid.
    #[error("{path}: {source}")]
    Payload {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: PayloadError,
    },
    /// The audit found a bad log (exit code 1), or could not read it (exit code 2).
    #[error("{}", audit_failure(.0))]
    AuditFailed(AuditError),
    /// The ledger could not be reached, failed, or answered something unexpected.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `issue` could not read its inputs or write its outputs.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// Wrong usage.
    #[error("{0}")]
    Usage(String),
    /// `verify` could not be carried out (exit code 2).
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// `verify` checked the target and it is not valid (exit code 1); the report is printed.
    #[error("INVALID: {0}")]
    NotValid(String),
    /// `export` failed (exit code 1 when the ledger's own checkpoint does not hold).
    #[error("export failed: {0}")]
    Export(#[from] crate::export::ExportError),
}

impl CliError {
    /// SPEC §7 exit code: 1 when something was checked and is not valid, else 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::AuditFailed(AuditError::Read(_)) => 2,
            CliError::AuditFailed(_) => 1,
            CliError::NotValid(_) => 1,
            CliError::Export(crate::export::ExportError::BadLedger(_)) => 1,
            _ => 2,
        }
    }
}

fn audit_failure(e: &AuditError) -> String {
    match e {
        AuditError::Read(_) => format!("audit not done: {e}"),
        _ => format!("AUDIT FAILED: {e}"),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })
}

/// `keygen`: writes a new key pair and returns the vkey.
pub fn keygen(name: &str, out: &Path) -> Result<String, CliError> {
    let key = PrivateKey::generate(name)?;
    keyfile::write_new(out, &key)?;
    Ok(key.public().to_vkey())
}

/// The default operator key name for an origin: `operator.<host part of the origin>`.
pub fn default_operator_name(origin: &str) -> String {
    let host = origin.split('/').next().unwrap_or(origin);
    format!("operator.{host}")
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The data directory.
    pub data: PathBuf,
    /// The log's origin (the log key's name).
    pub origin: String,
    /// The log key file (created when missing).
    pub log_key: PathBuf,
    /// The operator key file (created when missing).
    pub operator_key: PathBuf,
    /// The operator's name, for a key file that does not exist yet.
    pub operator_name: Option<String>,
    /// The operator's registration details.
    pub operator: OperatorDetails,
}

/// `init`: creates a new ledger; returns it (running) and a summary line.
pub fn init(opts: &InitOptions, config: LedgerConfig) -> Result<(Ledger, String), CliError> {
    // Refused before any key file is created: a refused init leaves nothing behind.
    if opts.data.exists() && Store::open(&opts.data)?.log_key()?.is_some() {
        return Err(crate::ledger::LedgerError::AlreadyInitialized(
            opts.data.display().to_string(),
        )
        .into());
    }
    let (log_key, _) = keyfile::read_or_create(&opts.log_key, &opts.origin)?;
    let operator_key = if opts.operator_key.exists() {
        keyfile::read_private(&opts.operator_key)?
    } else {
        let name = opts
            .operator_name
            .clone()
            .unwrap_or_else(|| default_operator_name(&opts.origin));
        keyfile::read_or_create(&opts.operator_key, &name)?.0
    };
    let ledger = Ledger::init(&opts.data, log_key, &operator_key, &opts.operator, config)?;
    let msg = format!(
        "created ledger {} in {}\nlog key:  {}\noperator: {} (entry 0)",
        ledger.origin(),
        opts.data.display(),
        ledger.log_key().to_vkey(),
        operator_key.public().to_vkey(),
    );
    Ok((ledger, msg))
}

/// What `sign` made: the envelope, and why the ledger will refuse it, if it will.
#[derive(Debug)]
pub struct Signed {
    /// The envelope, as JSON.
    pub envelope: String,
    /// The ledger's rule the payload breaks (SPEC §3): it was signed all the same, as SPEC §7
    /// says `sign` does, so that a ledger's refusals can be tried; the command then exits 1.
    pub refused: Option<String>,
}

/// `sign`: signs a payload file as a DSSE envelope, after checking it as the ledger would (a
/// short GTIN is padded first: see [`crate::issue::prepare`]). A payload the ledger will refuse
/// is signed as it is, and the reason returned beside it; a file that is not a UTF-8 JSON object
/// at all is no payload (a key file given by mistake, say) and is not signed.
pub fn sign(key: &Path, kind: PayloadType, file: &Path) -> Result<Signed, CliError> {
    let key = keyfile::read_private(key)?;
    let bytes = read(file)?;
    // Signed, it would be printed and likely logged for anyone to read.
    if bytes.windows(12).any(|w| w == b"PRIVATE+KEY+") {
        return Err(CliError::Usage(format!(
            "{} holds a private key (PRIVATE+KEY+...): nothing signed; a party is registered with its public key, the vkey of its .pub file",
            file.display()
        )));
    }
    let (bytes, refused) = match crate::issue::prepare(kind, bytes.clone()) {
        Ok((bytes, _)) => (bytes, None),
        Err(
            source @ (PayloadError::InvalidUtf8 { .. }
            | PayloadError::NotJson(_)
            | PayloadError::NotAnObject(_)),
        ) => {
            return Err(CliError::Payload {
                path: file.to_owned(),
                source,
            });
        }
        Err(e) => {
            let hint = crate::issue::type_hint(kind, &bytes, &e);
            (bytes, Some(format!("{e}{hint}")))
        }
    };
    let env = Envelope::sign(kind.media_type(), bytes, &key)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(Signed {
        envelope: env.to_json(),
        refused,
    })
}

/// `audit --data DIR`: audits a local store.
pub fn audit_data(
    dir: &Path,
    log_key: Option<&Path>,
    progress: impl FnMut(u64, u64),
) -> Result<AuditReport, CliError> {
    let key = log_key.map(keyfile::read_public).transpose()?;
    audit_dir(dir, key.as_ref(), progress)
}

/// Options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeCommand {
    /// The data directory (default `./data`).
    pub data: PathBuf,
    /// The log key file (default `keys/log.key`; created on an empty directory when missing).
    pub log_key: PathBuf,
    /// The listen address (default `127.0.0.1:8080`).
    pub listen: String,
    /// The base URL of QR links (default `http://<the address actually bound>`).
    pub base_url: Option<String>,
    /// Load the demo data set of `fixtures/demo/` (signed with the demo keys of `keys/`).
    pub demo: bool,
    /// Where the demo data set and default keys live (the project directory).
    pub project_dir: PathBuf,
    /// Witnesses to ask for cosignatures, each `VKEY@URL`.
    pub witnesses: Vec<String>,
    /// How long answers wait for the witnesses' cosignatures of a newer checkpoint.
    pub witness_wait: std::time::Duration,
    /// How many witnesses must cosign a checkpoint before answers are made against it
    /// (`None`: all of them).
    pub witness_quorum: Option<usize>,
    /// How many connections may be open, and how long a request's headers may take.
    pub connections: crate::server::ConnectionLimits,
}

/// The default origin of a ledger created by `serve` on an empty directory.
pub const DEFAULT_ORIGIN: &str = crate::trust::DEMO_ORIGIN;

/// Opens the ledger in `data`, or creates it with the default keys of `keys/` when the
/// directory holds none (SPEC §7 `serve`). Returns the ledger and lines to print.
pub fn open_or_init(
    cmd: &ServeCommand,
    config: LedgerConfig,
) -> Result<(Ledger, Vec<String>), CliError> {
    let mut said = Vec::new();
    // The demo data set is read first: without it nothing is created (no keys, no ledger).
    let demo = cmd
        .demo
        .then(|| demo_data_set(&cmd.project_dir))
        .transpose()?;
    let initialized = cmd.data.exists() && Store::open(&cmd.data)?.log_key()?.is_some();
    let ledger = if initialized {
        let key = keyfile::read_private(&cmd.log_key)?;
        Ledger::open(&cmd.data, key, config)?
    } else {
        let keys = cmd.project_dir.join("keys");
        let origin = if cmd.log_key.exists() {
            keyfile::read_private(&cmd.log_key)?.name().to_owned()
        } else {
            DEFAULT_ORIGIN.to_owned()
        };
        let opts = InitOptions {
            data: cmd.data.clone(),
            origin: origin.clone(),
            log_key: cmd.log_key.clone(),
            operator_key: keys.join("operator.key"),
            operator_name: Some(default_operator_name(&origin)),
            operator: OperatorDetails {
                display_name: Some("Ledger operator".into()),
                country: None,
            },
        };
        let (ledger, msg) = init(&opts, config)?;
        said.push(msg);
        ledger
    };
    // The demo keys are read once the ledger exists: `init` creates a missing operator key.
    if let Some(jsonl) = demo {
        let keys = keyfile::read_dir_keys(&cmd.project_dir.join("keys"))?;
        let report = crate::demo::load(&ledger, &jsonl, &keys)
            .map_err(|e| CliError::Usage(format!("demo data set: {e}")))?;
        said.push(format!(
            "demo data set: {} entries logged, {} already there ({} certificates)",
            report.logged,
            report.existing,
            report.certificates.len()
        ));
        said.push(demo_tour(&ledger, cmd, &report.certificates)?);
    }
    Ok((ledger, said))
}

/// The demo data set, `fixtures/demo/demo.jsonl` under the project directory.
fn demo_data_set(project_dir: &Path) -> Result<String, CliError> {
    let path = project_dir.join("fixtures/demo/demo.jsonl");
    let jsonl = std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CliError::Usage(format!(
                "--demo: {} not found: the demo data set is part of the project; run `serve --demo` from the repository's root directory",
                path.display()
            ))
        } else {
            CliError::Io {
                path: path.clone(),
                source,
            }
        }
    })?;
    Ok(jsonl)
}

/// The demo certificates whose QR labels `serve --demo` writes, with what each shows.
const DEMO_LABELS: [(&str, &str); 3] = [
    ("eng-001", "valid, with a full journey of events"),
    ("eng-002", "superseded by a corrected certificate"),
    ("alt-003", "revoked (recall)"),
];

/// Writes the QR labels of a few demo certificates to `<data>/labels/` and says where to look:
/// the pages to open, the labels, and `verify` and `audit` commands to try.
fn demo_tour(
    ledger: &Ledger,
    cmd: &ServeCommand,
    certificates: &std::collections::HashMap<String, crate::certificate::CertificateId>,
) -> Result<String, CliError> {
    let base = ledger.base_url().unwrap_or("").to_owned();
    let labels = cmd.data.join("labels");
    std::fs::create_dir_all(&labels).map_err(|source| CliError::Io {
        path: labels.clone(),
        source,
    })?;
    let mut lines = vec![format!("try:\n  home page:      {base}/")];
    let mut first_label = None;
    for (label, what) in DEMO_LABELS {
        let Some(id) = certificates.get(label) else {
            continue;
        };
        let view = ledger
            .certificate(id)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let Some(url) = view.qr_url else { continue };
        let png = crate::qr::png(&url, crate::qr::DEFAULT_SIZE)
            .map_err(|e| CliError::Usage(format!("QR label of {label}: {e}")))?;
        let path = labels.join(format!("{label}.png"));
        std::fs::write(&path, png).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        lines.push(format!("  {label}, {what}:"));
        lines.push(format!("    status page:  {url}"));
        lines.push(format!("    QR label:     {}", path.display()));
        lines.push(format!("    JSON:         {base}/api/v1/certificates/{id}"));
        first_label.get_or_insert(path);
    }
    let vkey = format!("{}.pub", cmd.log_key.display());
    if let Some(path) = first_label {
        lines.push(format!(
            "  verify a label offline:  cargo run -q --release -- verify --log-key {vkey} {}",
            path.display()
        ));
        lines.push(format!(
            "  ... and online:          cargo run -q --release -- verify --log-key {vkey} --server {base} {}",
            path.display()
        ));
    }
    lines.push(format!(
        "  audit it over HTTP:      cargo run -q --release -- audit --log-key {vkey} --server {base}"
    ));
    Ok(lines.join("\n"))
}

/// `serve`: opens (or creates) the ledger, loads the demo data set when asked, and serves the
/// HTTP API until Ctrl-C or SIGTERM; then stops the sequencer and flushes.
pub fn serve(cmd: ServeCommand) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: PathBuf::from(&cmd.listen),
        source,
    };
    let witnesses = cmd
        .witnesses
        .iter()
        .map(|w| crate::witnessing::WitnessConfig::parse(w))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::Usage)?;
    for (i, w) in witnesses.iter().enumerate() {
        if witnesses[..i].iter().any(|o| o.key == w.key) {
            return Err(CliError::Usage(format!(
                "--witness: {} is given twice",
                w.key.to_vkey()
            )));
        }
    }
    // A log cosigning its own checkpoints proves nothing: its key is no witness's.
    if !witnesses.is_empty() && cmd.log_key.is_file() {
        let log = keyfile::read_private(&cmd.log_key)?.public().clone();
        if let Some(w) = witnesses.iter().find(|w| w.key.same_key_as(&log)) {
            return Err(CliError::Usage(format!(
                "--witness {}: that is the log's own key ({}): a witness is an independent party with its own key",
                w.url,
                cmd.log_key.display()
            )));
        }
    }
    match cmd.witness_quorum {
        None => {}
        Some(_) if witnesses.is_empty() => {
            return Err(CliError::Usage(
                "--witness-quorum: give the witnesses with --witness".into(),
            ));
        }
        Some(k) if k == 0 || k > witnesses.len() => {
            return Err(CliError::Usage(format!(
                "--witness-quorum {k}: must be 1 to {}, the number of witnesses given",
                witnesses.len()
            )));
        }
        Some(_) => {}
    }
    let (std_listener, base_url) = bind(&cmd.listen, cmd.base_url.as_ref())?;
    let config = LedgerConfig {
        base_url: Some(base_url),
        ..LedgerConfig::default()
    };
    let (ledger, said) = open_or_init(&cmd, config)?;
    let rt = tokio::runtime::Runtime::new().map_err(io)?;
    let ledger = std::sync::Arc::new(ledger);
    let result = rt.block_on(async {
        let stop = shutdown_signal();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        for line in &said {
            println!("{line}");
        }
        println!(
            "serving {} on http://{} (Ctrl-C to stop)",
            ledger.origin(),
            listener.local_addr()?
        );
        for w in &witnesses {
            println!("asking witness {} at {}", w.key.name(), w.url);
        }
        let opts = crate::api::ServeOptions {
            witnesses,
            witness_wait: cmd.witness_wait,
            witness_quorum: cmd.witness_quorum,
            connections: cmd.connections,
            ..crate::api::ServeOptions::default()
        };
        Ok(serve_until_stopped(listener, ledger, opts, stop).await)
    });
    result.map_err(io)?.map_err(io)??;
    println!("stopped; everything logged is flushed");
    Ok(())
}

/// Serves `ledger` until Ctrl-C or SIGTERM, then closes it (flushing): the server's outcome,
/// then the close's.
async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    ledger: std::sync::Arc<Ledger>,
    opts: crate::api::ServeOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Result<(), StoreError>, std::io::Error> {
    let served = crate::api::serve(listener, ledger.clone(), opts, stop).await;
    let closed = crate::api::close_ledger(ledger, std::time::Duration::from_secs(10)).await;
    served.map(|()| closed)
}

/// Binds `listen` for a server (before the ledger opens, so that a default base URL names
/// the port actually bound, `:0` too): the listener and the base URL of its QR links.
fn bind(
    listen: &str,
    base_url: Option<&String>,
) -> Result<(std::net::TcpListener, String), CliError> {
    let io = |source| CliError::Io {
        path: PathBuf::from(listen),
        source,
    };
    if let Some(b) = base_url {
        crate::seal::check_base_url(b).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let std_listener = std::net::TcpListener::bind(listen).map_err(io)?;
    std_listener.set_nonblocking(true).map_err(io)?;
    let local = std_listener.local_addr().map_err(io)?;
    let base = base_url
        .cloned()
        .unwrap_or_else(|| format!("http://{local}"));
    Ok((std_listener, base))
}

/// Options of `witness`.
#[derive(Debug, Clone)]
pub struct WitnessCommand {
    /// The witness's state directory (sled).
    pub data: PathBuf,
    /// The witness's private key file.
    pub key: PathBuf,
    /// The log keys to watch: vkeys, or files holding them.
    pub logs: Vec<String>,
    /// The listen address.
    pub listen: String,
    /// How many connections may be open, and how long a request's headers may take.
    pub connections: crate::server::ConnectionLimits,
}

/// `witness`: runs a C2SP tlog-witness for the given logs until Ctrl-C or SIGTERM.
pub fn witness(cmd: WitnessCommand) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: PathBuf::from(&cmd.listen),
        source,
    };
    let key = keyfile::read_private(&cmd.key)?;
    let mut logs = Vec::new();
    for arg in &cmd.logs {
        logs.push(log_key_arg(arg)?);
    }
    let std_listener = std::net::TcpListener::bind(&cmd.listen).map_err(io)?;
    std_listener.set_nonblocking(true).map_err(io)?;
    let w = crate::witness_service::Witness::open(&cmd.data, key, logs)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let w = std::sync::Arc::new(w);
    println!("witness {}", w.cosigner().name());
    println!(
        "cosigner key (give it to the logs and verifiers): {}",
        w.cosigner().to_vkey()
    );
    for log in w.logs() {
        println!("watching {}", log.to_vkey());
    }
    let rt = tokio::runtime::Runtime::new().map_err(io)?;
    rt.block_on(async {
        let stop = shutdown_signal();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        println!(
            "witnessing on http://{} (POST /add-checkpoint; Ctrl-C to stop)",
            listener.local_addr()?
        );
        crate::witness_service::serve(listener, w, cmd.connections, stop).await
    })
    .map_err(io)?;
    println!("stopped");
    Ok(())
}

/// Options of `mirror`.
#[derive(Debug, Clone)]
pub struct MirrorCommand {
    /// The followed ledger's base URL.
    pub from: String,
    /// The followed log's key: a vkey, or a file holding it.
    pub log_key: String,
    /// The mirror's data directory (sled; created if missing).
    pub data: PathBuf,
    /// The listen address.
    pub listen: String,
    /// The base URL of the QR links it serves (default `http://<the address bound>`).
    pub base_url: Option<String>,
    /// The pause between rounds.
    pub interval: std::time::Duration,
    /// Most entries per step.
    pub step_entries: u64,
    /// Follow again after an earlier stop (its record is cleared).
    pub resume: bool,
    /// How many connections may be open, and how long a request's headers may take.
    pub connections: crate::server::ConnectionLimits,
}

/// `mirror`: follows another ledger (SPEC §8), verifying everything it fetches, and serves the
/// same read API from what it verified, until Ctrl-C or SIGTERM.
pub fn mirror(cmd: MirrorCommand) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: PathBuf::from(&cmd.listen),
        source,
    };
    let key = log_key_arg(&cmd.log_key)?;
    crate::client::Client::new(&cmd.from).map_err(|e| CliError::Usage(e.to_string()))?;
    let (std_listener, base_url) = bind(&cmd.listen, cmd.base_url.as_ref())?;
    let config = LedgerConfig {
        base_url: Some(base_url),
        ..LedgerConfig::default()
    };
    let ledger = std::sync::Arc::new(Ledger::open_mirror(&cmd.data, key, config)?);
    if cmd.resume
        && let Some(reason) =
            crate::mirroring::resume(&ledger).map_err(|e| CliError::Usage(e.to_string()))?
    {
        println!("resuming after an earlier stop: {reason}");
    }
    let rt = tokio::runtime::Runtime::new().map_err(io)?;
    let result = rt.block_on(async {
        let stop = shutdown_signal();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        println!(
            "mirroring {} from {} ({} entries verified so far)",
            ledger.origin(),
            cmd.from,
            ledger.head().size
        );
        println!(
            "serving the mirror on http://{} (read-only; Ctrl-C to stop)",
            listener.local_addr()?
        );
        let opts = crate::api::ServeOptions {
            mirror: Some(crate::mirroring::FollowConfig {
                upstream: cmd.from.clone(),
                interval: cmd.interval,
                step_entries: cmd.step_entries,
            }),
            connections: cmd.connections,
            ..crate::api::ServeOptions::default()
        };
        Ok(serve_until_stopped(listener, ledger, opts, stop).await)
    });
    result.map_err(io)?.map_err(io)??;
    println!("stopped; everything verified is flushed");
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a server calls it before it says it is serving, so that a signal sent as soon
/// as it says so is not lost (without a handler, SIGTERM ends the process at once, without
/// closing the ledger).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What a command that ran to the end found: SPEC §7's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid / ok: exit 0.
    Ok,
    /// Checked and not valid (refused, bad signature, tampered): exit 1.
    NotValid,
    /// The work could not be completed (network, server or file failures): exit 2.
    Incomplete,
}

impl Verdict {
    /// SPEC §7 exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::NotValid => 1,
            Verdict::Incomplete => 2,
        }
    }
}

/// Reads the one log key a command pins (`submit`, `issue`, `audit`): the `--log-key` argument
/// as [`crate::trust::log_key_arg`] reads it (a vkey, or a `.pub` or trust file), which must
/// name exactly one key.
pub fn log_key_arg(arg: &str) -> Result<PublicKey, CliError> {
    let keys = crate::trust::log_key_arg(arg).map_err(|e| CliError::Usage(e.to_string()))?;
    match keys.keys() {
        [key] => Ok(key.clone()),
        many => Err(CliError::Usage(format!(
            "--log-key {arg:?} holds {} keys; give the one log key to pin",
            many.len()
        ))),
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{eta}} left) {{msg}}"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn client(server: &str) -> Result<Client, CliError> {
    Client::new(server).map_err(|e| CliError::Usage(e.to_string()))
}

/// Options of `submit`.
#[derive(Debug, Clone)]
pub struct SubmitCommand {
    /// The ledger's base URL.
    pub server: String,
    /// The envelope file (`-`: standard input).
    pub envelope: PathBuf,
    /// The pinned log key: verify the receipt under it.
    pub log_key: Option<String>,
    /// Print the server's JSON answer.
    pub json: bool,
}

/// `submit`: posts an envelope and prints the answer; with a log key, verifies the receipt
/// (checkpoint signature, inclusion proof, the logged entry, the seal) before saying OK.
pub fn submit(cmd: &SubmitCommand) -> Result<Verdict, CliError> {
    let log_key = cmd.log_key.as_deref().map(log_key_arg).transpose()?;
    let bytes = if cmd.envelope.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map_err(|source| {
            CliError::Io {
                path: "standard input".into(),
                source,
            }
        })?;
        b
    } else {
        read(&cmd.envelope)?
    };
    let client = client(&cmd.server)?;
    let answer = match client.submit(&bytes) {
        Ok(a) => a,
        Err(ClientError::Status {
            status,
            title,
            detail,
            problem,
            ..
        }) if (400..500).contains(&status) => {
            if cmd.json {
                let p = problem.map_or_else(
                    || serde_json::json!({"status": status, "title": title, "detail": detail}),
                    |p| *p,
                );
                println!("{p}");
            }
            eprintln!(
                "REFUSED by the ledger: HTTP {status} {title}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            );
            return Ok(Verdict::NotValid);
        }
        Err(e) => return Err(CliError::Client(e)),
    };
    if cmd.json {
        println!("{}", answer.body);
    }
    let receipt = match RemoteReceipt::from_json(&answer.body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("RECEIPT NOT VALID: {e}");
            return Ok(Verdict::NotValid);
        }
    };
    let mut checked = None;
    if let Some(key) = &log_key {
        let parsed = Envelope::parse(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|env| {
                payload::parse(&env.payload_type, &env.payload)
                    .map(|p| (env, p))
                    .map_err(|e| e.to_string())
            });
        let result = parsed
            .map_err(crate::issue::ReceiptCheckError::Invalid)
            .and_then(|(env, p)| crate::issue::check_receipt(&client, &receipt, key, &env, &p));
        match result {
            Ok(v) => checked = Some(v),
            // Nothing was checked: an I/O failure (exit 2), not a verdict.
            Err(crate::issue::ReceiptCheckError::Unreachable(e)) => {
                return Err(CliError::Client(e));
            }
            Err(e) => {
                eprintln!("RECEIPT NOT VALID under the pinned log key {key}: {e}");
                return Ok(Verdict::NotValid);
            }
        }
    }
    if !cmd.json {
        let head = if answer.status == 201 {
            format!("logged: new entry {}", receipt.index)
        } else {
            format!(
                "already logged: entry {} (the existing entry, not a copy)",
                receipt.index
            )
        };
        println!("{head}");
        if let Some(id) = &receipt.certificate_id {
            println!("certificate ID: {id}");
        }
        if let Some(url) = &receipt.qr_url {
            println!("QR URL: {url}");
        }
        println!("integrated time: {}", receipt.integrated_time);
        println!(
            "leaf hash: {}\ntree size: {} (root {})",
            hex::encode(receipt.leaf_hash),
            receipt.inclusion_proof.tree_size,
            hex::encode(receipt.inclusion_proof.root)
        );
        match (&checked, &log_key) {
            (Some(v), Some(key)) => println!(
                "receipt verified under the pinned log key {key}: checkpoint of {} signed, entry included, entry holds this envelope{}",
                v.checkpoint.origin,
                if v.seal.is_some() { ", seal valid" } else { "" }
            ),
            _ => println!("receipt not verified: give --log-key to check it"),
        }
    }
    // Logged, but not what the submitter wants in force: say so, and do not exit 0.
    if let Some(why) = receipt.not_in_force() {
        eprintln!(
            "NOT IN FORCE: entry {} holds this envelope, but {why}",
            receipt.index
        );
        return Ok(Verdict::NotValid);
    }
    Ok(Verdict::Ok)
}

/// Options of `issue`.
#[derive(Debug, Clone)]
pub struct IssueCommand {
    /// The signer's private key file.
    pub key: PathBuf,
    /// The ledger's base URL.
    pub server: String,
    /// What the payloads are.
    pub kind: PayloadType,
    /// Inputs: payload files, directories of `*.json`, `*.jsonl` files.
    pub inputs: Vec<PathBuf>,
    /// Where to write QR PNGs and `index.csv`.
    pub qr_dir: Option<PathBuf>,
    /// QR image side in pixels.
    pub qr_size: u32,
    /// The pinned log key: verify every receipt under it.
    pub log_key: Option<String>,
    /// Parallel connections.
    pub jobs: usize,
    /// Print the summary as JSON.
    pub json: bool,
}

/// `issue`: signs and submits every payload of the inputs, then prints a summary.
pub fn issue(cmd: &IssueCommand) -> Result<Verdict, CliError> {
    if cmd.jobs == 0 || cmd.jobs > crate::issue::MAX_JOBS {
        return Err(CliError::Usage(format!(
            "--jobs must be 1 to {}",
            crate::issue::MAX_JOBS
        )));
    }
    if cmd.qr_dir.is_some() && cmd.kind != PayloadType::Certificate {
        return Err(CliError::Usage(
            "--qr-dir is for certificates: only they have QR codes".into(),
        ));
    }
    if !(crate::qr::MIN_SIZE..=crate::qr::MAX_SIZE).contains(&cmd.qr_size) {
        return Err(CliError::Usage(format!(
            "--qr-size must be {} to {} pixels",
            crate::qr::MIN_SIZE,
            crate::qr::MAX_SIZE
        )));
    }
    let log_key = cmd.log_key.as_deref().map(log_key_arg).transpose()?;
    let key = keyfile::read_private(&cmd.key)?;
    let client = client(&cmd.server)?;
    let items = crate::issue::read_inputs(&cmd.inputs)?;
    let opts = crate::issue::IssueOptions {
        kind: cmd.kind,
        jobs: cmd.jobs,
        log_key,
        qr_dir: cmd.qr_dir.clone(),
        qr_size: cmd.qr_size,
    };
    let bar = progress_bar(items.len() as u64, "issuing");
    let summary = crate::issue::issue(&client, &key, &items, &opts, &|r| {
        if r.status != crate::issue::Status::Logged
            && r.status != crate::issue::Status::AlreadyLogged
        {
            bar.set_message(format!("{} {:?}", r.source, r.status));
        }
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if cmd.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print!("{}", issue_text(&summary, &cmd.server));
    }
    Ok(match summary.exit_code() {
        0 => Verdict::Ok,
        1 => Verdict::NotValid,
        _ => Verdict::Incomplete,
    })
}

/// Up to this many logged payloads, the human summary of `issue` lists each one.
const ISSUE_LIST_MAX: usize = 20;

/// The human summary of an `issue` run.
fn issue_text(s: &crate::issue::IssueSummary, server: &str) -> String {
    use crate::issue::Status;
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "issued {} payload(s) to {server}: {} logged, {} already logged, {} refused",
        s.total, s.logged, s.already_logged, s.refused
    );
    if s.receipt_invalid > 0 {
        let _ = writeln!(
            out,
            "{} receipt(s) NOT VALID under the pinned log key",
            s.receipt_invalid
        );
    }
    if s.failed + s.not_sent > 0 {
        let _ = writeln!(
            out,
            "{} failed, {} not sent: run the same command again to finish (already logged payloads are answered as such)",
            s.failed, s.not_sent
        );
    }
    // A few logged items are listed one by one: issuing one certificate should show its ID
    // and entry without a detour through --json or index.csv.
    let logged: Vec<_> = s
        .items
        .iter()
        .filter(|r| matches!(r.status, Status::Logged | Status::AlreadyLogged))
        .collect();
    if !logged.is_empty() && logged.len() <= ISSUE_LIST_MAX {
        for r in logged {
            let what = if r.status == Status::Logged {
                "logged"
            } else {
                "already logged"
            };
            let _ = write!(out, "  {}: {what}", r.source);
            if let Some(i) = r.index {
                let _ = write!(out, " as entry {i}");
            }
            if let Some(id) = &r.certificate_id {
                let _ = write!(out, ", certificate {id}");
            }
            if let Some(f) = &r.qr_file {
                let _ = write!(out, ", QR {}", f.display());
            }
            let _ = writeln!(out);
        }
    }
    for (status, title) in [
        (Status::Refused, "refused"),
        (Status::ReceiptInvalid, "receipt not valid"),
        (Status::Failed, "failed"),
    ] {
        let these: Vec<_> = s.items.iter().filter(|r| r.status == status).collect();
        if these.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for r in these {
            let _ = writeln!(out, "  {}: {}", r.source, r.reason.as_deref().unwrap_or(""));
        }
    }
    let answered = s
        .items
        .iter()
        .filter(|r| matches!(r.status, Status::Logged | Status::AlreadyLogged))
        .count();
    match (answered, s.receipts_verified) {
        (0, _) => {}
        (n, true) => {
            let _ = writeln!(
                out,
                "{n} receipt(s) verified under the pinned log key (checkpoint, inclusion, entry, seal)"
            );
        }
        (n, false) => {
            let _ = writeln!(
                out,
                "{n} receipt(s) not verified: give --log-key to check them"
            );
        }
    }
    if let Some(index) = &s.qr_index {
        let n = s.items.iter().filter(|r| r.qr_file.is_some()).count();
        let _ = writeln!(out, "{n} QR code(s) written; index: {}", index.display());
    }
    out
}

/// Options of `audit`.
#[derive(Debug, Clone)]
pub struct AuditCommand {
    /// A local ledger's data directory.
    pub data: Option<PathBuf>,
    /// A remote ledger's base URL.
    pub server: Option<String>,
    /// The pinned log key (vkey or file).
    pub log_key: Option<String>,
    /// Parallel connections for `--server`.
    pub jobs: usize,
    /// Print the report as JSON.
    pub json: bool,
    /// The state file of checkpoints seen (the one `verify` keeps): the log, served or on the
    /// data directory, must extend the checkpoint remembered there, and the audited one is
    /// remembered.
    pub state: Option<PathBuf>,
}

/// The warning an audit under the server's own key carries.
pub const UNPINNED_WARNING: &str = "log key not pinned: the checkpoint was verified under the key the server itself names, which shows the log is consistent with itself, not that it is the log you mean; pin the log key with --log-key";

/// `audit --data DIR` or `audit --server URL`: re-checks the whole log and prints the report.
pub fn audit(cmd: &AuditCommand) -> Result<Verdict, CliError> {
    let pinned = cmd.log_key.is_some();
    // With --state: the tree size remembered before this audit (None: the first one).
    let mut history: Option<Option<u64>> = None;
    let (result, warning) = match (&cmd.data, &cmd.server) {
        (Some(dir), None) => {
            let bar = progress_bar(0, "auditing");
            let key = cmd.log_key.as_deref().map(log_key_arg).transpose()?;
            let seen = remembered_size(cmd.state.as_deref(), key.as_ref())?;
            let r = (|| {
                let store = open_data(dir)?;
                let report = audit_store(&store, key.as_ref(), |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .map_err(CliError::AuditFailed)?;
                if let (Some(path), Some(key)) = (&cmd.state, &key) {
                    // The store's nodes were just checked against its entries: the root of a
                    // tree remembered before can be read from them.
                    let prefix_root =
                        match seen.filter(|s| *s <= report.tree_size) {
                            Some(size) => Some(crate::merkle::root(size, &store).map_err(|e| {
                                CliError::AuditFailed(AuditError::Read(e.to_string()))
                            })?),
                            None => None,
                        };
                    let audited = crate::audit::RemoteAudit {
                        report: report.clone(),
                        key: key.clone(),
                        checkpoint: store.checkpoint()?.unwrap_or_default(),
                        prefix_root,
                    };
                    let source = format!("data directory {}", dir.display());
                    audited_history(path, &source, &audited)?;
                    history = Some(seen);
                }
                Ok((report, None))
            })();
            bar.finish_and_clear();
            (r, None)
        }
        (None, Some(server)) => {
            if cmd.jobs == 0 || cmd.jobs > crate::issue::MAX_JOBS {
                return Err(CliError::Usage(format!(
                    "--jobs must be 1 to {}",
                    crate::issue::MAX_JOBS
                )));
            }
            let key = cmd.log_key.as_deref().map(log_key_arg).transpose()?;
            let client = client(server)?;
            let warning = (!pinned).then_some(UNPINNED_WARNING);
            if let Some(w) = warning {
                eprintln!("WARNING: {w}");
            }
            let bar = progress_bar(0, "auditing");
            let seen = remembered_size(cmd.state.as_deref(), key.as_ref())?;
            let r = audit_remote(&client, key.as_ref(), cmd.jobs, seen, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .map_err(CliError::AuditFailed)
            .and_then(|a| {
                if let Some(path) = &cmd.state {
                    audited_history(path, client.base_url(), &a)?;
                    history = Some(seen);
                }
                Ok((a.report, Some(a.key)))
            });
            bar.finish_and_clear();
            (r, warning)
        }
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --data DIR and --server URL".into(),
            ));
        }
    };
    match (result, cmd.json) {
        (Ok((r, key)), true) => {
            let mut v = serde_json::json!({"ok": true, "report": r, "log_key_pinned": pinned});
            if let Some(k) = key {
                v["log_key"] = k.to_vkey().into();
            }
            if let Some(w) = warning {
                v["warning"] = w.into();
            }
            if let (Some(seen), Some(path)) = (history, &cmd.state) {
                v["history"] = serde_json::json!({
                    "state_file": path.display().to_string(),
                    "previous_tree_size": seen,
                });
            }
            println!("{v}");
            Ok(Verdict::Ok)
        }
        (Ok((r, _)), false) => {
            println!(
                "OK: {} entries of {} verified; root {}",
                r.entries,
                r.origin,
                hex::encode(r.root)
            );
            if let Some(n) = r.state_records {
                println!(
                    "   and what the store keeps beside them is what they make: the Merkle nodes proofs are made of, and the {n} state records lookups and the rules answer from"
                );
            }
            if let (Some(seen), Some(path)) = (history, &cmd.state) {
                match seen {
                    Some(size) if size == r.entries => println!(
                        "   and it is the tree of {size} entries remembered in {}",
                        path.display()
                    ),
                    Some(size) => println!(
                        "   and it extends the tree of {size} entries remembered in {} (whose root its first {size} entries give again); this one is remembered now",
                        path.display()
                    ),
                    None => println!(
                        "   first audit of this log with {}: its checkpoint is remembered there, for the next audit or verification to check against",
                        path.display()
                    ),
                }
            }
            if let Some(c) = r.catching_up.as_ref().filter(|c| c.entries > 0) {
                println!(
                    "   and {} more entries this mirror stores while catching up to a tree of {}, each checked (chain, signature, rules, seal); their tree is checked once the mirror holds it whole",
                    c.entries, c.target_size
                );
            }
            if let Some(w) = warning {
                println!("WARNING: {w}");
            }
            Ok(Verdict::Ok)
        }
        (Err(e), true) => {
            let mut v = serde_json::json!({"ok": false, "error": e.to_string(),
                "first_bad_index": match &e { CliError::AuditFailed(a) => a.index(), _ => None },
                "log_key_pinned": pinned});
            if let Some(w) = warning {
                v["warning"] = w.into();
            }
            println!("{v}");
            Err(e)
        }
        (Err(e), false) => Err(e),
    }
}

/// The tree size remembered for the log of `key` in the state file at `path`, from the last
/// audit or verification, to compare the audited log with (`None`: none remembered).
fn remembered_size(path: Option<&Path>, key: Option<&PublicKey>) -> Result<Option<u64>, CliError> {
    match (path, key) {
        (Some(path), Some(k)) => Ok(crate::trust::load_state(path)
            .map_err(|e| CliError::Usage(e.to_string()))?
            .log(k)
            .map(|l| l.tree_size)),
        _ => Ok(None),
    }
}

/// Checks that the audited checkpoint `text` extends the one of the same log remembered in the
/// state file at `path` (a rollback or a fork is [`AuditError::Rewritten`], with both signed
/// checkpoints), then remembers it, as seen at `source` (a server URL, a data directory).
fn audited_history(
    path: &Path,
    source: &str,
    audited: &crate::audit::RemoteAudit,
) -> Result<(), CliError> {
    let (key, text) = (&audited.key, audited.checkpoint.as_str());
    let bad_state = |e: crate::trust::TrustError| CliError::Usage(e.to_string());
    let cp = crate::checkpoint::Checkpoint::open(text, key)
        .map_err(|e| CliError::AuditFailed(AuditError::Checkpoint(e.to_string())))?;
    let state = crate::trust::load_state(path).map_err(bad_state)?;
    let prefix = |_| audited.prefix_root;
    if let Err(problem) = crate::trust::check_extends(&state, key, &cp, prefix) {
        let seen = state.log(key);
        return Err(CliError::AuditFailed(AuditError::Rewritten {
            problem: match seen {
                Some(seen) => format!("{problem}\n{}", seen.rewritten_hint(path)),
                None => problem,
            },
            remembered: seen.map(|l| l.checkpoint.clone()).unwrap_or_default(),
            presented: text.to_owned(),
        }));
    }
    let mut state = crate::trust::load_state(path).map_err(bad_state)?;
    let now = crate::entry::format_time_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    );
    state.remember(key, &cp, text, source, &now);
    crate::trust::save_state(path, &state).map_err(bad_state)
}

/// `audit --data DIR` on a local store, with a key already read.
fn audit_dir(
    dir: &Path,
    key: Option<&PublicKey>,
    progress: impl FnMut(u64, u64),
) -> Result<AuditReport, CliError> {
    let store = open_data(dir)?;
    audit_store(&store, key, progress).map_err(CliError::AuditFailed)
}

/// Opens the store of an existing ledger's data directory, for reading it offline.
fn open_data(dir: &Path) -> Result<Store, CliError> {
    // sled keeps its data in `db`: anything else is not a ledger, and opening it would
    // create one.
    if !dir.join("db").is_file() {
        return Err(CliError::Usage(format!(
            "{} is not the data directory of a ledger",
            dir.display()
        )));
    }
    Ok(Store::open(dir)?)
}

/// `export`: writes the log of `data` as static tlog-tiles files into `out` (SPEC §8),
/// incrementally; returns the line to print.
pub fn export(data: &Path, out: &Path) -> Result<String, CliError> {
    let store = open_data(data)?;
    let r = crate::export::export(&store, out)?;
    let kept = if r.previous_size > 0 {
        format!(
            "; {} tiles of the export at {} entries kept",
            r.kept, r.previous_size
        )
    } else {
        String::new()
    };
    let unsealed = if r.unsealed > 0 {
        format!(
            "\nnote: {} certificate(s) have no seal in the export, so their bundles' seal tiles \
             are left out and a mirror of this copy cannot follow past them (logged before seals \
             were kept, or by a ledger stopped without closing: start it once, which keeps the \
             seals of its last entries, and export again)",
            r.unsealed
        )
    } else {
        String::new()
    };
    Ok(format!(
        "exported the log at {} entries to {}: {} file(s) written{kept}{unsealed}",
        r.size,
        out.display(),
        r.written
    ))
}
