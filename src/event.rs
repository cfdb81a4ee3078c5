//! Traceability events (SPEC §3.4): what happened to a certified unit after it was certified,
//! and which role may say so.
//!
//! Whether the certificate exists or is revoked is decided by the ledger; this module checks
//! the event's own content.

use crate::certificate::CertificateId;
use crate::country::is_iso3166_alpha2;
use crate::party::Role;
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// `time` is not an RFC 3339 date-time with an offset.
    #[error(
        "event time {0:?} is not an RFC 3339 date-time with offset: expected e.g. \"2026-11-25T09:30:00+08:00\" or \"2026-11-25T01:30:00Z\""
    )]
    InvalidTime(String),
    /// `location.country` is not an ISO 3166-1 alpha-2 code.
    #[error(
        "location.country {0:?} is not an ISO 3166-1 alpha-2 code: expected two upper-case letters such as \"CN\" or \"DE\""
    )]
    InvalidCountry(String),
}

/// The kinds of traceability events (SPEC §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The unit was shipped.
    Shipped,
    /// Customs inspected the unit.
    CustomsInspected,
    /// Customs released the unit.
    CustomsReleased,
    /// Customs refused the unit.
    CustomsRefused,
    /// The unit was received.
    Received,
    /// The unit changed owner.
    OwnershipTransferred,
    /// The unit was installed.
    Installed,
    /// The unit was returned as a core for remanufacturing.
    ReturnedAsCore,
    /// The unit was scrapped.
    Scrapped,
    /// The unit was tested by a certifier.
    Tested,
}

impl EventKind {
    /// Every event kind, in the order of SPEC §3.4.
    pub const ALL: [EventKind; 10] = [
        EventKind::Shipped,
        EventKind::CustomsInspected,
        EventKind::CustomsReleased,
        EventKind::CustomsRefused,
        EventKind::Received,
        EventKind::OwnershipTransferred,
        EventKind::Installed,
        EventKind::ReturnedAsCore,
        EventKind::Scrapped,
        EventKind::Tested,
    ];

    /// The roles that may sign this event (the table of SPEC §3.4).
    pub fn allowed_roles(self) -> &'static [Role] {
        match self {
            EventKind::Shipped | EventKind::ReturnedAsCore | EventKind::Scrapped => {
                &[Role::Remanufacturer, Role::Importer]
            }
            EventKind::CustomsInspected
            | EventKind::CustomsReleased
            | EventKind::CustomsRefused => &[Role::Customs],
            EventKind::Received | EventKind::OwnershipTransferred | EventKind::Installed => {
                &[Role::Importer]
            }
            EventKind::Tested => &[Role::Certifier],
        }
    }

    /// The JSON spelling of the event kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Shipped => "shipped",
            EventKind::CustomsInspected => "customs_inspected",
            EventKind::CustomsReleased => "customs_released",
            EventKind::CustomsRefused => "customs_refused",
            EventKind::Received => "received",
            EventKind::OwnershipTransferred => "ownership_transferred",
            EventKind::Installed => "installed",
            EventKind::ReturnedAsCore => "returned_as_core",
            EventKind::Scrapped => "scrapped",
            EventKind::Tested => "tested",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event took place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// ISO 3166-1 alpha-2 code of the country.
    pub country: String,
    /// The place, such as a port or a plant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
}

/// The `event.v1` payload.
///
/// Deserializing checks only the shape; call [`Event::validate`] for the content rules, or use
/// [`crate::payload::parse`], which does both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The certificate of the unit the event is about.
    pub certificate_id: CertificateId,
    /// What happened.
    pub event: EventKind,
    /// When it happened: RFC 3339 with an offset, as stated by the signer.
    pub time: String,
    /// Where it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// An external reference, such as a customs declaration number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Free-text note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Event {
    /// The event time, parsed (RFC 3339, with its offset).
    pub fn parsed_time(&self) -> Result<OffsetDateTime, EventError> {
        OffsetDateTime::parse(&self.time, &Rfc3339)
            .map_err(|_| EventError::InvalidTime(self.time.clone()))
    }

    /// Checks the content rules: the time is RFC 3339 with an offset and the location's
    /// country, if any, is an ISO 3166-1 alpha-2 code.
    pub fn validate(&self) -> Result<(), EventError> {
        self.parsed_time()?;
        match &self.location {
            Some(loc) if !is_iso3166_alpha2(&loc.country) => {
                Err(EventError::InvalidCountry(loc.country.clone()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_as_str() {
        for kind in EventKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
