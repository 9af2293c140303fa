//! W3C Trace Context (`traceparent`): the trace a call belongs to, continued from the
//! caller's header or started here, so that one user action can be followed through the
//! logs of both services.
use std::fmt::Write;

/// The trace of one call as this service takes part in it: the trace id, this service's
/// span id (the parent of every call it makes on the caller's behalf), and the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    flags: u8,
}

impl TraceContext {
    /// The trace of an incoming call: the one its `traceparent` names, or a new one when it
    /// has none or an invalid one (as the W3C recommendation says to do).
    pub fn continue_or_start(traceparent: Option<&str>) -> TraceContext {
        match traceparent.and_then(parse) {
            Some((trace_id, flags)) => TraceContext { trace_id, span_id: new_span_id(), flags },
            None => TraceContext { trace_id: new_trace_id(), span_id: new_span_id(), flags: 1 },
        }
    }

    /// 32 lowercase hex characters.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// 16 lowercase hex characters: this service's part of the trace.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// The header to send on a call made on this call's behalf.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// (trace id, flags) of a valid header. Versions after 00 are read by their 00 prefix, as
/// the recommendation asks; version ff and all-zero ids are invalid.
fn parse(header: &str) -> Option<(String, u8)> {
    let header = header.trim();
    let mut parts = header.splitn(5, '-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !hex(trace_id, 32) || !hex(parent_id, 16) || !hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace_id.to_string(), u8::from_str_radix(flags, 16).ok()?))
}

fn random_hex(bytes: usize) -> String {
    loop {
        let mut s = String::with_capacity(bytes * 2);
        for _ in 0..bytes {
            let _ = write!(s, "{:02x}", rand::random::<u8>());
        }
        if s.bytes().any(|b| b != b'0') {
            return s;
        }
    }
}

fn new_trace_id() -> String {
    random_hex(16)
}

fn new_span_id() -> String {
    random_hex(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_continued_under_a_span_of_our_own() {
        let t = TraceContext::continue_or_start(Some(HEADER));
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id(), "00f067aa0ba902b7");
        assert_eq!(t.traceparent(), format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", t.span_id()));
    }

    #[test]
    fn future_versions_are_read_by_their_known_prefix() {
        let header = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        let t = TraceContext::continue_or_start(Some(header));
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.traceparent().ends_with("-00"), "flags are kept");
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let t = TraceContext::continue_or_start(Some(bad));
            assert_ne!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert_eq!((t.trace_id().len(), t.span_id().len()), (32, 16), "{bad}");
        }
        let fresh = TraceContext::continue_or_start(None);
        assert!(parse(&fresh.traceparent()).is_some(), "what we start, others can continue");
    }
}
