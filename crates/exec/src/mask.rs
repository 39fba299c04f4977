//! Secret masking: every secret value a run can see becomes `***` in its output, on the server, before anything is stored or streamed.
//!
//! A [`Secrets`] handle holds one attempt's secret values; it is shared (an
//! `Arc` inside) so that values learnt while the run goes on (a secret
//! variable the script reads) are masked from then on by every stream of
//! the attempt. A [`MaskStream`] masks one output stream chunk by chunk:
//! an occurrence split across chunks is masked as if the output had come
//! in one piece, because the stream holds back the shortest tail that
//! could still be the start of a secret, and nothing else.
//!
//! What is masked, exactly: every byte range where any secret occurs
//! (occurrences may overlap, and one secret may overlap itself); each
//! maximal run of overlapping ranges becomes one `***`. Two occurrences
//! that touch without overlapping stay two `***`. So the result depends
//! only on the whole output and the set of secrets, never on how the
//! output was cut into chunks, and no byte of any occurrence shows.
//!
//! Values shorter than [`MIN_SECRET_LEN`] bytes are not masked: masking a
//! one- or two-character value would replace that text all over the log
//! and make it unreadable, while hiding next to nothing.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use memchr::memmem::Finder;
use serde_json::Value;

/// What every occurrence of a secret is replaced by.
pub const MASK: &str = "***";
/// Shorter values are not masked (see the module's documentation).
pub const MIN_SECRET_LEN: usize = 4;

/// The secret values of one attempt. Cheap to clone; clones share the set,
/// so a value added through one is masked by every [`MaskStream`] made
/// from any of them. `Debug` shows how many values there are, never them.
#[derive(Clone, Default)]
pub struct Secrets {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Bumped (under the lock) whenever the set grows, so a stream knows
    /// without locking that its matcher is still current.
    generation: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    values: BTreeSet<Vec<u8>>,
    /// Built once per change of `values` and shared by every stream.
    matcher: Arc<Matcher>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Masks `value` from now on, and its whitespace-trimmed form (a value
    /// read from a file often ends in a newline the script drops).
    /// Returns whether it will be masked: not when shorter than
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn add(&self, value: &str) -> bool {
        self.insert([value, value.trim()]);
        value.trim().len() >= MIN_SECRET_LEN || value.len() >= MIN_SECRET_LEN
    }

    /// Masks a secret that is a JSON value: every string inside it, and,
    /// when it is not a plain string, its compact JSON text as well.
    pub fn add_json(&self, value: &Value) {
        let mut texts = Vec::new();
        let compact;
        if !value.is_string() {
            compact = value.to_string();
            texts.push(compact.as_str());
        }
        strings(value, &mut texts);
        let trimmed: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
        self.insert(texts.into_iter().chain(trimmed));
    }

    /// How many distinct values are masked.
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A streaming masker for one output stream.
    pub fn stream(&self) -> MaskStream {
        MaskStream::new(self.clone())
    }

    /// `bytes` with every secret masked, in one piece.
    pub fn mask(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = self.stream();
        let mut out = stream.push(bytes).into_owned();
        out.extend(stream.finish());
        out
    }

    /// `text` with every secret masked. Secrets are text, so what is left
    /// around an occurrence stays valid UTF-8.
    pub fn mask_str(&self, text: &str) -> String {
        match String::from_utf8(self.mask(text.as_bytes())) {
            Ok(masked) => masked,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    fn insert<'a>(&self, values: impl IntoIterator<Item = &'a str>) {
        let mut state = self.lock();
        let mut grew = false;
        for value in values {
            if value.len() >= MIN_SECRET_LEN {
                grew |= state.values.insert(value.as_bytes().to_vec());
            }
        }
        if grew {
            state.matcher = Arc::new(Matcher::new(&state.values));
            self.shared.generation.fetch_add(1, Ordering::Release);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a set and a matcher built from it, replaced whole:
        // a panic elsewhere cannot leave it half-changed.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current matcher and the generation it belongs to (or a later one).
    fn current(&self) -> (u64, Arc<Matcher>) {
        let state = self.lock();
        let generation = self.shared.generation.load(Ordering::Acquire);
        (generation, state.matcher.clone())
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("values", &self.len())
            .finish()
    }
}

/// Every string in `value` (object keys are names, not values: left out).
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `value` with every string in it (keys too) masked: for a run's output.
pub fn mask_json(secrets: &Secrets, value: Value) -> Value {
    if secrets.is_empty() {
        return value;
    }
    fn walk(secrets: &Secrets, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(secrets.mask_str(&s)),
            Value::Array(items) => items.into_iter().map(|v| walk(secrets, v)).collect(),
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| (secrets.mask_str(&k), walk(secrets, v)))
                .collect(),
            other => other,
        }
    }
    walk(secrets, value)
}

/// Finds every occurrence of a set of secrets.
struct Matcher {
    finders: Vec<Finder<'static>>,
    /// The longest secret's length.
    longest: usize,
    /// Which bytes some secret starts with: most positions of a tail are
    /// ruled out by one look-up.
    starts: [bool; 256],
}

impl Default for Matcher {
    fn default() -> Matcher {
        Matcher {
            finders: Vec::new(),
            longest: 0,
            starts: [false; 256],
        }
    }
}

impl Matcher {
    fn new(values: &BTreeSet<Vec<u8>>) -> Matcher {
        let mut matcher = Matcher::default();
        for value in values {
            matcher.starts[value[0] as usize] = true;
            matcher.longest = matcher.longest.max(value.len());
            matcher.finders.push(Finder::new(value).into_owned());
        }
        matcher
    }

    fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// The byte ranges of `hay` to mask, sorted, overlapping occurrences
    /// merged.
    fn ranges(&self, hay: &[u8], out: &mut Vec<(usize, usize)>) {
        out.clear();
        for finder in &self.finders {
            let len = finder.needle().len();
            // Overlapping occurrences too (`find_iter` skips them), so that
            // the result does not depend on where a scan started.
            let mut at = 0;
            while let Some(i) = finder.find(&hay[at..]) {
                out.push((at + i, at + i + len));
                at += i + 1;
            }
        }
        if self.finders.len() > 1 {
            out.sort_unstable();
        }
        let mut merged = 0;
        for i in 0..out.len() {
            let (start, end) = out[i];
            if merged > 0 && start < out[merged - 1].1 {
                out[merged - 1].1 = out[merged - 1].1.max(end);
            } else {
                out[merged] = (start, end);
                merged += 1;
            }
        }
        out.truncate(merged);
    }

    /// Where the shortest tail of `hay` that is a proper prefix of some
    /// secret begins (`hay.len()` when there is none): the bytes from
    /// there on may yet turn out to be a secret.
    fn hold_from(&self, hay: &[u8]) -> usize {
        let from = hay.len().saturating_sub(self.longest.saturating_sub(1));
        (from..hay.len())
            .find(|&at| {
                self.starts[hay[at] as usize]
                    && self.finders.iter().any(|f| {
                        let secret = f.needle();
                        secret.len() > hay.len() - at && secret.starts_with(&hay[at..])
                    })
            })
            .unwrap_or(hay.len())
    }
}

/// Masks one output stream, chunk by chunk (see the module's
/// documentation). Feed it every chunk in order with [`MaskStream::push`],
/// then [`MaskStream::finish`] at the end of the stream.
pub struct MaskStream {
    secrets: Secrets,
    generation: u64,
    matcher: Arc<Matcher>,
    /// Raw bytes held back: a tail that may be the start of a secret.
    held: Vec<u8>,
    /// How many bytes at the start of `held` are already in the output,
    /// inside the last `***` (a secret overlapping them extends that mask).
    covered: usize,
    ranges: Vec<(usize, usize)>,
}

impl MaskStream {
    pub fn new(secrets: Secrets) -> MaskStream {
        let (generation, matcher) = secrets.current();
        MaskStream {
            secrets,
            generation,
            matcher,
            held: Vec::new(),
            covered: 0,
            ranges: Vec::new(),
        }
    }

    /// Takes the next chunk; returns the masked output it completes. Holds
    /// back only a tail that could still be the start of a secret, so a
    /// chunk without one passes whole (and, with nothing to mask in it,
    /// without a copy).
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        self.refresh();
        let mut out = Vec::new();
        if self.held.is_empty() {
            // Nothing held: the chunk is scanned where it is.
            if self.matcher.is_empty() {
                return Cow::Borrowed(chunk);
            }
            let hold = self.matcher.hold_from(chunk);
            self.matcher.ranges(chunk, &mut self.ranges);
            self.held.extend_from_slice(&chunk[hold..]);
            if self.ranges.is_empty() {
                return Cow::Borrowed(&chunk[..hold]);
            }
            out.reserve(chunk.len());
            self.mask_into(chunk, hold, &mut out);
            return Cow::Owned(out);
        }
        let mut hay = std::mem::take(&mut self.held);
        hay.extend_from_slice(chunk);
        let hold = self.matcher.hold_from(&hay);
        self.matcher.ranges(&hay, &mut self.ranges);
        out.reserve(hay.len());
        self.mask_into(&hay, hold, &mut out);
        hay.drain(..hold);
        self.held = hay;
        Cow::Owned(out)
    }

    /// The end of the stream: the held-back tail, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        self.refresh();
        let hay = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(hay.len());
        self.matcher.ranges(&hay, &mut self.ranges);
        self.mask_into(&hay, hay.len(), &mut out);
        self.covered = 0;
        out
    }

    /// Picks up secrets added since the last chunk.
    fn refresh(&mut self) {
        if self.secrets.shared.generation.load(Ordering::Acquire) != self.generation {
            (self.generation, self.matcher) = self.secrets.current();
        }
    }

    /// Writes `hay[..hold]` masked to `out` (and a mask that starts before
    /// `hold` whole, even past it), `self.ranges` being `hay`'s; sets
    /// `covered` for `hay[hold..]`, which the caller keeps.
    fn mask_into(&mut self, hay: &[u8], hold: usize, out: &mut Vec<u8>) {
        let mut done = self.covered;
        for &(start, end) in &self.ranges {
            if end <= done {
                continue;
            }
            if start < done {
                // Overlaps the `***` already written: it grows, silently.
                done = end;
                continue;
            }
            if start >= hold {
                break;
            }
            out.extend_from_slice(&hay[done..start]);
            out.extend_from_slice(MASK.as_bytes());
            done = end;
        }
        if done < hold {
            out.extend_from_slice(&hay[done..hold]);
            done = hold;
        }
        self.covered = done - hold;
    }
}

impl fmt::Debug for MaskStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskStream")
            .field("secrets", &self.matcher.finders.len())
            .field("held", &self.held.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let s = Secrets::new();
        for v in values {
            s.add(v);
        }
        s
    }

    /// The definition, as slowly as possible: mark every byte any
    /// occurrence covers, then write one `***` per run of overlapping
    /// occurrences.
    fn reference(values: &[&str], input: &[u8]) -> Vec<u8> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let trimmed = values.iter().map(|v| v.trim());
        for v in values.iter().copied().chain(trimmed) {
            if v.len() < MIN_SECRET_LEN {
                continue;
            }
            let v = v.as_bytes();
            for at in 0..input.len() {
                if input[at..].starts_with(v) {
                    ranges.push((at, at + v.len()));
                }
            }
        }
        ranges.sort();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            while i < ranges.len() && ranges[i].0 < at {
                i += 1;
            }
            if i < ranges.len() && ranges[i].0 == at {
                let mut end = ranges[i].1;
                while i < ranges.len() && ranges[i].0 < end {
                    end = end.max(ranges[i].1);
                    i += 1;
                }
                out.extend_from_slice(MASK.as_bytes());
                at = end;
            } else {
                out.push(input[at]);
                at += 1;
            }
        }
        out
    }

    fn streamed(s: &Secrets, chunks: &[&[u8]]) -> Vec<u8> {
        let mut stream = s.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(&stream.push(chunk));
        }
        out.extend(stream.finish());
        out
    }

    /// Every input of the table, whole, and split at every byte into two
    /// and into three chunks, masks the same, and as the table says.
    #[test]
    fn every_split_of_the_input_masks_the_same() {
        // (secrets, input, masked)
        let table: &[(&[&str], &[u8], &[u8])] = &[
            (&[], b"nothing to hide\n", b"nothing to hide\n"),
            (&["supersecret"], b"supersecret\n", b"***\n"),
            (
                &["supersecret"],
                b"a supersecret, another supersecret.",
                b"a ***, another ***.",
            ),
            // A prefix that never completes shows as it was.
            (&["supersecret"], b"supersecre\nsuper", b"supersecre\nsuper"),
            // Adjacent occurrences stay two masks.
            (&["secretA", "secretB"], b"secretAsecretB", b"******"),
            // Overlapping secrets: one mask over both, nothing of either shows.
            (&["abcd", "cdef"], b"xabcdefy", b"x***y"),
            (&["abcd", "abcdefgh"], b"abcdefgh abcd", b"*** ***"),
            (&["bcde", "abcdefgh"], b"abcdefg", b"a***fg"),
            // A secret overlapping itself.
            (&["abab"], b"xabababx", b"x***x"),
            (&["aaaa"], b"aaaaaaaaa.aaa", b"***.aaa"),
            // Multi-byte UTF-8, split inside its characters by the loop.
            (&["pässwörd€"], "→pässwörd€←".as_bytes(), "→***←".as_bytes()),
            // Binary output around the secret.
            (
                &["tok3n-value"],
                b"\x00\xff\xfetok3n-value\x00\x80tok3n-valu",
                b"\x00\xff\xfe***\x00\x80tok3n-valu",
            ),
            // Too short to mask; its trimmed form too.
            (&["ab", "  x \n"], b"ab x ab", b"ab x ab"),
            // A trailing newline in the value: masked with and without it.
            (&["line-secret\n"], b"line-secret!", b"***!"),
        ];
        for &(values, input, masked) in table {
            let s = secrets(values);
            assert_eq!(
                reference(values, input),
                masked,
                "the table agrees with the definition for {values:?}"
            );
            assert_eq!(streamed(&s, &[input]), masked, "{values:?} whole");
            for i in 0..=input.len() {
                let two = streamed(&s, &[&input[..i], &input[i..]]);
                assert_eq!(two, masked, "{values:?} split at {i}");
                for j in i..=input.len() {
                    let three = streamed(&s, &[&input[..i], &input[i..j], &input[j..]]);
                    assert_eq!(three, masked, "{values:?} split at {i} and {j}");
                }
            }
            assert_eq!(s.mask(input), masked);
        }
    }

    #[test]
    fn generated_inputs_match_the_definition_at_every_split() {
        // Inputs over a small alphabet hit overlaps and partial matches
        // far more often than real output does.
        let values = ["abca", "bcab", "cc\u{e9}c", "abcabcab"];
        let s = secrets(&values);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = "abc\u{e9}\n".as_bytes();
        for _ in 0..300 {
            let len = (seed % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let want = reference(&values, &input);
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let got = streamed(&s, &[&input[..i], &input[i..j], &input[j..]]);
                    assert_eq!(got, want, "{input:?} split at {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn only_a_possible_start_of_a_secret_is_held_back() {
        let s = secrets(&["supersecret"]);
        let mut stream = s.stream();
        // A line with no partial secret at its end passes at once, uncopied.
        let line = b"hello world\n";
        assert!(matches!(stream.push(line), Cow::Borrowed(l) if l == line));
        assert_eq!(&*stream.push(b"the key is sup"), b"the key is ");
        assert_eq!(&*stream.push(b"er"), b"");
        assert_eq!(&*stream.push(b"secret and sup"), b"*** and ");
        assert_eq!(&*stream.push(b"per\n"), b"supper\n");
        assert_eq!(&*stream.push(b"s"), b"");
        assert_eq!(stream.finish(), b"s");
        // After `finish` the stream starts afresh.
        assert_eq!(&*stream.push(b"supersecret"), b"***");
        assert_eq!(stream.finish(), b"");
    }

    #[test]
    fn a_secret_longer_than_a_chunk_is_masked() {
        let secret: String = (0..300)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let s = secrets(&[&secret]);
        let input = format!("before {secret} between {secret}after\n");
        for size in [1, 7, 64, 299, 300, 301] {
            let chunks: Vec<&[u8]> = input.as_bytes().chunks(size).collect();
            assert_eq!(
                streamed(&s, &chunks),
                b"before *** between ***after\n",
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_secret_added_mid_stream_is_masked_from_then_on() {
        let s = Secrets::new();
        let mut stream = s.stream();
        let other = s.clone();
        assert_eq!(&*stream.push(b"token-1234 "), b"token-1234 ");
        assert!(other.add("token-1234"));
        assert_eq!(&*stream.push(b"token-1234 tok"), b"*** ");
        assert_eq!(&*stream.push(b"en-1234\n"), b"***\n");
        assert_eq!(stream.finish(), b"");
        // A stream made before the value was added masks it as well.
        assert_eq!(s.mask_str("a token-1234"), "a ***");
    }

    #[test]
    fn short_and_empty_values_are_not_masked() {
        let s = Secrets::new();
        assert!(!s.add(""));
        assert!(!s.add("abc"));
        assert!(!s.add(" a "));
        assert!(s.is_empty());
        assert!(s.add("abcd"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.mask_str("abc abcd"), "abc ***");
    }

    #[test]
    fn json_secrets_mask_their_strings_and_their_text() {
        let s = Secrets::new();
        s.add_json(&serde_json::json!("plain-string-secret"));
        s.add_json(&serde_json::json!({"user": "admin-user", "pass": ["hunter22", 7], "x": 1}));
        let text = r#"{"pass":["hunter22",7],"user":"admin-user","x":1}"#;
        assert_eq!(s.mask_str(text), "***");
        assert_eq!(
            s.mask_str("login admin-user/hunter22 plain-string-secret"),
            "login ***/*** ***"
        );
        // Keys and numbers alone are not values.
        assert_eq!(s.mask_str("user pass x 7"), "user pass x 7");
        let output = serde_json::json!({
            "note": "hunter22 was used",
            "hunter22": [1, "admin-user", null, {"deep": "x hunter22"}],
        });
        assert_eq!(
            mask_json(&s, output),
            serde_json::json!({
                "note": "*** was used",
                "***": [1, "***", null, {"deep": "x ***"}],
            })
        );
    }

    #[test]
    fn debug_shows_no_value() {
        let s = secrets(&["do-not-print-me"]);
        assert_eq!(format!("{s:?}"), "Secrets { values: 1 }");
        assert!(!format!("{:?}", s.stream()).contains("print"));
    }
}
