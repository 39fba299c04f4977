//! A small Server-Sent Events parser: bytes in, complete events out, whatever the chunking.
//!
//! It follows the HTML standard's rules as far as `cronium job logs --follow`
//! needs them: lines end in LF, CRLF or CR; `:` starts a comment; `data:`
//! lines join with `\n`; one space after the colon is dropped; a blank line
//! dispatches the event, and an event without data is not dispatched.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `message` when there was none.
    pub event: String,
    pub data: String,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The last line ended in CR, so an LF at the start of the next chunk
    /// belongs to it rather than ending an empty line.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Takes the next bytes of the stream and returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.partial);
                    events.extend(self.line(&String::from_utf8_lossy(&line)));
                }
                _ => self.partial.push(b),
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            let id = self.id.take();
            return self.data.take().map(|data| SseEvent {
                event: event.unwrap_or_else(|| "message".into()),
                data,
                id,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.into()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.into()),
            },
            // The standard ignores ids containing NUL; so do we.
            "id" if !value.contains('\0') => self.id = Some(value.into()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(String::from),
        }
    }

    /// Every case is fed whole, in the given chunks, and one byte at a
    /// time: where the network splits the stream must not matter.
    #[test]
    fn events_come_out_whole_however_the_stream_is_split() {
        let table: Vec<(&str, Vec<&str>, Vec<SseEvent>)> = vec![
            (
                "a log line as the server sends it",
                vec!["id: 7\nevent: stdout\ndata: {\"seq\":7}\n\n"],
                vec![event("stdout", "{\"seq\":7}", Some("7"))],
            ),
            (
                "a frame split mid-field and mid-line-ending",
                vec!["id: 1\nev", "ent: stderr\nda", "ta: x\n", "\n"],
                vec![event("stderr", "x", Some("1"))],
            ),
            (
                "multi-line data joins with newlines",
                vec!["data: first\ndata: second\ndata:\n\n"],
                vec![event("message", "first\nsecond\n", None)],
            ),
            (
                "comments (keep-alives) are ignored, also between fields",
                vec![":\n\n: ping\nevent: end\n:x\ndata: {}\n\n"],
                vec![event("end", "{}", None)],
            ),
            (
                "CRLF line endings, split between CR and LF",
                vec!["event: system\r", "\ndata: hi\r\n\r", "\n"],
                vec![event("system", "hi", None)],
            ),
            (
                "bare CR line endings",
                vec!["data: a\r\rdata: b\r\r"],
                vec![event("message", "a", None), event("message", "b", None)],
            ),
            (
                "only one space after the colon is dropped",
                vec!["data:no space\n\ndata:  two\n\n"],
                vec![
                    event("message", "no space", None),
                    event("message", " two", None),
                ],
            ),
            (
                "an event without data is not dispatched and leaves no trace",
                vec!["event: stdout\nid: 3\n\ndata: later\n\n"],
                vec![event("message", "later", None)],
            ),
            (
                "an unfinished frame waits for its blank line",
                vec!["event: stdout\ndata: half"],
                vec![],
            ),
            (
                "unknown fields and a field name alone are ignored",
                vec!["retry: 1000\nfoo\ndata\n\n"],
                vec![event("message", "", None)],
            ),
            (
                "non-UTF-8 bytes do not stop the stream",
                vec!["data: \u{e9}\n\n"],
                vec![event("message", "\u{e9}", None)],
            ),
        ];
        for (story, chunks, want) in table {
            let mut whole = SseParser::new();
            assert_eq!(
                whole.feed(chunks.concat().as_bytes()),
                want,
                "{story}: whole"
            );

            let mut chunked = SseParser::new();
            let got: Vec<_> = chunks
                .iter()
                .flat_map(|c| chunked.feed(c.as_bytes()))
                .collect();
            assert_eq!(got, want, "{story}: in chunks");

            let mut bytewise = SseParser::new();
            let got: Vec<_> = chunks
                .concat()
                .bytes()
                .flat_map(|b| bytewise.feed(&[b]))
                .collect();
            assert_eq!(got, want, "{story}: byte by byte");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut p = SseParser::new();
        let got = p.feed(b"data: \xff\n\ndata: ok\n\n");
        assert_eq!(got[0].data, "\u{fffd}");
        assert_eq!(got[1].data, "ok");
    }
}
