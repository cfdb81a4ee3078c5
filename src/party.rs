//! Parties (SPEC §3.1): who may sign what. A party binds a key name to a public key, a role,
//! a country and a status; the newest registration of a name is the one in force.
//!
//! Only the content rules live here. Whether the signer may register parties, and whether a
//! name is new or an update, is decided by the ledger.

use crate::country::is_iso3166_alpha2;
use crate::keys::{self, KeyError, PublicKey};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// Why a party registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartyError {
    /// `name` is not a key name.
    #[error("party name {0:?} is invalid: use 1-100 characters from A-Z a-z 0-9 . _ - /")]
    InvalidName(String),
    /// `key` is not a usable public key (malformed, wrong key ID, invalid point, weak key...).
    #[error("party key is not usable: {0}")]
    Key(#[source] KeyError),
    /// The vkey carries another name than the party.
    #[error(
        "party key is named {key_name:?} but the party is {name:?}: the vkey's name must equal the party name"
    )]
    KeyNameMismatch {
        /// The party name.
        name: String,
        /// The name inside the vkey.
        key_name: String,
    },
    /// `country` is not an ISO 3166-1 alpha-2 code.
    #[error(
        "party country {0:?} is not an ISO 3166-1 alpha-2 code: expected two upper-case letters such as \"CN\" or \"DE\""
    )]
    InvalidCountry(String),
}

/// The role of a party, which decides what it may sign (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the ledger and registers parties.
    Operator,
    /// Remanufactures products and issues their certificates.
    Remanufacturer,
    /// Tests products independently.
    Certifier,
    /// A customs authority.
    Customs,
    /// Imports, buys or installs products.
    Importer,
}

impl Role {
    /// Every role, in the order of SPEC §3.1.
    pub const ALL: [Role; 5] = [
        Role::Operator,
        Role::Remanufacturer,
        Role::Certifier,
        Role::Customs,
        Role::Importer,
    ];

    /// The JSON spelling of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Remanufacturer => "remanufacturer",
            Role::Certifier => "certifier",
            Role::Customs => "customs",
            Role::Importer => "importer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a party may currently sign: a suspended party's new submissions are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartyStatus {
    /// The party may sign.
    Active,
    /// The party may not sign new submissions; what it signed before stays logged.
    Suspended,
}

impl PartyStatus {
    /// The JSON spelling of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            PartyStatus::Active => "active",
            PartyStatus::Suspended => "suspended",
        }
    }
}

impl fmt::Display for PartyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A party registration, the `party.v1` payload.
///
/// Deserializing checks the shape and parses the key (a bad key becomes a serde error); call
/// [`Party::validate`] for the remaining rules, or use [`crate::payload::parse`], which does
/// both and keeps the specific [`PartyError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PartyJson")]
pub struct Party {
    /// The party's name, which is also its key's name.
    pub name: String,
    /// What the party may sign.
    pub role: Role,
    /// A human-readable name, such as the company name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// ISO 3166-1 alpha-2 code of the party's country (optional: a log's operator may be
    /// international).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The party's public key, written as a vkey.
    #[serde(serialize_with = "serialize_vkey")]
    pub key: PublicKey,
    /// Whether the party may sign.
    pub status: PartyStatus,
    /// Free-form additional data, not interpreted by the ledger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

fn serialize_vkey<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&key.to_vkey())
}

/// The JSON shape of a party, with the key still as text, so that key errors can be reported
/// as [`PartyError::Key`] rather than as an opaque serde message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartyJson {
    name: String,
    role: Role,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    country: Option<String>,
    key: String,
    status: PartyStatus,
    #[serde(default)]
    extensions: Option<Map<String, Value>>,
}

impl TryFrom<PartyJson> for Party {
    type Error = PartyError;

    /// Parses the key; the other rules are left to [`Party::validate`].
    fn try_from(j: PartyJson) -> Result<Party, PartyError> {
        let key = PublicKey::parse(&j.key).map_err(PartyError::Key)?;
        Ok(Party {
            name: j.name,
            role: j.role,
            display_name: j.display_name,
            country: j.country,
            key,
            status: j.status,
            extensions: j.extensions,
        })
    }
}

impl Party {
    /// Checks the content rules of SPEC §3.1: the name is a key name, the key carries that
    /// name, and the country is an ISO 3166-1 alpha-2 code. (Weak and malformed keys cannot
    /// exist as a [`PublicKey`], so they were refused when the key was parsed.)
    pub fn validate(&self) -> Result<(), PartyError> {
        if !keys::is_valid_name(&self.name) {
            return Err(PartyError::InvalidName(self.name.clone()));
        }
        if self.key.name() != self.name {
            return Err(PartyError::KeyNameMismatch {
                name: self.name.clone(),
                key_name: self.key.name().to_owned(),
            });
        }
        if let Some(c) = self.country.as_deref().filter(|c| !is_iso3166_alpha2(c)) {
            return Err(PartyError::InvalidCountry(c.to_owned()));
        }
        Ok(())
    }

    /// Whether the party may sign new submissions.
    pub fn is_active(&self) -> bool {
        self.status == PartyStatus::Active
    }
}
