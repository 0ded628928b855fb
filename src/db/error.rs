//! The one database error type of the read paths, and the one rule that
//! tells "the database is not there right now" (503) from a bug (500).

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// A database failure before the first byte of a response.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool.
    #[error("no database connection: {0}")]
    Pool(#[from] PoolError),
    /// A statement failed.
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// A read for one organization could not be bound to it (a bug: the
    /// name was not an organization's).
    #[error("cannot read for an organization: {0}")]
    Restrict(String),
}

impl DbError {
    /// True when the failure means the database cannot be reached right now
    /// (pool exhausted or timed out, connection refused, closed or reset, or
    /// the server shutting down or starting: SQLSTATE 57P01, 57P02, 57P03 or
    /// class 08), rather than a bug or a broken query.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) => true,
            DbError::Query(e) => is_unavailable(e),
            DbError::Restrict(_) => false,
        }
    }
}

/// What a background job logs of a failed statement: the server's own
/// message when there is one, else the error.
pub fn message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    }
}

/// See [`DbError::is_unavailable`].
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08")
        }
        // No SQLSTATE: unavailable when it is an I/O error on the socket.
        None => std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
    }
}
