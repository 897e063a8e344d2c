//! The one mapping from store errors to gRPC status codes. Database failures are logged here,
//! where they become a response, and reach clients only as a generic `internal` status.

use tonic::Status;
use tracing::error;

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
            StoreError::Database(_) | StoreError::Migrate(_) => {
                error!(error = %Report(&err), "request failed on a database error");
                Status::internal("internal error")
            }
        }
    }
}
