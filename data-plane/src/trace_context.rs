//! W3C trace context: which trace a request belongs to, the span ids of its parts, and the
//! `traceparent` each upstream attempt carries. Pure; the request path calls it once per request.

use http::HeaderMap;

/// A trace id: 16 bytes, never all zero.
pub type TraceId = [u8; 16];
/// A span id: 8 bytes, never all zero.
pub type SpanId = [u8; 8];

/// The trace of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The caller's trace, or a new one.
    pub trace_id: TraceId,
    /// The caller's span, when a valid `traceparent` came in.
    pub parent_span_id: Option<SpanId>,
    /// The gateway's server span.
    pub span_id: SpanId,
    /// Whether this request's spans are exported.
    pub sampled: bool,
    /// The caller's `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
    /// Where the trace id came from: `traceparent`, `x-request-id` or `new`.
    pub origin: &'static str,
}

/// Parses a `traceparent` header: `(trace id, parent span id, sampled)`.
///
/// Version 00 must be exactly 55 characters; a later version may append fields after a `-`;
/// version `ff`, all-zero ids and upper-case hex are invalid (W3C Trace Context, level 1).
pub fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId, bool)> {
    let b = v.as_bytes();
    if b.len() < 55 || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let version = hex_bytes::<1>(&v[0..2])?[0];
    if version == 0xff || (version == 0 && b.len() != 55) {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = hex_bytes::<16>(&v[3..35])?;
    let span_id = hex_bytes::<8>(&v[36..52])?;
    let flags = hex_bytes::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags & 1 == 1))
}

/// A version-00 `traceparent` for `span_id` in `trace_id`.
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> String {
    format!(
        "00-{}-{}-{}",
        hex(trace_id),
        hex(span_id),
        if sampled { "01" } else { "00" }
    )
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// A random, non-zero span id.
pub fn new_span_id(rng: &mut impl rand::Rng) -> SpanId {
    loop {
        let id: SpanId = rng.gen();
        if id != [0; 8] {
            return id;
        }
    }
}

/// The trace of a request: the caller's `traceparent` when valid; else a caller `x-request-id`
/// that is 32 hex digits becomes the trace id (so the trace can be found by it); else a new
/// random trace. Traces the caller did not sample are not sampled; others are kept when the
/// trace id falls under `ratio` (the same decision on every node for one trace).
pub fn for_request(
    headers: &HeaderMap,
    caller_request_id: Option<&str>,
    ratio: f64,
    rng: &mut impl rand::Rng,
) -> TraceContext {
    let span_id = new_span_id(rng);
    let tracestate = headers
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .map(str::to_string);
    if let Some((trace_id, parent, sampled)) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
    {
        return TraceContext {
            trace_id,
            parent_span_id: Some(parent),
            span_id,
            sampled: sampled && ratio_keeps(&trace_id, ratio),
            tracestate,
            origin: "traceparent",
        };
    }
    let (trace_id, origin) = match caller_request_id.and_then(hex_bytes::<16>) {
        Some(id) if id != [0; 16] => (id, "x-request-id"),
        _ => loop {
            let id: TraceId = rng.gen();
            if id != [0; 16] {
                break (id, "new");
            }
        },
    };
    TraceContext {
        trace_id,
        parent_span_id: None,
        span_id,
        sampled: ratio_keeps(&trace_id, ratio),
        tracestate: None,
        origin,
    }
}

/// The OpenTelemetry `TraceIdRatioBased` rule: keep when the trace id's low 8 bytes, read as a
/// number, fall under `ratio` of the range.
pub fn ratio_keeps(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let low = u64::from_be_bytes(trace_id[8..16].try_into().expect("8 bytes"));
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (low >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn traceparent_table() {
        let cases: &[(&str, bool)] = &[
            (TP, true),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
                true,
            ),
            // Future version with extra fields: accepted; version 00 with extra: refused.
            (
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                true,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                false,
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                false,
            ),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                false,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                false,
            ),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                false,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                false,
            ),
            (
                "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                false,
            ),
            ("", false),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033é1-01",
                false,
            ),
        ];
        for (input, ok) in cases {
            assert_eq!(parse_traceparent(input).is_some(), *ok, "{input:?}");
        }
        let (t, s, sampled) = parse_traceparent(TP).unwrap();
        assert_eq!(traceparent(&t, &s, sampled), TP);
    }

    #[test]
    fn a_request_joins_the_callers_trace_or_one_named_by_its_request_id() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut h = HeaderMap::new();
        h.insert("traceparent", TP.parse().unwrap());
        h.insert("tracestate", "vendor=1".parse().unwrap());
        let c = for_request(&h, Some("0123456789abcdef0123456789abcdef"), 1.0, &mut rng);
        assert_eq!(hex(&c.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&c.parent_span_id.unwrap()), "b7ad6b7169203331");
        assert_eq!((c.origin, c.sampled), ("traceparent", true));
        assert_eq!(c.tracestate.as_deref(), Some("vendor=1"));
        assert_ne!(c.span_id, [0; 8]);

        let c = for_request(
            &HeaderMap::new(),
            Some("0123456789abcdef0123456789abcdef"),
            1.0,
            &mut rng,
        );
        assert_eq!(hex(&c.trace_id), "0123456789abcdef0123456789abcdef");
        assert_eq!((c.origin, c.parent_span_id), ("x-request-id", None));

        for id in [
            Some("req-123"),
            Some("00000000000000000000000000000000"),
            None,
        ] {
            let c = for_request(&HeaderMap::new(), id, 1.0, &mut rng);
            assert_eq!(c.origin, "new", "{id:?}");
            assert_ne!(c.trace_id, [0; 16]);
        }
        // A caller that did not sample its trace is not sampled here either.
        let mut h = HeaderMap::new();
        h.insert("traceparent", TP.replace("-01", "-00").parse().unwrap());
        assert!(!for_request(&h, None, 1.0, &mut rng).sampled);
    }

    #[test]
    fn the_sampling_ratio_is_a_property_of_the_trace() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let kept = (0..10_000)
            .filter(|_| for_request(&HeaderMap::new(), None, 0.25, &mut rng).sampled)
            .count();
        assert!((2_200..2_800).contains(&kept), "{kept}");
        let id = [7u8; 16];
        assert_eq!(ratio_keeps(&id, 0.5), ratio_keeps(&id, 0.5));
        assert!(ratio_keeps(&id, 1.0) && !ratio_keeps(&id, 0.0));
    }
}
