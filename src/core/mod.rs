//! The pure core: window resolution, content negotiation, pseudonymisation and
//! encoders. Nothing in here knows about actix-web or PostgreSQL; everything is
//! unit-tested on its own.

pub mod encode;
pub mod negotiate;
pub mod pseudonym;
pub mod window;
