//! The one error type of the core. Every message names the bad value, the rule and the fix.

/// How a caller should treat an error: it drives HTTP status codes and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is wrong; fatal, fix the input (HTTP 400).
    Invalid,
    /// The named thing does not exist; fatal (HTTP 404).
    NotFound,
    /// The request conflicts with the current state; retry after changing the state (HTTP 409).
    Conflict,
    /// The request is larger than the head node accepts; fatal, send less at once (HTTP 413).
    TooLarge,
    /// The request carries no valid API token; fatal until a token is given (HTTP 401).
    Unauthorized,
    /// The caller's role does not allow the request; fatal, ask someone whose role does (HTTP 403).
    Forbidden,
    /// The head node failed while handling the request (a bug, reported in its log); the request
    /// was refused alone and the head node goes on (HTTP 500).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Invalid, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::NotFound, message: message.into() }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Conflict, message: message.into() }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Unauthorized, message: message.into() }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Forbidden, message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Internal, message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
