//! Response headers made safe and plain before any caching rule reads them.
//!
//! - Cache-Control directive names are case-insensitive (RFC 9111 §5.2), and
//!   so is `Pragma: no-cache`; the parser downstream compares them as
//!   written, so they are lowercased here.
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

/// `headers` with Cache-Control, Pragma, Age and Expires normalised.
pub fn response_headers(headers: &HeaderMap) -> HeaderMap {
    let mut normalised = headers.clone();
    for name in [header::CACHE_CONTROL, header::PRAGMA] {
        let values: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .filter_map(|value| HeaderValue::from_str(&directives(value.to_str().ok()?)).ok())
            .collect();
        normalised.remove(&name);
        for value in values {
            normalised.append(&name, value);
        }
    }
    if let Some(age) = headers.get(header::AGE) {
        match age.to_str().ok().and_then(delta_seconds) {
            Some(age) => normalised.insert(header::AGE, HeaderValue::from(age)),
            None => normalised.remove(header::AGE),
        };
    }
    if let Some(expires) = headers.get(header::EXPIRES).and_then(|v| v.to_str().ok())
        && has_year_beyond_9999(expires)
    {
        normalised.insert(header::EXPIRES, HeaderValue::from_static(LAST_HTTP_DATE));
    }
    normalised
}

/// One Cache-Control or Pragma value with lowercase names and clamped numbers.
fn directives(value: &str) -> String {
    split_outside_quotes(value)
        .into_iter()
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .map(|directive| {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim())),
                None => (directive, None),
            };
            let name = name.to_ascii_lowercase();
            match argument {
                None => name,
                Some(argument) if DELTA_SECONDS_DIRECTIVES.contains(&name.as_str()) => {
                    let bare = argument.trim_matches('"');
                    match delta_seconds(bare) {
                        Some(seconds) => format!("{name}={seconds}"),
                        None => format!("{name}={argument}"),
                    }
                }
                Some(argument) => format!("{name}={argument}"),
            }
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
