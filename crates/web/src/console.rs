//! The console at `/`: seed 000's promote-and-approve click path as one page and its
//! script and style, embedded in the binary. The page talks only to the JSON API of its
//! own origin; the Content-Security-Policy allows nothing inline and nothing from
//! elsewhere, and the token stays in the script's memory.
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};

use promotion_serving::http::{with_type, Response, Routes};

const PAGE: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// Scripts, styles and calls from this origin only; no inline code, frames, forms posted
/// elsewhere or plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's three assets.
pub fn routes() -> Routes {
    Routes::default()
        .route(Method::GET, "/", |_| async { asset(PAGE, "text/html; charset=utf-8") })
        .route(Method::GET, "/console.js", |_| async { asset(SCRIPT, "text/javascript; charset=utf-8") })
        .route(Method::GET, "/console.css", |_| async { asset(STYLE, "text/css; charset=utf-8") })
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = with_type(StatusCode::OK, Bytes::from_static(body.as_bytes()), content_type);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_inline_so_the_policy_needs_no_unsafe_inline() {
        assert!(!CSP.contains("unsafe"));
        for forbidden in ["<script>", "style=", "onclick=", "onsubmit=", "javascript:", "<style>"] {
            assert!(!PAGE.contains(forbidden), "the page holds {forbidden}, which the policy blocks");
        }
        assert!(!SCRIPT.contains("innerHTML"), "text goes in as text, never as HTML");
        for storage in ["localStorage", "sessionStorage", "document.cookie"] {
            assert!(!SCRIPT.contains(storage), "the token stays in memory, not in {storage}");
        }
    }
}
