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
}

impl CliError {
    /// SPEC §7 exit code: 1 when something was checked and is not valid, else 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::AuditFailed(AuditError::Read(_)) => 2,
            CliError::AuditFailed(_) => 1,
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
    if !dir.exists() {
        return Err(CliError::Usage(format!(
            "{} does not exist: give the data directory of a ledger",
            dir.display()
        )));
    }
    let key = log_key.map(keyfile::read_public).transpose()?;
    let store = Store::open(dir)?;
    audit_store(&store, key.as_ref(), progress).map_err(CliError::AuditFailed)
}
