//! Server-sent events: framing a byte stream into whole events, and reading an event's data.
//!
//! Transport chunks split events (and UTF-8 sequences) anywhere; the framer buffers bytes until a
//! blank line ends an event and hands out each event's raw bytes exactly as received, so the
//! relay can forward, inspect or drop whole events. Lines may end in LF, CRLF or CR, as the SSE
//! specification allows.

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into complete SSE events.
#[derive(Debug, Default)]
pub struct SseFramer {
    buf: BytesMut,
    /// Where scanning resumes, so a long event split into many chunks is scanned once.
    scanned: usize,
    /// Whether the byte before `scanned` ended a line (so the next line end makes a blank line).
    at_line_start: bool,
    /// A CR at the very end of the buffer: it may be followed by LF in the next chunk.
    pending_cr: bool,
}

impl SseFramer {
    /// A framer at the start of a stream.
    pub fn new() -> Self {
        SseFramer {
            at_line_start: true,
            ..Default::default()
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event (its raw bytes, terminating blank line included), if any.
    pub fn next_event(&mut self) -> Option<Bytes> {
        let bytes = &self.buf[..];
        let mut i = self.scanned;
        while i < bytes.len() {
            let b = bytes[i];
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    // Second half of a CRLF already counted as a line end.
                    i += 1;
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    let was_line_start = self.at_line_start;
                    self.at_line_start = true;
                    let mut end = i + 1;
                    if b == b'\r' {
                        match bytes.get(i + 1) {
                            Some(b'\n') => end = i + 2,
                            Some(_) => {}
                            None => self.pending_cr = true,
                        }
                    }
                    if was_line_start {
                        // A CR ending the buffer completes the event; an LF that follows in the
                        // next chunk is skipped as the rest of its CRLF.
                        let event = self.buf.split_to(end).freeze();
                        self.scanned = 0;
                        return Some(event);
                    }
                    i = end;
                }
                _ => {
                    self.at_line_start = false;
                    i += 1;
                }
            }
        }
        self.scanned = i;
        None
    }

    /// Whatever is left when the stream ends (an unterminated final event), if anything.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        self.at_line_start = true;
        self.pending_cr = false;
        if self.buf.iter().all(|b| matches!(b, b'\n' | b'\r')) {
            self.buf.clear();
            return None;
        }
        Some(self.buf.split().freeze())
    }

    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// The data of an event: its `data:` lines (with or without the space after the colon) joined by
/// newlines; `None` when it has none (comments, `event:`-only, keep-alives).
pub fn event_data(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let mut next = end;
        if rest.get(end) == Some(&b'\r') && rest.get(end + 1) == Some(&b'\n') {
            next += 2;
        } else if end < rest.len() {
            next += 1;
        }
        rest = &rest[next..];
        if let Some(value) = field_value(line, b"data") {
            let buf = out.get_or_insert_with(Vec::new);
            if !buf.is_empty() {
                buf.push(b'\n');
            }
            buf.extend_from_slice(value);
        }
    }
    out
}

/// The `event:` name of an event, if it has one.
pub fn event_name(raw: &[u8]) -> Option<&[u8]> {
    raw.split(|&b| b == b'\n' || b == b'\r')
        .find_map(|line| field_value(line, b"event"))
}

fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?;
    let rest = rest.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// Drains `framer` completely, for tests and offline parsing.
pub fn frame_all(chunks: &[&[u8]]) -> Vec<Bytes> {
    let mut f = SseFramer::new();
    let mut out = Vec::new();
    for c in chunks {
        f.push(c);
        while let Some(e) = f.next_event() {
            out.push(e);
        }
    }
    out.extend(f.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] =
        b"data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9\"}}]}\n\n\
data:{\"id\":\"2\"}\n\n\
: keep-alive comment\n\n\
event: response.completed\ndata: {\"a\":1}\n\n\
data: [DONE]\n\n";

    fn datas(events: &[Bytes]) -> Vec<Option<Vec<u8>>> {
        events.iter().map(|e| event_data(e)).collect()
    }

    #[test]
    fn frames_whole_stream() {
        let events = frame_all(&[STREAM]);
        assert_eq!(events.len(), 5);
        let d = datas(&events);
        assert_eq!(d[1].as_deref(), Some(&b"{\"id\":\"2\"}"[..]));
        assert_eq!(d[2], None);
        assert_eq!(event_name(&events[3]), Some(&b"response.completed"[..]));
        assert_eq!(d[4].as_deref(), Some(&b"[DONE]"[..]));
        // Raw bytes are preserved exactly.
        let joined: Vec<u8> = events.iter().flat_map(|e| e.to_vec()).collect();
        assert_eq!(joined, STREAM);
    }

    #[test]
    fn split_at_every_byte_boundary_gives_the_same_events() {
        let whole = frame_all(&[STREAM]);
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(frame_all(&[a, b]), whole, "cut at {cut}");
        }
        let singles: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(frame_all(&singles), whole);
    }

    #[test]
    fn line_endings() {
        for stream in [
            &b"data: a\r\n\r\ndata: b\r\n\r\n"[..],
            &b"data: a\r\rdata: b\r\r"[..],
            &b"data: a\n\ndata: b\n\n"[..],
        ] {
            let whole = frame_all(&[stream]);
            let d = datas(&whole);
            assert_eq!(d.len(), 2, "{stream:?}");
            assert_eq!(d[0].as_deref(), Some(&b"a"[..]));
            assert_eq!(d[1].as_deref(), Some(&b"b"[..]));
            for cut in 0..=stream.len() {
                let (x, y) = stream.split_at(cut);
                let events = frame_all(&[x, y]);
                let got: Vec<_> = events.iter().filter_map(|e| event_data(e)).collect();
                assert_eq!(
                    got,
                    vec![b"a".to_vec(), b"b".to_vec()],
                    "{stream:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn multi_line_data_and_unterminated_tail() {
        let events = frame_all(&[b"data: one\ndata:two\n\ndata: tail"]);
        assert_eq!(events.len(), 2);
        assert_eq!(event_data(&events[0]).unwrap(), b"one\ntwo");
        assert_eq!(event_data(&events[1]).unwrap(), b"tail");
        // Stray blank lines frame as empty events that carry no data.
        assert!(frame_all(&[b"\n\n\n"])
            .iter()
            .all(|e| event_data(e).is_none()));
    }
}
