//! Random bodies cut into random pieces read exactly as in one piece,
//! and never panic; random nginx listings, HTML and JSON, read back to
//! the entries they were made from. `PROPTEST_CASES` sets the cases per
//! property (proptest's default, 256, otherwise).

use percent_encoding::{AsciiSet, CONTROLS, percent_encode};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::html::{direct_child_entry, plain_child_entry, resolve_href};
use super::tests::{JSON_MTIME, dated};
use super::*;
use crate::namespace::is_valid_name;

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
                    "mtime": JSON_MTIME, "size": size
                }),
                None => serde_json::json!({
                    "name": name, "type": "directory",
                    "mtime": JSON_MTIME
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
            .map(|(name, is_dir)| ListingEntry { name, is_dir, size: None, mtime: None })
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
                mtime: None,
            })
            .map(|entry| if entry.is_dir { entry } else { dated(entry) })
            .collect();
        let body = nginx_json(&made);
        prop_assert_eq!(parse(None, &body, &cuts), Some(expected(made)));
    }
}
