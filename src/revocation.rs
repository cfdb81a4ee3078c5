//! Revocations (SPEC §3.3): withdraw a certificate, for a stated reason.
//!
//! Every rule of a revocation is about its shape (a well-formed certificate ID, a known
//! reason, no unknown fields), so deserializing it is the whole check and this module has no
//! error type of its own. Whether the certificate exists and who may revoke it is decided by
//! the ledger.

use crate::certificate::CertificateId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a certificate is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationReason {
    /// The product was recalled.
    Recall,
    /// The certificate was obtained or issued fraudulently.
    Fraud,
    /// The certificate was issued in error.
    Error,
    /// Another reason, to be explained in the note.
    Other,
}

impl RevocationReason {
    /// The JSON spelling of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Recall => "recall",
            RevocationReason::Fraud => "fraud",
            RevocationReason::Error => "error",
            RevocationReason::Other => "other",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `revocation.v1` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The certificate revoked.
    pub certificate_id: CertificateId,
    /// Why it is revoked.
    pub reason: RevocationReason,
    /// Free-text explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
