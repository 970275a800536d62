//! Parsing of directory listings served by origins, as the body arrives.
//!
//! An origin shows a directory's content as a page it generates: nginx
//! `autoindex` (HTML or `autoindex_format json`), Apache `mod_autoindex`,
//! Python's `http.server`, lighttpd's `dir-listing`. Rather than recognise
//! each server's layout, the HTML reader relies on what they all share: every
//! entry is an `<a href>` whose target is a direct child of the listed
//! directory. So every link is resolved against the directory URL the way a
//! browser would, and only links that land exactly one path segment below it
//! are kept. That drops, without special cases, parent links (`../`,
//! "Parent Directory"), self links, Apache's `?C=N;O=D` sort links (they carry
//! a query), anchors, links to other hosts and absolute paths elsewhere.
//! The visible link text is never used: servers truncate it
//! (`verylongname..>`), the `href` is what names the file.
//!
//! A trailing `/` on the target marks a directory. Names are the
//! percent-decoded path segment, as raw bytes, and pass the same validity
//! rules as [`crate::namespace`]'s names (no `.`, `..`, `/` or NUL), because
//! the same `relative_components` decides what is a child. Names over
//! [`MAX_NAME_BYTES`] are dropped: the kernel cannot look them up, and one
//! over 1024 bytes would fail the whole `readdir`.
//!
//! **A stream, not a document.** A listing can be a million entries (100 MB
//! of HTML), so [`ListingParser`] is fed the body chunk by chunk as it comes
//! and keeps of it only what a chunk boundary cuts in two: the first few
//! bytes while the format is not known yet, the tag being read with its
//! `href`, or one JSON entry, each bounded. What grows with the listing is
//! the entries found and the set of their names (a name seen twice keeps its
//! first entry). [`ListingLimits`] caps both the entries and the bytes read,
//! as a guard against an origin that never stops; past a cap the listing is
//! an error, never a listing cut short.
//!
//! HTML is read by a small tokenizer that follows the HTML standard where it
//! matters for links: tags and their attributes (quoted or not, any case),
//! comments, `<!DOCTYPE>` and other declarations, and the elements whose
//! content is text and holds no tags (`<script>`, `<style>`, `<title>`,
//! `<textarea>`). It builds no tree and looks at no other text.
//! JSON is split into the top-level array's elements by following strings and
//! nesting, and each element is read on its own, so a body that is not an
//! array of entries is still refused as a whole.
//!
//! The body is read as bytes, whatever its charset: an `href`'s bytes outside
//! ASCII are percent-encoded as they are before it is resolved, so a listing
//! of Latin-1 file names served unencoded maps back to exactly those bytes,
//! and a UTF-8 one to its UTF-8. HTML gives no sizes (the visible sizes are
//! rounded, `1.2M`); nginx's JSON gives exact ones.

use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

use crate::namespace::{base_dir_url, is_valid_name, relative_components};

/// Longest name kept, in bytes: Linux's `NAME_MAX`.
const MAX_NAME_BYTES: usize = 255;
/// Longest `href` followed, in bytes. A child's `href` is its name
/// percent-encoded (at most 765 bytes), or an absolute URL with the
/// directory's path in front; a longer one names no child, so its tag is read
/// to its end without keeping the rest.
const MAX_HREF_BYTES: usize = 32 * 1024;
/// Longest element of a JSON listing, in bytes; nginx's are under 1 KiB.
/// Whether a longer one is an entry cannot be known without keeping it
/// whole, so it fails the listing ([`ListingError::EntryTooLong`]).
const MAX_JSON_ENTRY_BYTES: usize = 64 * 1024;
/// Bytes of the body's start (after a byte order mark and whitespace) looked
/// at before the format is chosen: the longest prefix compared,
/// `<!doctype html`.
const SNIFF_BYTES: usize = 14;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Elements whose content is text up to their end tag, with no tags in it:
/// an `<a href>` written in a script or a title is not a link.
const TEXT_ONLY_ELEMENTS: [&[u8]; 4] = [b"script", b"style", b"textarea", b"title"];

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    /// Decoded name, one path segment, raw bytes.
    pub name: Vec<u8>,
    pub is_dir: bool,
    /// Size in bytes when the listing states it exactly (nginx JSON files).
    pub size: Option<u64>,
}

/// The most one listing may hold; a listing past either cap is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingLimits {
    /// Entries, counted after duplicates are dropped.
    pub entries: usize,
    /// Bytes of body read.
    pub bytes: u64,
}

/// Why a listing was refused rather than shown in part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("the listing has more than {0} entries")]
    TooManyEntries(usize),
    #[error("the listing is over {0} bytes")]
    TooManyBytes(u64),
    #[error("an entry of the JSON listing is over {MAX_JSON_ENTRY_BYTES} bytes")]
    EntryTooLong,
}

/// Reads the listing served at one directory URL, fed its body chunk by
/// chunk in order; [`ListingParser::finish`] gives the entries.
///
/// How the body is cut into chunks never changes the result.
pub struct ListingParser {
    /// The directory's URL, ending in '/'.
    dir_url: Url,
    /// The Content-Type's media type, lowercase (`text/html`).
    media_type: Option<String>,
    limits: ListingLimits,
    bytes_read: u64,
    reader: Reader,
    entries: UniqueEntries,
}

/// What the body is read as, once its start has shown it.
enum Reader {
    Sniffing(Sniffer),
    Html(HtmlScanner),
    Json(JsonScanner),
    NotListing,
}

impl ListingParser {
    /// A parser for the body served at `dir_url`, with the response's
    /// `content_type` if any. A `dir_url` without a trailing '/' is treated
    /// as if it had one.
    pub fn new(dir_url: &Url, content_type: Option<&str>, limits: ListingLimits) -> ListingParser {
        ListingParser {
            dir_url: base_dir_url(dir_url),
            media_type: content_type.map(media_type_essence),
            limits,
            bytes_read: 0,
            reader: Reader::Sniffing(Sniffer::default()),
            entries: UniqueEntries::new(limits.entries),
        }
    }

    /// Reads the next chunk of the body. An error means the listing is
    /// refused; the parser is of no further use then.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ListingError> {
        self.bytes_read = self.bytes_read.saturating_add(chunk.len() as u64);
        if self.bytes_read > self.limits.bytes {
            return Err(ListingError::TooManyBytes(self.limits.bytes));
        }
        let mut rest = chunk;
        if let Reader::Sniffing(sniffer) = &mut self.reader {
            rest = sniffer.take(rest);
            if !start_decides(self.media_type.as_deref(), &sniffer.start) {
                return Ok(());
            }
            self.choose_format()?;
        }
        self.scan(rest)
    }

    /// Whether the body is known not to be a listing already, so the rest of
    /// it need not be read: its start says it is not HTML or JSON, or the
    /// JSON is not an array of entries.
    pub fn is_not_listing(&self) -> bool {
        match &self.reader {
            Reader::NotListing => true,
            Reader::Json(json) => json.state == JsonState::Invalid,
            Reader::Sniffing(_) | Reader::Html(_) => false,
        }
    }

    /// Ends the body: the entries in listing order, or None when the body is
    /// not a listing (neither HTML nor JSON, or JSON that is not a complete
    /// nginx-style array of entries). An HTML page is always a listing,
    /// possibly empty; a tag cut off by the end of the body names nothing.
    pub fn finish(mut self) -> Option<Vec<ListingEntry>> {
        self.choose_format().ok()?;
        let complete = match &self.reader {
            Reader::Html(_) => true,
            Reader::Json(json) => json.state == JsonState::AfterArray,
            Reader::Sniffing(_) | Reader::NotListing => false,
        };
        complete.then(|| self.entries.into_entries())
    }

    /// Leaves sniffing: chooses the reader from the start of the body seen so
    /// far, and reads that start with it.
    fn choose_format(&mut self) -> Result<(), ListingError> {
        let Reader::Sniffing(sniffer) = &mut self.reader else {
            return Ok(());
        };
        let start = std::mem::take(sniffer).into_start();
        self.reader = match listing_format(self.media_type.as_deref(), &start) {
            Some(ListingFormat::Html) => Reader::Html(HtmlScanner::default()),
            Some(ListingFormat::Json) => Reader::Json(JsonScanner::default()),
            None => Reader::NotListing,
        };
        self.scan(&start)
    }

    fn scan(&mut self, bytes: &[u8]) -> Result<(), ListingError> {
        match &mut self.reader {
            Reader::Html(html) => html.scan(bytes, &self.dir_url, &mut self.entries),
            Reader::Json(json) => json.scan(bytes, &mut self.entries)?,
            Reader::Sniffing(_) | Reader::NotListing => {}
        }
        if self.entries.is_over_limit() {
            return Err(ListingError::TooManyEntries(self.limits.entries));
        }
        Ok(())
    }
}

// --- Format ---------------------------------------------------------------------

enum ListingFormat {
    Html,
    Json,
}

/// Decides how to read the body from its `start` (without byte order mark
/// and leading whitespace): the declared media type first; a body starting
/// with `[` is read as JSON whatever its type (nginx JSON listings are
/// sometimes served with a generic type); without any type, a body that
/// starts like an HTML document is read as HTML.
fn listing_format(media_type: Option<&str>, start: &[u8]) -> Option<ListingFormat> {
    match media_type {
        Some("text/html" | "application/xhtml+xml") => Some(ListingFormat::Html),
        Some("application/json" | "text/json") => Some(ListingFormat::Json),
        Some(other) if other.ends_with("+json") => Some(ListingFormat::Json),
        _ if start.starts_with(b"[") => Some(ListingFormat::Json),
        None if starts_like_html(start) => Some(ListingFormat::Html),
        _ => None,
    }
}

/// `Text/HTML; charset=utf-8` -> `text/html`.
fn media_type_essence(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().to_ascii_lowercase()
}

/// Whether the body's `start` seen so far settles its format, whatever
/// follows: a media type that decides alone, a first byte that cannot begin
/// an HTML document, or enough bytes to compare.
fn start_decides(media_type: Option<&str>, start: &[u8]) -> bool {
    match start.first() {
        None => false,
        Some(b'<') => start.len() >= SNIFF_BYTES || listing_format(media_type, b"").is_some(),
        Some(_) => true,
    }
}

fn starts_like_html(start: &[u8]) -> bool {
    [&b"<!doctype html"[..], b"<html"].iter().any(|prefix| {
        start
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

/// The start of the body while its format is unknown: a UTF-8 byte order
/// mark and the whitespace after it are dropped (neither format needs them),
/// then at most [`SNIFF_BYTES`] bytes are kept, and that is enough to choose.
struct Sniffer {
    /// How many bytes of a byte order mark the body began with, while it may
    /// still be one; None once it is dropped or ruled out.
    bom_matched: Option<usize>,
    start: Vec<u8>,
}

impl Default for Sniffer {
    fn default() -> Self {
        Sniffer {
            bom_matched: Some(0),
            start: Vec::with_capacity(SNIFF_BYTES),
        }
    }
}

impl Sniffer {
    /// Takes bytes from `rest` until it has enough; returns what it left.
    fn take<'a>(&mut self, mut rest: &'a [u8]) -> &'a [u8] {
        while self.start.len() < SNIFF_BYTES {
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            if let Some(matched) = self.bom_matched {
                if UTF8_BOM.get(matched) == Some(&byte) {
                    self.bom_matched = Some(matched + 1).filter(|&n| n < UTF8_BOM.len());
                    continue;
                }
                // Not a byte order mark after all: what looked like one is text.
                self.start.extend_from_slice(&UTF8_BOM[..matched]);
                self.bom_matched = None;
            }
            if !(self.start.is_empty() && byte.is_ascii_whitespace()) {
                self.start.push(byte);
            }
        }
        rest
    }

    /// The start seen, also when the body ended inside what could have been
    /// a byte order mark.
    fn into_start(mut self) -> Vec<u8> {
        if let Some(matched) = self.bom_matched {
            self.start.extend_from_slice(&UTF8_BOM[..matched]);
        }
        self.start
    }
}

// --- HTML -----------------------------------------------------------------------

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
struct HtmlScanner {
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
    fn scan(&mut self, bytes: &[u8], dir_url: &Url, entries: &mut UniqueEntries) {
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
fn plain_child_entry(dir_url: &Url, href: &[u8]) -> Option<ListingEntry> {
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
    })
}

/// Resolves an `href` as a browser would: character references decoded,
/// surrounding whitespace dropped, then joined onto the directory URL. Bytes
/// outside ASCII are percent-encoded first so that raw bytes (a Latin-1
/// page) keep their value instead of being re-encoded as UTF-8.
fn resolve_href(dir_url: &Url, href: &[u8]) -> Option<Url> {
    let decoded = decode_character_references(href);
    let reference = encode_non_ascii(decoded.trim_ascii());
    dir_url.join(&reference).ok()
}

/// An entry when `target` is exactly one segment below `dir_url`, without
/// query or fragment, and its name is not too long to look up.
fn direct_child_entry(dir_url: &Url, target: &Url) -> Option<ListingEntry> {
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

// --- JSON -----------------------------------------------------------------------

/// One element of nginx's `autoindex_format json` output. `mtime` is not
/// needed; unknown fields are ignored so other JSON listings of the same
/// shape work too.
#[derive(Deserialize)]
struct JsonListingEntry {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Read loosely: an odd size (negative, fractional, a string) loses the
    /// size, not the whole listing.
    #[serde(default)]
    size: Option<serde_json::Value>,
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
        let name = self.name.into_bytes();
        (is_valid_name(&name) && name.len() <= MAX_NAME_BYTES).then_some(ListingEntry {
            name,
            is_dir,
            size,
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
struct JsonScanner {
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
    fn scan(&mut self, bytes: &[u8], entries: &mut UniqueEntries) -> Result<(), ListingError> {
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

// --- Both formats ---------------------------------------------------------------

/// Entries in listing order, the first one of each name kept: Apache's fancy
/// index links every file twice (icon and name). Holds one entry past
/// `limit` at most, so that going over it can be seen.
struct UniqueEntries {
    entries: Vec<ListingEntry>,
    seen_names: HashSet<Vec<u8>>,
    limit: usize,
}

impl UniqueEntries {
    fn new(limit: usize) -> UniqueEntries {
        UniqueEntries {
            entries: Vec::new(),
            seen_names: HashSet::new(),
            limit,
        }
    }

    fn push(&mut self, entry: ListingEntry) {
        if self.is_over_limit() {
            return;
        }
        if self.seen_names.insert(entry.name.clone()) {
            self.entries.push(entry);
        }
    }

    fn is_over_limit(&self) -> bool {
        self.entries.len() > self.limit
    }

    fn into_entries(self) -> Vec<ListingEntry> {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL parses")
    }

    /// No caps: these tests are about reading; the caps have their own.
    const NO_LIMITS: ListingLimits = ListingLimits {
        entries: usize::MAX,
        bytes: u64::MAX,
    };

    /// The whole body fed in one piece.
    fn parse_listing(
        dir_url: &Url,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<Vec<ListingEntry>> {
        parse_pieces(dir_url, content_type, [body])
    }

    /// The body fed in the given pieces, in order.
    fn parse_pieces<'a>(
        dir_url: &Url,
        content_type: Option<&str>,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<Vec<ListingEntry>> {
        let mut parser = ListingParser::new(dir_url, content_type, NO_LIMITS);
        for piece in pieces {
            parser.feed(piece).expect("no limits to exceed");
        }
        parser.finish()
    }

    fn file(name: &str) -> ListingEntry {
        ListingEntry {
            name: name.as_bytes().to_vec(),
            is_dir: false,
            size: None,
        }
    }

    fn dir(name: &str) -> ListingEntry {
        ListingEntry {
            name: name.as_bytes().to_vec(),
            is_dir: true,
            size: None,
        }
    }

    fn sized(name: &str, size: u64) -> ListingEntry {
        ListingEntry {
            name: name.as_bytes().to_vec(),
            is_dir: false,
            size: Some(size),
        }
    }

    fn html(dir_url: &str, body: &str) -> Option<Vec<ListingEntry>> {
        parse_listing(
            &url(dir_url),
            Some("text/html; charset=utf-8"),
            body.as_bytes(),
        )
    }

    const NGINX_HTML: &str = r#"<html>
<head><title>Index of /pub/releases/</title></head>
<body>
<h1>Index of /pub/releases/</h1><hr><pre><a href="../">../</a>
<a href="sub%20dir/">sub dir/</a>                                           01-Jan-2024 00:00                   -
<a href="v1.0/">v1.0/</a>                                              01-Jan-2024 00:00                   -
<a href="a%20file%20with%20spaces.txt">a file with spaces.txt</a>                             01-Jan-2024 00:00                 123
<a href="R%26D.txt">R&amp;D.txt</a>                                           01-Jan-2024 00:00                  17
<a href="this-is-a-very-long-file-name-that-nginx-truncates-in-the-listing-1.0.tar.gz">this-is-a-very-long-file-name-that-nginx-trunc..&gt;</a> 01-Jan-2024 00:00             4567890
<a href="100%25.txt">100%.txt</a>                                           01-Jan-2024 00:00                   1
<a href="caf%C3%A9.txt">café.txt</a>                                           01-Jan-2024 00:00                   1
</pre><hr></body>
</html>
"#;

    #[test]
    fn nginx_autoindex_html() {
        let entries = html("http://127.0.0.1:8080/pub/releases/", NGINX_HTML).unwrap();
        assert_eq!(
            entries,
            vec![
                dir("sub dir"),
                dir("v1.0"),
                file("a file with spaces.txt"),
                file("R&D.txt"),
                file(
                    "this-is-a-very-long-file-name-that-nginx-truncates-in-the-listing-1.0.tar.gz"
                ),
                file("100%.txt"),
                file("café.txt"),
            ]
        );
    }

    #[test]
    fn nginx_listing_of_origin_root() {
        let body = NGINX_HTML.replace("/pub/releases/", "/");
        let entries = html("http://127.0.0.1:8080/", &body).unwrap();
        assert_eq!(entries.len(), 7);
    }

    #[test]
    fn dir_url_without_trailing_slash_is_treated_as_directory() {
        let entries = html("http://127.0.0.1:8080/pub/releases", NGINX_HTML).unwrap();
        assert_eq!(entries.first(), Some(&dir("sub dir")));
    }

    const APACHE_FANCY_TABLE: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /releases</title>
 </head>
 <body>
<h1>Index of /releases</h1>
  <table>
   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th><th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>
   <tr><th colspan="5"><hr></th></tr>
<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td><td>&nbsp;</td></tr>
<tr><td valign="top"><a href="v1.0/"><img src="/icons/folder.gif" alt="[DIR]"></a></td><td><a href="v1.0/">v1.0/</a></td><td align="right">2024-01-01 00:00  </td><td align="right">  - </td><td>&nbsp;</td></tr>
<tr><td valign="top"><a href="app-1.0.tar.gz"><img src="/icons/compressed.gif" alt="[   ]"></a></td><td><a href="app-1.0.tar.gz">app-1.0.tar.gz</a></td><td align="right">2024-01-01 00:00  </td><td align="right">1.2M</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/text.gif" alt="[TXT]"></td><td><a href="R&amp;D%20notes.txt">R&amp;D notes.txt</a></td><td align="right">2024-01-01 00:00  </td><td align="right"> 12K</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/text.gif" alt="[TXT]"></td><td><a href="a-very-long-name-that-apache-cuts-short-in-the-table.txt">a-very-long-name-that-apache-cuts-sh..&gt;</a></td><td align="right">2024-01-01 00:00  </td><td align="right"> 12K</td><td>&nbsp;</td></tr>
   <tr><th colspan="5"><hr></th></tr>
</table>
<address>Apache/2.4.57 (Debian) Server at example.com Port 80</address>
</body></html>
"#;

    #[test]
    fn apache_fancy_index_table() {
        let entries = html("http://example.com/releases/", APACHE_FANCY_TABLE).unwrap();
        assert_eq!(
            entries,
            vec![
                dir("v1.0"),
                file("app-1.0.tar.gz"),
                file("R&D notes.txt"),
                file("a-very-long-name-that-apache-cuts-short-in-the-table.txt"),
            ]
        );
    }

    const APACHE_FANCY_PRE: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<HTML>
 <HEAD>
  <TITLE>Index of /pub/debian</TITLE>
 </HEAD>
 <BODY>
<H1>Index of /pub/debian</H1>
<PRE><IMG SRC="/icons/blank.gif" ALT="Icon "> <A HREF="?C=N;O=D">Name</A>                    <A HREF="?C=M;O=A">Last modified</A>      <A HREF="?C=S;O=A">Size</A>  <A HREF="?C=D;O=A">Description</A><HR><IMG SRC="/icons/back.gif" ALT="[PARENTDIR]"> <A HREF="/pub/">Parent Directory</A>                             -
<IMG SRC="/icons/folder.gif" ALT="[DIR]"> <A HREF="dists/">dists/</A>                  2024-01-01 00:00    -
<IMG SRC="/icons/folder.gif" ALT="[DIR]"> <A HREF="/pub/debian/pool/">pool/</A>                   2024-01-01 00:00    -
<IMG SRC="/icons/text.gif" ALT="[TXT]"> <A HREF="README">README</A>                  2024-01-01 00:00  1.1K
<IMG SRC="/icons/text.gif" ALT="[TXT]"> <A HREF="http://example.com/pub/debian/ls-lR.gz">ls-lR.gz</A>                  2024-01-01 00:00  1.1K
<HR></PRE>
<ADDRESS>Apache/2.2.22 Server at example.com Port 80</ADDRESS>
</BODY></HTML>
"#;

    #[test]
    fn apache_fancy_index_pre_with_upper_case_tags_and_absolute_links() {
        let entries = html("http://example.com/pub/debian/", APACHE_FANCY_PRE).unwrap();
        assert_eq!(
            entries,
            vec![dir("dists"), dir("pool"), file("README"), file("ls-lR.gz")]
        );
    }

    const APACHE_PLAIN: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /files</title>
 </head>
 <body>
<h1>Index of /files</h1>
<ul><li><a href="/"> Parent Directory</a></li>
<li><a href="notes.txt"> notes.txt</a></li>
<li><a href="images/"> images/</a></li>
</ul>
</body></html>
"#;

    #[test]
    fn apache_plain_index() {
        let entries = html("http://example.com/files/", APACHE_PLAIN).unwrap();
        assert_eq!(entries, vec![file("notes.txt"), dir("images")]);
    }

    const PYTHON_HTTP_SERVER: &str = r#"<!DOCTYPE HTML>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Directory listing for /data/</title>
</head>
<body>
<h1>Directory listing for /data/</h1>
<hr>
<ul>
<li><a href=".hidden">.hidden</a></li>
<li><a href="a%26b%3Fc%23d.txt">a&amp;b?c#d.txt</a></li>
<li><a href="caf%C3%A9.txt">café.txt</a></li>
<li><a href="latin%FF.bin">latin\udcff.bin</a></li>
<li><a href="link%40/">link@/</a></li>
<li><a href="sub/">sub/</a></li>
</ul>
<hr>
</body>
</html>
"#;

    #[test]
    fn python_http_server() {
        let entries = html("http://127.0.0.1:8000/data/", PYTHON_HTTP_SERVER).unwrap();
        assert_eq!(
            entries,
            vec![
                file(".hidden"),
                file("a&b?c#d.txt"),
                file("café.txt"),
                ListingEntry {
                    name: b"latin\xff.bin".to_vec(),
                    is_dir: false,
                    size: None
                },
                dir("link@"),
                dir("sub"),
            ]
        );
    }

    const LIGHTTPD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">
<head>
<title>Index of /mirror/</title>
</head>
<body>
<h2>Index of /mirror/</h2>
<div class="list">
<table summary="Directory Listing" cellpadding="0" cellspacing="0">
<thead><tr><th class="n">Name</th><th class="m">Last Modified</th><th class="s">Size</th><th class="t">Type</th></tr></thead>
<tbody>
<tr class="d"><td class="n"><a href="../">Parent Directory</a>/</td><td class="m">&nbsp;</td><td class="s">- &nbsp;</td><td class="t">Directory</td></tr>
<tr class="d"><td class="n"><a href="centos/">centos</a>/</td><td class="m">2024-Jan-01 00:00:00</td><td class="s">- &nbsp;</td><td class="t">Directory</td></tr>
<tr><td class="n"><a href="index.txt">index.txt</a></td><td class="m">2024-Jan-01 00:00:00</td><td class="s">2.1K</td><td class="t">text/plain</td></tr>
</tbody>
</table>
</div>
<div class="foot">lighttpd/1.4.69</div>
</body>
</html>
"#;

    #[test]
    fn lighttpd_xhtml() {
        let entries = parse_listing(
            &url("https://mirror.example.org/mirror/"),
            Some("application/xhtml+xml"),
            LIGHTTPD.as_bytes(),
        )
        .unwrap();
        assert_eq!(entries, vec![dir("centos"), file("index.txt")]);
    }

    const NGINX_JSON: &str = r#"[
{ "name":"a.txt", "type":"file", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT", "size":123 },
{ "name":"sub", "type":"directory", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT" },
{ "name":"with space & %20.bin", "type":"file", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT", "size":0 },
{ "name":"socket", "type":"other", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT" },
{ "name":"huge.iso", "type":"file", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT", "size":18446744073709551615 }
]
"#;

    #[test]
    fn nginx_json() {
        let entries = parse_listing(
            &url("http://h/pub/"),
            Some("application/json"),
            NGINX_JSON.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![
                sized("a.txt", 123),
                dir("sub"),
                sized("with space & %20.bin", 0),
                file("socket"),
                sized("huge.iso", u64::MAX),
            ]
        );
    }

    #[test]
    fn json_recognised_by_leading_bracket() {
        for content_type in [None, Some("application/octet-stream"), Some("text/plain")] {
            let entries = parse_listing(&url("http://h/pub/"), content_type, NGINX_JSON.as_bytes());
            assert_eq!(entries.map(|e| e.len()), Some(5), "{content_type:?}");
        }
    }

    #[test]
    fn json_skips_invalid_names_and_duplicates() {
        let body = r#"[{"name":"."},{"name":".."},{"name":""},{"name":"a/b"},{"name":"nul\u0000"},
            {"name":"ok","type":"file","size":1},{"name":"ok","type":"directory"}]"#;
        let entries =
            parse_listing(&url("http://h/"), Some("application/json"), body.as_bytes()).unwrap();
        assert_eq!(entries, vec![sized("ok", 1)]);
    }

    #[test]
    fn json_odd_sizes_lose_only_the_size() {
        let body = r#"[{"name":"neg","size":-1},{"name":"frac","size":1.5},{"name":"text","size":"12"},
            {"name":"dir","type":"directory","size":4096}]"#;
        let entries =
            parse_listing(&url("http://h/"), Some("application/json"), body.as_bytes()).unwrap();
        assert_eq!(
            entries,
            vec![file("neg"), file("frac"), file("text"), dir("dir")]
        );
    }

    #[test]
    fn json_that_is_not_a_listing_is_none() {
        for body in [
            &b"{\"name\":\"a\"}"[..],
            b"[1, 2, 3]",
            b"[{\"type\":\"file\"}]",
            b"[{\"name\":\"a\"}",
            b"not json",
            b"",
            b"\xff\xfe[",
        ] {
            assert_eq!(
                parse_listing(&url("http://h/"), Some("application/json"), body),
                None,
                "{body:?}"
            );
        }
    }

    #[test]
    fn empty_listings_are_valid() {
        assert_eq!(
            parse_listing(&url("http://h/"), Some("application/json"), b"[]"),
            Some(vec![])
        );
        assert_eq!(
            parse_listing(
                &url("http://h/"),
                Some("application/json"),
                b"\xEF\xBB\xBF [ ]\n"
            ),
            Some(vec![])
        );
        let nginx_empty = r#"<html>
<head><title>Index of /empty/</title></head>
<body>
<h1>Index of /empty/</h1><hr><pre><a href="../">../</a>
</pre><hr></body>
</html>
"#;
        assert_eq!(html("http://h/empty/", nginx_empty), Some(vec![]));
        assert_eq!(html("http://h/empty/", ""), Some(vec![]));
    }

    #[test]
    fn random_page_keeps_only_direct_children() {
        let page = r##"<!doctype html><html><head><title>Docs</title>
<link rel="stylesheet" href="style.css"></head><body>
<nav><a href="https://www.example.org/">Example</a> <a href="//cdn.example.net/docs/lib.js">CDN</a>
<a href="/">Home</a> <a href="/docs/">Docs</a> <a href="#top">Top</a> <a href="">Self</a> <a href=".">Dot</a>
<a href="mailto:team@example.com">Mail</a> <a href="javascript:void(0)">JS</a> <a>No href</a> <a href>Empty attr</a>
<a href="guide/intro.html">Nested</a> <a href="guide.html?lang=en">Query</a> <a href="faq.html#q1">Fragment</a>
<a href="http://docs.example.com/docs/other-scheme.html">Scheme</a>
<a href="https://docs.example.com:8443/docs/other-port.html">Port</a>
<a href="https://user@docs.example.com/docs/userinfo.html">User</a>
<a href="guide.html">Guide</a></nav></body></html>"##;
        let entries = html("https://docs.example.com/docs/", page).unwrap();
        assert_eq!(entries, vec![file("guide.html")]);
    }

    #[test]
    fn traversal_hrefs_are_skipped() {
        let page = r#"<html><body>
<a href="..">a</a> <a href="../">b</a> <a href="./">c</a> <a href="%2e%2e/">d</a> <a href="%2E%2e">e</a>
<a href=".%2e/x">f</a> <a href="..%2fetc">g</a> <a href="a%2Fb">h</a> <a href="%00">i</a> <a href="a%00b">j</a>
<a href="..\x">k</a> <a href="sub\x">l</a> <a href="/pub/../etc/">m</a> <a href="/etc/passwd">n</a>
<a href="x/../../etc">o</a> <a href="%2e">p</a> <a href="//evil.example/pub/x">q</a> <a href="a//">r</a>
<a href=" ok-after-trim.txt ">s</a>
</body></html>"#;
        let entries = html("http://h/pub/", page).unwrap();
        assert_eq!(entries, vec![file("ok-after-trim.txt")]);
    }

    #[test]
    fn absolute_links_to_children_count() {
        let page = r#"<a href="/pub/a">a</a><a href="http://h/pub/b/">b</a><a href="http://h:80/pub/c">c</a>"#;
        let entries = html("http://h/pub/", page).unwrap();
        assert_eq!(entries, vec![file("a"), dir("b"), file("c")]);
    }

    #[test]
    fn character_references_in_hrefs() {
        let page = r#"<a href="a&amp;b">1</a><a href="&#99;&#x64;">2</a><a href="e&lt;&gt;&quot;&apos;&#39;">3</a>
<a href="f&unknown;g">4</a><a href="h&amp">5</a><a href="&#0;">6</a><a href="&#x110000;">7</a>"#;
        let entries = html("http://h/", page).unwrap();
        assert_eq!(
            entries,
            vec![
                file("a&b"),
                file("cd"),
                file("e<>\"''"),
                file("f&unknown;g"),
                file("h&amp"),
                // Invalid numeric references stay as written, so their '#'
                // starts a fragment and the link is skipped.
            ]
        );
    }

    #[test]
    fn latin1_body_keeps_raw_bytes() {
        let body = b"<html><body><a href=\"caf\xe9.txt\">caf\xe9.txt</a><a href=\"ok%20too\">x</a></body></html>";
        let entries = parse_listing(&url("http://h/"), Some("text/html"), body).unwrap();
        assert_eq!(
            entries,
            vec![
                ListingEntry {
                    name: b"caf\xe9.txt".to_vec(),
                    is_dir: false,
                    size: None
                },
                file("ok too"),
            ]
        );
    }

    #[test]
    fn unicode_href_is_utf8_encoded() {
        let entries = html("http://h/", r#"<a href="日本語/">日本語/</a>"#).unwrap();
        assert_eq!(entries, vec![dir("日本語")]);
    }

    #[test]
    fn content_type_decides_format() {
        let dir_url = url("http://h/");
        let page = br#"<!DOCTYPE html><html><a href="a">a</a></html>"#;
        assert_eq!(
            parse_listing(&dir_url, Some("TEXT/HTML ; charset=ISO-8859-1"), page),
            Some(vec![file("a")])
        );
        assert_eq!(parse_listing(&dir_url, None, page), Some(vec![file("a")]));
        assert_eq!(parse_listing(&dir_url, Some("text/plain"), page), None);
        assert_eq!(
            parse_listing(&dir_url, Some("application/octet-stream"), page),
            None
        );
        assert_eq!(parse_listing(&dir_url, None, b"just text"), None);
        assert_eq!(parse_listing(&dir_url, None, b"<a href=\"a\">a</a>"), None);
    }

    #[test]
    fn garbage_bytes_do_not_panic() {
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let dir_url = url("http://h/pub/");
        assert_eq!(parse_listing(&dir_url, None, &garbage), None);
        assert_eq!(
            parse_listing(&dir_url, Some("application/json"), &garbage),
            None
        );
        let as_html = parse_listing(&dir_url, Some("text/html"), &garbage);
        assert!(as_html.is_some());
        for hostile in [
            &b"<"[..],
            b"<a",
            b"<a ",
            b"<a href",
            b"<a href=",
            b"<a href=\"",
            b"&",
            b"&#",
            b"&#x;",
            b"<<<>>>",
            b"</a></a>",
            b"<!--",
            b"<!",
        ] {
            assert!(
                parse_listing(&dir_url, Some("text/html"), hostile).is_some(),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn truncated_html_keeps_complete_links_and_never_panics() {
        let dir_url = url("http://127.0.0.1:8080/pub/releases/");
        let full = html("http://127.0.0.1:8080/pub/releases/", NGINX_HTML).unwrap();
        for (cut, _) in NGINX_HTML.char_indices() {
            let prefix = &NGINX_HTML.as_bytes()[..cut];
            let entries = parse_listing(&dir_url, Some("text/html"), prefix).unwrap();
            // A cut can only lose entries or shorten the one being cut; it
            // never invents a name that is not a prefix of a real one.
            for entry in &entries {
                assert!(
                    full.iter().any(|real| real.name.starts_with(&entry.name)),
                    "cut at {cut} gave {entry:?}"
                );
            }
        }
        for sample in [
            APACHE_FANCY_TABLE,
            APACHE_FANCY_PRE,
            PYTHON_HTTP_SERVER,
            LIGHTTPD,
            NGINX_JSON,
        ] {
            for (cut, _) in sample.char_indices() {
                let prefix = &sample.as_bytes()[..cut];
                let _ = parse_listing(&dir_url, Some("text/html"), prefix);
                let _ = parse_listing(&dir_url, None, prefix);
            }
        }
    }

    #[test]
    fn truncated_mid_href_is_not_listed() {
        let body = r#"<pre><a href="complete.txt">complete.txt</a>
<a href="partial-na"#;
        assert_eq!(html("http://h/", body), Some(vec![file("complete.txt")]));
    }

    // --- Streaming ----------------------------------------------------------

    const LATIN1_PAGE: &[u8] = b"<html><body><a href=\"caf\xe9.txt\">caf\xe9.txt</a><a href=\"ok%20too\">x</a></body></html>";

    const NGINX_JSON_WITH_BOM: &[u8] =
        b"\xEF\xBB\xBF \r\n [{\"name\":\"a \\\"b\\\\\",\"type\":\"file\",\"size\":1},{\"name\":\"d\",\"type\":\"directory\"}]\n";

    const TRICKY_PAGE: &str = r#"<!DOCTYPE html>
<!-- <a href="commented.txt">x</a> --><!--><a href="after-empty-comment.txt">x</a>
<title>Index of <a href="in-title.txt"></title>
<script>var s = '<a href="in-script.txt">' + "</scrip" + 't>';</script >
<STYLE>a[href="in-style.txt"] { }</style><?xml <a href="in-pi.txt">?>
<a href=plain.txt>x</a> <A HREF = 'single.txt' >x</A> <a title="1 > 0" href="after-gt.txt">x</a>
<a	href="tab.txt">x</a><a
href="newline.txt">x</a> <a href="first.txt" href="second.txt">x</a> <a data-href="data.txt">x</a>
<abbr href="abbr.txt">x</abbr> <a href=unquoted-dir/>x</a> <a href="self-closing.txt"/>
"#;

    /// Every sample listing, with the type it is served with; each reads to
    /// at least one entry.
    fn samples() -> Vec<(&'static str, Option<&'static str>, &'static [u8])> {
        let html = Some("text/html");
        let json = Some("application/json");
        vec![
            (
                "http://127.0.0.1:8080/pub/releases/",
                html,
                NGINX_HTML.as_bytes(),
            ),
            (
                "http://127.0.0.1:8080/pub/releases/",
                None,
                NGINX_HTML.as_bytes(),
            ),
            (
                "http://example.com/releases/",
                html,
                APACHE_FANCY_TABLE.as_bytes(),
            ),
            (
                "http://example.com/pub/debian/",
                None,
                APACHE_FANCY_PRE.as_bytes(),
            ),
            ("http://example.com/files/", html, APACHE_PLAIN.as_bytes()),
            (
                "http://127.0.0.1:8000/data/",
                html,
                PYTHON_HTTP_SERVER.as_bytes(),
            ),
            (
                "https://mirror.example.org/mirror/",
                Some("application/xhtml+xml"),
                LIGHTTPD.as_bytes(),
            ),
            ("http://h/pub/", json, NGINX_JSON.as_bytes()),
            ("http://h/pub/", None, NGINX_JSON.as_bytes()),
            ("http://h/", None, NGINX_JSON_WITH_BOM),
            ("http://h/", html, LATIN1_PAGE),
            ("http://h/", html, TRICKY_PAGE.as_bytes()),
        ]
    }

    #[test]
    fn every_split_reads_the_same_listing() {
        for (dir_url, content_type, body) in samples() {
            let dir_url = url(dir_url);
            let whole = parse_listing(&dir_url, content_type, body);
            assert!(
                whole.as_ref().is_some_and(|entries| !entries.is_empty()),
                "{dir_url} {content_type:?}: {whole:?}"
            );
            for cut in 0..=body.len() {
                let (head, tail) = body.split_at(cut);
                assert_eq!(
                    parse_pieces(&dir_url, content_type, [head, tail]),
                    whole,
                    "{dir_url} {content_type:?} cut at {cut}"
                );
            }
            assert_eq!(
                parse_pieces(&dir_url, content_type, body.chunks(1)),
                whole,
                "{dir_url} {content_type:?} one byte at a time"
            );
        }
    }

    #[test]
    fn json_split_anywhere_in_its_byte_order_mark_and_strings() {
        let entries = parse_pieces(&url("http://h/"), None, NGINX_JSON_WITH_BOM.chunks(1));
        assert_eq!(entries, Some(vec![sized("a \"b\\", 1), dir("d")]));
    }

    #[test]
    fn comments_scripts_and_titles_hold_no_links() {
        let entries = html("http://h/", TRICKY_PAGE).unwrap();
        assert_eq!(
            entries,
            vec![
                file("after-empty-comment.txt"),
                file("plain.txt"),
                file("single.txt"),
                file("after-gt.txt"),
                file("tab.txt"),
                file("newline.txt"),
                file("first.txt"),
                dir("unquoted-dir"),
                file("self-closing.txt"),
            ]
        );
    }

    #[test]
    fn names_over_255_bytes_are_dropped() {
        let longest = "n".repeat(255);
        let too_long = "n".repeat(256);
        let page = format!(r#"<a href="{too_long}">x</a><a href="{longest}/">x</a>"#);
        assert_eq!(html("http://h/", &page), Some(vec![dir(&longest)]));
        // Three bytes each: 85 of them is 255 bytes, 86 is over.
        let encoded = |chars: usize| "%E2%82%AC".repeat(chars);
        let page = format!(
            r#"<a href="{}">x</a><a href="{}">x</a>"#,
            encoded(86),
            encoded(85)
        );
        assert_eq!(html("http://h/", &page), Some(vec![file(&"€".repeat(85))]));
        let body = format!(r#"[{{"name":"{too_long}"}},{{"name":"{longest}","size":1}}]"#);
        assert_eq!(
            parse_listing(&url("http://h/"), None, body.as_bytes()),
            Some(vec![sized(&longest, 1)])
        );
    }

    #[test]
    fn an_href_too_long_to_name_a_child_is_skipped_to_its_tag_end() {
        let long = format!("{}>{}", "x".repeat(MAX_HREF_BYTES), "y".repeat(100));
        let page = format!(r#"<a href="{long}">x</a><a href="next.txt">x</a>"#);
        assert_eq!(html("http://h/", &page), Some(vec![file("next.txt")]));
    }

    #[test]
    fn a_body_that_is_not_a_listing_is_known_from_its_start() {
        let dir_url = url("http://h/");
        let mut binary = ListingParser::new(&dir_url, Some("application/octet-stream"), NO_LIMITS);
        binary
            .feed(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0")
            .unwrap();
        assert!(binary.is_not_listing());
        let mut object = ListingParser::new(&dir_url, Some("application/json"), NO_LIMITS);
        object.feed(b"{").unwrap();
        assert!(object.is_not_listing());
        let mut array = ListingParser::new(&dir_url, Some("application/json"), NO_LIMITS);
        array.feed(br#"[{"name":"a"},"#).unwrap();
        assert!(!array.is_not_listing());
        array.feed(b"7").unwrap();
        array.feed(b",").unwrap();
        assert!(array.is_not_listing(), "an element that is not an entry");
        let mut page = ListingParser::new(&dir_url, Some("text/html"), NO_LIMITS);
        page.feed(b"\x00\x01 anything at all").unwrap();
        assert!(!page.is_not_listing(), "an HTML page is always a listing");
    }

    // --- Limits ---------------------------------------------------------------

    fn limited(entries: usize, bytes: u64, content_type: &str) -> ListingParser {
        ListingParser::new(
            &url("http://h/"),
            Some(content_type),
            ListingLimits { entries, bytes },
        )
    }

    #[test]
    fn a_listing_over_its_entry_cap_is_refused() {
        let three = r#"<a href="a">a</a><a href="b">b</a><a href="a">again</a><a href="c">c</a>"#;
        let mut parser = limited(3, u64::MAX, "text/html");
        parser
            .feed(three.as_bytes())
            .expect("duplicates do not count");
        assert_eq!(parser.finish().map(|e| e.len()), Some(3));

        let mut parser = limited(3, u64::MAX, "text/html");
        parser.feed(three.as_bytes()).unwrap();
        assert_eq!(
            parser.feed(br#"<a href="d">d</a>"#),
            Err(ListingError::TooManyEntries(3))
        );

        let mut parser = limited(1, u64::MAX, "application/json");
        assert_eq!(
            parser.feed(br#"[{"name":"a"},{"name":"b"}]"#),
            Err(ListingError::TooManyEntries(1))
        );
    }

    #[test]
    fn a_listing_over_its_byte_cap_is_refused() {
        let mut parser = limited(usize::MAX, 100, "text/html");
        parser.feed(&[b' '; 60]).unwrap();
        parser.feed(&[b' '; 40]).expect("exactly at the cap");
        assert_eq!(parser.feed(b" "), Err(ListingError::TooManyBytes(100)));
    }

    #[test]
    fn a_json_entry_over_its_cap_fails_the_listing() {
        let padding = "p".repeat(MAX_JSON_ENTRY_BYTES);
        let body = format!(r#"[{{"name":"a"}},{{"name":"b","padding":"{padding}"}}]"#);
        let mut parser = limited(usize::MAX, u64::MAX, "application/json");
        let fed: Result<Vec<()>, ListingError> = body
            .as_bytes()
            .chunks(4096)
            .map(|chunk| parser.feed(chunk))
            .collect();
        assert_eq!(fed, Err(ListingError::EntryTooLong));
    }

    // --- A million entries ----------------------------------------------------

    const MILLION: usize = 1_000_000;
    /// What an origin's chunks look like: the body cut every 64 KiB, not at
    /// line ends.
    const CHUNK_BYTES: usize = 64 * 1024;

    /// Entry `i` of the generated listings: every thousandth a directory.
    fn generated_name(i: usize) -> (String, bool) {
        if i % 1000 == 0 {
            (format!("dir-{i:07}"), true)
        } else {
            (format!("file-{i:07}.tar.gz"), false)
        }
    }

    /// Feeds the body made of `pieces` in [`CHUNK_BYTES`] chunks as it is
    /// generated, so the whole body never exists at once.
    fn feed_generated(parser: &mut ListingParser, pieces: impl Iterator<Item = String>) -> u64 {
        let mut pending = Vec::with_capacity(2 * CHUNK_BYTES);
        let mut fed = 0;
        for piece in pieces {
            pending.extend_from_slice(piece.as_bytes());
            if pending.len() >= CHUNK_BYTES {
                parser.feed(&pending[..CHUNK_BYTES]).expect("within limits");
                pending.drain(..CHUNK_BYTES);
                fed += CHUNK_BYTES as u64;
            }
        }
        parser.feed(&pending).expect("within limits");
        fed + pending.len() as u64
    }

    #[test]
    fn a_million_entry_nginx_html_listing_in_64_kib_chunks() {
        let dir_url = url("http://h/pub/big/");
        let mut parser = ListingParser::new(&dir_url, Some("text/html"), NO_LIMITS);
        let head = "<html>\r\n<head><title>Index of /pub/big/</title></head>\r\n<body>\r\n\
            <h1>Index of /pub/big/</h1><hr><pre><a href=\"../\">../</a>\r\n";
        let lines = (0..MILLION).map(|i| {
            let (name, is_dir) = generated_name(i);
            let slash = if is_dir { "/" } else { "" };
            let size = if is_dir { "-".to_string() } else { i.to_string() };
            format!(
                "<a href=\"{name}{slash}\">{name}{slash}</a>{:pad$} 01-Jan-2024 00:00 {size:>19}\r\n",
                "",
                pad = 50 - name.len() - slash.len(),
            )
        });
        let tail = "</pre><hr></body>\r\n</html>\r\n";
        let body_bytes = feed_generated(
            &mut parser,
            std::iter::once(head.to_string())
                .chain(lines)
                .chain(std::iter::once(tail.to_string())),
        );
        assert!(body_bytes > 100_000_000, "{body_bytes} bytes");

        let entries = parser.finish().expect("a listing");

        assert_eq!(entries.len(), MILLION);
        assert_eq!(entries[0], dir("dir-0000000"));
        assert_eq!(entries[1], file("file-0000001.tar.gz"));
        assert_eq!(entries[500_000], dir("dir-0500000"));
        assert_eq!(entries[MILLION - 1], file("file-0999999.tar.gz"));
    }

    #[test]
    fn a_million_entry_nginx_json_listing_in_64_kib_chunks() {
        let dir_url = url("http://h/pub/big/");
        let mut parser = ListingParser::new(&dir_url, Some("application/json"), NO_LIMITS);
        let elements = (0..MILLION).map(|i| {
            let (name, is_dir) = generated_name(i);
            let comma = if i + 1 < MILLION { "," } else { "" };
            let mtime = r#""mtime":"Mon, 01 Jan 2024 00:00:00 GMT""#;
            if is_dir {
                format!("{{ \"name\":\"{name}\", \"type\":\"directory\", {mtime} }}{comma}\n")
            } else {
                format!(
                    "{{ \"name\":\"{name}\", \"type\":\"file\", {mtime}, \"size\":{i} }}{comma}\n"
                )
            }
        });
        let body_bytes = feed_generated(
            &mut parser,
            std::iter::once("[\n".to_string())
                .chain(elements)
                .chain(std::iter::once("]\n".to_string())),
        );
        assert!(body_bytes > 80_000_000, "{body_bytes} bytes");

        let entries = parser.finish().expect("a listing");

        assert_eq!(entries.len(), MILLION);
        assert_eq!(entries[0], dir("dir-0000000"));
        assert_eq!(entries[1], sized("file-0000001.tar.gz", 1));
        assert_eq!(entries[500_000], dir("dir-0500000"));
        assert_eq!(
            entries[MILLION - 1],
            sized("file-0999999.tar.gz", MILLION as u64 - 1)
        );
    }
}

#[cfg(test)]
mod properties {
    //! Random bodies cut into random pieces read exactly as in one piece,
    //! and never panic; random nginx listings, HTML and JSON, read back to
    //! the entries they were made from. `PROPTEST_CASES` sets the cases per
    //! property (proptest's default, 256, otherwise).

    use percent_encoding::{AsciiSet, CONTROLS, percent_encode};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    use super::*;

    const NO_LIMITS: ListingLimits = ListingLimits {
        entries: usize::MAX,
        bytes: u64::MAX,
    };

    /// What nginx-like generators encode in an `href`; other bytes, also
    /// those outside ASCII, are written raw.
    const HREF_ENCODED: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'&')
        .add(b'/')
        .add(b':')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');

    fn dir_url() -> Url {
        Url::parse("http://h/pub/").expect("test URL parses")
    }

    fn parse(content_type: Option<&str>, body: &[u8], cuts: &[Index]) -> Option<Vec<ListingEntry>> {
        let mut offsets: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
        offsets.sort_unstable();
        let mut parser = ListingParser::new(&dir_url(), content_type, NO_LIMITS);
        let mut start = 0;
        for end in offsets.into_iter().chain([body.len()]) {
            parser.feed(&body[start..end]).expect("no limits to exceed");
            start = end;
        }
        parser.finish()
    }

    /// Bytes that are half listing syntax, so random bodies reach deep
    /// into both readers.
    fn listing_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        let pieces: Vec<&[u8]> = vec![
            b"<",
            b">",
            b"<a ",
            b"<A HREF=",
            b"href",
            b"=",
            b"\"",
            b"'",
            b"/",
            b"!--",
            b"-->",
            b"<!DOCTYPE html>",
            b"<script>",
            b"</script>",
            b"<title>",
            b"</title",
            b"../",
            b"a",
            b"%2e",
            b"%",
            b"&amp;",
            b"&#",
            b";",
            b" ",
            b"\n",
            b"\xEF\xBB\xBF",
            b"\xe9",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b":",
            b"\"name\"",
            b"\"type\":\"directory\"",
            b"\\",
            b"\"size\":1",
            b"\0",
        ];
        vec(select(pieces), 0..60).prop_map(|pieces| pieces.concat())
    }

    fn content_type() -> impl Strategy<Value = Option<&'static str>> {
        select(vec![
            None,
            Some("text/html"),
            Some("application/json"),
            Some("text/plain"),
        ])
    }

    /// A file name as raw bytes: often from a few letters, so names repeat.
    fn name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(select(b"ab.%& \xe9".to_vec()), 1..4),
            vec(
                (1..=u8::MAX).prop_map(|byte| if byte == b'/' { b'_' } else { byte }),
                1..300
            ),
        ]
        .prop_map(|mut name| {
            if !is_valid_name(&name) {
                // `.` or `..`: filtering them out would reject too many cases.
                name.push(b'~');
            }
            name
        })
    }

    /// A name that JSON can hold: valid UTF-8.
    fn json_name() -> impl Strategy<Value = String> {
        prop_oneof!["[ab.é\"\\\\]{1,3}", "[^/\u{0}]{1,40}"].prop_map(|mut name| {
            if !is_valid_name(name.as_bytes()) {
                name.push('~');
            }
            name
        })
    }

    /// The entries a listing of `made` shows: the first of each name, none
    /// too long.
    fn expected(made: Vec<ListingEntry>) -> Vec<ListingEntry> {
        let mut seen = HashSet::new();
        made.into_iter()
            .filter(|entry| entry.name.len() <= MAX_NAME_BYTES && seen.insert(entry.name.clone()))
            .collect()
    }

    fn html_text(name: &[u8]) -> String {
        String::from_utf8_lossy(name)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    fn nginx_html(entries: &[ListingEntry]) -> Vec<u8> {
        let mut body = b"<html>\r\n<head><title>Index of /pub/</title></head>\r\n<body>\r\n\
            <h1>Index of /pub/</h1><hr><pre><a href=\"../\">../</a>\r\n"
            .to_vec();
        for entry in entries {
            let slash = if entry.is_dir { "/" } else { "" };
            body.extend_from_slice(b"<a href=\"");
            body.extend(percent_encode(&entry.name, HREF_ENCODED).flat_map(str::bytes));
            body.extend_from_slice(
                format!(
                    "{slash}\">{}{slash}</a> 01-Jan-2024 00:00 {:>19}\r\n",
                    html_text(&entry.name),
                    entry.size.map_or("-".to_string(), |size| size.to_string()),
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(b"</pre><hr></body>\r\n</html>\r\n");
        body
    }

    fn nginx_json(entries: &[ListingEntry]) -> Vec<u8> {
        let elements: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| {
                let name = String::from_utf8(entry.name.clone()).expect("UTF-8 name");
                match entry.size {
                    Some(size) => serde_json::json!({
                        "name": name, "type": "file",
                        "mtime": "Mon, 01 Jan 2024 00:00:00 GMT", "size": size
                    }),
                    None => serde_json::json!({
                        "name": name, "type": "directory",
                        "mtime": "Mon, 01 Jan 2024 00:00:00 GMT"
                    }),
                }
            })
            .collect();
        serde_json::to_vec_pretty(&elements).expect("JSON renders")
    }

    /// Directory URLs whose paths the plain path must agree on.
    fn any_dir_url() -> impl Strategy<Value = Url> {
        select(vec![
            "http://h/",
            "http://h/pub/",
            "https://h:8443/a%20b/c/",
            "http://h/a%2Fb/",
            "http://[::1]/x/",
            "http://u@h/p",
        ])
        .prop_map(|text| base_dir_url(&Url::parse(text).expect("test URL parses")))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // A failure prints its input; no regression files in the tree.
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_body_in_any_pieces_reads_as_in_one(
            body in prop_oneof![vec(any::<u8>(), 0..400), listing_like_bytes()],
            content_type in content_type(),
            cuts in vec(any::<Index>(), 0..6),
        ) {
            let whole = parse(content_type, &body, &[]);
            prop_assert_eq!(parse(content_type, &body, &cuts), whole);
        }

        #[test]
        fn a_plain_href_names_what_resolving_it_names(
            dir_url in any_dir_url(),
            href in "[A-Za-z0-9._~-]{1,6}/?",
        ) {
            let plain = plain_child_entry(&dir_url, href.as_bytes());
            let resolved = resolve_href(&dir_url, href.as_bytes())
                .and_then(|target| direct_child_entry(&dir_url, &target));
            if plain.is_some() {
                prop_assert_eq!(plain, resolved);
            }
        }

        #[test]
        fn html_listings_read_back(
            made in vec((name(), any::<bool>()), 0..30),
            cuts in vec(any::<Index>(), 0..6),
        ) {
            let made: Vec<ListingEntry> = made
                .into_iter()
                .map(|(name, is_dir)| ListingEntry { name, is_dir, size: None })
                .collect();
            let body = nginx_html(&made);
            prop_assert_eq!(parse(Some("text/html"), &body, &cuts), Some(expected(made)));
        }

        #[test]
        fn json_listings_read_back(
            made in vec((json_name(), any::<Option<u64>>()), 0..30),
            cuts in vec(any::<Index>(), 0..6),
        ) {
            let made: Vec<ListingEntry> = made
                .into_iter()
                .map(|(name, size)| ListingEntry {
                    name: name.into_bytes(),
                    is_dir: size.is_none(),
                    size,
                })
                .collect();
            let body = nginx_json(&made);
            prop_assert_eq!(parse(None, &body, &cuts), Some(expected(made)));
        }
    }
}
