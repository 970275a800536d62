//! JSON listings: nginx's `autoindex_format json`, the elements that are
//! not entries, odd sizes, and bodies that are not an array of entries.

use super::*;
use crate::origin::listing::ListingParser;
use crate::origin::listing::tests::*;

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
            dated(sized("a.txt", 123)),
            dir("sub"),
            dated(sized("with space & %20.bin", 0)),
            dated(file("socket")),
            dated(sized("huge.iso", u64::MAX)),
        ]
    );
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
fn json_split_anywhere_in_its_byte_order_mark_and_strings() {
    let entries = parse_pieces(&url("http://h/"), None, NGINX_JSON_WITH_BOM.chunks(1));
    assert_eq!(entries, Some(vec![sized("a \"b\\", 1), dir("d")]));
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
            format!("{{ \"name\":\"{name}\", \"type\":\"file\", {mtime}, \"size\":{i} }}{comma}\n")
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
    assert_eq!(entries[1], dated(sized("file-0000001.tar.gz", 1)));
    assert_eq!(entries[500_000], dir("dir-0500000"));
    assert_eq!(
        entries[MILLION - 1],
        dated(sized("file-0999999.tar.gz", MILLION as u64 - 1))
    );
}
