//! reman-ledger: a certification and traceability ledger for remanufactured products.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod certificate;
pub mod checkpoint;
pub mod country;
pub mod dsse;
pub mod event;
pub mod gs1;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod party;
pub mod payload;
pub mod revocation;
pub mod seal;
