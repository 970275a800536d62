//! HTML listings: the pages of nginx, Apache, Python and lighttpd, which
//! links name a child, how an `href` is decoded, pages cut short.

use super::*;
use crate::origin::listing::ListingParser;
use crate::origin::listing::tests::*;

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
            file("this-is-a-very-long-file-name-that-nginx-truncates-in-the-listing-1.0.tar.gz"),
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

#[test]
fn apache_fancy_index_pre_with_upper_case_tags_and_absolute_links() {
    let entries = html("http://example.com/pub/debian/", APACHE_FANCY_PRE).unwrap();
    assert_eq!(
        entries,
        vec![dir("dists"), dir("pool"), file("README"), file("ls-lR.gz")]
    );
}

#[test]
fn apache_plain_index() {
    let entries = html("http://example.com/files/", APACHE_PLAIN).unwrap();
    assert_eq!(entries, vec![file("notes.txt"), dir("images")]);
}

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
                size: None,
                mtime: None,
            },
            dir("link@"),
            dir("sub"),
        ]
    );
}

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
    let page =
        r#"<a href="/pub/a">a</a><a href="http://h/pub/b/">b</a><a href="http://h:80/pub/c">c</a>"#;
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
                size: None,
                mtime: None,
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
fn an_href_too_long_to_name_a_child_is_skipped_to_its_tag_end() {
    let long = format!("{}>{}", "x".repeat(MAX_HREF_BYTES), "y".repeat(100));
    let page = format!(r#"<a href="{long}">x</a><a href="next.txt">x</a>"#);
    assert_eq!(html("http://h/", &page), Some(vec![file("next.txt")]));
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
        let size = if is_dir {
            "-".to_string()
        } else {
            i.to_string()
        };
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
