//! The HTML reader: finds the `<a href>` links of a page fed in pieces and
//! keeps those that name a direct child of the listed directory.
//!
//! A tokenizer that follows the HTML standard where it matters for links
//! (tags and attributes quoted or not, in any case; comments; declarations;
//! the text-only elements) and nothing else: it builds no tree and keeps of
//! the page only the tag being read, with its `href` up to
//! [`MAX_HREF_BYTES`]. Each kept `href` is resolved as a browser would, with
//! a fast path for the plain names most links of a big listing are.

#[cfg(test)]
mod tests;

use url::Url;

use super::{ListingEntry, MAX_NAME_BYTES, UniqueEntries};
use crate::namespace::relative_components;

/// Longest `href` followed, in bytes. A child's `href` is its name
/// percent-encoded (at most 765 bytes), or an absolute URL with the
/// directory's path in front; a longer one names no child, so its tag is read
/// to its end without keeping the rest.
const MAX_HREF_BYTES: usize = 32 * 1024;

/// Elements whose content is text up to their end tag, with no tags in it:
/// an `<a href>` written in a script or a title is not a link.
const TEXT_ONLY_ELEMENTS: [&[u8]; 4] = [b"script", b"style", b"textarea", b"title"];

/// Where the HTML tokenizer is: the HTML standard's tokenizer states that
/// tags, attributes and comments need; character references are decoded
/// later, in the one attribute value that is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum HtmlState {
    #[default]
    Text,
    /// After `<`.
    TagOpen,
    /// After `</`.
    EndTagOpen,
    TagName,
    BeforeAttributeName,
    AttributeName,
    AfterAttributeName,
    BeforeAttributeValue,
    AttributeValue(Quote),
    AfterQuotedAttributeValue,
    /// After a `/` in a tag.
    SelfClosing,
    /// After `<!`.
    MarkupDeclaration,
    /// After `<!-`.
    CommentStartDash,
    /// Inside `<!-- -->`, with the count of `-` just before.
    Comment {
        dashes: u8,
    },
    /// `<!DOCTYPE ...>`, `<?xml ...?>` and the like, up to the next `>`.
    BogusComment,
    /// Inside a text-only element: how many bytes of its end tag (`</name`)
    /// were just seen.
    ElementText {
        matched: usize,
    },
    /// `</name` seen inside a text-only element: the next byte tells
    /// whether it is the end tag.
    ElementTextEndName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Double,
    Single,
    Unquoted,
}

/// Finds the links of an HTML page fed in pieces.
#[derive(Default)]
pub(super) struct HtmlScanner {
    state: HtmlState,
    tag: Tag,
    /// The name of the text-only element being read.
    text_element: &'static [u8],
}

/// The tag being read: only what decides whether it is a link, and where to.
#[derive(Default)]
struct Tag {
    is_end: bool,
    name: ShortName,
    attribute: ShortName,
    /// Whether the tag has an `href` (the first one counts).
    has_href: bool,
    href: Vec<u8>,
    /// Whether the attribute value being read is that `href`.
    reading_href: bool,
    href_too_long: bool,
}

impl Tag {
    fn start(&mut self, is_end: bool) {
        self.is_end = is_end;
        self.name = ShortName::default();
        self.has_href = false;
        self.href.clear();
        self.reading_href = false;
        self.href_too_long = false;
    }

    fn start_attribute(&mut self) {
        self.attribute = ShortName::default();
        self.reading_href = false;
    }

    /// The attribute's name is complete: if it is an anchor's first `href`,
    /// its value is the one to keep.
    fn end_attribute_name(&mut self) {
        if !self.is_end && !self.has_href && self.name.is(b"a") && self.attribute.is(b"href") {
            self.has_href = true;
            self.reading_href = true;
        }
    }

    fn push_value(&mut self, bytes: &[u8]) {
        if !self.reading_href {
            return;
        }
        let room = MAX_HREF_BYTES - self.href.len();
        if bytes.len() > room {
            self.href_too_long = true;
        }
        self.href
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
    }
}

/// A tag or attribute name, lowercase, kept only as far as needed to compare
/// it with the few names that matter here.
#[derive(Default, Clone, Copy)]
struct ShortName {
    bytes: [u8; 8],
    len: usize,
}

impl ShortName {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte.to_ascii_lowercase();
        }
        self.len = self.len.saturating_add(1);
    }

    fn is(&self, name: &[u8]) -> bool {
        self.bytes.get(..self.len) == Some(name)
    }
}

impl HtmlScanner {
    pub(super) fn scan(&mut self, bytes: &[u8], dir_url: &Url, entries: &mut UniqueEntries) {
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            let rest = bytes.get(at..).unwrap_or_default();
            // Text between tags, and quoted values, are taken in one go up
            // to the byte that ends them.
            let run_end = match self.state {
                HtmlState::Text => Some(b'<'),
                HtmlState::AttributeValue(Quote::Double) => Some(b'"'),
                HtmlState::AttributeValue(Quote::Single) => Some(b'\''),
                _ => None,
            };
            if let Some(end) = run_end {
                let run = find_byte(rest, end).unwrap_or(rest.len());
                if run > 0 {
                    if self.state != HtmlState::Text {
                        self.tag.push_value(rest.get(..run).unwrap_or_default());
                    }
                    at += run;
                    continue;
                }
            }
            if self.step(byte, dir_url, entries) {
                at += 1;
            }
        }
    }

    /// Moves on by one byte; false when the byte is to be read again in the
    /// new state (the standard's "reconsume"). Every such path ends in a
    /// state that takes the byte, so the scan always advances.
    fn step(&mut self, byte: u8, dir_url: &Url, entries: &mut UniqueEntries) -> bool {
        use HtmlState::*;
        let space = byte.is_ascii_whitespace();
        let (next, consumed) = match self.state {
            Text => (if byte == b'<' { TagOpen } else { Text }, true),
            TagOpen => match byte {
                b'!' => (MarkupDeclaration, true),
                b'/' => (EndTagOpen, true),
                b'?' => (BogusComment, true),
                _ if byte.is_ascii_alphabetic() => {
                    self.tag.start(false);
                    (TagName, false)
                }
                _ => (Text, false),
            },
            EndTagOpen => match byte {
                b'>' => (Text, true),
                _ if byte.is_ascii_alphabetic() => {
                    self.tag.start(true);
                    (TagName, false)
                }
                _ => (BogusComment, true),
            },
            TagName => match byte {
                b'/' => (SelfClosing, true),
                b'>' => (self.end_tag(dir_url, entries), true),
                _ if space => (BeforeAttributeName, true),
                _ => {
                    self.tag.name.push(byte);
                    (TagName, true)
                }
            },
            BeforeAttributeName => match byte {
                b'/' | b'>' => (AfterAttributeName, false),
                b'=' => {
                    // An attribute whose name starts with '='.
                    self.tag.start_attribute();
                    self.tag.attribute.push(byte);
                    (AttributeName, true)
                }
                _ if space => (BeforeAttributeName, true),
                _ => {
                    self.tag.start_attribute();
                    (AttributeName, false)
                }
            },
            AttributeName => match byte {
                b'=' => {
                    self.tag.end_attribute_name();
                    (BeforeAttributeValue, true)
                }
                b'/' | b'>' => {
                    self.tag.end_attribute_name();
                    (AfterAttributeName, false)
                }
                _ if space => {
                    self.tag.end_attribute_name();
                    (AfterAttributeName, false)
                }
                _ => {
                    self.tag.attribute.push(byte);
                    (AttributeName, true)
                }
            },
            AfterAttributeName => match byte {
                b'/' => (SelfClosing, true),
                b'=' => (BeforeAttributeValue, true),
                b'>' => (self.end_tag(dir_url, entries), true),
                _ if space => (AfterAttributeName, true),
                _ => {
                    self.tag.start_attribute();
                    (AttributeName, false)
                }
            },
            BeforeAttributeValue => match byte {
                b'"' => (AttributeValue(Quote::Double), true),
                b'\'' => (AttributeValue(Quote::Single), true),
                b'>' => (self.end_tag(dir_url, entries), true),
                _ if space => (BeforeAttributeValue, true),
                _ => (AttributeValue(Quote::Unquoted), false),
            },
            AttributeValue(quote) => match (quote, byte) {
                (Quote::Double, b'"') | (Quote::Single, b'\'') => {
                    self.tag.reading_href = false;
                    (AfterQuotedAttributeValue, true)
                }
                (Quote::Unquoted, b'>') => (self.end_tag(dir_url, entries), true),
                (Quote::Unquoted, _) if space => {
                    self.tag.reading_href = false;
                    (BeforeAttributeName, true)
                }
                _ => {
                    self.tag.push_value(&[byte]);
                    (AttributeValue(quote), true)
                }
            },
            AfterQuotedAttributeValue => match byte {
                b'/' => (SelfClosing, true),
                b'>' => (self.end_tag(dir_url, entries), true),
                _ if space => (BeforeAttributeName, true),
                _ => (BeforeAttributeName, false),
            },
            SelfClosing => match byte {
                b'>' => (self.end_tag(dir_url, entries), true),
                _ => (BeforeAttributeName, false),
            },
            MarkupDeclaration => match byte {
                b'-' => (CommentStartDash, true),
                _ => (BogusComment, false),
            },
            CommentStartDash => match byte {
                // `<!-->` and `<!--->` are whole (empty) comments.
                b'-' => (Comment { dashes: 2 }, true),
                _ => (BogusComment, false),
            },
            Comment { dashes } => match byte {
                b'-' => (
                    Comment {
                        dashes: dashes.saturating_add(1),
                    },
                    true,
                ),
                b'>' if dashes >= 2 => (Text, true),
                _ => (Comment { dashes: 0 }, true),
            },
            BogusComment => (if byte == b'>' { Text } else { BogusComment }, true),
            ElementText { matched } => {
                let expected = match matched {
                    0 => Some(b'<'),
                    1 => Some(b'/'),
                    _ => self.text_element.get(matched - 2).copied(),
                };
                if expected == Some(byte.to_ascii_lowercase()) {
                    if matched + 1 == self.text_element.len() + 2 {
                        (ElementTextEndName, true)
                    } else {
                        (
                            ElementText {
                                matched: matched + 1,
                            },
                            true,
                        )
                    }
                } else {
                    // Read a mismatch again from the start: it may be a '<'.
                    (ElementText { matched: 0 }, matched == 0)
                }
            }
            ElementTextEndName => {
                self.tag.start(true);
                match byte {
                    b'/' => (SelfClosing, true),
                    b'>' => (Text, true),
                    _ if space => (BeforeAttributeName, true),
                    _ => (ElementText { matched: 0 }, false),
                }
            }
        };
        self.state = next;
        consumed
    }

    /// The `>` of a tag: an anchor's link becomes an entry if it names a
    /// child. Returns the state after the tag.
    fn end_tag(&mut self, dir_url: &Url, entries: &mut UniqueEntries) -> HtmlState {
        self.tag.reading_href = false;
        if self.tag.is_end {
            return HtmlState::Text;
        }
        if self.tag.name.is(b"a") && self.tag.has_href && !self.tag.href_too_long {
            let href = &self.tag.href;
            let entry = plain_child_entry(dir_url, href).or_else(|| {
                resolve_href(dir_url, href).and_then(|target| direct_child_entry(dir_url, &target))
            });
            if let Some(entry) = entry {
                entries.push(entry);
            }
        }
        match TEXT_ONLY_ELEMENTS
            .iter()
            .find(|name| self.tag.name.is(name))
        {
            Some(name) => {
                self.text_element = name;
                HtmlState::ElementText { matched: 0 }
            }
            None => HtmlState::Text,
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

/// The entry a plain `href` names, found without building a URL: one made
/// of letters, digits and `-._~` only (not `.` or `..`), with an optional
/// trailing `/`, such as most links of a big listing. Such an href is its
/// own name: no reference, escape, whitespace or separator in it for
/// [`resolve_href`] and [`direct_child_entry`] to act on, and they would
/// give the same entry, only slower. None for any other href.
pub(super) fn plain_child_entry(dir_url: &Url, href: &[u8]) -> Option<ListingEntry> {
    let (name, is_dir) = match href.strip_suffix(b"/") {
        Some(name) => (name, true),
        None => (href, false),
    };
    let plain = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name != b"."
        && name != b".."
        && name
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
        && !dir_url.cannot_be_a_base();
    plain.then(|| ListingEntry {
        name: name.to_vec(),
        is_dir,
        size: None,
        mtime: None,
    })
}

/// Resolves an `href` as a browser would: character references decoded,
/// surrounding whitespace dropped, then joined onto the directory URL. Bytes
/// outside ASCII are percent-encoded first so that raw bytes (a Latin-1
/// page) keep their value instead of being re-encoded as UTF-8.
pub(super) fn resolve_href(dir_url: &Url, href: &[u8]) -> Option<Url> {
    let decoded = decode_character_references(href);
    let reference = encode_non_ascii(decoded.trim_ascii());
    dir_url.join(&reference).ok()
}

/// An entry when `target` is exactly one segment below `dir_url`, without
/// query or fragment, and its name is not too long to look up.
pub(super) fn direct_child_entry(dir_url: &Url, target: &Url) -> Option<ListingEntry> {
    if target.query().is_some() || target.fragment().is_some() {
        return None;
    }
    let [name] = <[Vec<u8>; 1]>::try_from(relative_components(dir_url, target)?).ok()?;
    if name.len() > MAX_NAME_BYTES {
        return None;
    }
    Some(ListingEntry {
        name,
        is_dir: target.path().ends_with('/'),
        size: None,
        mtime: None,
    })
}

fn encode_non_ascii(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii() {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes the character references listing generators emit in attributes
/// (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&#39;`, `&#x27;`); anything
/// else, including malformed references, is kept as written.
fn decode_character_references(text: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&first, tail)) = rest.split_first() {
        let reference = if first == b'&' {
            character_reference(tail)
        } else {
            None
        };
        match reference {
            Some((character, consumed)) => {
                decoded.extend_from_slice(character.encode_utf8(&mut [0; 4]).as_bytes());
                rest = tail.get(consumed..).unwrap_or_default();
            }
            None => {
                decoded.push(first);
                rest = tail;
            }
        }
    }
    decoded
}

/// Reads one reference after its `&`: the character and how many bytes it
/// used, including the closing `;`.
fn character_reference(after_ampersand: &[u8]) -> Option<(char, usize)> {
    const LONGEST_REFERENCE_BYTES: usize = 10;
    let end = after_ampersand
        .iter()
        .take(LONGEST_REFERENCE_BYTES)
        .position(|&byte| byte == b';')?;
    let body = std::str::from_utf8(after_ampersand.get(..end)?).ok()?;
    let character = match body {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => numeric_reference(body)?,
    };
    Some((character, end + 1))
}

/// `#39` or `#x27` to its character; None for anything that is not a valid,
/// non-NUL Unicode scalar value.
fn numeric_reference(body: &str) -> Option<char> {
    let number = body.strip_prefix('#')?;
    let code_point = match number.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => number.parse::<u32>().ok()?,
    };
    char::from_u32(code_point).filter(|&c| c != '\0')
}
