//! Page sizes and opaque page tokens shared by every List call.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};

/// Why a page request is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    NegativeSize,
    BadToken,
}

/// A validated page request: how many items, and the key to resume after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub size: usize,
    pub after: Option<Vec<u8>>,
}

impl Page {
    /// 0 means the default; sizes above `max` are capped (AIP-158).
    pub fn parse(size: i32, token: &str, default: i32, max: i32) -> Result<Page, PageError> {
        if size < 0 {
            return Err(PageError::NegativeSize);
        }
        let size = if size == 0 { default } else { size.min(max) } as usize;
        let after = if token.is_empty() { None } else { Some(B64.decode(token).map_err(|_| PageError::BadToken)?) };
        Ok(Page { size, after })
    }
}

/// The token for a page that ended at `last_key`.
pub fn token_after(last_key: &[u8]) -> String {
    B64.encode(last_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_reject_negative() {
        assert_eq!(Page::parse(0, "", 50, 1000).unwrap().size, 50);
        assert_eq!(Page::parse(5000, "", 50, 1000).unwrap().size, 1000);
        assert_eq!(Page::parse(-1, "", 50, 1000), Err(PageError::NegativeSize));
        assert_eq!(Page::parse(1, "!!", 50, 1000), Err(PageError::BadToken));
        let t = token_after(b"key\0x");
        assert_eq!(Page::parse(1, &t, 50, 1000).unwrap().after.unwrap(), b"key\0x");
    }
}
