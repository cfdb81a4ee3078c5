//! reman-ledger: a certification and traceability ledger for remanufactured products.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod dsse;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod seal;
