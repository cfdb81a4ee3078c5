//! A blocking HTTP client of a remote ledger's SPEC §6 API, for the command line
//! (`submit`, `issue`, `verify --server`, `audit --server`).
//!
//! It only moves bytes and decodes the wire formats: nothing it returns is trusted. Callers
//! verify what matters (signatures, checkpoints, proofs) with the pure core against keys they
//! pinned themselves.

use crate::merkle::Hash;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long one request may take, connect to last byte, before it fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a kept-alive connection waits idle to be reused: under the header timeout
/// of a `reman-ledger` server (10 s by default, [`crate::server::ConnectionLimits`]).
pub const IDLE_REUSE: Duration = Duration::from_secs(5);

/// The largest answer body the client reads: the largest entry bundle a log may serve (256
/// entries of up to 65,535 bytes, each with its 2-byte length) fits; a certificate view with
/// many events or a resolver page stays far below it, and a hostile server cannot exhaust
/// memory.
pub const MAX_ANSWER_BYTES: u64 = 17 * 1024 * 1024;

/// Why a request to the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error("server URL {url:?} is not usable: {reason} (expected e.g. http://127.0.0.1:8080)")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server could not be reached or the transfer failed.
    #[error("{url}: {source}")]
    Transport {
        /// The request URL.
        url: String,
        /// The transport error.
        source: Box<ureq::Error>,
    },
    /// The server answered with an error (RFC 9457 problem details when it gave them).
    #[error("{url}: HTTP {status} {title}{}", detail_suffix(.detail))]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The problem's title (or the status reason).
        title: String,
        /// The problem's detail, if any.
        detail: String,
        /// The whole problem object, if the answer was one.
        problem: Option<Box<Value>>,
    },
    /// The answer did not have the shape SPEC §6 gives it.
    #[error("{url}: unexpected answer: {reason}")]
    BadAnswer {
        /// The request URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server's answers, all together, took longer than the client's time limit (see
    /// [`Client::with_time_limit`]): a slow or stalling server cannot keep a check from ending.
    #[error(
        "{url}: the server's answers took more than {} s in all, the time limit of this check: it is too slow or stalling; try again later, or give a longer time limit",
        .limit.as_secs()
    )]
    TimeLimit {
        /// The request that was not made or not finished in time.
        url: String,
        /// The time limit.
        limit: Duration,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl ClientError {
    /// The HTTP status of a refusal, if the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What `GET /api/v1/log` says a verifier should pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    /// The log's origin (the log key's name).
    pub origin: String,
    /// The log key as a vkey (unverified: compare it with a pinned key).
    pub log_key: String,
    /// The tree size of the latest checkpoint.
    pub tree_size: u64,
    /// The root hash of that tree.
    pub root: Hash,
}

/// One entry as `GET /api/v1/entries/{index}` serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The index the server claims.
    pub index: u64,
    /// The exact entry bytes (what is hashed).
    pub leaf: Vec<u8>,
    /// The leaf hash the server claims (recompute it from `leaf`).
    pub leaf_hash: Hash,
}

/// The answer to a submission: the HTTP status (201 new, 200 already logged) and the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitAnswer {
    /// 201 when newly logged, 200 when it was logged before.
    pub status: u16,
    /// The receipt (SPEC §6 `POST /api/v1/entries`).
    pub body: Value,
}

/// A client of one ledger server, keeping connections alive between requests.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// Each request's own limit.
    timeout: Duration,
    /// When every request must have ended, and the limit that set it.
    deadline: Option<(Instant, Duration)>,
}

impl Client {
    /// A client of the ledger at `base_url` (`http://` or `https://`, no query or fragment).
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// As [`Client::new`], with a per-request time limit.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Client, ClientError> {
        let base = normalize_base(base_url)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Servers close idle connections (ours after 10 s): a connection is not reused
            // after 5 s idle, so that a request does not race the server's close.
            .max_idle_age(IDLE_REUSE)
            .http_status_as_error(false)
            .user_agent(concat!("reman-ledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            timeout,
            deadline: None,
        })
    }

    /// This client, with a limit on the time all its requests from now on may take together:
    /// the number of requests a check makes follows the server's answers (one per event of a
    /// certificate), so a per-request limit alone would let a slow server stall it for hours.
    pub fn with_time_limit(mut self, limit: Duration) -> Client {
        // A limit too far to be a time on this clock is no limit.
        self.deadline = Instant::now().checked_add(limit).map(|at| (at, limit));
        self
    }

    /// The time limit of the next request: its own, or what is left of the overall limit.
    fn request_timeout(&self, url: &str) -> Result<Duration, ClientError> {
        let Some((deadline, limit)) = self.deadline else {
            return Ok(self.timeout);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::TimeLimit {
                url: url.to_owned(),
                limit,
            });
        }
        Ok(left.min(self.timeout))
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1/log`.
    pub fn log(&self) -> Result<LogInfo, ClientError> {
        let url = self.url("/api/v1/log");
        let v = self.get_json(&url)?;
        Ok(LogInfo {
            origin: str_field(&url, &v, "origin")?.to_owned(),
            log_key: str_field(&url, &v, "log_key")?.to_owned(),
            tree_size: u64_field(&url, &v, "tree_size")?,
            root: hash_field(&url, &v, "root")?,
        })
    }

    /// `GET /api/v1/checkpoint`: the latest signed checkpoint text (unverified).
    pub fn checkpoint(&self) -> Result<String, ClientError> {
        let url = self.url("/api/v1/checkpoint");
        let body = self.get(&url, "text/plain")?;
        String::from_utf8(body).map_err(|_| bad(&url, "the checkpoint is not UTF-8"))
    }

    /// `GET /api/v1/entries/{index}`.
    pub fn entry(&self, index: u64) -> Result<RemoteEntry, ClientError> {
        let url = self.url(&format!("/api/v1/entries/{index}"));
        let v = self.get_json(&url)?;
        let leaf = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            str_field(&url, &v, "leaf")?,
        )
        .map_err(|_| bad(&url, "\"leaf\" is not base64"))?;
        Ok(RemoteEntry {
            index: u64_field(&url, &v, "index")?,
            leaf,
            leaf_hash: hash_field(&url, &v, "leaf_hash")?,
        })
    }

    /// `GET /api/v1/certificates/{id}`: the certificate view (unverified JSON).
    pub fn certificate(&self, id: &str) -> Result<Value, ClientError> {
        self.get_json(&self.url(&format!("/api/v1/certificates/{id}")))
    }

    /// `GET /api/v1/certificates/{id}/qr.png`: the QR image.
    pub fn certificate_qr_png(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        self.get(
            &self.url(&format!("/api/v1/certificates/{id}/qr.png")),
            "image/png",
        )
    }

    /// `GET /api/v1/products/{gtin}/{serial}`: the unit's certificates, newest first.
    pub fn product(&self, gtin: &str, serial: &str) -> Result<Value, ClientError> {
        self.get_json(&self.url(&format!(
            "/api/v1/products/{}/{}",
            crate::seal::percent_encode(gtin),
            crate::seal::percent_encode(serial)
        )))
    }

    /// `GET /api/v1/parties/{name}`.
    pub fn party(&self, name: &str) -> Result<Value, ClientError> {
        self.get_json(&self.url(&format!(
            "/api/v1/parties/{}",
            crate::seal::percent_encode(name)
        )))
    }

    /// `GET /api/v1/proof/inclusion?index=I&tree_size=N`: the proof's hashes.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ClientError> {
        let url = self.url(&format!(
            "/api/v1/proof/inclusion?index={index}&tree_size={tree_size}"
        ));
        let v = self.get_json(&url)?;
        hashes_field(&url, &v, "proof")
    }

    /// `GET /api/v1/proof/consistency?first=M&second=N`: the proof's hashes.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ClientError> {
        let url = self.url(&format!(
            "/api/v1/proof/consistency?first={first}&second={second}"
        ));
        let v = self.get_json(&url)?;
        hashes_field(&url, &v, "proof")
    }

    /// `POST /api/v1/entries` with an envelope's bytes.
    pub fn submit(&self, envelope: &[u8]) -> Result<SubmitAnswer, ClientError> {
        let url = self.url("/api/v1/entries");
        let timeout = self.request_timeout(&url)?;
        let mut resp = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(envelope)
            .map_err(|e| self.after_deadline(transport(&url, e)))?;
        let status = resp.status().as_u16();
        let body = read_body(&url, &mut resp).map_err(|e| self.after_deadline(e))?;
        if status != 200 && status != 201 {
            return Err(status_error(&url, status, &body));
        }
        let body = serde_json::from_slice(&body)
            .map_err(|e| bad(&url, &format!("the receipt is not JSON: {e}")))?;
        Ok(SubmitAnswer { status, body })
    }

    /// A GET of any path of this server (e.g. a resolver link), answering its body.
    pub fn get_path(&self, path_and_query: &str, accept: &str) -> Result<Vec<u8>, ClientError> {
        self.get(&self.url(path_and_query), accept)
    }

    /// A transfer (request or body) that failed past the overall deadline failed for the time
    /// limit, whatever the transport says.
    fn after_deadline(&self, e: ClientError) -> ClientError {
        match (e, self.deadline) {
            (ClientError::Transport { url, .. }, Some((deadline, limit)))
                if Instant::now() >= deadline =>
            {
                ClientError::TimeLimit { url, limit }
            }
            (e, _) => e,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, url: &str, accept: &str) -> Result<Vec<u8>, ClientError> {
        let timeout = self.request_timeout(url)?;
        let mut resp = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Accept", accept)
            // tlog-tiles: logs (and the CDNs in front of them) may gzip what they serve,
            // negotiated or not; clients "SHOULD include gzip and identity".
            .header("Accept-Encoding", "gzip, identity")
            .call()
            .map_err(|e| self.after_deadline(transport(url, e)))?;
        let status = resp.status().as_u16();
        let encoding = resp
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        let body = read_body(url, &mut resp).map_err(|e| self.after_deadline(e))?;
        let body = match encoding.as_deref() {
            None | Some("" | "identity") => body,
            // An error keeps its status, whatever its body.
            Some(_) if status != 200 => gunzip(url, &body).unwrap_or_default(),
            Some("gzip" | "x-gzip") => gunzip(url, &body)?,
            Some(other) => {
                return Err(bad(
                    url,
                    &format!("its content encoding {other:?} is not gzip or identity"),
                ));
            }
        };
        if status != 200 {
            return Err(status_error(url, status, &body));
        }
        Ok(body)
    }

    fn get_json(&self, url: &str) -> Result<Value, ClientError> {
        let body = self.get(url, "application/json")?;
        serde_json::from_slice(&body).map_err(|e| bad(url, &format!("not JSON: {e}")))
    }
}

/// Checks a server base URL and drops a trailing slash.
fn normalize_base(base_url: &str) -> Result<String, ClientError> {
    let fail = |reason| ClientError::BadUrl {
        url: base_url.to_owned(),
        reason,
    };
    let rest = base_url
        .strip_prefix("http://")
        .or_else(|| base_url.strip_prefix("https://"))
        .ok_or_else(|| fail("it must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(fail("it has no host"));
    }
    if base_url.contains(['?', '#']) || base_url.chars().any(|c| c.is_whitespace()) {
        return Err(fail("it must not contain a query, a fragment or spaces"));
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

fn read_body(
    url: &str,
    resp: &mut ureq::http::Response<ureq::Body>,
) -> Result<Vec<u8>, ClientError> {
    resp.body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| transport(url, e))
}

/// Decodes a gzipped answer, to at most [`MAX_ANSWER_BYTES`]: a few KiB of gzip can
/// unpack to gigabytes.
fn gunzip(url: &str, body: &[u8]) -> Result<Vec<u8>, ClientError> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::GzDecoder::new(body)
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(url, &format!("its gzip encoding does not decode: {e}")))?;
    if out.len() as u64 > MAX_ANSWER_BYTES {
        return Err(bad(
            url,
            &format!("it unpacks to more than {MAX_ANSWER_BYTES} bytes"),
        ));
    }
    Ok(out)
}

fn transport(url: &str, e: ureq::Error) -> ClientError {
    ClientError::Transport {
        url: url.to_owned(),
        source: Box::new(e),
    }
}

fn bad(url: &str, reason: &str) -> ClientError {
    ClientError::BadAnswer {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// An error answer, with the RFC 9457 problem's title and detail when the body is one.
fn status_error(url: &str, status: u16, body: &[u8]) -> ClientError {
    let problem: Option<Value> = serde_json::from_slice(body)
        .ok()
        .filter(|v: &Value| v.is_object());
    let text = |k: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let title = text("title").unwrap_or_else(|| {
        ureq::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error")
            .to_owned()
    });
    ClientError::Status {
        url: url.to_owned(),
        status,
        title,
        detail: text("detail").unwrap_or_default(),
        problem: problem.map(Box::new),
    }
}

fn str_field<'a>(url: &str, v: &'a Value, k: &str) -> Result<&'a str, ClientError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(url, &format!("no string field {k:?}")))
}

fn u64_field(url: &str, v: &Value, k: &str) -> Result<u64, ClientError> {
    v.get(k)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(url, &format!("no integer field {k:?}")))
}

/// A lowercase-hex SHA-256 hash.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).ok()?;
    Some(h)
}

fn hash_field(url: &str, v: &Value, k: &str) -> Result<Hash, ClientError> {
    parse_hash(str_field(url, v, k)?).ok_or_else(|| bad(url, &format!("{k:?} is not a hex hash")))
}

fn hashes_field(url: &str, v: &Value, k: &str) -> Result<Vec<Hash>, ClientError> {
    v.get(k)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(url, &format!("no array field {k:?}")))?
        .iter()
        .map(|h| {
            h.as_str().and_then(parse_hash).ok_or_else(|| {
                bad(
                    url,
                    &format!("{k:?} holds something that is not a hex hash"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_base("https://ledger.example/reman").unwrap(),
            "https://ledger.example/reman"
        );
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://",
            "http:///x",
            "http://a?b",
            "http://a b",
        ] {
            assert!(
                matches!(normalize_base(bad), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn problem_details_become_the_error_message() {
        let e = status_error(
            "http://x/api/v1/entries",
            409,
            br#"{"type":"t","title":"Conflicts with the log","status":409,"detail":"already valid"}"#,
        );
        assert_eq!(e.status(), Some(409));
        assert_eq!(
            e.to_string(),
            "http://x/api/v1/entries: HTTP 409 Conflicts with the log: already valid"
        );
        let e = status_error("http://x/", 502, b"<html>");
        assert_eq!(e.to_string(), "http://x/: HTTP 502 Bad Gateway");
    }
}
