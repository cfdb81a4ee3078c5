//! Certificates (SPEC §3.2): one signed certificate per physical remanufactured unit.
//!
//! The structs mirror the JSON of `certificate.v1` field for field; unknown fields are refused
//! everywhere except inside `extensions`. Deserializing checks only the shape (field names and
//! JSON types); [`Certificate::validate`] checks the content rules, each with its own error, so
//! a remanufacturer learns exactly what to fix. Whether a certificate conflicts with another
//! one for the same unit is the ledger's business, not this module's.

use crate::country::is_iso3166_alpha2;
use crate::gs1;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use time::Date;
use time::macros::format_description;

/// Why a certificate (or a certificate ID) was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CertificateError {
    /// A certificate ID is not 32 lowercase hex digits.
    #[error("certificate ID {0:?} is malformed: expected 32 lowercase hex digits")]
    MalformedId(String),
    /// `product.gtin` is not 14 ASCII digits.
    #[error(
        "product.gtin {0:?} is not a GTIN-14: expected exactly 14 digits (left-pad shorter GTINs with zeros)"
    )]
    GtinFormat(String),
    /// `product.gtin` has 14 digits but a wrong GS1 check digit.
    #[error(
        "product.gtin {gtin:?} has a wrong GS1 check digit: the first 13 digits give check digit {expected}"
    )]
    GtinCheckDigit {
        /// The GTIN as given.
        gtin: String,
        /// The check digit the first 13 digits call for.
        expected: u8,
    },
    /// `product.serial` is empty or longer than 20 characters.
    #[error("product.serial {serial:?} has {length} characters: GS1 AI 21 allows 1 to 20")]
    SerialLength {
        /// The serial as given.
        serial: String,
        /// Its length in characters.
        length: usize,
    },
    /// `product.serial` has a character outside the GS1 82-character set.
    #[error(
        "product.serial {serial:?} contains {character:?}, which GS1 AI 21 does not allow: use A-Z a-z 0-9 and ! \" % & ' ( ) * + , - . / : ; < = > ? _"
    )]
    SerialCharacter {
        /// The serial as given.
        serial: String,
        /// The first character outside the set.
        character: char,
    },
    /// `product.name` is empty or blank.
    #[error("product.name is empty: give the product's name")]
    EmptyName,
    /// `product.hs_code` is not 6, 8 or 10 digits.
    #[error("product.hs_code {0:?} is not an HS code: expected 6, 8 or 10 digits, without dots")]
    InvalidHsCode(String),
    /// A country field is not an ISO 3166-1 alpha-2 code.
    #[error(
        "{field} {value:?} is not an ISO 3166-1 alpha-2 code: expected two upper-case letters such as \"CN\" or \"DE\""
    )]
    InvalidCountry {
        /// The JSON path of the field.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A date field is not a valid calendar date written `YYYY-MM-DD`.
    #[error("{field} {value:?} is not a valid calendar date: expected YYYY-MM-DD")]
    InvalidDate {
        /// The JSON path of the field.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// The certificate is dated before the remanufacturing was completed.
    #[error(
        "issued {issued} is before process.completed {completed}: a certificate is issued on or after completion"
    )]
    IssuedBeforeCompleted {
        /// The issue date.
        issued: String,
        /// The completion date.
        completed: String,
    },
    /// `process.standards` is empty.
    #[error(
        "process.standards is empty: name at least one standard the unit was remanufactured to"
    )]
    NoStandards,
    /// An entry of `process.standards` is empty or blank.
    #[error("process.standards[{index}] is empty: name the standard")]
    EmptyStandard {
        /// The position of the entry.
        index: usize,
    },
    /// `process.tests` is empty.
    #[error("process.tests is empty: a certificate needs at least one test result")]
    NoTests,
    /// A test has an empty or blank name.
    #[error("process.tests[{index}].name is empty: name the test")]
    EmptyTestName {
        /// The position of the test.
        index: usize,
    },
    /// A test failed.
    #[error(
        "process test {name:?} failed: a unit that failed a test is not a remanufactured product"
    )]
    FailedTest {
        /// The name of the failed test.
        name: String,
    },
    /// `warranty_months` is 0.
    #[error(
        "warranty_months is 0: a remanufactured product carries a warranty of at least 1 month"
    )]
    NoWarranty,
    /// `marking` is empty or blank.
    #[error(
        "marking is empty: give the marking on the unit, such as \"再制造产品 / Remanufactured\""
    )]
    EmptyMarking,
    /// An environmental figure is negative.
    #[error("{field} is {value}: expected a number that is not negative")]
    NegativeEnvironmentValue {
        /// The JSON path of the field.
        field: &'static str,
        /// The value as given.
        value: f64,
    },
    /// `environment.material_reuse_pct` exceeds 100.
    #[error("environment.material_reuse_pct is {0}: expected a percentage from 0 to 100")]
    ReusePctOver100(f64),
}

/// A certificate ID: the first 16 bytes of SHA-256 of the exact payload bytes.
///
/// Written as 32 lowercase hex digits, in JSON as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateId(pub [u8; 16]);

impl CertificateId {
    /// Computes the ID of a certificate from its payload bytes (the bytes that were signed).
    pub fn of_payload(bytes: &[u8]) -> CertificateId {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        CertificateId(id)
    }

    /// The 16 raw bytes, as carried in the seal.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateId({self})")
    }
}

impl FromStr for CertificateId {
    type Err = CertificateError;

    /// Parses exactly 32 lowercase hex digits (upper case is refused so that every ID has one
    /// spelling).
    fn from_str(s: &str) -> Result<Self, CertificateError> {
        let mut id = [0u8; 16];
        let lower_hex = s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if s.len() != 32 || !lower_hex || hex::decode_to_slice(s, &mut id).is_err() {
            return Err(CertificateError::MalformedId(s.to_owned()));
        }
        Ok(CertificateId(id))
    }
}

impl Serialize for CertificateId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CertificateId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `certificate.v1` payload: one remanufactured unit, its core, process, tests and warranty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// What the unit is.
    pub product: Product,
    /// Where the used core came from.
    pub core: Core,
    /// How the unit was remanufactured and tested.
    pub process: Process,
    /// Warranty in months, at least 1 (the same as for a new product).
    pub warranty_months: u32,
    /// The marking on the unit, such as "再制造产品 / Remanufactured".
    pub marking: String,
    /// Environmental figures, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Issue date, `YYYY-MM-DD`.
    pub issued: String,
    /// The certificate this one replaces, if any.
    #[serde(default)]
    pub supersedes: Option<CertificateId>,
    /// Free-form additional data, not interpreted by the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// The product identity of a certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// GTIN-14 with a valid GS1 check digit.
    pub gtin: String,
    /// Serial number, GS1 AI 21.
    pub serial: String,
    /// Product name.
    pub name: String,
    /// Product category, such as "engine".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Harmonized System tariff code, 6, 8 or 10 digits.
    pub hs_code: String,
    /// The original equipment manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oem: Option<String>,
    /// The OEM part number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
}

/// The used core the unit was remanufactured from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Core {
    /// ISO 3166-1 alpha-2 code of the country the core came from.
    pub origin_country: String,
    /// Where the core came from, such as "end-of-life vehicle dismantler".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The remanufacturer's identifier of the core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_id: Option<String>,
}

/// The remanufacturing process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// The plant where the unit was remanufactured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// ISO 3166-1 alpha-2 code of the country of remanufacture.
    pub country: String,
    /// Completion date, `YYYY-MM-DD`.
    pub completed: String,
    /// The standards the unit was remanufactured to (at least one).
    pub standards: Vec<String>,
    /// The process steps, such as "disassembly" or "testing".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
    /// The parts that were replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_parts: Option<Vec<ReplacedPart>>,
    /// The tests the unit passed (at least one, all passed).
    pub tests: Vec<TestResult>,
}

/// A part replaced during remanufacturing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplacedPart {
    /// What part was replaced.
    pub part: String,
    /// Whether the replacement part is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
}

/// The result of one test of the unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// Whether the unit passed.
    pub result: TestOutcome,
    /// Whether the test is the one a new product passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as_new_product: Option<bool>,
}

/// The outcome of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestOutcome {
    /// The unit passed the test.
    Pass,
    /// The unit failed the test: such a certificate is refused.
    Fail,
}

/// Declared environmental figures of the unit (all optional, none negative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Mass of the unit in kilograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_kg: Option<f64>,
    /// Share of the unit's material that was reused, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_reuse_pct: Option<f64>,
    /// Energy saved against a new product, in kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_saved_kwh: Option<f64>,
    /// CO2-equivalent emissions saved against a new product, in kg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co2e_saved_kg: Option<f64>,
    /// How the figures were obtained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Parses a calendar date written exactly `YYYY-MM-DD` (four-digit year, no sign, no time).
pub fn parse_calendar_date(s: &str) -> Option<Date> {
    // Check the exact shape first: the `time` parser alone would also take a signed year.
    let shape_ok = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    Date::parse(s, format_description!("[year]-[month]-[day]")).ok()
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn check_date(field: &'static str, value: &str) -> Result<Date, CertificateError> {
    parse_calendar_date(value).ok_or_else(|| CertificateError::InvalidDate {
        field,
        value: value.to_owned(),
    })
}

fn check_country(field: &'static str, value: &str) -> Result<(), CertificateError> {
    if is_iso3166_alpha2(value) {
        Ok(())
    } else {
        Err(CertificateError::InvalidCountry {
            field,
            value: value.to_owned(),
        })
    }
}

fn check_non_negative(field: &'static str, value: Option<f64>) -> Result<(), CertificateError> {
    match value {
        // `!(v >= 0.0)` also refuses NaN, should a value ever be built by hand.
        Some(v) if !(v >= 0.0 && v.is_finite()) => {
            Err(CertificateError::NegativeEnvironmentValue { field, value: v })
        }
        _ => Ok(()),
    }
}

impl Product {
    /// Checks GTIN, serial, name and HS code.
    pub fn validate(&self) -> Result<(), CertificateError> {
        let gtin = &self.gtin;
        if gtin.len() != gs1::GTIN14_LEN || !gtin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CertificateError::GtinFormat(gtin.clone()));
        }
        if !gs1::gtin14_is_valid(gtin) {
            let expected = gtin.get(..13).and_then(gs1::check_digit).unwrap_or(0);
            return Err(CertificateError::GtinCheckDigit {
                gtin: gtin.clone(),
                expected,
            });
        }
        if let Some(character) = self.serial.chars().find(|&c| !gs1::is_cset82(c)) {
            return Err(CertificateError::SerialCharacter {
                serial: self.serial.clone(),
                character,
            });
        }
        if !gs1::is_valid_serial(&self.serial) {
            return Err(CertificateError::SerialLength {
                serial: self.serial.clone(),
                length: self.serial.chars().count(),
            });
        }
        if is_blank(&self.name) {
            return Err(CertificateError::EmptyName);
        }
        if !gs1::is_valid_hs_code(&self.hs_code) {
            return Err(CertificateError::InvalidHsCode(self.hs_code.clone()));
        }
        Ok(())
    }
}

impl Process {
    /// Checks country, completion date, standards and tests (any failed test refuses the
    /// certificate). Returns the completion date.
    pub fn validate(&self) -> Result<Date, CertificateError> {
        check_country("process.country", &self.country)?;
        let completed = check_date("process.completed", &self.completed)?;
        if self.standards.is_empty() {
            return Err(CertificateError::NoStandards);
        }
        if let Some(index) = self.standards.iter().position(|s| is_blank(s)) {
            return Err(CertificateError::EmptyStandard { index });
        }
        if self.tests.is_empty() {
            return Err(CertificateError::NoTests);
        }
        if let Some(index) = self.tests.iter().position(|t| is_blank(&t.name)) {
            return Err(CertificateError::EmptyTestName { index });
        }
        if let Some(failed) = self.tests.iter().find(|t| t.result == TestOutcome::Fail) {
            return Err(CertificateError::FailedTest {
                name: failed.name.clone(),
            });
        }
        Ok(completed)
    }
}

impl Environment {
    /// Checks that every figure is non-negative and the reuse share is at most 100 %.
    pub fn validate(&self) -> Result<(), CertificateError> {
        check_non_negative("environment.mass_kg", self.mass_kg)?;
        check_non_negative("environment.material_reuse_pct", self.material_reuse_pct)?;
        check_non_negative("environment.energy_saved_kwh", self.energy_saved_kwh)?;
        check_non_negative("environment.co2e_saved_kg", self.co2e_saved_kg)?;
        match self.material_reuse_pct {
            Some(pct) if pct > 100.0 => Err(CertificateError::ReusePctOver100(pct)),
            _ => Ok(()),
        }
    }
}

impl Certificate {
    /// Checks every content rule of SPEC §3.2, in document order, and reports the first one
    /// broken.
    pub fn validate(&self) -> Result<(), CertificateError> {
        self.product.validate()?;
        check_country("core.origin_country", &self.core.origin_country)?;
        let completed = self.process.validate()?;
        if self.warranty_months == 0 {
            return Err(CertificateError::NoWarranty);
        }
        if is_blank(&self.marking) {
            return Err(CertificateError::EmptyMarking);
        }
        if let Some(env) = &self.environment {
            env.validate()?;
        }
        let issued = check_date("issued", &self.issued)?;
        if issued < completed {
            return Err(CertificateError::IssuedBeforeCompleted {
                issued: self.issued.clone(),
                completed: self.process.completed.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_shape_is_exact() {
        assert_eq!(
            parse_calendar_date("2024-02-29"),
            Some(time::macros::date!(2024 - 02 - 29))
        );
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "+2026-11-21",
            "2026-11-21 ",
            "2026/11/21",
            "２０２６-11-21",
        ] {
            assert_eq!(parse_calendar_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn id_refuses_non_lowercase_hex() {
        assert!(CertificateId::from_str("E3B0C44298FC1C149AFBF4C8996FB924").is_err());
        assert!(CertificateId::from_str("e3b0c44298fc1c149afbf4c8996fb92").is_err());
        assert!(CertificateId::from_str("+3b0c44298fc1c149afbf4c8996fb924").is_err());
    }
}
