//! Incremental Server-Sent Events parsing for upstream streams: splits arbitrary byte
//! chunks into complete events, keeping each event's raw bytes so it can be forwarded
//! unchanged.

use bytes::{Bytes, BytesMut};

/// One complete SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event exactly as received, including its terminating blank line.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`; empty when the event had none.
    pub data: String,
}

/// Accumulates bytes and yields complete events.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
}

/// Position just past the first blank line (event terminator) in `buf`, if any.
fn find_boundary(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse_event(raw: Bytes) -> Event {
    let text = String::from_utf8_lossy(&raw);
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_string());
        }
    }
    Event {
        event,
        data: data.join("\n"),
        raw,
    }
}

impl Parser {
    /// Adds a chunk and returns every event it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find_boundary(&self.buf) {
            let raw = self.buf.split_to(end).freeze();
            out.push(parse_event(raw));
        }
        out
    }

    /// Whatever is left when the stream ends (an unterminated last event), if anything.
    pub fn finish(&mut self) -> Option<Event> {
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let raw = self.buf.split().freeze();
        Some(parse_event(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_arbitrary_chunks() {
        let stream = b"data: {\"a\":1}\n\nevent: ping\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        for split in 1..stream.len() {
            let mut p = Parser::default();
            let mut events = p.push(&stream[..split]);
            events.extend(p.push(&stream[split..]));
            assert_eq!(events.len(), 3, "split at {split}");
            assert_eq!(events[0].data, "{\"a\":1}");
            assert_eq!(events[0].raw, Bytes::from_static(b"data: {\"a\":1}\n\n"));
            assert_eq!(events[1].event.as_deref(), Some("ping"));
            assert_eq!(events[1].data, "x\ny");
            assert_eq!(events[2].data, "[DONE]");
            assert!(p.finish().is_none());
        }
    }

    #[test]
    fn handles_crlf_and_comments_and_leftovers() {
        let mut p = Parser::default();
        let ev = p.push(b": keep-alive\r\n\r\ndata:{\"b\":2}\r\n\r\ndata: partial");
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, "");
        assert_eq!(ev[1].data, "{\"b\":2}");
        assert_eq!(p.finish().map(|e| e.data), Some("partial".to_string()));
    }
}
