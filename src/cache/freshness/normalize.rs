//! Response headers made safe and plain before any caching rule reads them.
//!
//! - Cache-Control directive names are case-insensitive (RFC 9111 §5.2), and
//!   so is `Pragma: no-cache`; the parser downstream compares them as
//!   written, so they are lowercased here.
//! - Only the headers the caching rules read are kept, and only the
//!   Cache-Control directives RFC 9111, RFC 5861 and RFC 8246 define (a
//!   cache ignores the others, RFC 9111 §5.2.3): what an origin adds beyond
//!   them, a 100 KB header or 10,000 extension directives, never reaches
//!   the stored policy.
//! - A header value that is not text is dropped (it would not survive the
//!   stored policy's round trip).
//! - Numbers too large for their type are read as very large, never as an
//!   error or a panic: a delta-seconds above 2^31 is 2^31 (RFC 9111 §1.2.2),
//!   in Cache-Control and in `Age`, and an `Expires` whose year has more than
//!   four digits is the last second of year 9999. An `Age` that is not a
//!   number is dropped.

use http::{HeaderMap, HeaderValue, header};

/// The largest delta-seconds a cache needs to tell apart (RFC 9111 §1.2.2).
const MAX_DELTA_SECONDS: u64 = 1 << 31;
/// The latest date an HTTP-date can spell.
const LAST_HTTP_DATE: &str = "Fri, 31 Dec 9999 23:59:59 GMT";
/// Cache-Control directives whose argument is a delta-seconds.
const DELTA_SECONDS_DIRECTIVES: &[&str] = &[
    "max-age",
    "s-maxage",
    "max-stale",
    "min-fresh",
    "stale-while-revalidate",
    "stale-if-error",
];

/// The response headers the caching rules read: freshness, validators,
/// Vary, and Content-Length (a 304 without validators is matched by it).
const HEADERS_READ: &[header::HeaderName] = &[
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::EXPIRES,
    header::DATE,
    header::AGE,
    header::LAST_MODIFIED,
    header::ETAG,
    header::VARY,
    header::CONTENT_LENGTH,
    header::WARNING,
];
/// The Cache-Control directives a response may carry that mean something
/// to a cache (RFC 9111 §5.2.2, RFC 5861, RFC 8246).
const KNOWN_DIRECTIVES: &[&str] = &[
    "max-age",
    "s-maxage",
    "no-cache",
    "no-store",
    "no-transform",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "private",
    "public",
    "stale-while-revalidate",
    "stale-if-error",
    "immutable",
];

/// The headers the caching rules read, with Cache-Control, Pragma, Age and
/// Expires normalised.
pub fn response_headers(headers: &HeaderMap) -> HeaderMap {
    // A value that is not text is dropped: the stored policy cannot keep it
    // (its serialisation skips such values), so an entry would answer one
    // way before a remount and another after. An Expires that is not text
    // goes too; then a response says nothing of its own freshness.
    let mut normalised = HeaderMap::new();
    for (name, value) in headers {
        if HEADERS_READ.contains(name) && value.to_str().is_ok() {
            normalised.append(name.clone(), value.clone());
        }
    }
    for name in [header::CACHE_CONTROL, header::PRAGMA] {
        let values: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .filter_map(|value| {
                let known = directives(value.to_str().ok()?);
                (!known.is_empty()).then(|| HeaderValue::from_str(&known).ok())?
            })
            .collect();
        normalised.remove(&name);
        for value in values {
            normalised.append(&name, value);
        }
    }
    if let Some(age) = normalised.get(header::AGE) {
        match age.to_str().ok().and_then(delta_seconds) {
            Some(age) => normalised.insert(header::AGE, HeaderValue::from(age)),
            None => normalised.remove(header::AGE),
        };
    }
    if let Some(expires) = normalised
        .get(header::EXPIRES)
        .and_then(|v| v.to_str().ok())
        && has_year_beyond_9999(expires)
    {
        normalised.insert(header::EXPIRES, HeaderValue::from_static(LAST_HTTP_DATE));
    }
    normalised
}

/// One Cache-Control or Pragma value with lowercase names and clamped
/// numbers, and only the directives a cache knows.
fn directives(value: &str) -> String {
    split_outside_quotes(value)
        .into_iter()
        .map(str::trim)
        .filter_map(|directive| {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim())),
                None => (directive, None),
            };
            let name = name.to_ascii_lowercase();
            KNOWN_DIRECTIVES
                .contains(&name.as_str())
                .then_some((name, argument))
        })
        .map(|(name, argument)| match argument {
            None => name,
            Some(argument) if DELTA_SECONDS_DIRECTIVES.contains(&name.as_str()) => {
                let bare = argument.trim_matches('"');
                match delta_seconds(bare) {
                    Some(seconds) => format!("{name}={seconds}"),
                    None => format!("{name}={argument}"),
                }
            }
            Some(argument) => format!("{name}={argument}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A delta-seconds (digits only), capped at 2^31; `None` when it is not one.
fn delta_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(MAX_DELTA_SECONDS, |n| n.min(MAX_DELTA_SECONDS)),
    )
}

/// Splits on commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// Whether an HTTP-date names a year with five digits or more ("… 99999 …").
fn has_year_beyond_9999(date: &str) -> bool {
    date.split_whitespace()
        .any(|word| word.len() > 4 && word.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(name: &'static str, value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        response_headers(&headers)
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn directive_names_are_lowercased_and_arguments_kept() {
        assert_eq!(
            normalised("cache-control", "Max-Age=60, No-CaChE").as_deref(),
            Some("max-age=60, no-cache")
        );
        assert_eq!(
            normalised("cache-control", "NO-STORE, max-age=60").as_deref(),
            Some("no-store, max-age=60")
        );
        assert_eq!(
            normalised(
                "cache-control",
                "private=\"Set-Cookie, X-A\", MUST-REVALIDATE"
            )
            .as_deref(),
            Some("private=\"Set-Cookie, X-A\", must-revalidate")
        );
        assert_eq!(
            normalised("pragma", "No-Cache").as_deref(),
            Some("no-cache")
        );
    }

    #[test]
    fn only_what_the_caching_rules_read_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("x-padding", "a".repeat(100 * 1024).parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("etag", "\"v1\"".parse().unwrap());
        let mut directives: Vec<String> = (0..10_000).map(|i| format!("x-{i}={i}")).collect();
        directives.push("Max-Age=60".into());
        headers.insert("cache-control", directives.join(", ").parse().unwrap());
        headers.insert("pragma", "x-other".parse().unwrap());

        let kept = response_headers(&headers);
        let names: Vec<&str> = kept.keys().map(|name| name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(kept["cache-control"], "max-age=60");
        assert_eq!(kept["etag"], "\"v1\"");
    }

    #[test]
    fn numbers_too_large_are_very_large() {
        assert_eq!(
            normalised("cache-control", "max-age=99999999999999999999999").as_deref(),
            Some("max-age=2147483648")
        );
        assert_eq!(
            normalised("cache-control", "s-maxage=\"4294967296\", max-age=5").as_deref(),
            Some("s-maxage=2147483648, max-age=5")
        );
        assert_eq!(
            normalised("age", "18446744073709551615").as_deref(),
            Some("2147483648")
        );
        assert_eq!(normalised("age", "12").as_deref(), Some("12"));
        assert_eq!(normalised("age", "soon"), None);
        assert_eq!(
            normalised("expires", "Sat, 01 Jan 99999 00:00:00 GMT").as_deref(),
            Some(LAST_HTTP_DATE)
        );
        assert_eq!(
            normalised("expires", "Thu, 01 Jan 2099 00:00:00 GMT").as_deref(),
            Some("Thu, 01 Jan 2099 00:00:00 GMT")
        );
    }

    #[test]
    fn odd_values_pass_without_panicking() {
        for value in [
            "",
            ",,,",
            "=",
            "max-age=",
            "\"unterminated",
            "a=\"b\\\"c\", d",
        ] {
            let _ = normalised("cache-control", value);
        }
        assert_eq!(
            normalised("cache-control", ",, Max-Age=1 ,").as_deref(),
            Some("max-age=1")
        );
    }
}

#[cfg(test)]
pub(crate) mod properties {
    //! Random response headers, and the property that normalising them
    //! never panics and is idempotent. The generators serve the freshness
    //! properties too. `PROPTEST_CASES` sets the cases per property
    //! (proptest's default, 256, otherwise).

    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderName, HeaderValue};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    /// The last second of year 9999, the latest an HTTP-date can spell.
    const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

    /// Directive names caches know in a response, and request-only ones
    /// a response should not carry.
    fn directive_names() -> Vec<&'static str> {
        let request_only = ["max-stale", "min-fresh", "only-if-cached"];
        KNOWN_DIRECTIVES
            .iter()
            .copied()
            .chain(request_only)
            .collect()
    }

    /// Any byte a header value may hold: visible ASCII, space, tab and
    /// obs-text (which makes `to_str` fail).
    fn value_byte() -> impl Strategy<Value = u8> {
        prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff]
    }

    pub(crate) fn raw_value() -> impl Strategy<Value = Vec<u8>> {
        vec(value_byte(), 0..32)
    }

    /// `word` with the letters whose bit is set in `mask` in upper case.
    fn mixed_case(word: &str, mask: u64) -> String {
        word.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    /// Numbers as origins send them, right and wrong: small, past 2^31,
    /// past u64, signed, hex, with spaces.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,4}",
            "[0-9]{10,40}",
            any::<u64>().prop_map(|n| n.to_string()),
            select(
                &[
                    "0",
                    "2147483647",
                    "2147483648",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-1",
                    "+5",
                    "0x10",
                    "1e9",
                    "1.5",
                    " 7 ",
                    "",
                ][..]
            )
            .prop_map(str::to_owned),
        ]
    }

    /// A directive argument: a number, quoted or not, a quoted string with
    /// commas, an unterminated quote, or any printable text.
    fn argument() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => number(),
            2 => number().prop_map(|n| format!("\"{n}\"")),
            1 => "\"[a-zA-Z, =\\\\\"-]{0,10}\"",
            1 => "\"[0-9a-z, ]{0,6}",
            1 => "[!-~]{0,8}",
        ]
    }

    fn directive() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            4 => select(directive_names()).prop_map(str::to_owned),
            1 => "[a-zA-Z-]{1,12}",
        ];
        (
            name,
            any::<u64>(),
            proptest::option::of(argument()),
            select(&["=", "=", " = ", "=\t"][..]),
        )
            .prop_map(|(name, mask, argument, equals)| {
                let name = mixed_case(&name, mask);
                match argument {
                    Some(argument) => format!("{name}{equals}{argument}"),
                    None => name,
                }
            })
    }

    pub(crate) fn cache_control() -> impl Strategy<Value = String> {
        vec(
            (
                directive(),
                select(&[",", ", ", " ,", ",,", ",\t", ", ,"][..]),
            ),
            0..5,
        )
        .prop_map(|directives| {
            directives
                .into_iter()
                .flat_map(|(directive, separator)| [directive, separator.to_owned()])
                .collect()
        })
    }

    /// HTTP-dates up to year 9999, and years past it, dates before 1970,
    /// the obsolete formats and text that is no date.
    pub(crate) fn http_date() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0..=LAST_HTTP_DATE_SECS)
                .prop_map(|secs| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))),
            2 => "(Mon|Sat|Sun), [0-9]{2} (Jan|Feb|Dec) [0-9]{4,12} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
            1 => select(&[
                "Sat, 01 Jan 99999 00:00:00 GMT",
                "Fri, 31 Dec 9999 23:59:59 GMT",
                "Thu, 01 Jan 1970 00:00:00 GMT",
                "Mon, 01 Jan 1900 00:00:00 GMT",
                "Sunday, 06-Nov-94 08:49:37 GMT",
                "Sun Nov  6 08:49:37 1994",
                "0",
                "-1",
                "",
            ][..])
            .prop_map(str::to_owned),
            1 => "[ -~]{0,30}",
        ]
    }

    fn etag() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "(W/)?\"[!#-~]{0,12}\"".prop_map(String::into_bytes),
            raw_value(),
        ]
    }

    fn vary() -> impl Strategy<Value = String> {
        prop_oneof![
            select(
                &[
                    "*",
                    "accept-encoding",
                    "Accept-Encoding, User-Agent",
                    "",
                    ","
                ][..]
            )
            .prop_map(str::to_owned),
            "[a-zA-Z, *-]{0,20}",
        ]
    }

    /// One response header: a field the freshness rules read with a value
    /// made for it, or any field with any value.
    fn field() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
        prop_oneof![
            4 => cache_control().prop_map(|value| ("cache-control", value.into_bytes())),
            1 => (any::<u64>(), select(&["no-cache", "no-store", "x"][..]))
                .prop_map(|(mask, value)| ("pragma", mixed_case(value, mask).into_bytes())),
            2 => number().prop_map(|value| ("age", value.into_bytes())),
            2 => http_date().prop_map(|value| ("expires", value.into_bytes())),
            2 => http_date().prop_map(|value| ("date", value.into_bytes())),
            2 => http_date().prop_map(|value| ("last-modified", value.into_bytes())),
            1 => vary().prop_map(|value| ("vary", value.into_bytes())),
            2 => etag().prop_map(|value| ("etag", value)),
            2 => (
                select(&[
                    "cache-control",
                    "pragma",
                    "age",
                    "expires",
                    "date",
                    "last-modified",
                    "vary",
                    "etag",
                    "content-length",
                    "x-other",
                ][..]),
                raw_value(),
            ),
        ]
    }

    pub(crate) fn header_map(fields: Vec<(&'static str, Vec<u8>)>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(&value).expect("generated header values are valid"),
            );
        }
        headers
    }

    /// A response's headers: any number of fields, repeated or not.
    pub(crate) fn response_header_map() -> impl Strategy<Value = HeaderMap> {
        vec(field(), 0..8).prop_map(header_map)
    }

    proptest! {
        #[test]
        fn normalising_never_panics_and_is_idempotent(headers in response_header_map()) {
            let once = response_headers(&headers);
            let twice = response_headers(&once);
            prop_assert_eq!(&twice, &once, "from {:?}", headers);
            let rewritten = [header::CACHE_CONTROL, header::PRAGMA, header::AGE, header::EXPIRES];
            for name in headers.keys() {
                if !HEADERS_READ.contains(name) {
                    prop_assert!(!once.contains_key(name), "{} was kept", name);
                } else if !rewritten.contains(name) {
                    // Text values stay as they were; others are dropped.
                    let text = headers.get_all(name).iter().filter(|v| v.to_str().is_ok());
                    prop_assert!(text.eq(once.get_all(name).iter()), "{} changed", name);
                }
            }
            prop_assert!(once.values().all(|v| v.to_str().is_ok()), "a non-text value stayed");
            let directives = once.get_all(header::CACHE_CONTROL);
            for value in directives.iter().chain(once.get_all(header::PRAGMA)) {
                let text = value.to_str().expect("normalised directives are text");
                for directive in split_outside_quotes(text) {
                    let name = directive.split('=').next().unwrap_or_default();
                    prop_assert_eq!(name.to_ascii_lowercase(), name);
                }
            }
            if let Some(age) = once.get(header::AGE) {
                let seconds = age.to_str().ok().and_then(|age| age.parse::<u64>().ok());
                prop_assert!(seconds.is_some_and(|s| s <= MAX_DELTA_SECONDS), "Age {:?}", age);
                prop_assert_eq!(once.get_all(header::AGE).iter().count(), 1);
            }
        }
    }
}
