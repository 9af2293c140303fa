//! The error every store reports: the backend is unreachable (nothing was written), a
//! stored record no longer decodes, or the engine failed.
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

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::corrupt(format!("corrupt record: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
