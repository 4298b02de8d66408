//! The controller's errors and their one mapping onto gRPC status codes.

/// Why a request to the controller was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request is missing, malformed or out of bounds; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// A server the request names is not part of this farm.
    #[error("{0}")]
    NotFound(String),
    /// The controller cannot do it right now.
    #[error("{0}")]
    Unavailable(String),
}

/// Shorthand for results of the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::Unavailable(m) => tonic::Status::unavailable(m),
        }
    }
}
