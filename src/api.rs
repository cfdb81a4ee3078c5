//! The HTTP API of SPEC §6: a thin axum layer over [`Ledger`].
//!
//! Handlers only translate: they parse path and query parameters, call the ledger's write
//! ([`Ledger::submit_async`]) or read methods (`crate::query`), and turn the answer into JSON,
//! text or an RFC 9457 problem. Around every request one middleware enforces the request
//! timeout, turns every error answer into `application/problem+json` (including axum's own
//! 404, 405 and extractor rejections), or into an error page on the routes browsers use when
//! the client does not prefer JSON, records the Prometheus metrics and writes one structured
//! log line. Submissions are read with a size limit and a deadline against slow senders.
//!
//! Every route is listed once in [`ROUTES`]: the router is built from handlers registered
//! under those paths (a test checks that both agree) and the OpenAPI document is generated
//! from that list.

use crate::cache::{BodyCache, FOREVER, Rendered};
use crate::certificate::CertificateId;
use crate::checkpoint::Checkpoint;
use crate::gs1;
use crate::ledger::{Ledger, MAX_SUBMISSION_BYTES, Receipt, SubmitError};
use crate::merkle;
use crate::metrics::Histogram;
use crate::negotiate::{self, Representation};
use crate::pages::{self, SealCheck, StatusView, Verdict};
use crate::payload::PayloadType;
use crate::qr;
use crate::query::{CertificateView, QueryError};
use crate::seal::{self, Seal};
use crate::state::{CertStatus, RefusalKind};
use crate::store::StoreError;
use crate::tiles::{Tile, TileKind};
use crate::witnessing::WitnessConfig;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of the `type` URI of the problems this API answers.
pub const PROBLEM_TYPE_BASE: &str = "https://reman-ledger.example/problems/";

/// Limits and deadlines of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest time a request may take from routing to its answer (503 problem after it).
    pub request_timeout: Duration,
    /// Longest time a client may take to send a submission's body (408 problem after it).
    pub body_timeout: Duration,
    /// Largest submission body (413 problem above it).
    pub max_body_bytes: usize,
    /// Longest time a photo upload to `/scan` may take, decoding included (it replaces the
    /// request timeout there: phones on slow networks upload megabytes).
    pub upload_timeout: Duration,
    /// After the shutdown signal, how long to wait for requests in flight before giving up.
    pub shutdown_grace: Duration,
    /// The witnesses asked to cosign each new checkpoint (C2SP tlog-witness); their
    /// cosignatures are served with it. None by default.
    pub witnesses: Vec<WitnessConfig>,
    /// With witnesses: how long answers wait for all of them to cosign a newer checkpoint
    /// before they are made against the latest one anyway (see [`crate::witnessing::run`]).
    pub witness_wait: Duration,
    /// With witnesses: how many must cosign a checkpoint before answers are made against it
    /// (`None`: all of them).
    pub witness_quorum: Option<usize>,
    /// For a mirror ([`Ledger::open_mirror`]): the ledger it follows, and how.
    pub mirror: Option<crate::mirroring::FollowConfig>,
    /// How many connections may be open, and how long a request's headers may take.
    pub connections: crate::server::ConnectionLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            request_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(5),
            max_body_bytes: MAX_SUBMISSION_BYTES,
            upload_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            witnesses: Vec::new(),
            witness_wait: Duration::from_secs(10),
            witness_quorum: None,
            mirror: None,
            connections: crate::server::ConnectionLimits::default(),
        }
    }
}

/// Rendered answers kept for the current tree head (see [`crate::cache`]).
const CACHE_ENTRIES: usize = 4096;

/// What every handler shares: the ledger, the metrics, the rendered-answer cache and the limits.
#[derive(Clone)]
pub struct AppState {
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    cache: Arc<BodyCache>,
    /// For a mirror: what its follower is doing.
    mirror: Option<Arc<crate::mirroring::MirrorStatus>>,
    /// One photo is read at a time (`POST /scan`): reading one is a core's work for up to
    /// seconds, which must not starve the log's own work.
    scans: Arc<tokio::sync::Semaphore>,
    opts: ServeOptions,
}

impl AppState {
    /// The state of a server over `ledger`; metrics start at zero.
    pub fn new(ledger: Arc<Ledger>, opts: ServeOptions) -> AppState {
        AppState {
            ledger,
            metrics: Arc::new(Metrics::new()),
            cache: Arc::new(BodyCache::new(CACHE_ENTRIES)),
            mirror: opts
                .mirror
                .as_ref()
                .map(|m| Arc::new(crate::mirroring::MirrorStatus::new(&m.upstream))),
            scans: Arc::new(tokio::sync::Semaphore::new(1)),
            opts,
        }
    }

    /// The ledger served.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

// ---------------------------------------------------------------------------------------------
// Problems (RFC 9457)
// ---------------------------------------------------------------------------------------------

/// An error answer: RFC 9457 `application/problem+json` with `type`, `title`, `status` and
/// `detail`. Every error of this API, axum's own included, is answered as one, except on the
/// routes browsers use ([`Route::html_errors`]), which answer pages to clients that do not
/// prefer JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short stable name of the problem; the `type` URI is [`PROBLEM_TYPE_BASE`] + kind.
    pub kind: &'static str,
    /// A short human-readable summary of the problem type.
    pub title: &'static str,
    /// What went wrong with this request, and what is expected instead.
    pub detail: String,
    /// Extra headers (`Allow` on 405, `Retry-After` on 503, `Connection: close` on 408).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `kind` with its status, title and detail.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// A 400 problem: the request is not well-formed.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::from_refusal(RefusalKind::Malformed, detail)
    }

    /// The problem of a refusal class of SPEC §6 (400, 401, 403, 404, 409, 413, 422, 500).
    pub fn from_refusal(kind: RefusalKind, detail: impl Into<String>) -> Problem {
        let title = match kind {
            RefusalKind::Malformed => "Malformed request",
            RefusalKind::Unauthorized => "Bad signature or unknown signer",
            RefusalKind::Forbidden => "Signer not allowed",
            RefusalKind::NotFound => "Not found",
            RefusalKind::Conflict => "Conflicts with the log",
            RefusalKind::TooLarge => "Too large",
            RefusalKind::Invalid => "Invalid content",
            RefusalKind::ReadOnly => "Read-only mirror",
            RefusalKind::Internal => "Internal error",
        };
        let status =
            StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Problem::new(status, kind.as_str(), title, detail)
    }

    /// The same problem with one more header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Problem {
        self.headers.push((name, value));
        self
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.kind)
    }

    /// The JSON body.
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        })
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        resp
    }
}

impl From<QueryError> for Problem {
    fn from(e: QueryError) -> Problem {
        let kind = match &e {
            QueryError::NotFound(_) => RefusalKind::NotFound,
            QueryError::BadRequest(_) => RefusalKind::Malformed,
            QueryError::Internal(_) => RefusalKind::Internal,
            QueryError::NotYet(_) => return unavailable(e.to_string()),
        };
        if kind == RefusalKind::Internal {
            tracing::error!(error = %e, "read failed");
        }
        Problem::from_refusal(kind, e.to_string())
    }
}

impl From<&SubmitError> for Problem {
    fn from(e: &SubmitError) -> Problem {
        match e {
            SubmitError::Closed | SubmitError::Halted => unavailable(e.to_string()),
            // The resource exists (and answers GET); a mirror takes no submissions.
            SubmitError::Mirror => Problem::from_refusal(e.kind(), e.to_string())
                .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD")),
            _ => Problem::from_refusal(e.kind(), e.to_string()),
        }
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Problem {
        if r.status().is_server_error() {
            return Problem::from_refusal(RefusalKind::Internal, r.body_text());
        }
        Problem::bad_request(format!("bad path parameter: {}", r.body_text()))
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Problem {
        Problem::bad_request(format!("bad query string: {}", r.body_text()))
    }
}

/// A request's query parameters, each given at most once. `?index=1&index=2` is refused
/// (400): which of two values a client meant is not for the server to guess, and a proof or
/// a label answered for the one it did not mean would look like the log's mistake.
struct Params(HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if params.contains_key(&name) {
                return Err(Problem::bad_request(format!(
                    "the query parameter {name} is given more than once: give it once"
                )));
            }
            params.insert(name, value);
        }
        Ok(Params(params))
    }
}

fn unavailable(detail: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Service unavailable",
        detail,
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

/// Handlers answer either their value or a problem.
type ApiResult<T> = Result<T, Problem>;

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Where a parameter is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamIn {
    /// A path segment.
    Path,
    /// A query parameter.
    Query,
}

/// One parameter of a route, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Path or query.
    pub location: ParamIn,
    /// Whether it must be given.
    pub required: bool,
    /// OpenAPI type: `integer` (u64) or `string`.
    pub kind: &'static str,
    /// What it is.
    pub description: &'static str,
}

/// One answer of a route, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Media type, or "" for an answer without a body (a redirect).
    pub media_type: &'static str,
    /// Name of the schema under `components/schemas`, or "" for none.
    pub schema: &'static str,
    /// What it means.
    pub description: &'static str,
}

/// One route of the API: the single list the router is checked against and the OpenAPI
/// document is generated from.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET` or `POST` (every `GET` also answers `HEAD`).
    pub method: &'static str,
    /// The axum path (`{param}`, `{*rest}` for a parameter that may hold `/`).
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Its parameters.
    pub params: &'static [Param],
    /// Its successful answers.
    pub ok: &'static [Answer],
    /// The error statuses it may answer (each as problem+json).
    pub errors: &'static [u16],
    /// Whether its errors are negotiated ([`crate::negotiate`]): HTML pages, problem+json only
    /// for a client that prefers JSON. Otherwise every error is problem+json.
    pub html_errors: bool,
}

const fn path_param(name: &'static str, kind: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: ParamIn::Path,
        required: true,
        kind,
        description,
    }
}

const fn query_param(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: ParamIn::Query,
        required: true,
        kind: "integer",
        description,
    }
}

const fn json_answer(status: u16, schema: &'static str, description: &'static str) -> Answer {
    Answer {
        status,
        media_type: "application/json",
        schema,
        description,
    }
}

const fn text_answer(description: &'static str) -> Answer {
    Answer {
        status: 200,
        media_type: "text/plain; charset=utf-8",
        schema: "",
        description,
    }
}

const P_CERT_ID: Param = path_param(
    "id",
    "string",
    "certificate ID: 32 lowercase hex digits (first 16 bytes of SHA-256 of the payload)",
);
const P_GTIN: Param = path_param("gtin", "string", "GTIN-14 with a valid GS1 check digit");
const P_SERIAL: Param = path_param(
    "serial",
    "string",
    "serial number (GS1 AI 21), percent-encoded; may contain /",
);

/// Every route of the API (SPEC §6).
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/api/v1/entries",
        summary: "Submit a signed DSSE envelope (party, certificate, revocation or event)",
        params: &[],
        ok: &[
            json_answer(201, "Receipt", "logged now"),
            json_answer(200, "Receipt", "already logged: the existing entry"),
        ],
        errors: &[400, 401, 403, 404, 408, 409, 413, 422, 500, 503],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/entries/{index}",
        summary: "One log entry: its exact bytes, leaf hash and parsed form",
        params: &[path_param("index", "integer", "entry index, from 0")],
        ok: &[json_answer(200, "EntryAnswer", "the entry")],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/certificates/{id}",
        summary: "A certificate with status, issuer, seal, events, revocation and proof",
        params: &[P_CERT_ID],
        ok: &[json_answer(200, "CertificateView", "the certificate")],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/certificates/{id}/qr.png",
        summary: "The certificate's QR code (SPEC §5 content, level Q) as PNG",
        params: &[P_CERT_ID, P_QR_SIZE],
        ok: &[Answer {
            status: 200,
            media_type: "image/png",
            schema: "",
            description: "the QR code",
        }],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/certificates/{id}/qr.svg",
        summary: "The certificate's QR code (SPEC §5 content, level Q) as SVG",
        params: &[P_CERT_ID, P_QR_SIZE],
        ok: &[Answer {
            status: 200,
            media_type: "image/svg+xml",
            schema: "",
            description: "the QR code",
        }],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/certificates/{id}/proof",
        summary: "The certificate's entry as a C2SP tlog-proof (c2sp.org/tlog-proof@v1) against \
                  the latest checkpoint, the exact entry bytes in its extra line: verifiable \
                  offline with the log key alone (SPEC §8)",
        params: &[P_CERT_ID],
        ok: &[text_answer("the proof (save it as <id>.tlog-proof)")],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/products/{gtin}/{*serial}",
        summary: "All certificates of one unit, newest first, with status and events",
        params: &[P_GTIN, P_SERIAL],
        ok: &[json_answer(200, "Product", "the unit's certificates")],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/01/{gtin}/21/{*serial}",
        summary: "GS1 Digital Link resolver: the status page (HTML), or the product JSON with \
                  the verdict and the seal check for a client that prefers JSON to text/html \
                  (Accept: application/json); errors likewise a page or a problem",
        params: &[
            P_GTIN,
            P_SERIAL,
            Param {
                name: "seal",
                location: ParamIn::Query,
                required: false,
                kind: "string",
                description: "the seal from the QR code (base64url, SPEC §5); verified when given",
            },
        ],
        ok: &[
            json_answer(
                200,
                "Resolution",
                "the unit's certificates, verdict and seal check",
            ),
            Answer {
                status: 200,
                media_type: "text/html; charset=utf-8",
                schema: "",
                description: "the status page",
            },
            Answer {
                status: 301,
                media_type: "",
                schema: "",
                description: "a GTIN-8, -12 or -13: redirect to the same link with its GTIN-14",
            },
        ],
        errors: &[400, 404],
        html_errors: true,
    },
    Route {
        method: "GET",
        path: "/api/v1/parties",
        summary: "The registered parties: the trust list",
        params: &[],
        ok: &[Answer {
            status: 200,
            media_type: "application/json",
            schema: "Parties",
            description: "every party's current registration",
        }],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/parties/{*name}",
        summary: "One registered party",
        params: &[path_param("name", "string", "the party's key name")],
        ok: &[json_answer(200, "Party", "its current registration")],
        errors: &[404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/checkpoint",
        summary: "The latest signed checkpoint (C2SP tlog-checkpoint)",
        params: &[],
        ok: &[text_answer("the signed note")],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/checkpoint",
        summary: "The latest signed checkpoint (C2SP tlog-tiles path)",
        params: &[],
        ok: &[text_answer("the signed note")],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/tile/{*path}",
        summary: "The log as C2SP tlog-tiles (SPEC §8): a Merkle tile `tile/<L>/<N>[.p/<W>]` \
                  (256 hashes of tree level 8·L, or the W first of them) or an entry bundle \
                  `tile/entries/<N>[.p/<W>]` (big-endian u16 length-prefixed entries); <N> in \
                  3-digit groups, all but the last prefixed with x (1234067 = x001/x234/067). \
                  Immutable; only what the latest checkpoint covers is served. Entry bundles \
                  are gzip-compressed when Accept-Encoding allows it",
        params: &[path_param(
            "path",
            "string",
            "after tile/: <L>/<N>[.p/<W>] or entries/<N>[.p/<W>], e.g. 0/x001/234 or entries/005.p/17",
        )],
        ok: &[Answer {
            status: 200,
            media_type: "application/octet-stream",
            schema: "",
            description: "the tile's hashes back to back, or the entry bundle",
        }],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/seals/{*path}",
        summary: "The seals (SPEC §5) of an entry bundle's certificates, `seals/<N>[.p/<W>]` \
                  beside `tile/entries/<N>[.p/<W>]`: for each entry, 64 bytes, its seal \
                  signature if it is a certificate, zeros otherwise. What a mirror, even of a \
                  static export, serves seals from. Immutable",
        params: &[path_param(
            "path",
            "string",
            "after seals/: <N>[.p/<W>] as for entry bundles, e.g. 005.p/17",
        )],
        ok: &[Answer {
            status: 200,
            media_type: "application/octet-stream",
            schema: "",
            description: "64 bytes per entry of the bundle",
        }],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/log",
        summary: "What a verifier pins: origin, log key, tree size and root",
        params: &[],
        ok: &[json_answer(200, "Log", "the log's identity and head")],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/proof/inclusion",
        summary: "RFC 9162 inclusion proof of an entry in a tree size",
        params: &[
            query_param("index", "entry index"),
            query_param("tree_size", "tree size, at most the current one"),
        ],
        ok: &[json_answer(200, "InclusionAnswer", "the proof")],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/proof/consistency",
        summary: "RFC 9162 consistency proof between two tree sizes",
        params: &[
            query_param("first", "the older tree size"),
            query_param("second", "the newer tree size, at most the current one"),
        ],
        ok: &[json_answer(200, "ConsistencyAnswer", "the proof")],
        errors: &[400, 404],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/healthz",
        summary: "Liveness and the current tree size (503 once a storage failure halted writes)",
        params: &[],
        ok: &[
            json_answer(200, "Health", "the server is up"),
            json_answer(
                503,
                "Health",
                "writes halted after a storage failure: restart once the storage is fixed",
            ),
        ],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/metrics",
        summary: "Prometheus metrics (text exposition format 0.0.4)",
        params: &[],
        ok: &[Answer {
            status: 200,
            media_type: "text/plain; version=0.0.4; charset=utf-8",
            schema: "",
            description: "the metrics",
        }],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        summary: "This OpenAPI 3.0 document",
        params: &[],
        ok: &[json_answer(200, "", "the document")],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/",
        summary: "Home page: look up a certificate or upload a photo of a QR label",
        params: &[],
        ok: &[HTML_PAGE],
        errors: &[],
        html_errors: false,
    },
    Route {
        method: "GET",
        path: "/lookup",
        summary: "The home page's look-up form: redirects (303) to the unit's resolver link, \
                  whatever the Accept (followed with Accept: application/json, it answers the \
                  product JSON). A mistake is the home page with a message, or a problem for a \
                  client that prefers JSON to text/html",
        params: &[
            optional_query("gtin", "GTIN (8 to 14 digits; left-padded to 14)"),
            optional_query("serial", "serial number"),
            optional_query("id", "certificate ID (instead of GTIN and serial)"),
        ],
        ok: &[Answer {
            status: 303,
            media_type: "",
            schema: "",
            description: "redirect to /01/{gtin}/21/{serial}",
        }],
        errors: &[400, 404, 500, 503],
        html_errors: true,
    },
    Route {
        method: "POST",
        path: "/scan",
        summary: "Upload a photo of a QR label (multipart/form-data): decoded on the server, \
                  redirects (303) to its resolver link, whatever the Accept (followed with \
                  Accept: application/json, it answers the product JSON). A photo that cannot \
                  be read is the home page with a message, or a problem for a client that \
                  prefers JSON to text/html",
        params: &[],
        ok: &[Answer {
            status: 303,
            media_type: "",
            schema: "",
            description: "redirect to the resolver link of the code read",
        }],
        errors: &[400, 408, 413, 422, 500, 503],
        html_errors: true,
    },
];

const HTML_PAGE: Answer = Answer {
    status: 200,
    media_type: "text/html; charset=utf-8",
    schema: "",
    description: "the page",
};

const P_QR_SIZE: Param = Param {
    name: "size",
    location: ParamIn::Query,
    required: false,
    kind: "integer",
    description: "image width and height in pixels, 64 to 2048 (default 320)",
};

const fn optional_query(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: ParamIn::Query,
        required: false,
        kind: "string",
        description,
    }
}

/// Builds the router while recording what it registers, so a test can hold it to [`ROUTES`].
struct Builder {
    router: Router<AppState>,
    registered: Vec<(&'static str, &'static str)>,
}

impl Builder {
    fn get<H: Handler<T, AppState>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, get(h));
        self.registered.push(("GET", path));
        self
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.route("POST", path, post(h))
    }

    fn route(
        mut self,
        method: &'static str,
        path: &'static str,
        mr: axum::routing::MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, mr);
        self.registered.push((method, path));
        self
    }
}

/// Every route and its handler, before the middleware and the state.
fn routes() -> Builder {
    Builder {
        router: Router::new(),
        registered: Vec::new(),
    }
    .post("/api/v1/entries", post_entry)
    .get("/api/v1/entries/{index}", get_entry)
    .get("/api/v1/certificates/{id}", get_certificate)
    .get("/api/v1/certificates/{id}/qr.png", get_qr_png)
    .get("/api/v1/certificates/{id}/qr.svg", get_qr_svg)
    .get("/api/v1/certificates/{id}/proof", get_certificate_proof)
    .get("/api/v1/products/{gtin}/{*serial}", get_product)
    .get("/01/{gtin}/21/{*serial}", get_resolver)
    .get("/api/v1/parties", get_parties)
    .get("/api/v1/parties/{*name}", get_party)
    .get("/api/v1/checkpoint", get_checkpoint)
    .get("/checkpoint", get_checkpoint)
    .get("/tile/{*path}", get_tile)
    .get("/seals/{*path}", get_seal_tile)
    .get("/api/v1/log", get_log)
    .get("/api/v1/proof/inclusion", get_inclusion)
    .get("/api/v1/proof/consistency", get_consistency)
    .get("/healthz", get_health)
    .get("/metrics", get_metrics)
    .get("/api/v1/openapi.json", get_openapi)
    .get("/", get_home)
    .get("/lookup", get_lookup)
    .route(
        "POST",
        "/scan",
        post(post_scan).layer(axum::extract::DefaultBodyLimit::max(MAX_PHOTO_BYTES)),
    )
}

/// The application: every route of [`ROUTES`] with its middleware, ready to serve or to test
/// with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    routes()
        .router
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The (method, path) pairs the router registers, in order; equal to [`ROUTES`] (a test
/// checks it).
pub fn registered_routes() -> Vec<(&'static str, &'static str)> {
    routes().registered
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish (at most [`ServeOptions::shutdown_grace`]) and returns. The
/// caller then closes the ledger (see [`close_ledger`]), which flushes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ledger: Arc<Ledger>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = opts.shutdown_grace;
    let witnesses = opts.witnesses.clone();
    let state = AppState::new(ledger.clone(), opts);
    let witnessing = (!witnesses.is_empty()).then(|| {
        tokio::spawn(crate::witnessing::run(
            ledger.clone(),
            witnesses,
            state.opts.witness_wait,
            state.opts.witness_quorum,
        ))
    });
    let following = state
        .opts
        .mirror
        .clone()
        .zip(state.mirror.clone())
        .map(|(config, status)| {
            tokio::spawn(crate::mirroring::run(ledger.clone(), config, status))
        });
    let limits = state.opts.connections;
    let stats = state.metrics.connections.clone();
    let app = router(state);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    };
    // Witnessing stops with the server, so that the ledger can then be closed.
    let _stop_witnessing = witnessing.map(AbortOnDrop);
    let _stop_following = following.map(AbortOnDrop);
    crate::server::serve(listener, app, limits, stats, grace, signal).await
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Closes a served ledger once the server has let go of it: waits (at most `wait`) until this
/// is the last reference, then stops the sequencer after its queue and flushes. If other
/// references remain after `wait`, it only flushes the store.
pub async fn close_ledger(ledger: Arc<Ledger>, wait: Duration) -> Result<(), StoreError> {
    let deadline = Instant::now() + wait;
    let mut ledger = ledger;
    loop {
        match Arc::try_unwrap(ledger) {
            Ok(l) => {
                return tokio::task::spawn_blocking(move || l.close())
                    .await
                    .unwrap_or_else(|e| {
                        Err(StoreError::Corrupt(format!(
                            "closing the ledger failed: {e}"
                        )))
                    });
            }
            Err(shared) if Instant::now() >= deadline => {
                tracing::warn!("ledger still referenced at shutdown; flushing only");
                return tokio::task::spawn_blocking(move || {
                    shared.write_held_seals()?;
                    shared.store().flush()
                })
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Corrupt(format!(
                        "flushing the ledger failed: {e}"
                    )))
                });
            }
            Err(shared) => {
                ledger = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------------

/// Around every request: the request timeout, problem+json for every error, metrics and one
/// structured log line.
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let path = req.uri().path().to_owned();
    // On the routes browsers use, a browser gets a page for every error, wherever it comes
    // from (the handler, the timeout, a mirror not serving yet, axum itself).
    let route_str = route.as_ref().map_or("unmatched", |r| r.as_str());
    let html_errors = ROUTES.iter().any(|r| r.html_errors && r.path == route_str);
    let page = html_errors && !wants_json(req.headers());
    // Photo uploads have their own, longer deadline (checked in the handler).
    let limit = if route.as_ref().is_some_and(|r| r.as_str() == "/scan") {
        st.opts.upload_timeout + Duration::from_secs(5)
    } else {
        st.opts.request_timeout
    };
    let answer = match not_yet_served(&st, &path) {
        Some(problem) => Ok(problem.into_response()),
        None => tokio::time::timeout(limit, next.run(req)).await,
    };
    let mut resp = match answer {
        Ok(r) => r,
        Err(_) => {
            let mut detail = format!("the request took longer than {} s", limit.as_secs_f64());
            if method == Method::POST && path == "/api/v1/entries" {
                detail.push_str(
                    "; the submission may still be logged: submit it again (an envelope already \
                     logged answers 200 with its entry)",
                );
            }
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                detail,
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            .into_response()
        }
    };
    let status = resp.status();
    if (status.is_client_error() || status.is_server_error()) && needs_problem(resp.headers()) {
        resp = as_problem(resp, &method, &path).await;
    }
    if page && is_problem(resp.headers()) {
        resp = as_page(resp).await;
    }
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The log is public: any web page may read it.
    if method == Method::GET || method == Method::HEAD {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    // A page or JSON, by the request's Accept (crate::negotiate): caches must key on it.
    if html_errors {
        h.append(header::VARY, HeaderValue::from_static("accept"));
    }
    let elapsed = start.elapsed();
    st.metrics.observe_http(route_str, resp.status(), elapsed);
    tracing::info!(
        target: "reman_ledger::http",
        method = %method,
        route = route_str,
        path = %path,
        status = resp.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    resp
}

/// True for an error answer axum wrote itself (empty or plain text), which must become a
/// problem; our problems and HTML error pages stay as they are.
fn needs_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"))
}

/// Rewrites an error answer that axum produced itself (405, a body-limit or extractor
/// rejection) as a problem, keeping its status and headers such as `Allow`.
async fn as_problem(resp: Response, method: &Method, path: &str) -> Response {
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let status = parts.status;
    let problem = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Problem::new(
                status,
                "method_not_allowed",
                "Method not allowed",
                if allow.is_empty() {
                    format!("{method} is not allowed on {path}")
                } else {
                    format!("{method} is not allowed on {path}; allowed: {allow}")
                },
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => Problem::from_refusal(
            RefusalKind::TooLarge,
            if text.is_empty() {
                "the request body is too large".to_owned()
            } else {
                text
            },
        ),
        _ => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let detail = if text.is_empty() {
                reason.to_owned()
            } else {
                text
            };
            match status.as_u16() {
                400 => Problem::from_refusal(RefusalKind::Malformed, detail),
                401 => Problem::from_refusal(RefusalKind::Unauthorized, detail),
                403 => Problem::from_refusal(RefusalKind::Forbidden, detail),
                404 => Problem::from_refusal(RefusalKind::NotFound, detail),
                409 => Problem::from_refusal(RefusalKind::Conflict, detail),
                422 => Problem::from_refusal(RefusalKind::Invalid, detail),
                500 => Problem::from_refusal(RefusalKind::Internal, detail),
                _ => Problem::new(status, "http_error", "HTTP error", detail),
            }
        }
    };
    let mut out = problem.into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

fn is_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// A problem answer as an error page for a browser: the same status, its detail, and its
/// other headers (`Retry-After`, `Allow`).
async fn as_page(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let problem: Value = axum::body::to_bytes(body, 64 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let detail = problem["detail"]
        .as_str()
        .or(problem["title"].as_str())
        .unwrap_or_else(|| parts.status.canonical_reason().unwrap_or("Error"));
    let mut out = html_error(parts.status, detail);
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH && k != header::CACHE_CONTROL {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    out
}

async fn no_route(method: Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "No such route",
        format!(
            "no route for {method} {}; the routes are listed in /api/v1/openapi.json",
            uri.path()
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Reads a body of at most `limit` bytes.
async fn read_body(mut body: Body, limit: usize) -> ApiResult<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| Problem::bad_request(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

fn too_large(limit: usize) -> Problem {
    Problem::from_refusal(
        RefusalKind::TooLarge,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
    .with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

/// `POST /api/v1/entries`: 201 with the receipt when logged now, 200 when already logged.
async fn post_entry(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match submit(&st, &headers, body).await {
        Ok(r) => {
            let status = if r.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            // Sized for a certificate's receipt at once (Json would grow from 128 bytes).
            let mut body = Vec::with_capacity(2048);
            if let Err(e) = serde_json::to_writer(&mut body, &r) {
                return Problem::from_refusal(RefusalKind::Internal, e.to_string()).into_response();
            }
            let location = format!("/api/v1/entries/{}", r.index);
            let mut resp = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(p) => p.into_response(),
    }
}

async fn submit(st: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<Receipt> {
    let limit = st.opts.max_body_bytes;
    let m = &st.metrics;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        m.refused("too_large");
        return Err(too_large(limit));
    }
    let bytes = match tokio::time::timeout(st.opts.body_timeout, read_body(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(p)) => {
            m.refused(p.kind);
            return Err(p);
        }
        Err(_) => {
            m.refused("body_timeout");
            return Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "Request body too slow",
                format!(
                    "the request body was not received within {} s",
                    st.opts.body_timeout.as_secs_f64()
                ),
            )
            .with_header(header::CONNECTION, HeaderValue::from_static("close")));
        }
    };
    let start = Instant::now();
    match st.ledger.submit_async(&bytes).await {
        Ok(r) => {
            if r.created {
                m.appended(Some(r.payload_type), start.elapsed());
            }
            Ok(r)
        }
        Err(e) => {
            m.refused(e.kind().as_str());
            if e.kind() == RefusalKind::Internal {
                tracing::error!(error = %e, "submission failed");
            }
            Err(Problem::from(&e))
        }
    }
}

/// A decimal u64 from a path or query parameter.
fn parse_u64(what: &str, s: &str) -> ApiResult<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::bad_request(format!(
            "{what} must be a non-negative decimal integer, got {s:?}"
        )));
    }
    s.parse()
        .map_err(|_| Problem::bad_request(format!("{what} {s} is out of range")))
}

async fn get_entry(
    State(st): State<AppState>,
    index: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(index) = index?;
    let index = parse_u64("entry index", &index)?;
    let v = st.ledger.entry_json(index)?;
    let mut resp = Json(v).into_response();
    // An entry never changes once logged.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(resp)
}

fn certificate_id(s: &str) -> ApiResult<CertificateId> {
    s.parse().map_err(|_| {
        Problem::bad_request(format!(
            "certificate ID must be 32 lowercase hex digits, got {s:?}"
        ))
    })
}

/// Serves the answer cached under `key` for tree size `generation`, or renders it, caches it
/// and serves it. Errors are not cached, nor answers to absurdly long requests.
fn cached(
    st: &AppState,
    key: String,
    generation: u64,
    render: impl FnOnce() -> ApiResult<Rendered>,
) -> ApiResult<Response> {
    const MAX_KEY: usize = 512;
    let r = match st.cache.get(&key, generation) {
        Some(r) => r,
        None => {
            let r = render()?;
            if key.len() <= MAX_KEY {
                st.cache.put(key, generation, r.clone());
            }
            r
        }
    };
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, r.body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    if generation == FOREVER {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
    }
    Ok(resp)
}

/// A JSON answer, rendered for the cache.
/// What cached answers are valid for: the checkpoint answers are made against (its size,
/// and its text: the same tree comes again once its witnesses have cosigned it).
fn generation(st: &AppState) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let head = st.ledger.served_head();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    head.checkpoint.hash(&mut h);
    head.size.hash(&mut h);
    h.finish().min(FOREVER - 1)
}

fn rendered_json<T: serde::Serialize>(value: &T) -> ApiResult<Rendered> {
    let body = serde_json::to_vec(value)
        .map_err(|e| Problem::from_refusal(RefusalKind::Internal, e.to_string()))?;
    Ok(Rendered {
        status: 200,
        content_type: "application/json",
        body: body.into(),
    })
}

async fn get_certificate(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id?;
    let id = certificate_id(&id)?;
    let generation = generation(&st);
    cached(&st, format!("c/{id}"), generation, || {
        rendered_json(&st.ledger.certificate(&id)?)
    })
}

async fn get_certificate_proof(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id?;
    let id = certificate_id(&id)?;
    // Against the checkpoint answers are made against: with witnesses, one they cosigned,
    // with their cosignatures, which make the proof hold against a split view too.
    let proof = st.ledger.certificate_proof(&id)?;
    let disposition = format!("inline; filename=\"{id}.{}\"", crate::tlog_proof::EXTENSION);
    let mut resp = proof.to_text().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Against the latest checkpoint, which moves on with every append.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

async fn get_product(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((gtin, serial)) = p?;
    let generation = generation(&st);
    // SPEC §6: the answer is the unit's certificates themselves, newest first. Only a valid
    // unit is answered (and so cached): its GTIN has 14 digits, which keeps the key unambiguous.
    cached(&st, format!("p/{gtin}/{serial}"), generation, || {
        rendered_json(&st.ledger.product(&gtin, &serial)?)
    })
}

async fn get_parties(State(st): State<AppState>) -> ApiResult<Response> {
    Ok(Json(st.ledger.parties()?).into_response())
}

async fn get_party(
    State(st): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(name) = name?;
    Ok(Json(st.ledger.party(&name)?).into_response())
}

async fn get_checkpoint(State(st): State<AppState>) -> Response {
    // With witnesses, the newest checkpoint they all cosigned, with their cosignatures.
    let text = st.ledger.served_head().checkpoint.to_string();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        text,
    )
        .into_response()
}

/// A tlog-tiles resource: it never changes once served (a partial tile's path names its
/// width), so caches may keep it for good. Entry bundles, text that shrinks several times,
/// are gzip-compressed for clients that accept it, as tlog-tiles recommends.
async fn get_tile(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(path) = path?;
    let tile =
        Tile::parse(&format!("tile/{path}")).map_err(|e| Problem::bad_request(e.to_string()))?;
    let zip = tile.kind == TileKind::Entries && accepts_gzip(&headers);
    // A bundle reads its runs and may be compressed: milliseconds, off the async workers.
    let ledger = st.ledger.clone();
    let read = move || -> ApiResult<Vec<u8>> {
        let bytes = ledger.tile(&tile)?;
        if zip {
            return gzip(&bytes)
                .map_err(|e| Problem::from_refusal(RefusalKind::Internal, e.to_string()));
        }
        Ok(bytes)
    };
    let bytes = match tile.kind {
        TileKind::Entries => tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| Problem::from_refusal(RefusalKind::Internal, e.to_string()))??,
        TileKind::Hashes(_) => read()?,
    };
    let mut resp_headers = immutable_bytes();
    if tile.kind == TileKind::Entries {
        resp_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if zip {
        resp_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok((resp_headers, bytes).into_response())
}

/// `GET /seals/<N>[.p/<W>]`: the seal signatures of an entry bundle's certificates
/// ([`Tile::seal_path`]), immutable as the bundle is.
async fn get_seal_tile(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(path) = path?;
    let tile = Tile::parse(&format!("tile/entries/{path}"))
        .map_err(|e| Problem::bad_request(e.to_string().replace("tile/entries/", "seals/")))?;
    let ledger = st.ledger.clone();
    let bytes = tokio::task::spawn_blocking(move || ledger.seal_tile(&tile))
        .await
        .map_err(|e| Problem::from_refusal(RefusalKind::Internal, e.to_string()))??;
    Ok((immutable_bytes(), bytes).into_response())
}

/// The headers of a tile's bytes: a tile's path names its width, so they never change.
fn immutable_bytes() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) with a
/// non-zero quality, or else `*` with one. No header means no compression.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = false;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let quality = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
                })
                .next()
                .map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return quality > 0.0;
            }
            if coding == "*" {
                star = quality > 0.0;
            }
        }
    }
    star
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::default(),
    );
    z.write_all(bytes)?;
    z.finish()
}

async fn get_log(State(st): State<AppState>) -> Response {
    Json(st.ledger.log_json()).into_response()
}

/// A required u64 query parameter.
fn query_u64(q: &HashMap<String, String>, name: &str, usage: &str) -> ApiResult<u64> {
    let v = q.get(name).ok_or_else(|| {
        Problem::bad_request(format!("missing query parameter {name} (expected {usage})"))
    })?;
    parse_u64(name, v)
}

async fn get_inclusion(State(st): State<AppState>, Params(q): Params) -> ApiResult<Response> {
    let usage = "?index=I&tree_size=N";
    let index = query_u64(&q, "index", usage)?;
    let tree_size = query_u64(&q, "tree_size", usage)?;
    Ok(Json(st.ledger.inclusion_json(index, tree_size)?).into_response())
}

async fn get_consistency(State(st): State<AppState>, Params(q): Params) -> ApiResult<Response> {
    let usage = "?first=M&second=N";
    let first = query_u64(&q, "first", usage)?;
    let second = query_u64(&q, "second", usage)?;
    Ok(Json(st.ledger.consistency_json(first, second)?).into_response())
}

/// A mirror that has not yet stored the whole tree of any checkpoint of the log it follows
/// has nothing it can prove: every path but the health and metrics ones is a 503 problem
/// until it has. (Catching up later, it serves its head, the last such checkpoint.)
fn not_yet_served(st: &AppState, path: &str) -> Option<Problem> {
    if !st.ledger.is_mirror()
        || matches!(path, "/healthz" | "/metrics")
        || !st.ledger.head().checkpoint.is_empty()
    {
        return None;
    }
    let detail = match st.ledger.behind() {
        Some((size, of)) => format!(
            "this mirror is catching up: {size} of the {of} entries of the log's checkpoint are verified"
        ),
        None => "this mirror has not yet verified any checkpoint of the log it follows".to_owned(),
    };
    Some(
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "catching_up",
            "Mirror catching up",
            detail,
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")),
    )
}

fn evidence_json(e: &Option<crate::mirror::Evidence>) -> Value {
    e.as_ref().map_or(
        Value::Null,
        |e| json!({"held": e.held, "presented": e.presented}),
    )
}

async fn get_health(State(st): State<AppState>) -> Response {
    let mut body = json!({"status": "ok", "tree_size": st.ledger.served_head().size});
    // A ledger that stopped accepting writes is not healthy: 503, so that monitoring sees it.
    let halted = st.ledger.halted();
    if let Some(why) = halted {
        body["status"] = "halted".into();
        body["halted"] = json!({
            "reason": why,
            "action": "free or fix the storage, then restart the ledger: every acknowledged entry is stored",
        });
    }
    if let Some(m) = &st.mirror {
        let (state, reason, evidence) = match m.state() {
            crate::mirroring::MirrorState::Following => ("following", None, None),
            crate::mirroring::MirrorState::Stopped { reason, evidence } => {
                ("stopped", Some(reason), evidence)
            }
        };
        let last_error = m.last_error().map(|l| {
            json!({"error": l.error, "failures": l.failures, "evidence": evidence_json(&l.evidence)})
        });
        body["mirror"] = json!({
            "upstream": m.upstream,
            "state": state,
            "reason": reason,
            "evidence": evidence_json(&evidence),
            "last_error": last_error,
            "stored": st.ledger.stored_size(),
            "behind": st.ledger.behind().map(|(size, of)| json!({"verified": size, "checkpoint_size": of})),
        });
    }
    let status = match halted {
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
    };
    (status, Json(body)).into_response()
}

/// The gauges of what answers are made against: the served tree (behind the latest while
/// witnesses have not cosigned a newer checkpoint) and, for a mirror, its follower.
fn follow_metrics(st: &AppState) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP reman_ledger_served_tree_size Entries of the checkpoint answers are made against (behind reman_ledger_tree_size while the witnesses have not cosigned a newer one).\n\
         # TYPE reman_ledger_served_tree_size gauge\n\
         reman_ledger_served_tree_size {}\n\
         # HELP reman_ledger_halted 1 once a storage failure stopped the ledger from accepting writes (see /healthz); it must be restarted.\n\
         # TYPE reman_ledger_halted gauge\n\
         reman_ledger_halted {}",
        st.ledger.served_head().size,
        u8::from(st.ledger.halted().is_some())
    );
    if let Some(m) = &st.mirror {
        let (following, failures) = (
            matches!(m.state(), crate::mirroring::MirrorState::Following),
            m.last_error().map_or(0, |l| l.failures),
        );
        let target = st
            .ledger
            .behind()
            .map_or(st.ledger.head().size, |(_, of)| of);
        let _ = writeln!(
            out,
            "# HELP reman_mirror_stored_entries Entries the mirror has verified and stored.\n\
             # TYPE reman_mirror_stored_entries gauge\n\
             reman_mirror_stored_entries {}\n\
             # HELP reman_mirror_checkpoint_entries Entries of the newest checkpoint of the followed log the mirror holds.\n\
             # TYPE reman_mirror_checkpoint_entries gauge\n\
             reman_mirror_checkpoint_entries {target}\n\
             # HELP reman_mirror_following 1 while following; 0 once the followed log proved it misbehaved (see /healthz).\n\
             # TYPE reman_mirror_following gauge\n\
             reman_mirror_following {}\n\
             # HELP reman_mirror_failed_rounds Rounds failed in a row (tried again; the last error is in /healthz).\n\
             # TYPE reman_mirror_failed_rounds gauge\n\
             reman_mirror_failed_rounds {failures}",
            st.ledger.stored_size(),
            u8::from(following),
        );
    }
    out
}

async fn get_metrics(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render(st.ledger.head().size, st.ledger.stats());
    text.push_str(&follow_metrics(&st));
    text.push_str(&st.metrics.connections.prometheus());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn get_openapi() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_string());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.as_str(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The GS1 Digital Link resolver
// ---------------------------------------------------------------------------------------------

/// What the resolver says about a unit.
struct Resolution {
    verdict: Verdict,
    seal: SealCheck,
    certificates: Vec<CertificateView>,
    /// Index in `certificates` of the one the verdict is about.
    chosen: Option<usize>,
    proof_verified: bool,
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Revoked => "revoked",
        Verdict::Superseded => "superseded",
        Verdict::Unknown => "unknown",
        Verdict::SealInvalid => "seal_invalid",
    }
}

/// Checks the seal (if any) and picks the certificate the verdict is about: the sealed one,
/// else the newest.
fn resolve(ledger: &Ledger, gtin: &str, serial: &str, seal: Option<&str>) -> ApiResult<Resolution> {
    let certificates = match ledger.product(gtin, serial) {
        Ok(c) => c,
        Err(QueryError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let (seal, chosen) = match seal {
        None => (SealCheck::NotGiven, (!certificates.is_empty()).then_some(0)),
        Some(text) => check_seal(ledger, gtin, serial, text, &certificates),
    };
    let view = chosen.and_then(|i| certificates.get(i));
    let verdict = match (&seal, view) {
        (SealCheck::Invalid(_) | SealCheck::OtherProduct { .. }, _) => Verdict::SealInvalid,
        (_, None) => Verdict::Unknown,
        (_, Some(v)) => match v.status {
            CertStatus::Valid => Verdict::Valid,
            CertStatus::Revoked => Verdict::Revoked,
            CertStatus::Superseded => Verdict::Superseded,
        },
    };
    let proof_verified = view.is_some_and(|v| proof_verifies(ledger, v));
    Ok(Resolution {
        verdict,
        seal,
        certificates,
        chosen,
        proof_verified,
    })
}

fn check_seal(
    ledger: &Ledger,
    gtin: &str,
    serial: &str,
    text: &str,
    certificates: &[CertificateView],
) -> (SealCheck, Option<usize>) {
    let seal = match Seal::from_base64url(text) {
        Ok(s) => s,
        Err(e) => return (SealCheck::Invalid(e.to_string()), None),
    };
    let id = CertificateId(seal.certificate_id);
    match seal.verify(ledger.log_key(), ledger.origin(), gtin, serial) {
        Ok(()) => match certificates.iter().position(|c| c.certificate_id == id) {
            Some(i) => (SealCheck::Valid, Some(i)),
            None => (
                SealCheck::Invalid(format!(
                    "the seal names certificate {id}, which is not in the log"
                )),
                None,
            ),
        },
        Err(e) => {
            // A genuine seal copied from another unit's label is worth telling apart.
            if let Ok(other) = ledger.certificate(&id)
                && (other.gtin != gtin || other.serial != serial)
                && seal
                    .verify(
                        ledger.log_key(),
                        ledger.origin(),
                        &other.gtin,
                        &other.serial,
                    )
                    .is_ok()
            {
                return (
                    SealCheck::OtherProduct {
                        certificate_id: id.to_string(),
                    },
                    None,
                );
            }
            (SealCheck::Invalid(e.to_string()), None)
        }
    }
}

/// Re-checks a certificate's inclusion proof against its signed checkpoint, as a verifier would.
fn proof_verifies(ledger: &Ledger, v: &CertificateView) -> bool {
    let Ok(cp) = Checkpoint::open(&v.checkpoint, ledger.log_key()) else {
        return false;
    };
    let Ok(Some(entry)) = ledger.store().entry(v.index) else {
        return false;
    };
    let p = &v.inclusion_proof;
    p.tree_size == cp.size
        && p.root == cp.root
        && merkle::verify_inclusion(
            &merkle::leaf_hash(&entry),
            v.index,
            cp.size,
            &p.proof,
            &cp.root,
        )
        .is_ok()
}

fn seal_json(s: &SealCheck) -> Value {
    match s {
        SealCheck::NotGiven => json!({"result": "not_given"}),
        SealCheck::Valid => json!({"result": "valid"}),
        SealCheck::Invalid(why) => json!({"result": "invalid", "detail": why}),
        SealCheck::OtherProduct { certificate_id } => {
            json!({"result": "other_product", "certificate_id": certificate_id})
        }
    }
}

/// True when the client prefers JSON to a page (RFC 9110 negotiation over every `Accept`
/// line, see [`negotiate`]); a tie, or no `Accept`, is a page.
fn wants_json(headers: &HeaderMap) -> bool {
    negotiate::choose(headers.get_all(header::ACCEPT)) == Representation::Json
}

/// The link's `seal` parameter, if any. A link with two is refused rather than judged by one
/// of them: which one a reader trusts must not depend on the order of the parameters (the
/// offline verifier refuses such a link too).
fn one_seal(params: Vec<(String, String)>) -> Result<Option<String>, crate::query::QueryError> {
    let mut seals = params
        .into_iter()
        .filter(|(k, _)| k == "seal")
        .map(|(_, v)| v);
    let seal = seals.next();
    match seals.next() {
        Some(_) => Err(crate::query::QueryError::BadRequest(
            "the link carries more than one seal parameter; a label's link carries one".into(),
        )),
        None => Ok(seal),
    }
}

/// `GET /01/{gtin}/21/{serial}[?seal=…]`: the GS1 Digital Link resolver.
async fn get_resolver(
    State(st): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let json = wants_json(&headers);
    let (gtin, serial, seals) = match (p, q) {
        (Ok(Path((g, s))), Ok(Query(q))) => (g, s, q),
        (Err(e), _) if json => return Err(e.into()),
        (_, Err(e)) if json => return Err(e.into()),
        (Err(e), _) => return Ok(html_error(StatusCode::BAD_REQUEST, &e.body_text())),
        (_, Err(e)) => return Ok(html_error(StatusCode::BAD_REQUEST, &e.body_text())),
    };
    let seal = match one_seal(seals) {
        Ok(seal) => seal,
        Err(e) if json => return Err(e.into()),
        Err(e) => return Ok(html_error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    // GS1 Digital Link allows a GTIN-8, -12 or -13 in the path: point it to the GTIN-14 form,
    // the one the log keys units and seals by.
    if let Some(padded) = gs1::pad_to_gtin14(&gtin).filter(|g| gs1::gtin14_is_valid(g)) {
        return Ok(redirect(
            StatusCode::MOVED_PERMANENTLY,
            &resolver_path(&padded, &serial, seal.as_deref()),
        ));
    }
    if let Err(e) = crate::query::check_unit(&gtin, &serial) {
        return if json {
            Err(e.into())
        } else {
            Ok(html_error(StatusCode::BAD_REQUEST, &e.to_string()))
        };
    }
    // A serial may hold `/` and `?`, and the seal parameter is any text: the serial's length
    // keeps two requests from sharing a key (the GTIN, checked above, has 14 digits).
    let key = format!(
        "r/{json}/{gtin}/{}/{serial}?{}",
        serial.len(),
        seal.as_deref().unwrap_or("")
    );
    let generation = generation(&st);
    let mut resp = cached(&st, key, generation, || {
        render_resolution(&st.ledger, json, gtin, serial, seal)
    })?;
    if !json {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(resp)
}

/// The resolver's answer: the product JSON, or the status page a customs officer sees.
fn render_resolution(
    ledger: &Ledger,
    json: bool,
    gtin: String,
    serial: String,
    seal: Option<String>,
) -> ApiResult<Rendered> {
    let res = resolve(ledger, &gtin, &serial, seal.as_deref())?;
    if json {
        if res.certificates.is_empty() {
            let mut detail = format!("no certificate is logged for GTIN {gtin}, serial {serial}");
            if let SealCheck::OtherProduct { certificate_id } = &res.seal {
                detail.push_str(&format!(
                    "; the seal belongs to certificate {certificate_id} of another product"
                ));
            }
            return Err(Problem::from_refusal(RefusalKind::NotFound, detail));
        }
        let chosen = res
            .chosen
            .and_then(|i| res.certificates.get(i))
            .map(|c| c.certificate_id.to_string());
        return rendered_json(&json!({
            "gtin": gtin,
            "serial": serial,
            "verdict": verdict_str(res.verdict),
            "seal_check": seal_json(&res.seal),
            "certificate_id": chosen,
            "proof_verified": res.proof_verified,
            "certificates": res.certificates,
        }));
    }
    let status = if res.certificates.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let chosen = res.chosen.and_then(|i| res.certificates.get(i));
    let certificate = chosen.and_then(|c| serde_json::to_value(c).ok());
    let other_certificates = res
        .certificates
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != res.chosen)
        .map(|(_, c)| (c.certificate_id.to_string(), c.status.as_str().to_owned()))
        .collect();
    let view = StatusView {
        verdict: res.verdict,
        gtin,
        serial,
        seal: res.seal,
        certificate,
        other_certificates,
        proof_verified: res.proof_verified,
    };
    Ok(Rendered {
        status: status.as_u16(),
        content_type: "text/html; charset=utf-8",
        body: pages::status_page(&view).into(),
    })
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn html_error(status: StatusCode, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html(status, pages::error_page(status.as_u16(), title, detail))
}

// ---------------------------------------------------------------------------------------------
// QR codes, the home page, look-up and scan
// ---------------------------------------------------------------------------------------------

/// The QR content of a certificate: its QR URL, with the request's host as base URL when the
/// ledger was not given one (the seal does not cover the base URL).
fn qr_content(headers: &HeaderMap, view: &CertificateView) -> ApiResult<String> {
    if let Some(u) = &view.qr_url {
        return Ok(u.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::bad_request("no Host header, and the ledger has no base URL for QR links")
        })?;
    let seal = Seal::from_base64url(&view.seal)
        .map_err(|e| Problem::from_refusal(RefusalKind::Internal, e.to_string()))?;
    Ok(seal::qr_url(
        &format!("http://{host}"),
        &view.gtin,
        &view.serial,
        &seal,
    ))
}

/// The `?size=` of a QR image, in pixels.
fn qr_size(q: &HashMap<String, String>) -> ApiResult<u32> {
    match q.get("size") {
        None => Ok(qr::DEFAULT_SIZE),
        Some(v) => {
            let n = parse_u64("size", v)?;
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if !(qr::MIN_SIZE..=qr::MAX_SIZE).contains(&n) {
                return Err(Problem::bad_request(
                    qr::QrError::SizeOutOfRange(n).to_string(),
                ));
            }
            Ok(n)
        }
    }
}

async fn get_qr(
    st: AppState,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Params, Problem>,
    svg: bool,
) -> ApiResult<Response> {
    let Path(id) = id?;
    let Params(q) = q?;
    let id = certificate_id(&id)?;
    let size = qr_size(&q)?;
    // A certificate's QR image never changes (its seal and the base URL are fixed).
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect::<String>();
    let key = format!("q/{svg}/{id}/{size}/{host}");
    if let Some(r) = st.cache.get(&key, FOREVER) {
        return cached(&st, key, FOREVER, || Ok(r));
    }
    let view = st.ledger.certificate(&id)?;
    let content = qr_content(&headers, &view)?;
    let qr_problem = |e: qr::QrError| match e {
        qr::QrError::SizeOutOfRange(_) => Problem::bad_request(e.to_string()),
        _ => Problem::from_refusal(RefusalKind::Internal, e.to_string()),
    };
    // Rendering a large PNG takes a few milliseconds of CPU: keep it off the async workers.
    let (ctype, body): (&'static str, Vec<u8>) = if svg {
        let s = qr::svg(&content, size).map_err(qr_problem)?;
        ("image/svg+xml", s.into_bytes())
    } else {
        let png = tokio::task::spawn_blocking(move || qr::png(&content, size))
            .await
            .map_err(|e| Problem::from_refusal(RefusalKind::Internal, e.to_string()))?
            .map_err(qr_problem)?;
        ("image/png", png)
    };
    cached(&st, key, FOREVER, || {
        Ok(Rendered {
            status: 200,
            content_type: ctype,
            body: body.into(),
        })
    })
}

async fn get_qr_png(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Params, Problem>,
) -> ApiResult<Response> {
    get_qr(st, headers, id, q, false).await
}

async fn get_qr_svg(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Params, Problem>,
) -> ApiResult<Response> {
    get_qr(st, headers, id, q, true).await
}

async fn get_home() -> Response {
    html(StatusCode::OK, pages::home_page(None))
}

fn see_other(location: &str) -> Response {
    redirect(StatusCode::SEE_OTHER, location)
}

/// A redirect to `location` (a path of this server) with `status`.
fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => html_error(StatusCode::BAD_REQUEST, "the link cannot be followed"),
    }
}

/// The resolver path of a unit, with its seal when known (a genuine seal, base64url, needs no
/// encoding; anything else given as one is encoded, so that it stays one parameter).
fn resolver_path(gtin: &str, serial: &str, seal: Option<&str>) -> String {
    let mut p = format!("/01/{gtin}/21/{}", seal::percent_encode(serial));
    if let Some(s) = seal {
        p.push_str("?seal=");
        p.push_str(&seal::percent_encode(s));
    }
    p
}

/// An error of the home page's forms (`/lookup`, `/scan`): the problem for a client that
/// prefers JSON, otherwise the home page again with the problem's detail on top; the same
/// status either way.
fn form_error(json: bool, problem: Problem) -> Response {
    if json {
        problem.into_response()
    } else {
        html(problem.status, pages::home_page(Some(&problem.detail)))
    }
}

/// `GET /lookup?gtin=…&serial=…` or `?id=…`: the home page's form; redirects (303) to the
/// unit's resolver link, whatever the `Accept` (followed with it, the resolver answers the
/// page or the product JSON). A mistake is the home page with a message, or a problem for a
/// client that prefers JSON.
async fn get_lookup(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    match lookup_target(&st, q) {
        Ok(location) => see_other(&location),
        Err(p) => form_error(wants_json(&headers), p),
    }
}

/// The resolver link a look-up leads to.
fn lookup_target(
    st: &AppState,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<String> {
    let Ok(Query(q)) = q else {
        return Err(Problem::bad_request(
            "The form could not be read; try again.",
        ));
    };
    let field = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(id) = field("id") {
        let id = id.to_ascii_lowercase();
        let Ok(cid) = id.parse::<CertificateId>() else {
            return Err(Problem::bad_request(
                "A certificate ID is 32 hexadecimal digits (0-9, a-f).",
            ));
        };
        return match st.ledger.certificate(&cid) {
            Ok(v) => Ok(resolver_path(&v.gtin, &v.serial, Some(&v.seal))),
            Err(QueryError::NotFound(_)) => Err(Problem::from_refusal(
                RefusalKind::NotFound,
                format!("No certificate {id} is in the ledger."),
            )),
            Err(e @ QueryError::NotYet(_)) => Err(unavailable(e.to_string())),
            Err(e) => Err(Problem::from_refusal(RefusalKind::Internal, e.to_string())),
        };
    }
    let (Some(gtin), Some(serial)) = (field("gtin"), field("serial")) else {
        return Err(Problem::bad_request(
            "Enter a GTIN and a serial number, or a certificate ID.",
        ));
    };
    let digits: String = gtin.chars().filter(|c| !c.is_whitespace()).collect();
    let padded = format!("{digits:0>14}");
    if !gs1::gtin14_is_valid(&padded) {
        return Err(Problem::bad_request(format!(
            "{gtin} is not a valid GTIN: 8 to 14 digits with a correct GS1 check digit."
        )));
    }
    if !gs1::is_valid_serial(serial) {
        return Err(Problem::bad_request(
            "A serial number is 1 to 20 characters of the GS1 character set (letters, digits and !\"%&'()*+,-./:;<=>?_).",
        ));
    }
    Ok(resolver_path(&padded, serial, None))
}

/// The largest photo upload accepted by `/scan`.
pub const MAX_PHOTO_BYTES: usize = 16 * 1024 * 1024;

/// A photo waits at most this long for its turn to be read (one at a time).
const SCAN_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// `POST /scan` (multipart/form-data, one image file): decodes the QR code on the server and
/// redirects (303) to its resolver link, whatever the `Accept`. A photo that cannot be read is
/// the home page with a message, or a problem for a client that prefers JSON.
async fn post_scan(
    State(st): State<AppState>,
    headers: HeaderMap,
    mp: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    match scan_target(&st, mp).await {
        Ok(location) => see_other(&location),
        Err(p) => form_error(wants_json(&headers), p),
    }
}

/// The resolver link of the first ledger QR code in the uploaded photo.
async fn scan_target(
    st: &AppState,
    mp: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<String> {
    let Ok(mut mp) = mp else {
        return Err(Problem::bad_request(
            "Upload the photo with the form on this page (multipart/form-data).",
        ));
    };
    let read = async {
        let mut photo = None;
        while let Some(field) = mp.next_field().await? {
            let is_file = field.file_name().is_some()
                || matches!(field.name(), Some("photo" | "file" | "image"));
            if is_file && photo.is_none() {
                photo = Some(field.bytes().await?);
            }
        }
        Ok::<_, axum::extract::multipart::MultipartError>(photo)
    };
    let photo = match tokio::time::timeout(st.opts.upload_timeout, read).await {
        Err(_) => {
            return Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "Request body too slow",
                "The upload took too long. Try a smaller photo.",
            ));
        }
        Ok(Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Problem::from_refusal(
                RefusalKind::TooLarge,
                format!(
                    "The photo is larger than {} MB. Take a smaller one.",
                    MAX_PHOTO_BYTES / (1024 * 1024)
                ),
            ));
        }
        Ok(Err(e)) => return Err(Problem::bad_request(format!("The upload failed: {e}"))),
        Ok(Ok(None)) => return Err(Problem::bad_request("Choose a photo of the QR label.")),
        Ok(Ok(Some(p))) if p.is_empty() => {
            return Err(Problem::bad_request("Choose a photo of the QR label."));
        }
        Ok(Ok(Some(p))) => p,
    };
    // Decoding a photo is CPU work (up to seconds): off the async workers, one at a time; the
    // turn is held until the decoding ends, even if this request has timed out by then.
    let Ok(Ok(turn)) =
        tokio::time::timeout(SCAN_QUEUE_WAIT, st.scans.clone().acquire_owned()).await
    else {
        return Err(unavailable(
            "Other photos are being read. Try again in a moment.".to_owned(),
        ));
    };
    let decoded = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        qr::decode_image(&photo)
    })
    .await;
    let codes = match decoded {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(Problem::from_refusal(RefusalKind::Invalid, e.to_string())),
        Err(e) => return Err(Problem::from_refusal(RefusalKind::Internal, e.to_string())),
    };
    for code in &codes {
        if let Ok(link) = seal::parse_digital_link(code) {
            let seal = link.seal.map(|s| s.to_base64url());
            return Ok(resolver_path(&link.gtin, &link.serial, seal.as_deref()));
        }
    }
    let shown: String = codes
        .first()
        .map_or(String::new(), |c| c.chars().take(80).collect());
    Err(Problem::from_refusal(
        RefusalKind::Invalid,
        format!(
            "The QR code was read, but it is not a certificate link (it holds \"{shown}\"). \
             Scan the ledger's QR label on the product."
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// Metrics (Prometheus text exposition format, written by hand)
// ---------------------------------------------------------------------------------------------

/// The refusal reasons counted: the [`RefusalKind`] names, then the HTTP layer's own.
const REFUSAL_REASONS: &[&str] = &[
    "malformed",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "invalid",
    "internal",
    "body_timeout",
];

const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The server's Prometheus metrics: entries appended by payload type, refusals by reason,
/// tree size, group-commit batch sizes, append latency, and HTTP latency by route and status
/// class.
pub struct Metrics {
    appended: [AtomicU64; 4],
    refusals: Box<[AtomicU64]>,
    append_latency: Histogram,
    /// One histogram per (route, status class); the last route slot is "unmatched".
    http: Box<[Histogram]>,
    /// The connections the server accepted.
    connections: Arc<crate::server::ConnectionStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Metrics {
        let http_slots = (ROUTES.len() + 1) * STATUS_CLASSES.len();
        Metrics {
            appended: Default::default(),
            refusals: REFUSAL_REASONS.iter().map(|_| AtomicU64::new(0)).collect(),
            append_latency: Histogram::new(crate::metrics::LATENCY_BUCKETS, 1e9),
            http: (0..http_slots)
                .map(|_| Histogram::new(crate::metrics::LATENCY_BUCKETS, 1e9))
                .collect(),
            connections: Arc::default(),
        }
    }

    /// Counts a refusal; `reason` is a [`RefusalKind::as_str`] name or `body_timeout`.
    fn refused(&self, reason: &str) {
        if let Some(i) = REFUSAL_REASONS.iter().position(|r| *r == reason)
            && let Some(c) = self.refusals.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an entry appended by this server and its latency.
    fn appended(&self, kind: Option<PayloadType>, latency: Duration) {
        let i = match kind {
            Some(PayloadType::Party) => 0,
            Some(PayloadType::Certificate) => 1,
            Some(PayloadType::Revocation) => 2,
            Some(PayloadType::Event) | None => 3,
        };
        if let Some(c) = self.appended.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.append_latency
            .observe(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    fn observe_http(&self, route: &str, status: StatusCode, latency: Duration) {
        let r = ROUTES
            .iter()
            .position(|x| x.path == route)
            .unwrap_or(ROUTES.len());
        let class = usize::from(status.as_u16() / 100)
            .saturating_sub(1)
            .min(STATUS_CLASSES.len() - 1);
        if let Some(h) = self.http.get(r * STATUS_CLASSES.len() + class) {
            h.observe(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, tree_size: u64, stats: &crate::ledger::SequencerStats) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(8192);
        out.push_str(
            "# HELP reman_ledger_entries_appended_total Entries appended through this server, by payload type.\n\
             # TYPE reman_ledger_entries_appended_total counter\n",
        );
        for (t, c) in PayloadType::ALL.iter().zip(&self.appended) {
            let _ = writeln!(
                out,
                "reman_ledger_entries_appended_total{{type=\"{}\"}} {}",
                t.name(),
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP reman_ledger_refusals_total Submissions refused, by reason.\n\
             # TYPE reman_ledger_refusals_total counter\n",
        );
        for (r, c) in REFUSAL_REASONS.iter().zip(self.refusals.iter()) {
            let _ = writeln!(
                out,
                "reman_ledger_refusals_total{{reason=\"{r}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP reman_ledger_tree_size Entries in the log (size of the latest checkpoint).\n\
             # TYPE reman_ledger_tree_size gauge\n\
             reman_ledger_tree_size {tree_size}"
        );
        out.push_str(
            "# HELP reman_ledger_batch_size Entries per group commit (one checkpoint each).\n\
             # TYPE reman_ledger_batch_size histogram\n",
        );
        stats
            .batch_size
            .render(&mut out, "reman_ledger_batch_size", "");
        out.push_str(
            "# HELP reman_ledger_append_latency_seconds Time from a submission's arrival to its durable append.\n\
             # TYPE reman_ledger_append_latency_seconds histogram\n",
        );
        self.append_latency
            .render(&mut out, "reman_ledger_append_latency_seconds", "");
        out.push_str(
            "# HELP reman_ledger_commit_seconds Time of each group commit's storage write (sled batch) and of its flush to disk (fsync): where a slow disk shows.\n\
             # TYPE reman_ledger_commit_seconds histogram\n",
        );
        stats
            .write_seconds
            .render(&mut out, "reman_ledger_commit_seconds", "phase=\"write\",");
        stats
            .flush_seconds
            .render(&mut out, "reman_ledger_commit_seconds", "phase=\"flush\",");
        out.push_str(
            "# HELP reman_ledger_http_request_duration_seconds HTTP request latency, by route and status class.\n\
             # TYPE reman_ledger_http_request_duration_seconds histogram\n",
        );
        let routes = ROUTES.iter().map(|r| r.path).chain(["unmatched"]);
        for (ri, route) in routes.enumerate() {
            for (ci, class) in STATUS_CLASSES.iter().enumerate() {
                let Some(h) = self.http.get(ri * STATUS_CLASSES.len() + ci) else {
                    continue;
                };
                if h.count() == 0 {
                    continue;
                }
                let labels = format!("route=\"{route}\",status_class=\"{class}\",");
                h.render(
                    &mut out,
                    "reman_ledger_http_request_duration_seconds",
                    &labels,
                );
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

/// The OpenAPI path of an axum path: `{*rest}` becomes `{rest}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The OpenAPI 3.0 document of the API, generated from [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": if p.location == ParamIn::Path { "path" } else { "query" },
                    "required": p.required,
                    "description": p.description,
                    "schema": if p.kind == "integer" {
                        json!({"type": "integer", "format": "int64", "minimum": 0})
                    } else {
                        json!({"type": "string"})
                    },
                })
            })
            .collect();
        let mut responses = serde_json::Map::new();
        for a in r.ok {
            let schema = if !a.schema.is_empty() {
                schema_ref(a.schema)
            } else if a.media_type.starts_with("text/") {
                json!({"type": "string"})
            } else {
                json!({"type": "object"})
            };
            let answer = if a.media_type.is_empty() {
                json!({"description": a.description})
            } else {
                json!({"description": a.description,
                       "content": {a.media_type: {"schema": schema}}})
            };
            responses.insert(a.status.to_string(), answer);
        }
        for s in r.errors {
            let reason = StatusCode::from_u16(*s)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("error");
            let mut content = json!({PROBLEM_JSON: {"schema": schema_ref("Problem")}});
            let mut description = reason.to_owned();
            if r.html_errors {
                content[HTML_PAGE.media_type] = json!({"schema": {"type": "string"}});
                description.push_str(
                    ": a problem when the Accept header prefers JSON to text/html, else a page",
                );
            }
            responses.insert(
                s.to_string(),
                json!({"description": description, "content": content}),
            );
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": operation_id(r),
            "parameters": params,
            "responses": responses,
        });
        let body = match r.path {
            "/api/v1/entries" => Some(
                json!({"required": true, "description": "a DSSE envelope, at most 64 KiB",
                       "content": {"application/json": {"schema": schema_ref("Envelope")}}}),
            ),
            "/scan" => Some(
                json!({"required": true, "content": {"multipart/form-data": {"schema": {
                "type": "object", "properties": {"photo": {"type": "string", "format": "binary",
                "description": "a PNG or JPEG photo of the QR label, at most 16 MiB"}}}}}}),
            ),
            _ => None,
        };
        if let (Some(body), Some(o)) = (body, op.as_object_mut()) {
            o.insert("requestBody".into(), body);
        }
        let entry = paths
            .entry(openapi_path(r.path))
            .or_insert_with(|| json!({}));
        if let Some(o) = entry.as_object_mut() {
            o.insert(r.method.to_ascii_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "reman-ledger",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Certification and traceability ledger for remanufactured products: \
                signed certificates on a verifiable, append-only Merkle-tree log (RFC 6962/9162). \
                Errors are RFC 9457 application/problem+json; the routes browsers use (the \
                resolver, /lookup, /scan) answer pages instead, errors included, unless the \
                Accept header weighs JSON (application/json or an application/*+json type) \
                above text/html (RFC 9110 §12.5.1; a tie is a page). Hashes are lowercase hex.",
            "license": {"name": "Apache-2.0"},
        },
        "paths": paths,
        "components": {"schemas": schemas()},
    })
}

fn operation_id(r: &Route) -> String {
    let mut id = r.method.to_ascii_lowercase();
    for c in r.path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('_') {
            id.push('_');
        }
    }
    id.trim_end_matches('_').to_owned()
}

fn schemas() -> Value {
    let hex = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let hexes = json!({"type": "array", "items": hex});
    let inclusion = json!({
        "type": "object",
        "required": ["tree_size", "root", "proof"],
        "properties": {"tree_size": {"type": "integer"}, "root": hex, "proof": hexes},
    });
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
            },
        },
        "Envelope": {
            "type": "object",
            "description": "DSSE envelope with exactly one signature (SPEC §3)",
            "required": ["payloadType", "payload", "signatures"],
            "properties": {
                "payloadType": {"type": "string", "enum": PayloadType::ALL.iter().map(|t| t.media_type()).collect::<Vec<_>>()},
                "payload": {"type": "string", "format": "byte"},
                "signatures": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                    "type": "object", "required": ["keyid", "sig"],
                    "properties": {"keyid": {"type": "string"}, "sig": {"type": "string", "format": "byte"}},
                }},
            },
        },
        "InclusionProof": inclusion,
        "Receipt": {
            "type": "object",
            "required": ["index", "leaf_hash", "integrated_time", "checkpoint", "inclusion_proof"],
            "properties": {
                "index": {"type": "integer"},
                "leaf_hash": hex,
                "integrated_time": {"type": "string", "format": "date-time"},
                "certificate_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "seal": {"type": "string", "description": "base64url, no padding (SPEC §5)"},
                "qr_url": {"type": "string", "format": "uri"},
                "status": {"type": "string", "enum": ["valid", "revoked", "superseded"],
                           "description": "for a certificate: its status now"},
                "in_force": {"type": "boolean",
                             "description": "for a party registration: whether it is the one in force now"},
                "checkpoint": {"type": "string"},
                "inclusion_proof": schema_ref("InclusionProof"),
            },
        },
        "EntryAnswer": {
            "type": "object",
            "required": ["index", "leaf", "leaf_hash", "entry"],
            "properties": {
                "index": {"type": "integer"},
                "leaf": {"type": "string", "format": "byte", "description": "the exact entry bytes"},
                "leaf_hash": hex,
                "entry": {"type": "object"},
            },
        },
        "CertificateView": {
            "type": "object",
            "required": ["certificate_id", "status", "certificate", "issuer", "index",
                         "integrated_time", "seal", "events", "inclusion_proof", "checkpoint"],
            "properties": {
                "certificate_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "status": {"type": "string", "enum": ["valid", "revoked", "superseded"]},
                "certificate": {"type": "object", "description": "the certificate.v1 payload"},
                "issuer": {"type": "object", "properties": {
                    "name": {"type": "string"}, "display_name": {"type": "string"},
                    "country": {"type": "string"}}},
                "index": {"type": "integer"},
                "integrated_time": {"type": "string", "format": "date-time"},
                "seal": {"type": "string"},
                "qr_url": {"type": "string", "nullable": true},
                "events": {"type": "array", "description": "oldest first", "items": {
                    "type": "object", "properties": {
                    "index": {"type": "integer"},
                    "integrated_time": {"type": "string", "format": "date-time"},
                    "signer": {"type": "string", "description": "the signer's party name"},
                    "event": {"type": "object", "description": "the event.v1 payload"}}}},
                "revocation": {"type": "object", "nullable": true, "properties": {
                    "index": {"type": "integer"},
                    "integrated_time": {"type": "string", "format": "date-time"},
                    "signer": {"type": "string", "description": "the signer's party name"},
                    "revocation": {"type": "object", "description": "the revocation.v1 payload"}}},
                "supersedes": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "inclusion_proof": schema_ref("InclusionProof"),
                "checkpoint": {"type": "string"},
                "superseded_by": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            },
        },
        "Product": {
            "type": "array",
            "description": "every certificate of the unit, newest first",
            "items": schema_ref("CertificateView"),
        },
        "Resolution": {
            "type": "object",
            "required": ["gtin", "serial", "verdict", "seal_check", "certificate_id", "proof_verified", "certificates"],
            "properties": {
                "gtin": {"type": "string"},
                "serial": {"type": "string"},
                "verdict": {"type": "string", "enum": ["valid", "revoked", "superseded", "unknown", "seal_invalid"]},
                "seal_check": {"type": "object", "required": ["result"], "properties": {
                    "result": {"type": "string", "enum": ["not_given", "valid", "invalid", "other_product"]},
                    "detail": {"type": "string", "description": "why the seal is invalid"},
                    "certificate_id": {"type": "string", "description": "the certificate a seal for another product belongs to"}}},
                "certificate_id": {"type": "string", "nullable": true, "description": "the certificate the verdict is about: the sealed one, else the newest"},
                "proof_verified": {"type": "boolean", "description": "its inclusion proof verified against the signed checkpoint"},
                "certificates": {"type": "array", "description": "the product JSON: what GET /api/v1/products/{gtin}/{serial} answers (every certificate of the unit, newest first)", "items": schema_ref("CertificateView")},
            },
        },
        "Party": {
            "type": "object",
            "required": ["name", "role", "key", "status", "index"],
            "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["operator", "remanufacturer", "certifier", "customs", "importer"]},
                "display_name": {"type": "string"},
                "country": {"type": "string"},
                "key": {"type": "string", "description": "vkey"},
                "status": {"type": "string", "enum": ["active", "suspended"]},
                "index": {"type": "integer", "description": "entry of the registration in force"},
            },
        },
        "Parties": {"type": "array", "items": schema_ref("Party")},
        "Log": {
            "type": "object",
            "required": ["origin", "log_key", "tree_size", "root"],
            "properties": {
                "origin": {"type": "string"},
                "log_key": {"type": "string", "description": "vkey"},
                "tree_size": {"type": "integer"},
                "root": hex,
            },
        },
        "InclusionAnswer": {
            "type": "object",
            "required": ["index", "tree_size", "leaf_hash", "proof"],
            "properties": {"index": {"type": "integer"}, "tree_size": {"type": "integer"},
                           "leaf_hash": hex, "proof": hexes},
        },
        "ConsistencyAnswer": {
            "type": "object",
            "required": ["first", "second", "proof"],
            "properties": {"first": {"type": "integer"}, "second": {"type": "integer"}, "proof": hexes},
        },
        "Health": {
            "type": "object",
            "required": ["status", "tree_size"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "halted"]},
                "tree_size": {"type": "integer"},
                "halted": {"type": "object", "properties": {"reason": {"type": "string"}, "action": {"type": "string"}}},
                "mirror": {"type": "object"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_has_the_rfc_9457_members() {
        let p = Problem::from_refusal(RefusalKind::Conflict, "already valid");
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert_eq!(
            p.to_json(),
            json!({"type": "https://reman-ledger.example/problems/conflict",
                   "title": "Conflicts with the log", "status": 409, "detail": "already valid"})
        );
    }

    #[test]
    fn every_refusal_kind_keeps_its_spec_status() {
        for (k, s) in [
            (RefusalKind::Malformed, 400),
            (RefusalKind::Unauthorized, 401),
            (RefusalKind::Forbidden, 403),
            (RefusalKind::NotFound, 404),
            (RefusalKind::Conflict, 409),
            (RefusalKind::TooLarge, 413),
            (RefusalKind::Invalid, 422),
            (RefusalKind::Internal, 500),
        ] {
            let p = Problem::from_refusal(k, "x");
            assert_eq!(p.status.as_u16(), s);
            assert!(REFUSAL_REASONS.contains(&p.kind));
        }
    }

    #[test]
    fn parse_u64_refuses_signs_garbage_and_overflow() {
        assert_eq!(parse_u64("i", "0").unwrap(), 0);
        assert_eq!(parse_u64("i", "18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            "",
            "+1",
            "-1",
            "1.0",
            "0x10",
            " 1",
            "18446744073709551616",
            "abc",
        ] {
            assert_eq!(
                parse_u64("i", bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[1.0, 2.0], 1.0);
        for v in [1, 2, 2, 5] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "m", "a=\"b\",");
        assert_eq!(
            s,
            "m_bucket{a=\"b\",le=\"1\"} 1\nm_bucket{a=\"b\",le=\"2\"} 3\n\
             m_bucket{a=\"b\",le=\"+Inf\"} 4\nm_sum{a=\"b\"} 10\nm_count{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn appends_are_counted_by_type() {
        let m = Metrics::new();
        let d = Duration::from_millis(3);
        for _ in 0..3 {
            m.appended(Some(PayloadType::Certificate), d);
        }
        m.appended(Some(PayloadType::Event), d);
        let stats = crate::ledger::SequencerStats::default();
        stats.batch_size.observe(4);
        let text = m.render(14, &stats);
        assert!(
            text.contains("reman_ledger_batch_size_count{} 1\n"),
            "{text}"
        );
        assert!(text.contains("reman_ledger_batch_size_sum{} 4\n"), "{text}");
        assert!(text.contains("reman_ledger_entries_appended_total{type=\"certificate\"} 3\n"));
        assert!(text.contains("reman_ledger_entries_appended_total{type=\"event\"} 1\n"));
        assert!(text.contains("reman_ledger_append_latency_seconds_count{} 4\n"));
        assert!(text.contains("reman_ledger_tree_size 14\n"));
    }

    #[test]
    fn the_router_registers_exactly_the_listed_routes() {
        let listed: Vec<_> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(registered_routes(), listed);
    }

    #[test]
    fn openapi_documents_every_route_and_only_those() {
        let doc = openapi();
        let paths = doc["paths"].as_object().unwrap();
        for r in ROUTES {
            let op = &paths[&openapi_path(r.path)][r.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", r.method, r.path);
            // Every path parameter of the path is documented.
            for seg in r.path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let name = name.trim_start_matches('*');
                    assert!(
                        op["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == name && p["in"] == "path"),
                        "{} lacks parameter {name}",
                        r.path
                    );
                }
            }
        }
        let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, ROUTES.len());
        // Every schema referenced exists.
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(doc["components"]["schemas"][&name].is_object(), "{name}");
        }
    }
}
