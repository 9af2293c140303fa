//! Page requests and resume positions shared by every List call. A position is opaque
//! outside the store that produced it; here it only travels to and from page tokens.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};

/// Why a page request is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    NegativeSize,
    BadToken,
}

/// Where a listing resumes: produced by a store's listing, handed back to it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position(Vec<u8>);

impl Position {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Position(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A validated page request: how many items, and where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    pub after: Option<Position>,
}

impl PageRequest {
    /// 0 means the default; sizes above `max` are capped (AIP-158).
    pub fn parse(size: i32, token: &str, default: i32, max: i32) -> Result<PageRequest, PageError> {
        if size < 0 {
            return Err(PageError::NegativeSize);
        }
        let size = if size == 0 { default } else { size.min(max) }.max(1) as usize;
        let after =
            if token.is_empty() { None } else { Some(Position(B64.decode(token).map_err(|_| PageError::BadToken)?)) };
        Ok(PageRequest { size, after })
    }

    pub fn first(size: usize) -> PageRequest {
        PageRequest { size, after: None }
    }
}

/// One page of a listing and where the next one starts (None at the end).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Position>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next: self.next }
    }
}

/// The page token a client sends back to continue after `next` (empty at the end).
pub fn token(next: Option<&Position>) -> String {
    next.map(|p| B64.encode(&p.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_reject_negative() {
        assert_eq!(PageRequest::parse(0, "", 50, 1000).unwrap().size, 50);
        assert_eq!(PageRequest::parse(5000, "", 50, 1000).unwrap().size, 1000);
        assert_eq!(PageRequest::parse(-1, "", 50, 1000), Err(PageError::NegativeSize));
        assert_eq!(PageRequest::parse(1, "!!", 50, 1000), Err(PageError::BadToken));
        let t = token(Some(&Position::from_bytes(b"key\0x".to_vec())));
        assert_eq!(PageRequest::parse(1, &t, 50, 1000).unwrap().after.unwrap().as_bytes(), b"key\0x");
        assert_eq!(token(None), "");
    }
}
