//! reman-ledger: a certification and traceability ledger for remanufactured products.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod bucket;
pub mod c2sp;
pub mod cache;
pub mod certificate;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod cosignature;
pub mod country;
pub mod demo;
pub mod dsse;
pub mod entry;
pub mod event;
pub mod export;
pub mod gs1;
pub mod issue;
pub mod keyfile;
pub mod keys;
pub mod ledger;
pub mod logging;
pub mod merkle;
pub mod metrics;
pub mod mirror;
pub mod mirroring;
pub mod note;
pub mod pages;
pub mod party;
pub mod payload;
pub mod qr;
pub mod query;
pub mod receipt;
pub mod revocation;
pub mod seal;
pub mod state;
pub mod store;
pub mod tiles;
pub mod tlog_proof;
pub mod trust;
pub mod verify;
pub mod witness;
pub mod witness_service;
pub mod witnessing;
