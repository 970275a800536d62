//! Mapping between mount paths and URLs.
//!
//! `MNT/<origin>/<p>` is `<origin-url>/<p>`, and with `--any-host`
//! `MNT/https/<host[:port]>/<p>` is `https://<host[:port]>/<p>`. Every function
//! here is pure: no I/O, no state, so the rules can be tested exhaustively.
//!
//! The one rule that matters for safety: **nothing outside an origin's base URL
//! is reachable.** A base URL (`https://host/releases/`) defines a URL space,
//! and every URL this module hands out is checked to lie inside it.
//!
//! Why names are encoded by hand instead of with `Url::join` or
//! `Url::set_path` on the raw name: the `url` crate follows the WHATWG URL
//! standard, which treats `.`, `..`, `%2e`, `%2E%2e`, `.%2e` and friends as dot
//! segments and removes them while parsing, and turns `\` into `/` for http(s).
//! A file name like `..` or `%2e%2e` or `a\b` handed to those APIs would
//! climb out of the base. So each name from the kernel is percent-encoded as
//! exactly one path segment, leaving only RFC 3986 unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`) as they are: `%` itself becomes `%25`, so a literal
//! name `%2e%2e` becomes `%252e%252e` and reaches the origin as that name.
//! The names `.` and `..` (the only all-dot names that survive this encoding as
//! dot segments) and names that cannot be one segment (empty, or containing
//! `/` or NUL) are refused. The result is parsed again and checked with
//! [`is_within`], so a mistake here fails closed.
//!
//! The way back, [`relative_components`], compares paths segment by segment
//! after percent-decoding, so `%7E` and `~`, or `%2a` and `%2A`, spell the same
//! name, and refuses any URL whose segments would not be valid names: a path
//! segment that decodes to `..` or contains an encoded `/` never maps to a
//! mount path, and never counts as inside the base.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use url::Url;

/// Bytes that are percent-encoded in a path segment: everything except the
/// RFC 3986 unreserved characters.
const SEGMENT_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path in the mount as the names the kernel sees: any bytes but `/` and
/// NUL, so not always UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountPath(pub Vec<Vec<u8>>);

impl MountPath {
    /// The names of a mount path written as text (`/o/a//b` is `o`, `a`, `b`).
    pub fn from_text(path: &str) -> MountPath {
        let names = path.split('/').filter(|name| !name.is_empty());
        MountPath(names.map(|name| name.as_bytes().to_vec()).collect())
    }

    /// `/<top>/<names…>`, where `top` is one name or more joined by `/`
    /// (`o`, `https/host:8080`).
    pub fn new(top: &str, names: &[Vec<u8>]) -> MountPath {
        let top = top.split('/').map(|name| name.as_bytes().to_vec());
        MountPath(top.chain(names.iter().cloned()).collect())
    }

    /// `/a/b/c`, a name that is not UTF-8 shown lossily: for matching
    /// patterns, which are text.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for name in &self.0 {
            text.push('/');
            text.push_str(&String::from_utf8_lossy(name));
        }
        text
    }
}

/// Why a mount path or host cannot be turned into a URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NamespaceError {
    /// A path component that cannot be one URL path segment.
    #[error(
        "invalid name {0:?}: a name must not be empty, \".\" or \"..\", \
         and must not contain '/' or a NUL byte"
    )]
    InvalidName(String),
    /// The URL built for a path would leave the origin's base URL.
    #[error("the path resolves to a URL outside the origin's base URL")]
    OutsideOrigin,
    /// The base URL cannot have child paths (e.g. `mailto:` or `data:` URLs).
    #[error("the URL {0:?} cannot have child paths; origins must be http or https URLs")]
    UnsupportedBase(String),
    /// An any-host tree was asked for a scheme other than http or https.
    #[error("unsupported scheme {0:?}: any-host trees are \"http\" and \"https\"")]
    InvalidScheme(String),
    /// An any-host directory name that is not a plain `host` or `host:port`.
    #[error(
        "invalid host {0:?}: expected a host or host:port such as \
         example.com, 127.0.0.1:8080 or [::1]:8080"
    )]
    InvalidHost(String),
}

/// The origin's base URL normalised so it ends with '/', e.g. "http://h/releases" -> "http://h/releases/".
///
/// Query and fragment are dropped: they are not part of the URL space the
/// origin's files live in.
pub fn base_dir_url(origin: &Url) -> Url {
    let mut base = origin.clone();
    base.set_query(None);
    base.set_fragment(None);
    if !base.path().ends_with('/') && !base.cannot_be_a_base() {
        let path_with_slash = format!("{}/", base.path());
        base.set_path(&path_with_slash);
    }
    base
}

/// URL of the node at `components` below `base` (a URL ending in '/', from base_dir_url).
///
/// Each component is raw bytes from the kernel (may be non-UTF-8) and is
/// percent-encoded as one URL path segment. `dir == true` appends a trailing
/// '/'. No components at all name the base itself. A `base` without a
/// trailing '/' is treated as if it had one.
pub fn child_url(base: &Url, components: &[&[u8]], dir: bool) -> Result<Url, NamespaceError> {
    if base.cannot_be_a_base() {
        return Err(NamespaceError::UnsupportedBase(base.to_string()));
    }
    let base = base_dir_url(base);
    let mut path = base.path().to_owned();
    for (index, component) in components.iter().enumerate() {
        check_name(component)?;
        if index > 0 {
            path.push('/');
        }
        path.extend(percent_encode(component, SEGMENT_ENCODE_SET));
    }
    if dir && !path.ends_with('/') {
        path.push('/');
    }

    let mut url = base.clone();
    url.set_path(&path);
    // The encoding leaves nothing for the parser to rewrite; if it rewrote
    // anything anyway, the URL is not the one the names describe.
    if url.path() != path || !is_within(&base, &url) {
        return Err(NamespaceError::OutsideOrigin);
    }
    Ok(url)
}

/// True when `url` has the same scheme, host, port as `base` and its path starts with base's path (base ends in '/').
///
/// Stricter than a string prefix test: the user info must match too, and every
/// path segment below the base must decode to a valid name (no `..`, no
/// encoded `/` or NUL, no empty segment except one trailing '/'). Segments are
/// compared after percent-decoding. A query is allowed (it does not move the
/// URL out of the base's path space); `base` itself is within.
pub fn is_within(base: &Url, url: &Url) -> bool {
    components_below(base, url).is_some()
}

/// The base URL for an any-host tree: scheme is "http" or "https", host_port is "example.com" or "127.0.0.1:8080"
/// or "[::1]:8080". Rejects anything with userinfo, path, query, '%', empty host, bad port: InvalidHost.
///
/// Hosts are normalised the way the `url` crate does it (lower case, IDNA for
/// Unicode names, default ports dropped), so `Example.COM:443` under `https`
/// gives `https://example.com/`.
pub fn any_host_base(scheme: &str, host_port: &[u8]) -> Result<Url, NamespaceError> {
    if scheme != "http" && scheme != "https" {
        return Err(NamespaceError::InvalidScheme(scheme.to_owned()));
    }
    let invalid_host =
        || NamespaceError::InvalidHost(String::from_utf8_lossy(host_port).into_owned());
    let host_port_text = std::str::from_utf8(host_port).map_err(|_| invalid_host())?;
    if !is_plain_host_port(host_port_text) {
        return Err(invalid_host());
    }
    let base = Url::parse(&format!("{scheme}://{host_port_text}/")).map_err(|_| invalid_host())?;
    let is_plain_origin = base.host_str().is_some_and(|host| !host.is_empty())
        && base.username().is_empty()
        && base.password().is_none()
        && base.path() == "/"
        && base.query().is_none()
        && base.fragment().is_none();
    if !is_plain_origin {
        return Err(invalid_host());
    }
    Ok(base)
}

/// The mount-relative path components (decoded raw bytes) of `url` relative to `base`, or None when outside it.
///
/// Inverse of child_url: relative_components(base, child_url(base, c, d)) == c.
/// Trailing '/' ignored; a fragment is ignored; a URL with a query has no mount
/// path, so it gives None.
pub fn relative_components(base: &Url, url: &Url) -> Option<Vec<Vec<u8>>> {
    if url.query().is_some() {
        return None;
    }
    components_below(base, url)
}

/// True when `name` can be one mount path component: not empty, not `.` or
/// `..`, no '/' and no NUL byte. Any other bytes are fine (they are
/// percent-encoded in URLs).
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Checks that `name` can be encoded as exactly one path segment that is not
/// a dot segment.
fn check_name(name: &[u8]) -> Result<(), NamespaceError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NamespaceError::InvalidName(
            String::from_utf8_lossy(name).into_owned(),
        ))
    }
}

/// The decoded path components of `url` below `base`, ignoring query and
/// fragment; None unless `url` is on the same origin, inside the base path,
/// and every component is a valid name.
fn components_below(base: &Url, url: &Url) -> Option<Vec<Vec<u8>>> {
    if !same_origin_and_user(base, url) {
        return None;
    }
    let mut base_segments: Vec<&str> = base.path_segments()?.collect();
    if base_segments.last() == Some(&"") {
        base_segments.pop();
    }
    let url_segments: Vec<&str> = url.path_segments()?.collect();
    let below = url_segments.get(base_segments.len()..)?;
    let prefix_matches = base_segments
        .iter()
        .zip(&url_segments)
        .all(|(base_segment, url_segment)| decoded(base_segment) == decoded(url_segment));
    if !prefix_matches {
        return None;
    }
    decoded_names(below)
}

/// Decodes the segments below the base into names. `below` is empty when the
/// URL is the base path without its trailing '/', which is not within.
fn decoded_names(below: &[&str]) -> Option<Vec<Vec<u8>>> {
    let (last, above_last) = below.split_last()?;
    let names_part = if last.is_empty() { above_last } else { below };
    names_part
        .iter()
        .map(|segment| Some(decoded(segment)).filter(|name| is_valid_name(name)))
        .collect()
}

fn decoded(segment: &str) -> Vec<u8> {
    percent_decode_str(segment).collect()
}

fn same_origin_and_user(base: &Url, url: &Url) -> bool {
    base.scheme() == url.scheme()
        && base.host() == url.host()
        && base.port_or_known_default() == url.port_or_known_default()
        && base.username() == url.username()
        && base.password() == url.password()
}

/// A syntactic pre-check of an any-host directory name, before the `url`
/// crate sees it: the parser would otherwise accept and reinterpret userinfo,
/// paths, backslashes, percent-escapes and the like.
fn is_plain_host_port(host_port: &str) -> bool {
    let forbidden = |c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\' | '?' | '#' | '@' | '%')
    };
    if host_port.contains(forbidden) {
        return false;
    }
    let Some((host, port)) = split_host_port(host_port) else {
        return false;
    };
    has_valid_labels(host) && port.is_none_or(is_valid_port)
}

/// Domain labels must not be empty (`.`, `..`, `a..b`, `.a`); one trailing
/// dot (a fully qualified name) is fine. Bracketed IPv6 literals are left to
/// the URL parser.
fn has_valid_labels(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    let without_final_dot = host.strip_suffix('.').unwrap_or(host);
    !without_final_dot.is_empty() && without_final_dot.split('.').all(|label| !label.is_empty())
}

/// Splits `host[:port]` where host may be a bracketed IPv6 literal. None when
/// the shape is wrong (e.g. an unbracketed IPv6 address).
fn split_host_port(host_port: &str) -> Option<(&str, Option<&str>)> {
    if host_port.starts_with('[') {
        let close = host_port.find(']')?;
        let (host, rest) = host_port.split_at(close + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    match host_port.split_once(':') {
        None => Some((host_port, None)),
        Some((_, port)) if port.contains(':') => None,
        Some((host, port)) => Some((host, Some(port))),
    }
}

fn is_valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL parses")
    }

    fn names(components: &[&str]) -> Vec<Vec<u8>> {
        components.iter().map(|c| c.as_bytes().to_vec()).collect()
    }

    fn releases() -> Url {
        base_dir_url(&url("https://files.example.com/releases"))
    }

    // --- base_dir_url -------------------------------------------------------

    #[test]
    fn base_dir_url_adds_missing_slash() {
        assert_eq!(releases().as_str(), "https://files.example.com/releases/");
    }

    #[test]
    fn base_dir_url_keeps_existing_slash() {
        let base = base_dir_url(&url("http://h/releases/"));
        assert_eq!(base.as_str(), "http://h/releases/");
    }

    #[test]
    fn base_dir_url_of_bare_host_is_root() {
        assert_eq!(base_dir_url(&url("http://h")).as_str(), "http://h/");
        assert_eq!(
            base_dir_url(&url("http://h:8080/")).as_str(),
            "http://h:8080/"
        );
    }

    #[test]
    fn base_dir_url_drops_query_and_fragment() {
        let base = base_dir_url(&url("http://h/a?x=1#top"));
        assert_eq!(base.as_str(), "http://h/a/");
    }

    // --- child_url ----------------------------------------------------------

    #[test]
    fn child_url_plain_names() {
        let child = child_url(&releases(), &[b"v1.0", b"app.tar.gz"], false).unwrap();
        assert_eq!(
            child.as_str(),
            "https://files.example.com/releases/v1.0/app.tar.gz"
        );
    }

    #[test]
    fn child_url_dir_gets_trailing_slash() {
        let child = child_url(&releases(), &[b"v1.0"], true).unwrap();
        assert_eq!(child.as_str(), "https://files.example.com/releases/v1.0/");
    }

    #[test]
    fn child_url_without_components_is_base() {
        assert_eq!(child_url(&releases(), &[], true).unwrap(), releases());
        assert_eq!(child_url(&releases(), &[], false).unwrap(), releases());
    }

    #[test]
    fn child_url_accepts_base_without_trailing_slash() {
        let child = child_url(&url("http://h/releases"), &[b"a"], false).unwrap();
        assert_eq!(child.as_str(), "http://h/releases/a");
    }

    #[test]
    fn child_url_on_root_base() {
        let child = child_url(&url("http://h/"), &[b"a", b"b"], false).unwrap();
        assert_eq!(child.as_str(), "http://h/a/b");
    }

    #[test]
    fn child_url_encodes_everything_but_unreserved() {
        let child = child_url(&releases(), &[b"a b%c?d#e&f+g=h;i:j@k'l[m]n\\o"], false).unwrap();
        assert_eq!(
            child.path(),
            "/releases/a%20b%25c%3Fd%23e%26f%2Bg%3Dh%3Bi%3Aj%40k%27l%5Bm%5Dn%5Co"
        );
        assert_eq!(child.query(), None);
        assert_eq!(child.fragment(), None);
    }

    #[test]
    fn child_url_keeps_unreserved() {
        let child = child_url(&releases(), &[b"Az09-._~"], false).unwrap();
        assert_eq!(child.path(), "/releases/Az09-._~");
    }

    #[test]
    fn child_url_encodes_literal_percent_sequences() {
        let child = child_url(&releases(), &[b"%2e%2e"], false).unwrap();
        assert_eq!(child.path(), "/releases/%252e%252e");
    }

    #[test]
    fn child_url_encodes_unicode_and_raw_bytes() {
        let child = child_url(&releases(), &["é".as_bytes(), b"\xff\xfe"], false).unwrap();
        assert_eq!(child.path(), "/releases/%C3%A9/%FF%FE");
    }

    #[test]
    fn child_url_rejects_invalid_names() {
        let invalid: [&[u8]; 7] = [b"", b".", b"..", b"a/b", b"/", b"a\0b", b"\0"];
        for name in invalid {
            let result = child_url(&releases(), &[b"ok", name], false);
            assert!(
                matches!(result, Err(NamespaceError::InvalidName(_))),
                "{name:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn child_url_invalid_name_message_is_clear() {
        let error = child_url(&releases(), &[b".."], false).unwrap_err();
        assert!(error.to_string().contains("\"..\""), "{error}");
    }

    #[test]
    fn child_url_rejects_cannot_be_a_base() {
        let result = child_url(&url("mailto:someone@example.com"), &[b"a"], false);
        assert!(matches!(result, Err(NamespaceError::UnsupportedBase(_))));
    }

    /// Every spelling of "go up" either is refused or stays a literal name
    /// below the base.
    #[test]
    fn traversal_spellings_never_leave_base() {
        let spellings: &[&[u8]] = &[
            b"...",
            b"%2e",
            b"%2e%2e",
            b"%2E%2e",
            b"%2E%2E",
            b".%2e",
            b"%2e.",
            b"%252e%252e",
            b"%2f",
            b"%2F",
            b"..%2f",
            b"..%2f..%2fetc",
            b"%00",
            b"..%00",
            b"..\\",
            b"..\\..\\etc",
            b"\\",
            b"%5c",
            b"..%5c",
            b"?",
            b"#",
            b"..?",
            b"..#",
            b" ..",
            b".. ",
            b"..\t",
            b"\n",
            "．．".as_bytes(),
            "\u{2024}\u{2024}".as_bytes(),
        ];
        for base in [releases(), url("http://h/"), url("http://h/a/b/c/")] {
            for &spelling in spellings {
                for depth in 0..3 {
                    let mut components: Vec<&[u8]> = vec![b"sub"; depth];
                    components.push(spelling);
                    for dir in [false, true] {
                        let child = child_url(&base, &components, dir)
                            .unwrap_or_else(|e| panic!("{spelling:?} under {base}: {e}"));
                        assert!(is_within(&base, &child), "{child} escaped {base}");
                        assert!(child.path().starts_with(base.path()), "{child}");
                        let expected: Vec<Vec<u8>> =
                            components.iter().map(|c| c.to_vec()).collect();
                        assert_eq!(
                            relative_components(&base, &child),
                            Some(expected),
                            "{child}"
                        );
                        // Parsing the serialised URL again (as an HTTP client
                        // does) must give the same URL.
                        assert_eq!(url(child.as_str()), child);
                    }
                }
            }
        }
    }

    /// The reason names are encoded by hand: these are what a naive
    /// `join` or `set_path` of a raw name would produce.
    #[test]
    fn url_crate_rewrites_encoded_dot_segments() {
        let base = releases();
        for raw in [
            "%2e%2e/x",
            "%2E%2e/x",
            ".%2e/x",
            "..\\x",
            "a/%2e%2e/%2e%2e/x",
        ] {
            let joined = base.join(raw).unwrap();
            assert_eq!(joined.path(), "/x", "{raw}");
            assert!(!is_within(&base, &joined));
        }
    }

    #[test]
    fn dot_names_are_refused_at_any_depth() {
        for name in [&b"."[..], b".."] {
            for depth in 0..3 {
                let mut components: Vec<&[u8]> = vec![b"sub"; depth];
                components.push(name);
                components.push(b"after");
                assert!(child_url(&releases(), &components, false).is_err());
            }
        }
    }

    // --- round trips --------------------------------------------------------

    #[test]
    fn round_trip_odd_bytes() {
        let odd: &[&[u8]] = &[
            b"plain.txt",
            b"with space",
            b"100%",
            b"%",
            b"%%41",
            b"what?",
            b"#hash",
            b"a+b=c&d",
            b"semi;colon",
            b"~tilde",
            b".hidden",
            b"..double-leading",
            b"trailing.",
            b"\xff\xfe\x80",
            b"\x01\x7f",
            "日本語.txt".as_bytes(),
            "emoji 🦀".as_bytes(),
            b"'quote\"",
            b"<tag>",
            b"back\\slash",
        ];
        for base in [releases(), url("http://h/"), url("http://h:8080/a%20b/")] {
            for &name in odd {
                for dir in [false, true] {
                    let child = child_url(&base, &[name, name], dir).unwrap();
                    assert_eq!(
                        relative_components(&base, &child),
                        Some(vec![name.to_vec(), name.to_vec()]),
                        "{child}"
                    );
                }
            }
        }
    }

    #[test]
    fn relative_components_of_base_is_empty() {
        assert_eq!(relative_components(&releases(), &releases()), Some(vec![]));
    }

    // --- is_within ----------------------------------------------------------

    #[test]
    fn is_within_accepts_children() {
        let base = releases();
        for inside in [
            "https://files.example.com/releases/",
            "https://files.example.com/releases/a",
            "https://files.example.com/releases/a/b/",
            "https://files.example.com:443/releases/a",
            "https://FILES.example.com/releases/a",
            "https://files.example.com/releases/a?download=1",
            "https://files.example.com/%72eleases/a",
        ] {
            assert!(is_within(&base, &url(inside)), "{inside}");
        }
    }

    #[test]
    fn is_within_rejects_everything_else() {
        let base = releases();
        for outside in [
            "http://files.example.com/releases/a",
            "https://files.example.com:8443/releases/a",
            "https://other.example.com/releases/a",
            "https://files.example.com/releases",
            "https://files.example.com/releases2/a",
            "https://files.example.com/",
            "https://files.example.com/other/a",
            "https://files.example.com/releases/../etc/passwd",
            "https://files.example.com/releases/%2e%2e/etc",
            "https://files.example.com/releases/%2E%2e/etc",
            "https://files.example.com/releases/.%2e/etc",
            "https://files.example.com/releases/..\\etc",
            "https://files.example.com/releases/a/../../etc",
            "https://files.example.com/releases/..%2fetc",
            "https://files.example.com/releases/a%2fb",
            "https://files.example.com/releases/a%2Fb",
            "https://files.example.com/releases/a%00b",
            "https://files.example.com/releases//a",
            "https://files.example.com/releases/a//b",
            "https://user@files.example.com/releases/a",
            "https://user:pw@files.example.com/releases/a",
        ] {
            assert!(!is_within(&base, &url(outside)), "{outside}");
        }
    }

    #[test]
    fn is_within_root_base() {
        let base = url("http://127.0.0.1:8080/");
        assert!(is_within(&base, &url("http://127.0.0.1:8080/x/y")));
        assert!(is_within(&base, &url("http://127.0.0.1:8080")));
        assert!(!is_within(&base, &url("http://127.0.0.1:8081/x")));
        assert!(!is_within(&base, &url("http://127.0.0.2:8080/x")));
    }

    #[test]
    fn relative_components_rejects_query_but_ignores_fragment() {
        let base = releases();
        assert_eq!(
            relative_components(&base, &url("https://files.example.com/releases/a?x=1")),
            None
        );
        assert_eq!(
            relative_components(&base, &url("https://files.example.com/releases/a/b#frag")),
            Some(names(&["a", "b"]))
        );
    }

    #[test]
    fn relative_components_decodes_and_ignores_trailing_slash() {
        let base = releases();
        let found = relative_components(
            &base,
            &url("https://files.example.com/releases/my%20dir/%7Efile/"),
        );
        assert_eq!(found, Some(names(&["my dir", "~file"])));
    }

    #[test]
    fn relative_components_outside_is_none() {
        let base = releases();
        assert_eq!(
            relative_components(&base, &url("https://files.example.com/other/a")),
            None
        );
        assert_eq!(
            relative_components(&base, &url("https://files.example.com/releases")),
            None
        );
    }

    // --- any_host_base ------------------------------------------------------

    #[test]
    fn any_host_base_accepts_hosts() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("https", b"example.com", "https://example.com/"),
            ("http", b"example.com", "http://example.com/"),
            ("http", b"127.0.0.1:8080", "http://127.0.0.1:8080/"),
            ("http", b"[::1]:8080", "http://[::1]:8080/"),
            ("https", b"[::1]", "https://[::1]/"),
            ("https", b"Example.COM", "https://example.com/"),
            ("https", b"example.com:443", "https://example.com/"),
            ("http", b"localhost:1", "http://localhost:1/"),
            ("https", b"example.com.", "https://example.com./"),
            (
                "http",
                b"sub.domain-with-dash.example:65535",
                "http://sub.domain-with-dash.example:65535/",
            ),
            ("https", "bücher.de".as_bytes(), "https://xn--bcher-kva.de/"),
        ];
        for &(scheme, host_port, expected) in cases {
            let base = any_host_base(scheme, host_port)
                .unwrap_or_else(|e| panic!("{scheme} {host_port:?}: {e}"));
            assert_eq!(base.as_str(), expected);
        }
    }

    #[test]
    fn any_host_base_rejects_bad_hosts() {
        let bad: &[&[u8]] = &[
            b"",
            b":8080",
            b"example.com:",
            b"example.com:0",
            b"example.com:65536",
            b"example.com:99999999999",
            b"example.com:+80",
            b"example.com:8o",
            b"example.com:80:80",
            b"user@example.com",
            b"user:pw@example.com",
            b"example.com/path",
            b"example.com?q",
            b"example.com#f",
            b"example.com\\x",
            b"exa%6Dple.com",
            b"%2e%2e",
            b"..",
            b".",
            b".example.com",
            b"example..com",
            b"exa mple.com",
            b"example.com\0",
            b"\xff.com",
            b"::1",
            b"[::1",
            b"[::1]x",
            b"[::1]:",
            b"[not-ipv6]",
            b"a<b",
            b"1.2.3.4.5",
        ];
        for &host_port in bad {
            let result = any_host_base("https", host_port);
            assert!(
                matches!(result, Err(NamespaceError::InvalidHost(_))),
                "{:?} gave {result:?}",
                String::from_utf8_lossy(host_port)
            );
        }
    }

    #[test]
    fn any_host_base_rejects_other_schemes() {
        for scheme in ["ftp", "file", "HTTPS", "", "javascript"] {
            assert!(matches!(
                any_host_base(scheme, b"example.com"),
                Err(NamespaceError::InvalidScheme(_))
            ));
        }
    }

    #[test]
    fn any_host_children_stay_on_host() {
        let base = any_host_base("http", b"127.0.0.1:8080").unwrap();
        let child = child_url(&base, &[b"..", b"x"], false);
        assert!(child.is_err());
        let child = child_url(&base, &[b"%2e%2e", b"@evil.com"], false).unwrap();
        assert_eq!(
            child.as_str(),
            "http://127.0.0.1:8080/%252e%252e/%40evil.com"
        );
    }
}

#[cfg(test)]
mod properties {
    //! The mapping under random names, URLs and hosts: never a panic, valid
    //! names round-trip, invalid ones are refused, and no spelling of a
    //! traversal leads outside the base. `PROPTEST_CASES` sets the cases per
    //! property (proptest's default, 256, otherwise).

    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    /// Bases as origins are configured: roots, paths, a port, an encoded
    /// name, user info, an IPv6 host, a scheme that is not http.
    const BASES: &[&str] = &[
        "https://files.example.com/releases/",
        "http://h/",
        "http://h:8080/a%20b/",
        "http://127.0.0.1:8080/data/",
        "http://[::1]:81/x/y/",
        "https://u:p@h/p/",
        "http://h/a%2Fb/",
        "http://h/a//",
        "foo://h/a/",
    ];

    /// Pieces of names and URL paths: every spelling of a dot, a separator,
    /// an escape or a query we know of.
    const TRAVERSAL_PIECES: &[&str] = &[
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "/",
        "%00",
        "%",
        "%25",
        "%252e",
        "?",
        "#",
        "@",
        ":",
        ";",
        "a",
        "~",
        " ",
        "\t",
        "\n",
        "．",
        "\u{2024}",
        "\u{FF0F}",
        "%EF%BC%8E",
        "%c0%ae",
        "%C0%AF",
        "\u{FFFD}",
    ];

    fn base() -> impl Strategy<Value = Url> {
        prop_oneof![
            3 => select(BASES).prop_map(|base| Url::parse(base).expect("test URL parses")),
            1 => (
                select(&["http", "https"][..]),
                select(&["h", "H.example", "h:1", "[::1]", "u@h"][..]),
                vec(select(TRAVERSAL_PIECES), 0..6),
            )
                .prop_map(|(scheme, host, pieces)| {
                    let text = format!("{scheme}://{host}/{}", pieces.concat());
                    let parsed = Url::parse(&text).unwrap_or_else(|_| {
                        Url::parse("http://h/fallback/").expect("test URL parses")
                    });
                    base_dir_url(&parsed)
                }),
        ]
    }

    /// Any bytes, or pieces of traversal spellings run together.
    fn raw_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(any::<u8>(), 0..12),
            vec(select(TRAVERSAL_PIECES), 1..5).prop_map(|pieces| pieces.concat().into_bytes()),
        ]
    }

    /// A raw name made valid: '/' and NUL dropped, a letter added to an
    /// empty or all-dot name.
    fn valid_name() -> impl Strategy<Value = Vec<u8>> {
        raw_name().prop_map(|mut name| {
            name.retain(|&byte| byte != b'/' && byte != 0);
            if name.is_empty() || name == b"." || name == b".." {
                name.push(b'x');
            }
            name
        })
    }

    /// The names that are not a slash or NUL away from being valid.
    const DOT_NAMES: &[&[u8]] = &[b"", b".", b".."];

    /// A name that must be refused: empty, a dot name, or any bytes with a
    /// '/' or NUL among them.
    fn invalid_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            select(DOT_NAMES).prop_map(<[u8]>::to_vec),
            (raw_name(), select(&[b'/', 0][..]), raw_name()).prop_map(
                |(mut before, bad, after)| {
                    before.push(bad);
                    before.extend(after);
                    before
                }
            ),
        ]
    }

    /// Everything a URL built from `names` below `base` must be.
    fn check_child(base: &Url, names: &[Vec<u8>], dir: bool) -> Result<(), TestCaseError> {
        let components: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let child = match child_url(base, &components, dir) {
            Ok(child) => child,
            Err(err) => {
                return Err(TestCaseError::fail(format!(
                    "{names:?} under {base}: {err}"
                )));
            }
        };
        let base = base_dir_url(base);
        prop_assert!(is_within(&base, &child), "{} escaped {}", child, base);
        prop_assert!(
            child.path().starts_with(base.path()),
            "{} escaped {}",
            child,
            base
        );
        prop_assert!(
            same_origin_and_user(&base, &child),
            "{} is on another server than {}",
            child,
            base
        );
        prop_assert_eq!(child.query(), None);
        prop_assert_eq!(child.fragment(), None);
        prop_assert_eq!(
            relative_components(&base, &child),
            Some(names.to_vec()),
            "{}",
            child
        );
        // An HTTP client parses the serialised URL again.
        prop_assert_eq!(Url::parse(child.as_str()).ok(), Some(child.clone()));
        Ok(())
    }

    proptest! {
        #[test]
        fn any_names_are_answered_without_panicking(
            base in base(),
            names in vec(raw_name(), 0..5),
            dir: bool,
        ) {
            for name in &names {
                prop_assert_eq!(is_valid_name(name), check_name(name).is_ok());
            }
            if names.iter().all(|name| is_valid_name(name)) {
                check_child(&base, &names, dir)?;
            } else {
                let components: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
                let refused = child_url(&base, &components, dir);
                prop_assert!(
                    matches!(refused, Err(NamespaceError::InvalidName(_))),
                    "{:?}",
                    refused
                );
            }
        }

        #[test]
        fn valid_names_round_trip(base in base(), names in vec(valid_name(), 0..5), dir: bool) {
            check_child(&base, &names, dir)?;
        }

        #[test]
        fn names_with_slash_nul_or_dots_are_refused(
            base in base(),
            above in vec(valid_name(), 0..3),
            bad in invalid_name(),
            below in vec(valid_name(), 0..2),
            dir: bool,
        ) {
            prop_assert!(!is_valid_name(&bad));
            let mut components: Vec<&[u8]> = above.iter().map(Vec::as_slice).collect();
            components.push(&bad);
            components.extend(below.iter().map(Vec::as_slice));
            let refused = child_url(&base, &components, dir);
            prop_assert!(matches!(refused, Err(NamespaceError::InvalidName(_))), "{:?}", refused);
        }

        /// URLs as a user or a listing might spell them, below a base: what
        /// counts as inside maps to valid names whose URL is inside too.
        #[test]
        fn urls_that_spell_traversals_never_map_outside(
            base in base(),
            pieces in vec(select(TRAVERSAL_PIECES), 0..8),
        ) {
            let text = format!("{base}{}", pieces.concat());
            let Ok(url) = Url::parse(&text) else {
                return Ok(());
            };
            let within = is_within(&base, &url);
            let names = relative_components(&base, &url);
            prop_assert!(names.is_none() || within, "{} has names but is not within {}", url, base);
            if within {
                prop_assert!(
                    same_origin_and_user(&base, &url),
                    "{} is on another server than {}",
                    url,
                    base
                );
                let decoded_path = decoded(url.path());
                prop_assert!(
                    decoded_path.starts_with(&decoded(base.path())),
                    "{} is outside {}",
                    url,
                    base
                );
            }
            if let Some(names) = names {
                for name in &names {
                    prop_assert!(is_valid_name(name), "{} gave the name {:?}", url, name);
                }
                check_child(&base, &names, url.path().ends_with('/'))?;
            }
        }

        #[test]
        fn any_host_base_answers_any_bytes(
            scheme in select(&["http", "https", "HTTP", "ftp", ""][..]),
            host_port in prop_oneof![
                vec(any::<u8>(), 0..24),
                vec(
                    select(&[
                        "example.com", "a", "ü", "xn--", "-", ".", "..", ":", "8080", "0",
                        "65536", "[", "]", "::1", "@", "%", "%2e", "/", "\\", " ", "?", "#",
                    ][..]),
                    1..6,
                )
                .prop_map(|pieces| pieces.concat().into_bytes()),
            ],
            names in vec(valid_name(), 0..3),
        ) {
            let Ok(base) = any_host_base(scheme, &host_port) else {
                return Ok(());
            };
            prop_assert_eq!(base.scheme(), scheme);
            prop_assert!(base.host_str().is_some_and(|host| !host.is_empty()));
            prop_assert_eq!(base.path(), "/");
            prop_assert!(base.username().is_empty() && base.password().is_none());
            prop_assert!(base.query().is_none() && base.fragment().is_none());
            check_child(&base, &names, false)?;
        }

        #[test]
        fn base_dir_url_answers_any_url(
            scheme in select(&["http", "https", "foo", "file", "data", "mailto"][..]),
            separator in select(&["://", ":", ":/", ":///"][..]),
            pieces in vec(select(TRAVERSAL_PIECES), 0..8),
            names in vec(valid_name(), 0..3),
        ) {
            let Ok(origin) = Url::parse(&format!("{scheme}{separator}h/{}", pieces.concat())) else {
                return Ok(());
            };
            let base = base_dir_url(&origin);
            prop_assert!(base.query().is_none() && base.fragment().is_none());
            if base.cannot_be_a_base() {
                return Ok(());
            }
            prop_assert!(base.path().ends_with('/'), "{}", base);
            if scheme.starts_with("http") {
                check_child(&base, &names, false)?;
            } else {
                let components: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
                if let Ok(child) = child_url(&base, &components, false) {
                    prop_assert!(is_within(&base, &child), "{} escaped {}", child, base);
                    prop_assert_eq!(relative_components(&base, &child), Some(names.clone()));
                }
            }
        }
    }
}
