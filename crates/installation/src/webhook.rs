//! Posting one webhook delivery over plain HTTP/1.1 on a tokio socket: the request is
//! small and the answer's status line is all that is read, so no HTTP client library is
//! needed. `https` receivers are refused when subscribing (see `notifications`).
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::net::TcpStream;

use promotion_core::notify::{Attempt, Delivery};

/// How long one attempt may take, connecting included: a slow receiver is retried later.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of the answer read: enough for any status line.
const MAX_ANSWER_BYTES: usize = 1024;

/// Posts `d` once and says how it went.
pub async fn post(d: &Delivery) -> Attempt {
    let started = Instant::now();
    let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, exchange(d)).await;
    let (status_code, error) = match outcome {
        Ok(Ok(code)) => (code, String::new()),
        Ok(Err(e)) => (0, e),
        Err(_) => (0, format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Attempt { time: Utc::now(), status_code, latency_ms, error }
}

/// `http://host:port/path` as (host:port, path).
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(['\r', '\n', ' ']) {
        return None;
    }
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Some((authority, path.to_string()))
}

async fn exchange(d: &Delivery) -> Result<u16, String> {
    let (authority, path) = split_url(&d.url).ok_or_else(|| format!("{} is not an http:// URL", d.url))?;
    let stream = TcpStream::connect(&authority).await.map_err(|e| format!("connect {authority}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         User-Agent: promotion-webhooks\r\nX-Promotion-Event: {}\r\nX-Promotion-Delivery: {}\r\n\
         X-Promotion-Signature: {}\r\nConnection: close\r\n\r\n{}",
        d.body.len(),
        d.event,
        d.id,
        d.signature,
        d.body
    );
    write_all(&stream, request.as_bytes()).await?;
    let answer = read_head(&stream).await?;
    status_of(&answer).ok_or_else(|| "the answer is not HTTP".to_string())
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        stream.writable().await.map_err(|e| format!("write: {e}"))?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

/// Reads until the status line is complete, the peer closes, or the bound is reached.
async fn read_head(stream: &TcpStream) -> Result<Vec<u8>, String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.contains(&b'\n') && answer.len() < MAX_ANSWER_BYTES {
        stream.readable().await.map_err(|e| format!("read: {e}"))?;
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(answer)
}

/// The code of `HTTP/1.x NNN ...`.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(answer).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/hooks/a?x=1"),
            Some(("127.0.0.1:8080".into(), "/hooks/a?x=1".into()))
        );
        assert_eq!(split_url("http://example.test"), Some(("example.test:80".into(), "/".into())));
        assert_eq!(split_url("https://example.test/"), None);
        assert_eq!(split_url("http://user@example.test/"), None);
        assert_eq!(split_url("http://example.test/a b"), None);
    }

    #[test]
    fn the_status_comes_from_the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 500 Oops\r\n\r\n"), Some(500));
        assert_eq!(status_of(b"SSH-2.0\r\n"), None);
    }
}
