//! Why a caller may not act on an environment here: it does not exist for them, they lack
//! the permission, or another installation service hosts it.
use promotion_core::AccessError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Access(AccessError),
    NotHosted { environment: String, installation_service: String },
}

impl From<AccessError> for Refusal {
    fn from(e: AccessError) -> Self {
        Refusal::Access(e)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Access(e) => write!(f, "{e}"),
            Refusal::NotHosted { environment, installation_service } => {
                write!(f, "environment {environment} is hosted by the installation service at {installation_service}")
            }
        }
    }
}
