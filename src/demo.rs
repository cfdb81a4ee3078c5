//! The demo data set: `fixtures/demo/demo.jsonl`, signed with the demo keys of `keys/` and
//! submitted to a ledger in file order.
//!
//! Each line is `{"signer", "type", "label", "payload"}`. Certificate IDs are hashes of the
//! payload bytes, so a line refers to an earlier certificate as `"@<label>"` (in
//! `certificate_id` or `supersedes`); the loader puts the real ID there before signing.

use crate::certificate::CertificateId;
use crate::dsse::Envelope;
use crate::keys::PrivateKey;
use crate::ledger::{Ledger, Receipt, SubmitError};
use crate::payload::PayloadType;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Why the demo data set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A line is not a demo record.
    #[error("demo line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The ledger refused a line.
    #[error("demo line {line} ({label}) refused: {source}")]
    Refused {
        /// 1-based line number.
        line: usize,
        /// The line's label.
        label: String,
        /// The refusal.
        source: SubmitError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    signer: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    label: Option<String>,
    payload: Value,
}

/// What loading did.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Lines newly logged.
    pub logged: usize,
    /// Lines that were already in the log (loading twice changes nothing).
    pub existing: usize,
    /// Certificate IDs by label.
    pub certificates: HashMap<String, CertificateId>,
    /// Each line's label (or line number) and receipt, in file order.
    pub receipts: Vec<(String, Receipt)>,
}

fn resolve(v: &mut Value, ids: &HashMap<String, CertificateId>) -> Result<(), String> {
    match v {
        Value::String(s) if s.starts_with('@') => {
            let id = ids
                .get(&s[1..])
                .ok_or_else(|| format!("{s} names no earlier certificate line"))?;
            *s = id.to_string();
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| resolve(x, ids))?,
        Value::Object(o) => o.values_mut().try_for_each(|x| resolve(x, ids))?,
        _ => {}
    }
    Ok(())
}

/// Signs the envelopes of the demo file, resolving `@label` references (no ledger needed).
pub fn envelopes(
    jsonl: &str,
    keys: &HashMap<String, PrivateKey>,
) -> Result<Vec<(String, Envelope)>, DemoError> {
    let mut ids = HashMap::new();
    let mut out = Vec::new();
    for (n, text) in jsonl.lines().enumerate() {
        let line = n + 1;
        if text.trim().is_empty() {
            continue;
        }
        let err = |why: String| DemoError::Line { line, why };
        let mut rec: Line = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let kind = match rec.kind.as_str() {
            "party" => PayloadType::Party,
            "certificate" => PayloadType::Certificate,
            "revocation" => PayloadType::Revocation,
            "event" => PayloadType::Event,
            other => return Err(err(format!("unknown type {other:?}"))),
        };
        resolve(&mut rec.payload, &ids).map_err(err)?;
        let key = keys
            .get(&rec.signer)
            .ok_or_else(|| err(format!("no key for signer {}", rec.signer)))?;
        let bytes = serde_json::to_vec(&rec.payload).map_err(|e| err(e.to_string()))?;
        let label = rec.label.unwrap_or_else(|| format!("line {line}"));
        if kind == PayloadType::Certificate {
            ids.insert(label.clone(), CertificateId::of_payload(&bytes));
        }
        let env = Envelope::sign(kind.media_type(), bytes, key).map_err(|e| err(e.to_string()))?;
        out.push((label, env));
    }
    Ok(out)
}

/// Signs and submits every line of the demo file, in order.
pub fn load(
    ledger: &Ledger,
    jsonl: &str,
    keys: &HashMap<String, PrivateKey>,
) -> Result<DemoReport, DemoError> {
    let mut report = DemoReport::default();
    for (n, (label, env)) in envelopes(jsonl, keys)?.into_iter().enumerate() {
        let receipt =
            ledger
                .submit(env.to_json().as_bytes())
                .map_err(|source| DemoError::Refused {
                    line: n + 1,
                    label: label.clone(),
                    source,
                })?;
        if receipt.created {
            report.logged += 1;
        } else {
            report.existing += 1;
        }
        if let Some(id) = receipt.certificate_id {
            report.certificates.insert(label.clone(), id);
        }
        report.receipts.push((label, receipt));
    }
    Ok(report)
}
