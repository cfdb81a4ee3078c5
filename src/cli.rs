//! The command-line commands of SPEC §7, as library functions over the core.
//!
//! `main.rs` only parses arguments and calls these; each returns what to print and a typed
//! error whose [`CliError::exit_code`] is SPEC §7's: 0 ok, 1 checked and not valid,
//! 2 usage or I/O error.

use crate::audit::{AuditError, AuditReport, audit_store};
use crate::dsse::Envelope;
use crate::keyfile::{self, KeyFileError};
use crate::keys::{KeyError, PrivateKey};
use crate::ledger::{Ledger, LedgerConfig, LedgerError, OperatorDetails};
use crate::payload::{self, PayloadError, PayloadType};
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
    /// The audit found a bad log (exit code 1).
    #[error("AUDIT FAILED: {0}")]
    AuditFailed(AuditError),
    /// Wrong usage.
    #[error("{0}")]
    Usage(String),
    /// `verify` could not be carried out (exit code 2).
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// `verify` checked the target and it is not valid (exit code 1); the report is printed.
    #[error("INVALID: {0}")]
    NotValid(String),
}

impl CliError {
    /// SPEC §7 exit code: 1 when something was checked and is not valid, else 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::AuditFailed(AuditError::Read(_)) => 2,
            CliError::AuditFailed(_) => 1,
            CliError::NotValid(_) => 1,
            _ => 2,
        }
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

/// `sign`: signs a payload file as a DSSE envelope, after checking it as the ledger would.
pub fn sign(key: &Path, kind: PayloadType, file: &Path) -> Result<String, CliError> {
    let key = keyfile::read_private(key)?;
    let bytes = read(file)?;
    payload::parse(kind.media_type(), &bytes).map_err(|source| CliError::Payload {
        path: file.to_owned(),
        source,
    })?;
    let env = Envelope::sign(kind.media_type(), bytes, &key)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(env.to_json())
}

/// `audit --data DIR`: audits a local store.
pub fn audit_data(
    dir: &Path,
    log_key: Option<&Path>,
    progress: impl FnMut(u64, u64),
) -> Result<AuditReport, CliError> {
    // sled keeps its data in `db`: anything else is not a ledger, and opening it would
    // create one.
    if !dir.join("db").is_file() {
        return Err(CliError::Usage(format!(
            "{} is not the data directory of a ledger",
            dir.display()
        )));
    }
    let key = log_key.map(keyfile::read_public).transpose()?;
    let store = Store::open(dir)?;
    audit_store(&store, key.as_ref(), progress).map_err(CliError::AuditFailed)
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
}

/// The default origin of a ledger created by `serve` on an empty directory.
pub const DEFAULT_ORIGIN: &str = "reman-ledger.example/log";

/// Opens the ledger in `data`, or creates it with the default keys of `keys/` when the
/// directory holds none (SPEC §7 `serve`). Returns the ledger and lines to print.
pub fn open_or_init(
    cmd: &ServeCommand,
    config: LedgerConfig,
) -> Result<(Ledger, Vec<String>), CliError> {
    let mut said = Vec::new();
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
    if cmd.demo {
        let path = cmd.project_dir.join("fixtures/demo/demo.jsonl");
        let jsonl = std::fs::read_to_string(&path).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        let keys = keyfile::read_dir_keys(&cmd.project_dir.join("keys"))?;
        let report = crate::demo::load(&ledger, &jsonl, &keys)
            .map_err(|e| CliError::Usage(format!("demo data set: {e}")))?;
        said.push(format!(
            "demo data set: {} entries logged, {} already there ({} certificates)",
            report.logged,
            report.existing,
            report.certificates.len()
        ));
        if let Some(id) = report.certificates.get("eng-001") {
            let base = ledger.base_url().unwrap_or("").to_owned();
            let view = ledger
                .certificate(id)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            said.push(format!(
                "try:\n  home page:    {base}/\n  status page:  {}\n  QR code:      {base}/api/v1/certificates/{id}/qr.png\n  JSON:         {base}/api/v1/certificates/{id}\n  audit:        cargo run --release -- audit --data {}",
                view.qr_url.unwrap_or_default(),
                cmd.data.display()
            ));
        }
    }
    Ok((ledger, said))
}

/// `serve`: opens (or creates) the ledger, loads the demo data set when asked, and serves the
/// HTTP API until Ctrl-C or SIGTERM; then stops the sequencer and flushes.
pub fn serve(cmd: ServeCommand) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: PathBuf::from(&cmd.listen),
        source,
    };
    if let Some(b) = &cmd.base_url {
        crate::seal::check_base_url(b).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    // Bind first, so that the default base URL names the port actually bound (`:0` too).
    let std_listener = std::net::TcpListener::bind(&cmd.listen).map_err(io)?;
    std_listener.set_nonblocking(true).map_err(io)?;
    let local = std_listener.local_addr().map_err(io)?;
    let config = LedgerConfig {
        base_url: Some(
            cmd.base_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}")),
        ),
        ..LedgerConfig::default()
    };
    let (ledger, said) = open_or_init(&cmd, config)?;
    let rt = tokio::runtime::Runtime::new().map_err(io)?;
    let ledger = std::sync::Arc::new(ledger);
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        for line in &said {
            println!("{line}");
        }
        println!(
            "serving {} on http://{} (Ctrl-C to stop)",
            ledger.origin(),
            listener.local_addr()?
        );
        let served = crate::api::serve(
            listener,
            ledger.clone(),
            crate::api::ServeOptions::default(),
            shutdown_signal(),
        )
        .await;
        let closed = crate::api::close_ledger(ledger, std::time::Duration::from_secs(10)).await;
        Ok::<_, std::io::Error>((served, closed))
    });
    let (served, closed) = result.map_err(io)?;
    served.map_err(io)?;
    closed?;
    println!("stopped; everything logged is flushed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
