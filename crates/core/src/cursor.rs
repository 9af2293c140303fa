//! Page requests and resume positions shared by every List call, the page tokens that
//! carry positions to clients and back, and the byte bound of every page.
//!
//! A position is opaque outside the store that produced it. A page token is the position
//! with a MAC over it, the list it came from, that list's filters and the caller's
//! organization, under a key the store keeps (`KeyTable::secret_key("page-tokens")`), so
//! it is the same for every replica and survives restarts. A token from another list, with
//! other filters, from another organization, or made up, is INVALID_PAGE_TOKEN.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
    /// 0 means the default; sizes above `max` are capped (AIP-158). The token must be one
    /// `tokens` issued for `scope`.
    pub fn parse(
        tokens: &PageTokens,
        scope: &Scope,
        size: i32,
        token: &str,
        default: i32,
        max: i32,
    ) -> Result<PageRequest, PageError> {
        if size < 0 {
            return Err(PageError::NegativeSize);
        }
        let size = if size == 0 { default } else { size.min(max) }.max(1) as usize;
        let after = if token.is_empty() { None } else { Some(tokens.open(scope, token)?) };
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

/// What a page token is bound to: the list, the caller's organization, and every filter
/// that shapes the list (in a fixed order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub list: &'static str,
    pub organization: String,
    pub filters: Vec<String>,
}

impl Scope {
    pub fn new(list: &'static str, organization: &str) -> Scope {
        Scope { list, organization: organization.to_string(), filters: Vec::new() }
    }

    pub fn filter(mut self, value: impl ToString) -> Scope {
        self.filters.push(value.to_string());
        self
    }
}

/// Issues and opens page tokens under one service key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

const TOKEN_VERSION: u8 = 1;
const MAC_BYTES: usize = 16;

impl PageTokens {
    pub fn new(key: &[u8]) -> PageTokens {
        PageTokens { key: key.to_vec() }
    }

    fn mac(&self, scope: &Scope, position: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"promotion.v1 page token\0");
        // Length-prefixed, so no two scopes encode alike.
        for part in [scope.list.as_bytes(), scope.organization.as_bytes()]
            .into_iter()
            .chain(scope.filters.iter().map(|f| f.as_bytes()))
            .chain([position])
        {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The token a client sends back to continue after `next` (empty at the end).
    pub fn token(&self, scope: &Scope, next: Option<&Position>) -> String {
        let Some(p) = next else { return String::new() };
        let tag = self.mac(scope, &p.0).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(1 + p.0.len() + MAC_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&p.0);
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
        B64.encode(bytes)
    }

    /// The position in a token this service issued for `scope`.
    pub fn open(&self, scope: &Scope, token: &str) -> Result<Position, PageError> {
        let bytes = B64.decode(token).map_err(|_| PageError::BadToken)?;
        if bytes.len() < 1 + MAC_BYTES || bytes[0] != TOKEN_VERSION {
            return Err(PageError::BadToken);
        }
        let (position, tag) = bytes[1..].split_at(bytes.len() - 1 - MAC_BYTES);
        self.mac(scope, position).verify_truncated_left(tag).map_err(|_| PageError::BadToken)?;
        Ok(Position(position.to_vec()))
    }
}

/// Bytes every list response may spend on its items: clients cap messages at 4 MiB by
/// default and the server at `limits.max_message_bytes` (at least 1.0625 MiB), and the
/// largest single item (an object of 256 KiB, a package naming 500 roots) fits several
/// times.
pub const PAGE_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// A page of at most `budget` bytes of items as `size` measures them (at least one item,
/// so a listing always moves on): `fetch` is asked again for fewer items when the first
/// answer is larger, so the next token resumes right after the last item returned.
pub async fn bounded<T, E, F, Fut>(
    mut request: PageRequest,
    budget: usize,
    size: impl Fn(&T) -> usize,
    mut fetch: F,
) -> Result<Page<T>, E>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, E>>,
{
    loop {
        let page = fetch(request.clone()).await?;
        let mut total = 0;
        let mut fits = 0;
        for item in &page.items {
            total += size(item);
            if total > budget && fits > 0 {
                break;
            }
            fits += 1;
        }
        if fits == page.items.len() {
            return Ok(page);
        }
        // Strictly fewer each time, so this ends (at one item at worst).
        request.size = fits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_reject_negative() {
        let tokens = PageTokens::new(b"k");
        let scope = Scope::new("ListObjects", "acme");
        let parse = |size, token: &str| PageRequest::parse(&tokens, &scope, size, token, 50, 1000);
        assert_eq!(parse(0, "").unwrap().size, 50);
        assert_eq!(parse(5000, "").unwrap().size, 1000);
        assert_eq!(parse(-1, ""), Err(PageError::NegativeSize));
        assert_eq!(parse(1, "!!"), Err(PageError::BadToken));
        let t = tokens.token(&scope, Some(&Position::from_bytes(b"key\0x".to_vec())));
        assert_eq!(parse(1, &t).unwrap().after.unwrap().as_bytes(), b"key\0x");
        assert_eq!(tokens.token(&scope, None), "");
    }

    #[test]
    fn tokens_hold_only_for_their_list_filters_organization_and_key() {
        let tokens = PageTokens::new(b"k");
        let scope = Scope::new("ListObjects", "acme").filter("dev").filter("GROUP");
        let t = tokens.token(&scope, Some(&Position::from_bytes(b"X/dev/GROUP/1".to_vec())));
        assert!(tokens.open(&scope, &t).is_ok());
        for other in [
            Scope::new("ListPackages", "acme").filter("dev").filter("GROUP"),
            Scope::new("ListObjects", "globex").filter("dev").filter("GROUP"),
            Scope::new("ListObjects", "acme").filter("dev").filter("ROLE"),
            Scope::new("ListObjects", "acme").filter("devGROUP"),
        ] {
            assert_eq!(tokens.open(&other, &t), Err(PageError::BadToken), "{other:?}");
        }
        assert_eq!(PageTokens::new(b"other key").open(&scope, &t), Err(PageError::BadToken));
        assert_eq!(tokens.open(&scope, &B64.encode(b"X/dev/GROUP/1")), Err(PageError::BadToken));
        let mut forged = B64.decode(&t).unwrap();
        forged[3] ^= 1;
        assert_eq!(tokens.open(&scope, &B64.encode(forged)), Err(PageError::BadToken));
    }

    /// Runs a future whose every step is ready (no runtime needed).
    fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("every fetch here is ready"),
        }
    }

    #[test]
    fn bounded_pages_stop_at_the_budget_and_resume_after_the_last_item() {
        let items: Vec<usize> = vec![400, 400, 400, 10, 10];
        let fetch = |r: PageRequest| {
            let start = r.after.map_or(0, |p| p.as_bytes()[0] as usize);
            let end = (start + r.size).min(items.len());
            let next = (end < items.len()).then(|| Position::from_bytes(vec![end as u8]));
            std::future::ready(Ok::<_, ()>(Page { items: items[start..end].to_vec(), next }))
        };
        let page = ready(bounded(PageRequest::first(10), 1000, |n| *n, fetch)).unwrap();
        assert_eq!(page.items, vec![400, 400]);
        let rest = ready(bounded(PageRequest { size: 10, after: page.next }, 1000, |n| *n, fetch)).unwrap();
        assert_eq!(rest.items, vec![400, 10, 10]);
        assert_eq!(rest.next, None);
        let huge = ready(bounded(PageRequest::first(10), 100, |n| *n, fetch)).unwrap();
        assert_eq!(huge.items.len(), 1, "one item even over the budget, so the listing moves on");
    }
}
