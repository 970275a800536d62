//! Parsing of directory listings served by origins.
//!
//! An origin shows a directory's content as a page it generates: nginx
//! `autoindex` (HTML or `autoindex_format json`), Apache `mod_autoindex`,
//! Python's `http.server`, lighttpd's `dir-listing`. Rather than recognise
//! each server's layout, the HTML parser relies on what they all share: every
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
//! the same `relative_components` decides what is a child.
//!
//! Bodies that are not valid UTF-8 (listings of Latin-1 file names served
//! unencoded) are read as Latin-1, one char per byte, so an `href` holding raw
//! bytes maps back to exactly those bytes. HTML gives no sizes (the visible
//! sizes are rounded, `1.2M`); nginx's JSON gives exact ones.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

use crate::namespace::{base_dir_url, is_valid_name, relative_components};

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    /// Decoded name, one path segment, raw bytes.
    pub name: Vec<u8>,
    pub is_dir: bool,
    /// Size in bytes when the listing states it exactly (nginx JSON files).
    pub size: Option<u64>,
}

/// Parses a directory listing served at `dir_url` (ends with '/').
///
/// `content_type` is the response's Content-Type header if any. Returns None
/// when the body is not a listing: neither HTML nor JSON, or JSON that is not
/// an nginx-style array of entries. An HTML page is always a listing, possibly
/// empty. Entries keep the listing's order; a name seen twice keeps its first
/// entry. A `dir_url` without a trailing '/' is treated as if it had one.
pub fn parse_listing(
    dir_url: &Url,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Vec<ListingEntry>> {
    let dir_url = base_dir_url(dir_url);
    match listing_format(content_type, body)? {
        ListingFormat::Html => parse_html_listing(&dir_url, body),
        ListingFormat::Json => parse_json_listing(body),
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

enum ListingFormat {
    Html,
    Json,
}

/// Decides how to read the body: the declared media type first; a body
/// starting with `[` is read as JSON whatever its type (nginx JSON listings
/// are sometimes served with a generic type); without any type, a body that
/// starts like an HTML document is read as HTML.
fn listing_format(content_type: Option<&str>, body: &[u8]) -> Option<ListingFormat> {
    let media_type = content_type.map(media_type_essence);
    let start = body_start(body);
    match media_type.as_deref() {
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

/// The body without a UTF-8 byte order mark and leading whitespace.
fn body_start(body: &[u8]) -> &[u8] {
    body.strip_prefix(UTF8_BOM)
        .unwrap_or(body)
        .trim_ascii_start()
}

fn starts_like_html(start: &[u8]) -> bool {
    [&b"<!doctype html"[..], b"<html"].iter().any(|prefix| {
        start
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

// --- JSON ---------------------------------------------------------------------

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

fn parse_json_listing(body: &[u8]) -> Option<Vec<ListingEntry>> {
    let json = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let raw_entries: Vec<JsonListingEntry> = serde_json::from_slice(json).ok()?;
    let mut listing = UniqueEntries::default();
    for raw in raw_entries {
        let is_dir = raw.kind.as_deref() == Some("directory");
        let size = if is_dir {
            None
        } else {
            raw.size.as_ref().and_then(serde_json::Value::as_u64)
        };
        let name = raw.name.into_bytes();
        // Names in JSON are literal, so they only need the validity check
        // that decoding gives HTML names for free.
        if is_valid_name(&name) {
            listing.push(ListingEntry { name, is_dir, size });
        }
    }
    Some(listing.into_entries())
}

// --- HTML ---------------------------------------------------------------------

/// How the HTML text was obtained from the body, so an `href` can be turned
/// back into the body's bytes.
#[derive(Clone, Copy)]
enum BodyEncoding {
    Utf8,
    Latin1,
}

fn parse_html_listing(dir_url: &Url, body: &[u8]) -> Option<Vec<ListingEntry>> {
    let (text, encoding) = decode_body(body);
    let dom = tl::parse(&text, tl::ParserOptions::default()).ok()?;
    let mut listing = UniqueEntries::default();
    let anchors = dom
        .nodes()
        .iter()
        .filter_map(tl::Node::as_tag)
        .filter(|tag| tag.name().as_bytes().eq_ignore_ascii_case(b"a"));
    for anchor in anchors {
        let entry = href_value(anchor)
            .and_then(|href| resolve_href(dir_url, &href, encoding))
            .and_then(|target| direct_child_entry(dir_url, &target));
        if let Some(entry) = entry {
            listing.push(entry);
        }
    }
    Some(listing.into_entries())
}

fn decode_body(body: &[u8]) -> (Cow<'_, str>, BodyEncoding) {
    match std::str::from_utf8(body) {
        Ok(text) => (Cow::Borrowed(text), BodyEncoding::Utf8),
        Err(_) => {
            let latin1 = body.iter().map(|&byte| char::from(byte)).collect();
            (Cow::Owned(latin1), BodyEncoding::Latin1)
        }
    }
}

/// The tag's `href` value; attribute names are matched case-insensitively
/// because old servers write `<A HREF=...>`.
fn href_value(tag: &tl::HTMLTag<'_>) -> Option<String> {
    tag.attributes()
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("href"))
        .and_then(|(_, value)| value)
        .map(|value| value.into_owned())
}

/// Resolves an `href` as a browser would: character references decoded,
/// surrounding whitespace dropped, then joined onto the directory URL. Bytes
/// outside ASCII are percent-encoded first so that raw bytes in a Latin-1
/// page keep their value instead of being re-encoded as UTF-8.
fn resolve_href(dir_url: &Url, href: &str, encoding: BodyEncoding) -> Option<Url> {
    let href_bytes = match encoding {
        BodyEncoding::Utf8 => href.as_bytes().to_vec(),
        BodyEncoding::Latin1 => href.chars().filter_map(|c| u8::try_from(c).ok()).collect(),
    };
    let decoded = decode_character_references(&href_bytes);
    let reference = encode_non_ascii(decoded.trim_ascii());
    dir_url.join(&reference).ok()
}

/// An entry when `target` is exactly one segment below `dir_url`, without
/// query or fragment.
fn direct_child_entry(dir_url: &Url, target: &Url) -> Option<ListingEntry> {
    if target.query().is_some() || target.fragment().is_some() {
        return None;
    }
    let [name] = <[Vec<u8>; 1]>::try_from(relative_components(dir_url, target)?).ok()?;
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

// --- Both formats ---------------------------------------------------------------

/// Entries in listing order, the first one of each name kept: Apache's fancy
/// index links every file twice (icon and name).
#[derive(Default)]
struct UniqueEntries {
    entries: Vec<ListingEntry>,
    seen_names: HashSet<Vec<u8>>,
}

impl UniqueEntries {
    fn push(&mut self, entry: ListingEntry) {
        if self.seen_names.insert(entry.name.clone()) {
            self.entries.push(entry);
        }
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
}
