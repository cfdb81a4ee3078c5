//! reman-ledger: a certification and traceability ledger for remanufactured products.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keys;
pub mod merkle;
