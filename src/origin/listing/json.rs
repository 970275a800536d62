//! The JSON reader: splits the top-level array of a body fed in pieces into
//! its elements, and reads each as an nginx `autoindex_format json` entry.
//!
//! Strings and nesting are followed byte by byte, so an element is found
//! whole without parsing the rest of the body; only an element that a chunk
//! boundary cuts is kept, up to [`MAX_JSON_ENTRY_BYTES`]. Any element that
//! is not an entry, or a body that is not one array, makes the whole body
//! not a listing.

#[cfg(test)]
mod tests;

use serde::Deserialize;

use super::{ListingEntry, ListingError, MAX_JSON_ENTRY_BYTES, MAX_NAME_BYTES, UniqueEntries};
use crate::namespace::is_valid_name;

/// One element of nginx's `autoindex_format json` output. Unknown fields
/// are ignored so other JSON listings of the same shape work too.
#[derive(Deserialize)]
struct JsonListingEntry {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Read loosely: an odd size (negative, fractional, a string) loses the
    /// size, not the whole listing.
    #[serde(default)]
    size: Option<serde_json::Value>,
    /// An HTTP date; anything else loses the date only.
    #[serde(default)]
    mtime: Option<serde_json::Value>,
}

impl JsonListingEntry {
    /// The entry, unless its name cannot be one. Names in JSON are literal,
    /// so they only need the validity check that decoding gives HTML names.
    fn into_entry(self) -> Option<ListingEntry> {
        let is_dir = self.kind.as_deref() == Some("directory");
        let size = if is_dir {
            None
        } else {
            self.size.as_ref().and_then(serde_json::Value::as_u64)
        };
        let mtime = self
            .mtime
            .as_ref()
            .filter(|_| !is_dir)
            .and_then(serde_json::Value::as_str)
            .and_then(|text| httpdate::parse_http_date(text).ok());
        let name = self.name.into_bytes();
        (is_valid_name(&name) && name.len() <= MAX_NAME_BYTES).then_some(ListingEntry {
            name,
            is_dir,
            size,
            mtime,
        })
    }
}

/// Where the JSON reader is in the top-level array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum JsonState {
    #[default]
    BeforeArray,
    /// After `[`: an element or `]`.
    ArrayStart,
    /// After `,`: an element.
    BeforeElement,
    /// Inside an element: how deep in its objects and arrays, and whether
    /// in a string, just after a `\`.
    InElement {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing `]`: whitespace only.
    AfterArray,
    /// Not a JSON array of entries; the rest is not read.
    Invalid,
}

/// Splits a JSON array fed in pieces into its elements, and reads each as an
/// entry. An element is read where it lies in the chunk; only the start of
/// one that a chunk boundary cuts is kept, until its end arrives.
#[derive(Default)]
pub(super) struct JsonScanner {
    state: JsonState,
    /// The start of the element being read, from earlier chunks.
    carried: Vec<u8>,
}

/// What one byte does to the element being read.
enum ElementStep {
    Within(JsonState),
    /// The element ends, with this byte in it or just before it.
    End {
        with_byte: bool,
        next: JsonState,
    },
}

impl JsonScanner {
    /// Whether the body is known not to be a JSON array of entries; the
    /// rest of it is not read.
    pub(super) fn is_not_listing(&self) -> bool {
        self.state == JsonState::Invalid
    }

    /// Whether the array has ended, with nothing but whitespace after it.
    pub(super) fn is_complete(&self) -> bool {
        self.state == JsonState::AfterArray
    }

    pub(super) fn scan(
        &mut self,
        bytes: &[u8],
        entries: &mut UniqueEntries,
    ) -> Result<(), ListingError> {
        // Where the element being read starts in this chunk: 0 when it
        // began in an earlier one.
        let mut element_start = 0;
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            let step = match self.state {
                JsonState::Invalid => return Ok(()),
                JsonState::InElement {
                    depth,
                    in_string,
                    escaped,
                } => {
                    if !escaped {
                        // Bytes that cannot end a string or change the
                        // nesting are passed over in one go.
                        let run =
                            bytes.get(at..).unwrap_or_default().iter().position(
                                |&b| match in_string {
                                    true => matches!(b, b'"' | b'\\'),
                                    false => matches!(b, b'"' | b'{' | b'}' | b'[' | b']' | b','),
                                },
                            );
                        match run {
                            Some(0) => {}
                            Some(run) => {
                                at += run;
                                continue;
                            }
                            None => break,
                        }
                    }
                    element_step(byte, depth, in_string, escaped)
                }
                state => match between_elements(state, byte) {
                    JsonState::InElement { .. } => {
                        element_start = at;
                        element_step(byte, 0, false, false)
                    }
                    next => ElementStep::Within(next),
                },
            };
            self.state = match step {
                ElementStep::Within(next) => next,
                ElementStep::End { with_byte, next } => {
                    let end = if with_byte { at + 1 } else { at };
                    let piece = bytes.get(element_start..end).unwrap_or_default();
                    self.end_element(piece, next, entries)?
                }
            };
            at += 1;
        }
        if matches!(self.state, JsonState::InElement { .. }) {
            let piece = bytes.get(element_start..).unwrap_or_default();
            if self.carried.len() + piece.len() > MAX_JSON_ENTRY_BYTES {
                return Err(ListingError::EntryTooLong);
            }
            self.carried.extend_from_slice(piece);
        }
        Ok(())
    }

    /// Reads the element that ends with `piece` as an entry; an element that
    /// is not one makes the whole body not a listing.
    fn end_element(
        &mut self,
        piece: &[u8],
        next: JsonState,
        entries: &mut UniqueEntries,
    ) -> Result<JsonState, ListingError> {
        if self.carried.len() + piece.len() > MAX_JSON_ENTRY_BYTES {
            return Err(ListingError::EntryTooLong);
        }
        let element = if self.carried.is_empty() {
            piece
        } else {
            self.carried.extend_from_slice(piece);
            &self.carried
        };
        let read = serde_json::from_slice::<JsonListingEntry>(element);
        self.carried.clear();
        match read {
            Ok(raw) => {
                if let Some(entry) = raw.into_entry() {
                    entries.push(entry);
                }
                Ok(next)
            }
            Err(_) => Ok(JsonState::Invalid),
        }
    }
}

/// The state after `byte` outside any element; an `InElement` result means
/// the byte starts one.
fn between_elements(state: JsonState, byte: u8) -> JsonState {
    use JsonState::*;
    let space = matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
    match state {
        BeforeArray | ArrayStart | BeforeElement | AfterElement | AfterArray if space => state,
        BeforeArray if byte == b'[' => ArrayStart,
        ArrayStart if byte == b']' => AfterArray,
        ArrayStart | BeforeElement if byte != b']' && byte != b',' => InElement {
            depth: 0,
            in_string: false,
            escaped: false,
        },
        AfterElement if byte == b',' => BeforeElement,
        AfterElement if byte == b']' => AfterArray,
        _ => Invalid,
    }
}

/// One byte of an element. The element ends at the bracket that closes its
/// outermost object or array, or, for a bare value, just before the `,` or
/// `]` after it.
fn element_step(byte: u8, depth: u32, in_string: bool, escaped: bool) -> ElementStep {
    let within = |depth, in_string, escaped| {
        ElementStep::Within(JsonState::InElement {
            depth,
            in_string,
            escaped,
        })
    };
    let end = |with_byte, next| ElementStep::End { with_byte, next };
    if in_string {
        return match byte {
            _ if escaped => within(depth, true, false),
            b'\\' => within(depth, true, true),
            b'"' => within(depth, false, false),
            _ => within(depth, true, false),
        };
    }
    match byte {
        b'"' => within(depth, true, false),
        b'{' | b'[' => within(depth.saturating_add(1), false, false),
        b'}' | b']' if depth > 1 => within(depth - 1, false, false),
        b'}' | b']' if depth == 1 => end(true, JsonState::AfterElement),
        b']' => end(false, JsonState::AfterArray),
        b',' if depth == 0 => end(false, JsonState::BeforeElement),
        b'}' => ElementStep::Within(JsonState::Invalid),
        _ => within(depth, false, false),
    }
}
