//! The witness service (SPEC §8): C2SP `tlog-witness` over HTTP, `POST /add-checkpoint`, with
//! what it last cosigned of each log kept on sled.
//!
//! A thin edge over [`crate::witness`] (the rules) and [`crate::cosignature`] (the format):
//! one lock holds each request's check, cosignature and durable update together, so that two
//! requests racing with different sizes cannot roll the witness's view of a log back
//! (tlog-witness requires it). The state is flushed before the cosignature is answered.

use crate::checkpoint::Checkpoint;
use crate::cosignature::{self, CosignerKey};
use crate::keys::{PrivateKey, PublicKey};
use crate::witness::{self, AddCheckpoint, Latest, Refusal};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Why the witness's own storage failed.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// sled failed (I/O, or the directory is held by another process).
    #[error("witness storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not have the expected form.
    #[error("witness storage is corrupt: {0}")]
    Corrupt(String),
    /// No log to watch.
    #[error("a witness needs at least one log key to watch (--log VKEY)")]
    NoLogs,
}

/// Why an add-checkpoint request got no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Refused by the rules (4xx).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The witness could not read or write its state (500).
    #[error(transparent)]
    Storage(#[from] WitnessError),
}

/// A running witness: its key, the logs it watches and what it last cosigned of each.
pub struct Witness {
    key: PrivateKey,
    logs: Vec<PublicKey>,
    db: sled::Db,
    lock: Mutex<()>,
}

/// Key prefix of a log's latest cosigned checkpoint: `L` + origin.
const LATEST: u8 = b'L';

impl Witness {
    /// Opens (or creates) the witness's state in `dir`.
    pub fn open(
        dir: &Path,
        key: PrivateKey,
        logs: Vec<PublicKey>,
    ) -> Result<Witness, WitnessError> {
        if logs.is_empty() {
            return Err(WitnessError::NoLogs);
        }
        Ok(Witness {
            key,
            logs,
            db: sled::open(dir)?,
            lock: Mutex::new(()),
        })
    }

    /// The key logs and verifiers check this witness's cosignatures with.
    pub fn cosigner(&self) -> CosignerKey {
        CosignerKey::of(&self.key)
    }

    /// The log keys it watches.
    pub fn logs(&self) -> &[PublicKey] {
        &self.logs
    }

    /// The latest checkpoint it cosigned of `origin`: its size and root, and its text.
    pub fn latest(&self, origin: &str) -> Result<Option<(Latest, String)>, WitnessError> {
        let Some(v) = self.db.get(latest_key(origin))? else {
            return Ok(None);
        };
        let corrupt = || WitnessError::Corrupt(format!("the record of {origin} is damaged"));
        let (size, rest) = v.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (root, text) = rest.split_first_chunk::<32>().ok_or_else(corrupt)?;
        let text = std::str::from_utf8(text).map_err(|_| corrupt())?;
        let latest = Latest {
            size: u64::from_be_bytes(*size),
            root: *root,
        };
        Ok(Some((latest, text.to_owned())))
    }

    /// Handles one `add-checkpoint` body at `now` (POSIX seconds): checks it, cosigns the
    /// checkpoint, and durably remembers it before returning the cosignature line.
    pub fn add_checkpoint(&self, body: &str, now: u64) -> Result<String, AddError> {
        let req = AddCheckpoint::parse(body)?;
        let _held = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The origin a valid checkpoint names is its first line (decide checks it).
        let origin = req.checkpoint.lines().next().unwrap_or_default();
        let latest = self.latest(origin)?.map(|(l, _)| l);
        let decided = witness::decide(&req, &self.logs, latest);
        let cp = match decided {
            Ok(cp) => cp,
            Err(refusal) => {
                if matches!(refusal, Refusal::Fork { .. } | Refusal::BadProof { .. }) {
                    // Signed by the log, yet not consistent with what was cosigned: evidence.
                    tracing::warn!(
                        refusal = %refusal,
                        checkpoint = %req.checkpoint,
                        "a checkpoint signed by the log does not extend the one cosigned"
                    );
                }
                return Err(refusal.into());
            }
        };
        // The cosignature covers the note text exactly as the log signed it.
        let body = crate::note::parse(&req.checkpoint)
            .map_err(|e| Refusal::Malformed(e.to_string()))?
            .text;
        self.remember(&cp, &req.checkpoint)?;
        Ok(cosignature::cosign(&self.key, &body, now).to_line())
    }

    fn remember(&self, cp: &Checkpoint, text: &str) -> Result<(), WitnessError> {
        let mut v = Vec::with_capacity(40 + text.len());
        v.extend_from_slice(&cp.size.to_be_bytes());
        v.extend_from_slice(&cp.root);
        v.extend_from_slice(text.as_bytes());
        self.db.insert(latest_key(&cp.origin), v)?;
        self.db.flush()?;
        Ok(())
    }
}

fn latest_key(origin: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + origin.len());
    k.push(LATEST);
    k.extend_from_slice(origin.as_bytes());
    k
}

/// The witness's HTTP interface: `POST /add-checkpoint` (tlog-witness) and `GET /healthz`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(witness)
}

/// How long a client may take to send its request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn add_checkpoint(
    State(w): State<Arc<Witness>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let text = |status: StatusCode, content_type: &'static str, body: String| {
        let mut r = (status, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let limit = witness::MAX_REQUEST_BYTES;
    let too_large = || {
        let mut r = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain; charset=utf-8",
            format!("an add-checkpoint request is at most {limit} bytes\n"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    // A length announced too large is refused at once, before any of the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            let mut r = text(
                StatusCode::REQUEST_TIMEOUT,
                "text/plain; charset=utf-8",
                format!(
                    "the request body was not received within {} s\n",
                    BODY_TIMEOUT.as_secs()
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        let e = Refusal::Malformed("the body is not UTF-8 text".into());
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let answer = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now)).await;
    match answer {
        Ok(Ok(line)) => text(StatusCode::OK, "text/plain; charset=utf-8", line),
        Ok(Err(AddError::Refused(r))) => {
            let status =
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match r.latest_size() {
                Some(size) => text(status, witness::SIZE_MEDIA_TYPE, format!("{size}\n")),
                None => text(status, "text/plain; charset=utf-8", format!("{r}\n")),
            }
        }
        Ok(Err(AddError::Storage(e))) => {
            tracing::error!(error = %e, "witness storage failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            )
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("the request failed: {e}\n"),
        ),
    }
}

/// How long a stopping witness lets requests in flight finish.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the witness on `listener` within `limits` until `shutdown` completes (requests in
/// flight get [`SHUTDOWN_GRACE`]), then flushes its state.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    limits: crate::server::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stats = Arc::default();
    let app = router(witness.clone());
    crate::server::serve(listener, app, limits, stats, SHUTDOWN_GRACE, shutdown).await?;
    witness
        .db
        .flush()
        .map(|_| ())
        .map_err(std::io::Error::other)
}
