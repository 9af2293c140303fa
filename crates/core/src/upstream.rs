//! A failure reported by the other service (or its absence), as the domain sees it: a
//! canonical code, the reason the other side gave, and its message.
use std::collections::HashMap;

use crate::Code;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub code: Code,
    pub reason: String,
    pub message: String,
    pub metadata: HashMap<String, String>,
}

impl UpstreamError {
    pub fn new(code: Code, reason: impl Into<String>, message: impl Into<String>) -> Self {
        UpstreamError { code, reason: reason.into(), message: message.into(), metadata: HashMap::new() }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}
