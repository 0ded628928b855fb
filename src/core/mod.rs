//! The pure core: window resolution, content negotiation, pseudonymisation and
//! encoders. Nothing in here knows about actix-web or PostgreSQL; everything is
//! unit-tested on its own.

pub mod audit;
pub mod compress;
pub mod copy;
pub mod counts;
pub mod encode;
pub mod filename;
pub mod identity;
pub mod ingest;
pub mod jwt;
pub mod kind;
pub mod limits;
pub mod negotiate;
pub mod paging;
pub mod partition;
pub mod pseudonym;
pub mod retention;
pub mod scope;
pub mod summary;
pub mod tenant;
pub mod window;
pub mod zone;
