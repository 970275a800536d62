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
//! rounded, `1.2M`); nginx's JSON gives exact ones, and dates.
//!
//! Each reader has its own file beside this one, `listing/html.rs` (the
//! tokenizer) and `listing/json.rs` (the array splitter), with its tests;
//! here is what both share: the parser they serve, the format sniffing and
//! the set of names seen.

mod html;
mod json;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use url::Url;

use crate::namespace::base_dir_url;
use html::HtmlScanner;
use json::JsonScanner;

/// Longest name kept, in bytes: Linux's `NAME_MAX`.
const MAX_NAME_BYTES: usize = 255;
/// Longest element of a JSON listing, in bytes; nginx's are under 1 KiB.
/// Whether a longer one is an entry cannot be known without keeping it
/// whole, so it fails the listing ([`ListingError::EntryTooLong`]).
const MAX_JSON_ENTRY_BYTES: usize = 64 * 1024;
/// Bytes of the body's start (after a byte order mark and whitespace) looked
/// at before the format is chosen: the longest prefix compared,
/// `<!doctype html`.
const SNIFF_BYTES: usize = 14;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    /// Decoded name, one path segment, raw bytes.
    pub name: Vec<u8>,
    pub is_dir: bool,
    /// Size in bytes when the listing states it exactly (nginx JSON files).
    pub size: Option<u64>,
    /// A file's last modification, when the listing states it as an HTTP
    /// date (nginx JSON).
    pub mtime: Option<std::time::SystemTime>,
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
            Reader::Json(json) => json.is_not_listing(),
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
            Reader::Json(json) => json.is_complete(),
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

// --- Format ------------------------------------------------------------------

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

// --- Both formats ------------------------------------------------------------

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
