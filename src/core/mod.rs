//! The pure core: window resolution, content negotiation, pseudonymisation and
//! encoders. Nothing in here knows about actix-web or PostgreSQL; everything is
//! unit-tested on its own.

pub mod encode;
pub mod ingest;
pub mod negotiate;
pub mod pseudonym;
pub mod report;
pub mod retention;
pub mod rollup;
pub mod window;
