//! The parser as a whole: the format chosen from the type and the body's
//! start, any split of a body reading the same, the caps. Also what the
//! format tests beside each reader share: the helpers and the sample
//! listings of real servers.

use super::*;

pub(super) fn url(text: &str) -> Url {
    Url::parse(text).expect("test URL parses")
}

/// No caps: these tests are about reading; the caps have their own.
pub(super) const NO_LIMITS: ListingLimits = ListingLimits {
    entries: usize::MAX,
    bytes: u64::MAX,
};

/// The whole body fed in one piece.
pub(super) fn parse_listing(
    dir_url: &Url,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Vec<ListingEntry>> {
    parse_pieces(dir_url, content_type, [body])
}

/// The body fed in the given pieces, in order.
pub(super) fn parse_pieces<'a>(
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

pub(super) fn file(name: &str) -> ListingEntry {
    ListingEntry {
        name: name.as_bytes().to_vec(),
        is_dir: false,
        size: None,
        mtime: None,
    }
}

pub(super) fn dir(name: &str) -> ListingEntry {
    ListingEntry {
        name: name.as_bytes().to_vec(),
        is_dir: true,
        size: None,
        mtime: None,
    }
}

/// The date the sample JSON listings give their entries.
pub(super) const JSON_MTIME: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

/// `entry` with the date the sample JSON listings give it.
pub(super) fn dated(entry: ListingEntry) -> ListingEntry {
    ListingEntry {
        mtime: Some(httpdate::parse_http_date(JSON_MTIME).unwrap()),
        ..entry
    }
}

pub(super) fn sized(name: &str, size: u64) -> ListingEntry {
    ListingEntry {
        name: name.as_bytes().to_vec(),
        is_dir: false,
        size: Some(size),
        mtime: None,
    }
}

pub(super) fn html(dir_url: &str, body: &str) -> Option<Vec<ListingEntry>> {
    parse_listing(
        &url(dir_url),
        Some("text/html; charset=utf-8"),
        body.as_bytes(),
    )
}

// --- Sample listings, as servers serve them ----------------------------------

pub(super) const NGINX_HTML: &str = r#"<html>
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

pub(super) const APACHE_FANCY_TABLE: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
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

pub(super) const APACHE_FANCY_PRE: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
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

pub(super) const APACHE_PLAIN: &str = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
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

pub(super) const PYTHON_HTTP_SERVER: &str = r#"<!DOCTYPE HTML>
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

pub(super) const LIGHTTPD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
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

pub(super) const NGINX_JSON: &str = r#"[
{ "name":"a.txt", "type":"file", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT", "size":123 },
{ "name":"sub", "type":"directory", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT" },
{ "name":"with space & %20.bin", "type":"file", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT", "size":0 },
{ "name":"socket", "type":"other", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT" },
{ "name":"huge.iso", "type":"file", "mtime":"Mon, 01 Jan 2024 00:00:00 GMT", "size":18446744073709551615 }
]
"#;

const LATIN1_PAGE: &[u8] =
    b"<html><body><a href=\"caf\xe9.txt\">caf\xe9.txt</a><a href=\"ok%20too\">x</a></body></html>";

pub(super) const NGINX_JSON_WITH_BOM: &[u8] =
    b"\xEF\xBB\xBF \r\n [{\"name\":\"a \\\"b\\\\\",\"type\":\"file\",\"size\":1},{\"name\":\"d\",\"type\":\"directory\"}]\n";

pub(super) const TRICKY_PAGE: &str = r#"<!DOCTYPE html>
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

// --- Format ------------------------------------------------------------------

#[test]
fn json_recognised_by_leading_bracket() {
    for content_type in [None, Some("application/octet-stream"), Some("text/plain")] {
        let entries = parse_listing(&url("http://h/pub/"), content_type, NGINX_JSON.as_bytes());
        assert_eq!(entries.map(|e| e.len()), Some(5), "{content_type:?}");
    }
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

// --- Names -------------------------------------------------------------------

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

// --- Streaming ---------------------------------------------------------------

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

// --- Limits ------------------------------------------------------------------

pub(super) fn limited(entries: usize, bytes: u64, content_type: &str) -> ListingParser {
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

// --- A million entries -------------------------------------------------------
//
// The listings themselves are read in the tests beside each reader.

pub(super) const MILLION: usize = 1_000_000;
/// What an origin's chunks look like: the body cut every 64 KiB, not at
/// line ends.
const CHUNK_BYTES: usize = 64 * 1024;

/// Entry `i` of the generated listings: every thousandth a directory.
pub(super) fn generated_name(i: usize) -> (String, bool) {
    if i % 1000 == 0 {
        (format!("dir-{i:07}"), true)
    } else {
        (format!("file-{i:07}.tar.gz"), false)
    }
}

/// Feeds the body made of `pieces` in [`CHUNK_BYTES`] chunks as it is
/// generated, so the whole body never exists at once.
pub(super) fn feed_generated(
    parser: &mut ListingParser,
    pieces: impl Iterator<Item = String>,
) -> u64 {
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
