//! The error every store reports: the backend is unreachable (nothing was written), a
//! stored record no longer decodes, or the engine (sled, PostgreSQL) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The backend cannot be reached right now; the write did not happen. Callers report
    /// UNAVAILABLE and clients may retry.
    Unavailable,
    /// A stored record does not decode.
    Corrupt,
    /// Anything else the engine reports.
    Engine,
}

#[derive(Debug, Clone)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn engine(message: impl Into<String>) -> Self {
        StoreError { kind: StoreErrorKind::Engine, message: message.into() }
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        StoreError { kind: StoreErrorKind::Corrupt, message: message.into() }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError { kind: StoreErrorKind::Unavailable, message: message.into() }
    }

    pub fn is_unavailable(&self) -> bool {
        self.kind == StoreErrorKind::Unavailable
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::engine(e.to_string())
    }
}

/// A lost or refused connection, a database shutting down or failing over, too many
/// clients, or a transaction the database chose to abort: nothing was written and a retry
/// may succeed. Anything else the database reports is an engine error.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        const RETRYABLE: &[&str] = &["57P01", "57P02", "57P03", "53300", "40001", "40P01"];
        let retryable = match e.code() {
            Some(state) => state.code().starts_with("08") || RETRYABLE.contains(&state.code()),
            None => e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()),
        };
        if retryable {
            StoreError::unavailable(format!("database unavailable: {e}"))
        } else {
            StoreError::engine(format!("database: {e}"))
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::corrupt(format!("corrupt record: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
