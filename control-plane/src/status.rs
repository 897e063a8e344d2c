//! The one mapping from store errors to gRPC status codes. Database failures are logged here,
//! where they become a response. A database that cannot be reached becomes `unavailable` (so
//! clients know to retry); any other database failure reaches clients only as a generic
//! `internal` status.

use tonic::Status;
use tracing::{error, warn};

use crate::error_report::Report;
use crate::store::StoreError;

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(msg) => Status::not_found(msg),
            StoreError::AlreadyExists(msg) => Status::already_exists(msg),
            StoreError::InvalidArgument(msg) => Status::invalid_argument(msg),
            StoreError::FailedPrecondition(msg) => Status::failed_precondition(msg),
            StoreError::Aborted(msg) => Status::aborted(msg),
            StoreError::Database(ref db) if is_unreachable(db) => {
                warn!(error = %Report(&err), "request failed: the database is unreachable");
                Status::unavailable("the database is unavailable; retry later")
            }
            StoreError::Database(_) | StoreError::Migrate(_) => {
                error!(error = %Report(&err), "request failed on a database error");
                Status::internal("internal error")
            }
        }
    }
}

/// Whether `err` means the database could not be reached (connection refused, lost or timed
/// out, or the server shutting down) rather than a failing statement.
fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P01–57P03 (server shutting down or
        // starting up).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable() {
        let status = Status::from(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("retry"));
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = Status::from(StoreError::Database(sqlx::Error::Io(io)));
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn other_database_failures_stay_internal() {
        let status = Status::from(StoreError::Database(sqlx::Error::RowNotFound));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
