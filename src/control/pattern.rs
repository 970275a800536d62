//! Patterns written to the control files `invalidate`, `evict` and `prefetch`.
//!
//! One write is one batch: it is parsed whole into a [`PatternSet`] before
//! anything is applied, so a write with one malformed line changes nothing
//! (the caller answers EINVAL with the [`PatternError`]).
//!
//! Each non-blank, non-comment line is one of:
//! - a **mount path**, `/pypi/a/b.whl`: exactly that node. Repeated '/' are
//!   collapsed; a trailing '/' (`/pypi/packages/`) means that directory and
//!   everything below it. Names are taken literally, as the kernel shows them:
//!   `%20` in a mount path is the three characters `%20`, not a space.
//! - a **glob** over mount paths: a mount path containing `*`, `?` or `[`.
//!   `*` and `?` stay within one path component, `**` spans any number of
//!   components, `[...]` is a character class. Inside a glob a backslash
//!   escapes the next character (`/a/\*` is the name `*`), and `{`, `}` are
//!   plain characters: brace alternation is not part of the syntax.
//!   Two globset limits remain: `?` and classes match one byte, so `?` does
//!   not match a non-ASCII character (use `*`), and a negated class such as
//!   `[!a]` also matches '/'.
//! - an **http:// or https:// URL** inside a configured origin, turned into
//!   the mount path it is reachable at: `/<origin>/<decoded names>`, or with
//!   `--any-host` and no configured origin containing it,
//!   `/<scheme>/<host[:port]>/<decoded names>`. A URL ending in '/' (or an
//!   origin's own URL) is a directory pattern like a mount path ending in '/'.
//!   A URL is never a glob: `*` in a URL is a literal name character.
//!
//! Matching works on mount paths only, so the caller turns each cache entry's
//! URL into its mount path (configured origins first, in order, then the
//! any-host tree, the same order used here) and asks [`PatternSet::matches`].
//! [`PatternSet::scan_scopes`] says which part of the tree each pattern can
//! touch (one path, or the range below a literal prefix), so the caller reads
//! only that key or that range of the index.

use std::collections::HashSet;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use url::Url;

use crate::namespace::{self, MountPath};

/// The longest line a control file accepts. A path or URL is far shorter;
/// a longer line is a mistake (a file with no newlines, written by
/// accident). A write may hold any number of lines.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Characters that make a mount path a glob.
const GLOB_METACHARACTERS: [char; 3] = ['*', '?', '['];

/// Why a write to a control file is refused. Every variant means EINVAL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error(
        "line {line} is {bytes} bytes, over the {MAX_LINE_BYTES}-byte limit of one pattern; \
         write one path, glob or URL per line"
    )]
    LineTooLong { line: usize, bytes: usize },
    #[error("line {line}: the write is not valid UTF-8; patterns must be UTF-8 text")]
    NotUtf8 { line: usize },
    #[error(
        "the write holds no pattern, only blank lines or comments; \
         write one mount path, glob or URL per line"
    )]
    Empty,
    #[error("line {line}: bad glob {pattern:?}: {reason}")]
    BadGlob {
        line: usize,
        pattern: String,
        reason: String,
    },
    #[error(
        "line {line}: {url} is not inside any configured origin; \
         add the origin with --origin NAME=URL, or mount with --any-host"
    )]
    UnknownOrigin { line: usize, url: String },
    #[error(
        "line {line}: {url} names no path in the mount: a URL with a query string, \
         user info, an empty path segment, or an encoded '/' or NUL has no mount path"
    )]
    UrlWithoutPath { line: usize, url: String },
    #[error("line {line}: {url:?} is not a valid URL: {reason}")]
    BadUrl {
        line: usize,
        url: String,
        reason: String,
    },
    #[error(
        "line {line}: {text:?} is not a pattern; expected a mount path starting with '/' \
         (without \".\" or \"..\" components or NUL bytes), a glob over mount paths, \
         or an http:// or https:// URL"
    )]
    NotAPattern { line: usize, text: String },
    #[error(
        "the globs of this write are too complex to compile together ({reason}); \
         split them over several writes"
    )]
    TooComplex { reason: String },
}

/// An origin as the parser needs it: its mount name and its base URL (ending in '/').
#[derive(Debug, Clone, Copy)]
pub struct OriginBase<'a> {
    pub name: &'a str,
    pub base: &'a Url,
}

/// A set of parsed patterns from one write.
#[derive(Debug, Clone)]
pub struct PatternSet {
    /// Every pattern, in input order.
    patterns: Vec<Pattern>,
    /// The exact paths, for constant-time lookups.
    exact: HashSet<String>,
    /// Directory patterns, each ending in '/'.
    directories: Vec<String>,
    /// All globs of the write compiled into one matcher.
    globs: GlobSet,
}

/// What one pattern of a write names.
#[derive(Debug, Clone, Copy)]
pub enum PatternPart<'a> {
    /// Exactly this mount path.
    Path(&'a MountPath),
    /// This directory and everything below, as normalised mount path text
    /// ending in '/'.
    Directory(&'a str),
    /// A glob over mount paths, as written.
    Glob(&'a str),
}

/// The part of the mount one pattern can touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanScope {
    /// Exactly this mount path.
    Path(MountPath),
    /// This directory (ending in '/') and everything below it.
    Below(String),
}

/// One parsed line.
#[derive(Debug, Clone)]
struct Pattern {
    /// 1-based line number in the write.
    line: usize,
    /// The line as written, trimmed.
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone)]
enum PatternKind {
    /// Exactly this normalised mount path: as text for matching, and as the
    /// names it stands for (a URL can name bytes that are not UTF-8).
    Exact { text: String, names: MountPath },
    /// This directory and everything below; ends in '/' ("/" is the whole mount).
    Directory(String),
    /// `source` is the normalised glob text (ending in '/' for "this directory
    /// and below"); `globs` are what it compiles to.
    Glob { source: String, globs: Vec<Glob> },
}

impl PatternSet {
    /// Parses a whole write: blank lines and lines starting with '#' are skipped, surrounding whitespace trimmed,
    /// "\r\n" accepted. Fails on the first malformed line (nothing applies then).
    /// A URL pattern must be within one of `origins` (same scheme/host/port, path under the base path);
    /// it is turned into the equivalent mount path `/<name>/<decoded components>` using
    /// `crate::namespace::relative_components(base, &url)`.
    /// With `any_host` true, a URL of any host also works and maps to `/<scheme>/<host[:port]>/<components>`.
    /// A path pattern (starts with '/') with glob metacharacters (*, ?, [) is a glob over mount paths; without, an exact path.
    /// Paths are normalised: repeated '/' collapsed, a trailing '/' means "this directory and everything below" (e.g. "/pypi/packages/" matches "/pypi/packages/x/y.whl").
    /// "." or ".." segments in a path pattern are an error (NotAPattern).
    pub fn parse(
        input: &[u8],
        origins: &[OriginBase<'_>],
        any_host: bool,
    ) -> Result<PatternSet, PatternError> {
        PatternSet::parse_with(input, origins, any_host, false)?.ok_or(PatternError::Empty)
    }

    /// [`PatternSet::parse`] for a write another host of the fleet applied:
    /// a URL that none of `origins` holds names nothing here, and is
    /// skipped rather than refused. `None` when no pattern is left.
    pub fn parse_from_fleet(
        input: &[u8],
        origins: &[OriginBase<'_>],
        any_host: bool,
    ) -> Result<Option<PatternSet>, PatternError> {
        PatternSet::parse_with(input, origins, any_host, true)
    }

    fn parse_with(
        input: &[u8],
        origins: &[OriginBase<'_>],
        any_host: bool,
        skip_unknown_origins: bool,
    ) -> Result<Option<PatternSet>, PatternError> {
        let text = std::str::from_utf8(input).map_err(|err| PatternError::NotUtf8 {
            line: line_of_offset(input, err.valid_up_to()),
        })?;
        let mut patterns = Vec::new();
        for (index, raw_line) in text.split('\n').enumerate() {
            let line = index + 1;
            if raw_line.len() > MAX_LINE_BYTES {
                return Err(PatternError::LineTooLong {
                    line,
                    bytes: raw_line.len(),
                });
            }
            let trimmed = raw_line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let kind = match parse_line(trimmed, line, origins, any_host) {
                Err(PatternError::UnknownOrigin { .. }) if skip_unknown_origins => continue,
                kind => kind?,
            };
            patterns.push(Pattern {
                line,
                text: trimmed.to_owned(),
                kind,
            });
        }
        if patterns.is_empty() {
            return Ok(None);
        }
        PatternSet::from_patterns(patterns).map(Some)
    }

    /// Each pattern of the write, in input order, as what it names.
    pub fn parts(&self) -> impl Iterator<Item = PatternPart<'_>> {
        self.patterns.iter().map(|pattern| match &pattern.kind {
            PatternKind::Exact { names, .. } => PatternPart::Path(names),
            PatternKind::Directory(directory) => PatternPart::Directory(directory),
            PatternKind::Glob { .. } => PatternPart::Glob(&pattern.text),
        })
    }

    /// Whether the mount-relative path (starting with '/', components joined by '/', names as raw bytes lossily UTF-8) matches any pattern.
    /// Globs: '*' and '?' do not cross '/', '**' does (globset with literal_separator(true)).
    ///
    /// `mount_path` is expected without a trailing '/' (except the root, "/").
    pub fn matches(&self, mount_path: &str) -> bool {
        self.exact.contains(mount_path)
            || self
                .directories
                .iter()
                .any(|directory| is_self_or_below(mount_path, directory))
            || self.globs.is_match(mount_path)
    }

    /// Exact paths (not globs, not directory prefixes), e.g. for prefetch; in input order.
    ///
    /// A path written twice is listed once, at its first position.
    pub fn exact_paths(&self) -> Vec<MountPath> {
        let mut seen = HashSet::new();
        self.patterns
            .iter()
            .filter_map(|pattern| match &pattern.kind {
                PatternKind::Exact { names, .. } if seen.insert(names) => Some(names.clone()),
                _ => None,
            })
            .collect()
    }

    /// The longest literal directory prefix every pattern starts with, per pattern (e.g. "/pypi/packages/" for "/pypi/packages/**/*.whl",
    /// "/" for "/*/x"), so the caller can scan only the index range below it. Returns one prefix per pattern.
    ///
    /// Each prefix ends in '/' and is made of whole names. Every path a
    /// pattern matches is the prefix's directory itself or lies below it:
    /// `format!("{path}/").starts_with(prefix)` holds. The directory itself
    /// only matches for a directory pattern (`/pypi/packages/`). An exact
    /// path's prefix is its parent directory.
    pub fn scan_prefixes(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|pattern| match &pattern.kind {
                PatternKind::Exact { text, .. } => parent_directory(text).to_owned(),
                PatternKind::Directory(directory) => directory.clone(),
                PatternKind::Glob { source, .. } => literal_directory_prefix(source).to_owned(),
            })
            .collect()
    }

    /// Where each pattern can match, for the caller's index reads: an exact
    /// path is one key, anything else the range below its literal prefix
    /// ([`PatternSet::scan_prefixes`]). In input order.
    pub fn scan_scopes(&self) -> Vec<ScanScope> {
        self.patterns
            .iter()
            .zip(self.scan_prefixes())
            .map(|(pattern, prefix)| match &pattern.kind {
                PatternKind::Exact { names, .. } => ScanScope::Path(names.clone()),
                _ => ScanScope::Below(prefix),
            })
            .collect()
    }

    fn from_patterns(patterns: Vec<Pattern>) -> Result<PatternSet, PatternError> {
        let mut exact = HashSet::new();
        let mut directories = Vec::new();
        let mut all_globs = GlobSetBuilder::new();
        for pattern in &patterns {
            match &pattern.kind {
                PatternKind::Exact { text, .. } => {
                    exact.insert(text.clone());
                }
                PatternKind::Directory(directory) => directories.push(directory.clone()),
                PatternKind::Glob { globs, .. } => {
                    for glob in globs {
                        all_globs.add(glob.clone());
                    }
                }
            }
        }
        // Parsing already caught syntax errors; building compiles the regexes,
        // which can only fail on size limits. Name the line if one glob alone
        // is too much.
        let globs = all_globs.build().map_err(|err| {
            first_uncompilable(&patterns).unwrap_or_else(|| PatternError::TooComplex {
                reason: err.to_string(),
            })
        })?;
        Ok(PatternSet {
            patterns,
            exact,
            directories,
            globs,
        })
    }
}

/// The 1-based line holding byte `offset` of `input`.
fn line_of_offset(input: &[u8], offset: usize) -> usize {
    let before = input.get(..offset).unwrap_or(input);
    before.iter().filter(|&&byte| byte == b'\n').count() + 1
}

fn parse_line(
    text: &str,
    line: usize,
    origins: &[OriginBase<'_>],
    any_host: bool,
) -> Result<PatternKind, PatternError> {
    if text.starts_with('/') {
        parse_path(text, line)
    } else if has_http_scheme(text) {
        parse_url(text, line, origins, any_host)
    } else {
        Err(PatternError::NotAPattern {
            line,
            text: text.to_owned(),
        })
    }
}

fn has_http_scheme(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    })
}

/// A mount path or glob: normalised, checked for dot segments, and compiled
/// when it is a glob.
fn parse_path(text: &str, line: usize) -> Result<PatternKind, PatternError> {
    let not_a_pattern = || PatternError::NotAPattern {
        line,
        text: text.to_owned(),
    };
    if text.contains('\0') {
        return Err(not_a_pattern());
    }
    let names: Vec<&str> = text.split('/').filter(|name| !name.is_empty()).collect();
    if names.iter().any(|name| *name == "." || *name == "..") {
        return Err(not_a_pattern());
    }
    let mut path = String::with_capacity(text.len());
    for name in &names {
        path.push('/');
        path.push_str(name);
    }
    let is_directory = text.ends_with('/');
    if is_directory {
        path.push('/');
    }

    if path.contains(GLOB_METACHARACTERS) {
        let globs = compile_glob(&path).map_err(|reason| PatternError::BadGlob {
            line,
            pattern: text.to_owned(),
            reason,
        })?;
        Ok(PatternKind::Glob {
            source: path,
            globs,
        })
    } else if is_directory {
        Ok(PatternKind::Directory(path))
    } else {
        Ok(PatternKind::Exact {
            names: MountPath::from_text(&path),
            text: path,
        })
    }
}

/// The globs a normalised glob path stands for: itself, plus everything below
/// what it matches when it ends in '/'.
fn compile_glob(source: &str) -> Result<Vec<Glob>, String> {
    let escaped = escape_braces(source);
    let texts = match escaped.strip_suffix('/') {
        Some(directory) if !directory.is_empty() => {
            vec![directory.to_owned(), format!("{directory}/**")]
        }
        _ => vec![escaped],
    };
    texts
        .iter()
        .map(|text| {
            GlobBuilder::new(text)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| err.kind().to_string())
        })
        .collect()
}

/// Escapes `{` and `}` outside character classes, so globset reads them as
/// plain characters rather than alternation: the pattern syntax is `*`, `?`,
/// `[...]` and `**` only, and a path with braces but no other metacharacter
/// is an exact path, so braces must mean the same in a glob.
fn escape_braces(glob: &str) -> String {
    let mut escaped = String::with_capacity(glob.len() + 8);
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                escaped.push(c);
                if let Some(next) = chars.next() {
                    escaped.push(next);
                }
            }
            '{' | '}' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '[' => {
                // Copied verbatim up to its closing ']', following globset's
                // rules: an optional '!' or '^', then a ']' right at the start
                // is a member, not the end. Backslashes are not special inside.
                escaped.push(c);
                if let Some(negation) = chars.next_if(|&c| c == '!' || c == '^') {
                    escaped.push(negation);
                }
                if let Some(bracket) = chars.next_if_eq(&']') {
                    escaped.push(bracket);
                }
                for member in chars.by_ref() {
                    escaped.push(member);
                    if member == ']' {
                        break;
                    }
                }
            }
            _ => escaped.push(c),
        }
    }
    escaped
}

/// An http(s) URL: must lie inside a configured origin (or, with `any_host`,
/// anywhere) and have a mount path.
fn parse_url(
    text: &str,
    line: usize,
    origins: &[OriginBase<'_>],
    any_host: bool,
) -> Result<PatternKind, PatternError> {
    let url = Url::parse(text).map_err(|err| PatternError::BadUrl {
        line,
        url: text.to_owned(),
        reason: err.to_string(),
    })?;
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let Some((names, is_directory)) = mount_path_of_url(&bare, origins, any_host) else {
        return Err(if any_host {
            PatternError::UrlWithoutPath {
                line,
                url: text.to_owned(),
            }
        } else {
            PatternError::UnknownOrigin {
                line,
                url: text.to_owned(),
            }
        });
    };
    // Checked after the origin so that a URL of an unknown host is reported as
    // such, query or not.
    if url.query().is_some() {
        return Err(PatternError::UrlWithoutPath {
            line,
            url: text.to_owned(),
        });
    }
    let text = names.to_text();
    Ok(if is_directory {
        PatternKind::Directory(text + "/")
    } else {
        PatternKind::Exact { text, names }
    })
}

/// The mount path of `url` (no query, no fragment) and whether it names a
/// directory; configured origins first, in order, then the any-host tree.
fn mount_path_of_url(
    url: &Url,
    origins: &[OriginBase<'_>],
    any_host: bool,
) -> Option<(MountPath, bool)> {
    for origin in origins {
        if let Some((names, is_directory)) = names_below(origin.base, url) {
            return Some((MountPath::new(origin.name, &names), is_directory));
        }
    }
    if !any_host {
        return None;
    }
    let host = url.host_str()?;
    let host_port = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let base = namespace::any_host_base(url.scheme(), host_port.as_bytes()).ok()?;
    let (names, is_directory) = names_below(&base, url)?;
    let top = format!("{}/{host_port}", url.scheme());
    Some((MountPath::new(&top, &names), is_directory))
}

/// The decoded names of `url` below `base`, and whether it names a directory
/// (a trailing '/', or the base itself, even written without its '/').
fn names_below(base: &Url, url: &Url) -> Option<(Vec<Vec<u8>>, bool)> {
    if let Some(names) = namespace::relative_components(base, url) {
        let is_directory = names.is_empty() || url.path().ends_with('/');
        return Some((names, is_directory));
    }
    if !url.path().ends_with('/') {
        let with_slash = namespace::base_dir_url(url);
        if namespace::relative_components(base, &with_slash).is_some_and(|names| names.is_empty()) {
            return Some((Vec::new(), true));
        }
    }
    None
}

/// True when `path` is `directory` (which ends in '/') or lies below it.
fn is_self_or_below(path: &str, directory: &str) -> bool {
    let directory = directory.strip_suffix('/').unwrap_or(directory);
    path.strip_prefix(directory)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Everything up to and including the last '/'.
fn parent_directory(path: &str) -> &str {
    path.rfind('/')
        .and_then(|slash| path.get(..=slash))
        .unwrap_or("/")
}

/// The directory part of a glob before its first metacharacter (a backslash
/// counts: what it escapes is not worth decoding for a scan range).
fn literal_directory_prefix(glob: &str) -> &str {
    let literal_end = glob.find(['*', '?', '[', '\\']).unwrap_or(glob.len());
    parent_directory(glob.get(..literal_end).unwrap_or(glob))
}

/// The first glob pattern that does not compile on its own, as a BadGlob.
fn first_uncompilable(patterns: &[Pattern]) -> Option<PatternError> {
    patterns.iter().find_map(|pattern| {
        let PatternKind::Glob { globs, .. } = &pattern.kind else {
            return None;
        };
        let mut set = GlobSetBuilder::new();
        for glob in globs {
            set.add(glob.clone());
        }
        set.build().err().map(|err| PatternError::BadGlob {
            line: pattern.line,
            pattern: pattern.text.clone(),
            reason: err.to_string(),
        })
    })
}

#[cfg(test)]
impl PatternSet {
    /// [`PatternSet::exact_paths`] as text, for assertions.
    fn exact_texts(&self) -> Vec<String> {
        self.exact_paths().iter().map(MountPath::to_text).collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_write_from_the_fleet_skips_urls_of_origins_this_mount_lacks() {
        let base = Url::parse("https://files.example.org/pypi/").unwrap();
        let origins = [OriginBase {
            name: "pypi",
            base: &base,
        }];
        let write = b"https://downloads.example.org/x.tar\n/pypi/a.whl\n";
        assert!(matches!(
            PatternSet::parse(write, &origins, false),
            Err(PatternError::UnknownOrigin { line: 1, .. })
        ));
        let patterns = PatternSet::parse_from_fleet(write, &origins, false)
            .unwrap()
            .unwrap();
        assert!(patterns.matches("/pypi/a.whl"));
        assert_eq!(patterns.parts().count(), 1);
        let nothing = b"https://downloads.example.org/x.tar\n";
        assert!(
            PatternSet::parse_from_fleet(nothing, &origins, false)
                .unwrap()
                .is_none()
        );
        // Anything else malformed is still refused.
        assert!(PatternSet::parse_from_fleet(b"nonsense\n", &origins, false).is_err());
    }

    use super::*;

    struct Origins {
        bases: Vec<(&'static str, Url)>,
    }

    impl Origins {
        fn new() -> Origins {
            let bases = [
                ("pypi", "https://files.example.com/"),
                ("gh", "https://example.org/releases/"),
                ("local", "http://127.0.0.1:8080/data/"),
            ];
            Origins {
                bases: bases
                    .into_iter()
                    .map(|(name, base)| (name, Url::parse(base).expect("test URL parses")))
                    .collect(),
            }
        }

        fn list(&self) -> Vec<OriginBase<'_>> {
            self.bases
                .iter()
                .map(|(name, base)| OriginBase { name, base })
                .collect()
        }
    }

    fn parse_with(input: &str, any_host: bool) -> Result<PatternSet, PatternError> {
        let origins = Origins::new();
        PatternSet::parse(input.as_bytes(), &origins.list(), any_host)
    }

    fn parse(input: &str) -> PatternSet {
        parse_with(input, false).expect("test patterns parse")
    }

    fn parse_err(input: &str) -> PatternError {
        parse_with(input, false).expect_err("test patterns are refused")
    }

    // --- exact paths ----------------------------------------------------------

    #[test]
    fn scopes_are_one_key_for_an_exact_path_and_a_range_otherwise() {
        let set = parse("/pypi/a/b.whl\n/pypi/packages/\n/pypi/x/**/*.whl\n/*/y");
        assert_eq!(
            set.scan_scopes(),
            [
                ScanScope::Path(MountPath::from_text("/pypi/a/b.whl")),
                ScanScope::Below("/pypi/packages/".into()),
                ScanScope::Below("/pypi/x/".into()),
                ScanScope::Below("/".into()),
            ]
        );
    }

    #[test]
    fn exact_path_matches_only_itself() {
        let set = parse("/pypi/a/b.whl");
        assert!(set.matches("/pypi/a/b.whl"));
        assert!(!set.matches("/pypi/a/b.whl.sig"));
        assert!(!set.matches("/pypi/a"));
        assert!(!set.matches("/pypi/a/b.whl/x"));
        assert_eq!(set.exact_texts(), ["/pypi/a/b.whl"]);
        assert_eq!(set.scan_prefixes(), ["/pypi/a/"]);
    }

    #[test]
    fn repeated_slashes_are_collapsed() {
        let set = parse("//pypi///a//b.whl");
        assert!(set.matches("/pypi/a/b.whl"));
        assert_eq!(set.exact_texts(), ["/pypi/a/b.whl"]);
    }

    #[test]
    fn exact_path_at_top_level_scans_from_root() {
        assert_eq!(parse("/pypi").scan_prefixes(), ["/"]);
    }

    #[test]
    fn names_are_literal_in_mount_paths() {
        let set = parse("/pypi/a%20b/{x,y}");
        assert!(set.matches("/pypi/a%20b/{x,y}"));
        assert!(!set.matches("/pypi/a b/x"));
    }

    // --- directories ----------------------------------------------------------

    #[test]
    fn trailing_slash_matches_directory_and_everything_below() {
        let set = parse("/pypi/packages/");
        assert!(set.matches("/pypi/packages"));
        assert!(set.matches("/pypi/packages/x"));
        assert!(set.matches("/pypi/packages/x/y.whl"));
        assert!(!set.matches("/pypi/packagesX"));
        assert!(!set.matches("/pypi/packagesX/y"));
        assert!(!set.matches("/pypi"));
        assert!(set.exact_texts().is_empty());
        assert_eq!(set.scan_prefixes(), ["/pypi/packages/"]);
    }

    #[test]
    fn root_directory_matches_everything() {
        let set = parse("/");
        assert!(set.matches("/"));
        assert!(set.matches("/pypi"));
        assert!(set.matches("/gh/v1/x.tgz"));
        assert_eq!(set.scan_prefixes(), ["/"]);
    }

    // --- globs ------------------------------------------------------------------

    #[test]
    fn star_does_not_cross_slash() {
        let set = parse("/pypi/*.whl");
        assert!(set.matches("/pypi/a.whl"));
        assert!(set.matches("/pypi/.whl"));
        assert!(!set.matches("/pypi/x/a.whl"));
        assert!(!set.matches("/gh/a.whl"));
        assert!(set.exact_texts().is_empty());
        assert_eq!(set.scan_prefixes(), ["/pypi/"]);
    }

    #[test]
    fn question_mark_is_one_character_and_not_slash() {
        let set = parse("/pypi/a?c");
        assert!(set.matches("/pypi/abc"));
        assert!(!set.matches("/pypi/ac"));
        assert!(!set.matches("/pypi/abbc"));
        assert!(!set.matches("/pypi/a/c"));
    }

    #[test]
    fn double_star_crosses_slashes() {
        let set = parse("/pypi/packages/**/*.whl");
        assert!(set.matches("/pypi/packages/a.whl"));
        assert!(set.matches("/pypi/packages/x/a.whl"));
        assert!(set.matches("/pypi/packages/x/y/z/a.whl"));
        assert!(!set.matches("/pypi/packages/x/a.tgz"));
        assert!(!set.matches("/pypi/other/a.whl"));
        assert_eq!(set.scan_prefixes(), ["/pypi/packages/"]);
    }

    #[test]
    fn trailing_double_star_matches_everything_below() {
        let set = parse("/gh/**");
        assert!(set.matches("/gh/a"));
        assert!(set.matches("/gh/a/b/c"));
        assert!(!set.matches("/pypi/a"));
    }

    #[test]
    fn glob_in_first_component_scans_from_root() {
        let set = parse("/*/x");
        assert!(set.matches("/pypi/x"));
        assert!(set.matches("/gh/x"));
        assert!(!set.matches("/gh/v1/x"));
        assert_eq!(set.scan_prefixes(), ["/"]);
    }

    #[test]
    fn character_class() {
        let set = parse("/pypi/[ab]-[!0-9].whl");
        assert!(set.matches("/pypi/a-x.whl"));
        assert!(set.matches("/pypi/b-y.whl"));
        assert!(!set.matches("/pypi/c-x.whl"));
        assert!(!set.matches("/pypi/a-1.whl"));
    }

    #[test]
    fn glob_with_trailing_slash_matches_below_each_match() {
        let set = parse("/pypi/v*/");
        assert!(set.matches("/pypi/v1"));
        assert!(set.matches("/pypi/v1/a/b.whl"));
        assert!(!set.matches("/pypi/w1/a"));
        assert_eq!(set.scan_prefixes(), ["/pypi/"]);
    }

    #[test]
    fn braces_are_plain_characters_in_globs() {
        let set = parse("/pypi/{a,b}*");
        assert!(set.matches("/pypi/{a,b}1"));
        assert!(!set.matches("/pypi/a1"));
        let in_class = parse("/pypi/[{]*");
        assert!(in_class.matches("/pypi/{x"));
        assert!(!in_class.matches("/pypi/\\{x"));
    }

    #[test]
    fn backslash_escapes_in_globs() {
        let set = parse("/pypi/\\*");
        assert!(set.matches("/pypi/*"));
        assert!(!set.matches("/pypi/a"));
        assert_eq!(set.scan_prefixes(), ["/pypi/"]);
    }

    // --- URLs -------------------------------------------------------------------

    #[test]
    fn url_of_configured_origin_is_its_mount_path() {
        let set = parse("https://files.example.com/packages/a/b.whl");
        assert_eq!(set.exact_texts(), ["/pypi/packages/a/b.whl"]);
        assert!(set.matches("/pypi/packages/a/b.whl"));
        assert_eq!(set.scan_prefixes(), ["/pypi/packages/a/"]);
    }

    #[test]
    fn url_below_base_path_drops_the_base_path() {
        let set = parse("https://example.org/releases/v1/x.tgz");
        assert_eq!(set.exact_texts(), ["/gh/v1/x.tgz"]);
    }

    #[test]
    fn url_with_port() {
        let set = parse("http://127.0.0.1:8080/data/f");
        assert_eq!(set.exact_texts(), ["/local/f"]);
        assert!(matches!(
            parse_err("http://127.0.0.1:9090/data/f"),
            PatternError::UnknownOrigin { line: 1, .. }
        ));
    }

    #[test]
    fn url_scheme_and_host_are_case_insensitive() {
        let set = parse("HTTPS://Files.Example.COM/a");
        assert_eq!(set.exact_texts(), ["/pypi/a"]);
    }

    #[test]
    fn percent_encoded_url_maps_to_decoded_names() {
        let set = parse("https://files.example.com/a%20b/c%2Bd%7e.whl");
        assert_eq!(set.exact_texts(), ["/pypi/a b/c+d~.whl"]);
        assert!(set.matches("/pypi/a b/c+d~.whl"));
        assert!(!set.matches("/pypi/a%20b/c%2Bd%7e.whl"));
    }

    #[test]
    fn percent_encoded_non_utf8_matches_lossily_and_keeps_its_bytes() {
        let set = parse("https://files.example.com/%FF.bin");
        assert_eq!(set.exact_texts(), ["/pypi/\u{FFFD}.bin"]);
        let names = MountPath(vec![b"pypi".to_vec(), b"\xff.bin".to_vec()]);
        assert_eq!(set.exact_paths(), std::slice::from_ref(&names));
        assert_eq!(set.scan_scopes(), [ScanScope::Path(names)]);
    }

    #[test]
    fn url_metacharacters_are_literal() {
        let set = parse("https://files.example.com/a*b");
        assert_eq!(set.exact_texts(), ["/pypi/a*b"]);
        assert!(!set.matches("/pypi/axb"));
    }

    #[test]
    fn url_with_trailing_slash_is_a_directory() {
        let set = parse("https://example.org/releases/v1/");
        assert!(set.matches("/gh/v1"));
        assert!(set.matches("/gh/v1/x.tgz"));
        assert!(!set.matches("/gh/v2/x.tgz"));
        assert!(set.exact_texts().is_empty());
        assert_eq!(set.scan_prefixes(), ["/gh/v1/"]);
    }

    #[test]
    fn origin_url_itself_is_the_whole_origin() {
        for text in [
            "https://example.org/releases/",
            "https://example.org/releases",
        ] {
            let set = parse(text);
            assert!(set.matches("/gh/v1/x.tgz"), "{text}");
            assert!(!set.matches("/pypi/x"), "{text}");
            assert_eq!(set.scan_prefixes(), ["/gh/"], "{text}");
        }
    }

    #[test]
    fn url_fragment_is_ignored() {
        assert_eq!(
            parse("https://files.example.com/a#part").exact_texts(),
            ["/pypi/a"]
        );
    }

    #[test]
    fn url_with_query_is_refused() {
        assert_eq!(
            parse_err("https://files.example.com/a?x=1"),
            PatternError::UrlWithoutPath {
                line: 1,
                url: "https://files.example.com/a?x=1".to_owned()
            }
        );
    }

    #[test]
    fn url_outside_base_path_is_unknown_origin() {
        assert_eq!(
            parse_err("https://example.org/other/x"),
            PatternError::UnknownOrigin {
                line: 1,
                url: "https://example.org/other/x".to_owned()
            }
        );
    }

    #[test]
    fn url_of_other_host_needs_any_host() {
        assert_eq!(
            parse_with("https://elsewhere.net/x", false).expect_err("refused"),
            PatternError::UnknownOrigin {
                line: 1,
                url: "https://elsewhere.net/x".to_owned()
            }
        );
        let set = parse_with(
            "https://elsewhere.net/x\nhttp://elsewhere.net:81/d/\nhttp://[::1]:8080/y",
            true,
        )
        .expect("any-host URLs parse");
        assert_eq!(
            set.exact_texts(),
            ["/https/elsewhere.net/x", "/http/[::1]:8080/y"]
        );
        assert!(set.matches("/http/elsewhere.net:81/d/z"));
    }

    #[test]
    fn any_host_prefers_configured_origin() {
        let set = parse_with("https://files.example.com/a", true).expect("parses");
        assert_eq!(set.exact_texts(), ["/pypi/a"]);
    }

    #[test]
    fn any_host_url_without_mount_path_is_refused() {
        assert!(matches!(
            parse_with("https://elsewhere.net/a%2Fb", true),
            Err(PatternError::UrlWithoutPath { line: 1, .. })
        ));
    }

    // --- multi-line writes, comments, whitespace --------------------------------

    #[test]
    fn every_line_of_a_write_applies() {
        let set = parse(
            "/pypi/a.whl\n/gh/**/*.tgz\nhttps://files.example.com/b.whl\n/pypi/dir/\n/pypi/a.whl\n",
        );
        assert!(set.matches("/pypi/a.whl"));
        assert!(set.matches("/gh/v1/x.tgz"));
        assert!(set.matches("/pypi/b.whl"));
        assert!(set.matches("/pypi/dir/c"));
        assert!(!set.matches("/pypi/c.whl"));
        assert_eq!(set.exact_texts(), ["/pypi/a.whl", "/pypi/b.whl"]);
        assert_eq!(
            set.scan_prefixes(),
            ["/pypi/", "/gh/", "/pypi/", "/pypi/dir/", "/pypi/"]
        );
    }

    #[test]
    fn comments_blank_lines_crlf_and_whitespace() {
        let set = parse("# invalidate wheels\r\n\r\n   \r\n  /pypi/a.whl  \r\n\t# /gh/x\r\n");
        assert_eq!(set.exact_texts(), ["/pypi/a.whl"]);
        assert!(!set.matches("/gh/x"));
        assert_eq!(set.scan_prefixes().len(), 1);
    }

    #[test]
    fn one_bad_line_refuses_the_whole_write_and_names_it() {
        let err = parse_err("/pypi/a\n# comment\n/pypi/[b\n/pypi/c");
        assert_eq!(
            err,
            PatternError::BadGlob {
                line: 3,
                pattern: "/pypi/[b".to_owned(),
                reason: "unclosed character class; missing ']'".to_owned(),
            }
        );
        assert!(err.to_string().starts_with("line 3: "), "{err}");
    }

    // --- refused writes -----------------------------------------------------------

    #[test]
    fn bad_glob() {
        assert!(matches!(
            parse_err("/a/[b"),
            PatternError::BadGlob { line: 1, ref pattern, .. } if pattern == "/a/[b"
        ));
        assert!(matches!(
            parse_err("/a/*\\"),
            PatternError::BadGlob { line: 1, .. }
        ));
        assert!(matches!(
            parse_err("/a/[z-a]*"),
            PatternError::BadGlob { line: 1, .. }
        ));
    }

    #[test]
    fn other_schemes_and_relative_paths_are_not_patterns() {
        for text in [
            "ftp://x",
            "a/b",
            "pypi",
            "file:///etc/passwd",
            "*.whl",
            "~/x",
        ] {
            assert_eq!(
                parse_err(text),
                PatternError::NotAPattern {
                    line: 1,
                    text: text.to_owned()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn dot_segments_are_not_patterns() {
        for text in ["/a/../b", "/a/./b", "/..", "/pypi/*/../x", "/a/.."] {
            assert!(
                matches!(parse_err(text), PatternError::NotAPattern { line: 1, .. }),
                "{text}"
            );
        }
        assert!(parse("/a/.hidden/..b").matches("/a/.hidden/..b"));
    }

    #[test]
    fn nul_byte_is_not_a_pattern() {
        assert!(matches!(
            parse_err("/a\0b"),
            PatternError::NotAPattern { line: 1, .. }
        ));
    }

    #[test]
    fn malformed_url() {
        assert!(matches!(
            parse_err("http://[::1/x"),
            PatternError::BadUrl { line: 1, .. }
        ));
    }

    #[test]
    fn a_line_over_the_limit_is_refused_and_a_long_write_is_not() {
        let line = format!("/{}", "a".repeat(MAX_LINE_BYTES - 1));
        assert_eq!(line.len(), MAX_LINE_BYTES);
        assert!(parse_with(&line, false).is_ok());
        let too_long = format!("/pypi/a\n{line}b\n");
        assert_eq!(
            parse_err(&too_long),
            PatternError::LineTooLong {
                line: 2,
                bytes: MAX_LINE_BYTES + 1
            }
        );
        let many = "/pypi/a\n".repeat(10_000);
        assert!(parse_with(&many, false).is_ok(), "80 KB of short lines");
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_line() {
        let origins = Origins::new();
        let err = PatternSet::parse(b"/pypi/a\n/pypi/\xff\n", &origins.list(), false)
            .expect_err("refused");
        assert_eq!(err, PatternError::NotUtf8 { line: 2 });
    }

    #[test]
    fn empty_write_is_refused() {
        for text in ["", "\n", "  \r\n\n", "# only a comment\n"] {
            assert_eq!(parse_err(text), PatternError::Empty, "{text:?}");
        }
    }

    #[test]
    fn error_messages_name_the_line() {
        let err = parse_err("/a\n\nftp://x");
        assert!(err.to_string().starts_with("line 3: "), "{err}");
        let err = parse_err("/a\nhttps://nowhere.example/x");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn odd_inputs_are_answered_without_panicking() {
        let odd = [
            "[",
            "/[",
            "/]",
            "/[]",
            "/[!]",
            "/[]]",
            "/**/**",
            "/***",
            "/a**b",
            "/**/",
            "/\\",
            "/[\\]",
            "/€*",
            "/[€-😀]",
            "/[a-€]?",
            "/}{*",
            "/{*",
            "http://",
            "https://:80/",
            "HTTP://",
            "http://user:pw@files.example.com/x",
            "https://files.example.com/%00",
            "https://files.example.com/a//b",
            "https://files.example.com/%2e%2e/x",
            "http://[::1]/",
            "/\u{FEFF}x",
            "\u{FEFF}/x",
        ];
        for text in odd {
            for any_host in [false, true] {
                if let Ok(set) = parse_with(text, any_host) {
                    set.matches("/pypi/x");
                    set.exact_texts();
                    for prefix in set.scan_prefixes() {
                        assert!(prefix.starts_with('/') && prefix.ends_with('/'), "{text}");
                    }
                }
            }
        }
        // Random writes over an alphabet of the characters that matter; what
        // parses must keep every match inside its pattern's scan prefix.
        let alphabet: Vec<char> = "/*?[]!^-{},\\.a:#\n\r €".chars().collect();
        let candidates = [
            "/", "/a", "/a/a", "/a/a/a", "/aa", "/a.a", "/{a}", "/a,a", "/-", "/€", "/ a", "/!",
            "/^", "/:",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5_000 {
            let mut text = String::from("/");
            let length = (state >> 60) as usize + 1;
            for _ in 0..length {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let index = (state >> 33) as usize % alphabet.len();
                text.push(alphabet[index]);
            }
            let Ok(set) = parse_with(&text, true) else {
                continue;
            };
            let prefixes = set.scan_prefixes();
            for path in candidates {
                if set.matches(path) {
                    let path_as_directory = format!("{path}/");
                    assert!(
                        prefixes
                            .iter()
                            .any(|p| path_as_directory.starts_with(p.as_str())),
                        "{text:?} matches {path:?} outside {prefixes:?}"
                    );
                }
            }
        }
    }

    // --- helpers ------------------------------------------------------------------

    #[test]
    fn escape_braces_leaves_classes_and_escapes_alone() {
        assert_eq!(escape_braces("/{a}"), "/\\{a\\}");
        assert_eq!(escape_braces("/[{}]"), "/[{}]");
        assert_eq!(escape_braces("/[]{]{"), "/[]{]\\{");
        assert_eq!(escape_braces("/[!]{]{"), "/[!]{]\\{");
        assert_eq!(escape_braces("/\\{"), "/\\{");
        assert_eq!(escape_braces("/[{"), "/[{");
    }
}

#[cfg(test)]
mod properties {
    //! Random writes, as bytes and as lines built from the pieces that matter
    //! (paths, globs, URLs over two configured origins, comments): each is
    //! answered with a set or a [`PatternError`], never a panic, and an
    //! accepted set keeps the promises its callers rely on. `PROPTEST_CASES`
    //! sets the cases per property (proptest's default, 256, otherwise).

    use std::sync::LazyLock;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    static ORIGINS: LazyLock<Vec<(&'static str, Url)>> = LazyLock::new(|| {
        [
            ("pypi", "https://files.example.com/"),
            ("gh", "https://example.org/releases/"),
        ]
        .into_iter()
        .map(|(name, base)| (name, Url::parse(base).expect("test URL parses")))
        .collect()
    });

    fn parse(input: &[u8], any_host: bool) -> Result<PatternSet, PatternError> {
        let origins: Vec<OriginBase<'_>> = ORIGINS
            .iter()
            .map(|(name, base)| OriginBase { name, base })
            .collect();
        PatternSet::parse(input, &origins, any_host)
    }

    /// Names that mount paths, globs and candidate paths share, so that
    /// globs do match some candidates.
    const NAMES: &[&str] = &[
        "a", "b", "ab", "ba", ".a", "a.", "..a", "{a}", "{a,b}", "a b", "€", "%2e", "%2F", "-",
        "!", "^", "pypi", "gh", "https", "http", "v1", "x.whl", "\u{FFFD}", "\u{FEFF}",
    ];

    /// What a glob component may hold, valid or not.
    const GLOB_PIECES: &[&str] = &[
        "*",
        "**",
        "***",
        "?",
        "[ab]",
        "[!a]",
        "[^a]",
        "[a-b]",
        "[]]",
        "[!]]",
        "[",
        "]",
        "[]",
        "[z-a]",
        "[€-😀]",
        "[{]",
        "\\",
        "\\*",
        "\\[",
        "{",
        "}",
        "{*}",
        "a*",
        "*a",
        "a**b",
        "?b",
    ];

    /// The configured origins' hosts, in several spellings.
    const ORIGIN_HOSTS: &[&str] = &[
        "files.example.com",
        "FILES.Example.COM",
        "files.example.com:443",
        "example.org",
        "Example.Org:443",
    ];
    /// Hosts of no configured origin (some only with --any-host), and
    /// malformed ones.
    const OTHER_HOSTS: &[&str] = &[
        "files.example.com:8443",
        "elsewhere.net",
        "elsewhere.net:81",
        "127.0.0.1:8080",
        "[::1]:8080",
        "[::1",
        "user@files.example.com",
        "u:p@example.org",
        "",
        ":80",
        "xn--bcher-kva.de",
        "bücher.de",
    ];

    /// URL path segments, including every spelling of a dot segment or an
    /// encoded separator.
    const URL_SEGMENTS: &[&str] = &[
        "releases",
        "a",
        "b",
        "v1",
        "x.whl",
        "",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        ".%2e",
        "%2e%2e",
        "%2f",
        "%2F",
        "..%2f",
        "%00",
        "%5c",
        "\\",
        "a%20b",
        "%FF",
        "%25",
        "%7e",
        "*",
        "[x]",
        "{a}",
        "．．",
        "%EF%BC%8E",
        "@",
        ":",
        ";x",
        "a?b",
    ];

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => select(NAMES).prop_map(str::to_owned),
            1 => select(&[".", "..", "a\0b"][..]).prop_map(str::to_owned),
            2 => "[a-b.{}*?\\[\\]!^\\\\ %-]{1,4}",
        ]
    }

    fn glob_component() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => select(GLOB_PIECES).prop_map(str::to_owned),
            1 => (select(NAMES), select(GLOB_PIECES)).prop_map(|(n, g)| format!("{n}{g}")),
            1 => name(),
        ]
    }

    /// `/`-separated components, sometimes with repeated or trailing '/'.
    fn slashed(components: Vec<(String, usize)>, trailing: bool) -> String {
        let mut path = String::new();
        for (component, slashes) in components {
            path.push_str(&"/".repeat(slashes));
            path.push_str(&component);
        }
        if trailing || path.is_empty() {
            path.push('/');
        }
        path
    }

    fn mount_path_line() -> impl Strategy<Value = String> {
        (vec((name(), 1..3usize), 0..5), any::<bool>())
            .prop_map(|(components, trailing)| slashed(components, trailing))
    }

    fn glob_line() -> impl Strategy<Value = String> {
        (vec((glob_component(), 1..3usize), 1..5), any::<bool>())
            .prop_map(|(components, trailing)| slashed(components, trailing))
    }

    fn url_line() -> impl Strategy<Value = String> {
        (
            select(&["http", "https", "HTTPS", "hTtP"][..]),
            prop_oneof![3 => select(ORIGIN_HOSTS), 1 => select(OTHER_HOSTS)],
            select(&["", "releases/"][..]),
            vec(select(URL_SEGMENTS), 0..5),
            any::<bool>(),
            select(&["", "", "?x=1", "?", "#f", "?a#b"][..]),
        )
            .prop_map(|(scheme, host, base, segments, trailing, tail)| {
                let slash = if trailing { "/" } else { "" };
                format!(
                    "{scheme}://{host}/{base}{}{slash}{tail}",
                    segments.join("/")
                )
            })
    }

    fn line() -> impl Strategy<Value = String> {
        let body = prop_oneof![
            3 => mount_path_line(),
            3 => glob_line(),
            3 => url_line(),
            1 => Just(String::new()),
            1 => mount_path_line().prop_map(|path| format!("#{path}")),
            1 => "[ -~]{0,12}",
        ];
        let padding = || select(&["", "", " ", "\t", "\r", " \r"][..]);
        (padding(), body, padding())
            .prop_map(|(before, body, after)| format!("{before}{body}{after}"))
    }

    fn write() -> impl Strategy<Value = String> {
        vec(line(), 1..6).prop_map(|lines| lines.join("\n"))
    }

    /// Mount paths as the caller asks about them: no trailing '/' except "/".
    fn candidate() -> impl Strategy<Value = String> {
        vec(
            prop_oneof![
                8 => select(NAMES).prop_map(str::to_owned),
                2 => select(GLOB_PIECES).prop_map(str::to_owned),
                1 => ".{1,6}",
            ],
            0..5,
        )
        .prop_map(|names| format!("/{}", names.join("/")))
    }

    /// Paths around what the set names: each exact path, a child and the
    /// parent of it, and each scan prefix, a child, a grandchild and its parent.
    fn candidates_around(set: &PatternSet) -> Vec<String> {
        let mut around = Vec::new();
        let without_slash = |path: &str| match path.strip_suffix('/') {
            Some("") | None => path.to_owned(),
            Some(stripped) => stripped.to_owned(),
        };
        for path in set.exact_texts() {
            around.push(format!("{path}/a"));
            around.push(without_slash(parent_directory(&path)));
            around.push(path);
        }
        for prefix in set.scan_prefixes() {
            around.push(format!("{prefix}a"));
            around.push(format!("{prefix}a/b"));
            let directory = without_slash(&prefix);
            around.push(without_slash(parent_directory(&directory)));
            around.push(directory);
        }
        around
    }

    /// Whether the caller's read of `scope` sees the node at `path`.
    fn covers(scope: &ScanScope, path: &str) -> bool {
        match scope {
            ScanScope::Path(exact) => path == exact.to_text(),
            ScanScope::Below(prefix) => format!("{path}/").starts_with(prefix.as_str()),
        }
    }

    fn is_well_formed_exact_path(path: &str) -> bool {
        path.strip_prefix('/').is_some_and(|names| {
            names
                .split('/')
                .all(|name| !name.is_empty() && name != "." && name != ".." && !name.contains('\0'))
        })
    }

    /// Every promise of an accepted set, checked against `candidates`.
    fn check_set(set: &PatternSet, candidates: &[String]) -> Result<(), TestCaseError> {
        let exact = set.exact_texts();
        let prefixes = set.scan_prefixes();
        let scopes = set.scan_scopes();
        prop_assert!(!prefixes.is_empty());
        prop_assert_eq!(prefixes.len(), scopes.len());
        let unique: HashSet<&String> = exact.iter().collect();
        prop_assert_eq!(unique.len(), exact.len(), "an exact path listed twice");
        for (scope, prefix) in scopes.iter().zip(&prefixes) {
            prop_assert!(
                prefix.starts_with('/') && prefix.ends_with('/') && !prefix.contains("//"),
                "prefix {:?}",
                prefix
            );
            match scope {
                ScanScope::Path(path) => {
                    let path = path.to_text();
                    prop_assert!(exact.contains(&path), "scope {:?} not an exact path", path);
                    let below_prefix = format!("{path}/").starts_with(prefix.as_str());
                    prop_assert!(below_prefix, "{:?} is not below {:?}", path, prefix);
                }
                ScanScope::Below(below) => prop_assert_eq!(below, prefix),
            }
        }
        for path in &exact {
            prop_assert!(is_well_formed_exact_path(path), "exact path {:?}", path);
            prop_assert!(set.matches(path), "exact path {:?} does not match", path);
        }
        for path in candidates.iter().chain(&exact) {
            if set.matches(path) {
                prop_assert!(
                    scopes.iter().any(|scope| covers(scope, path)),
                    "{:?} matches outside {:?}",
                    path,
                    scopes
                );
            }
        }
        Ok(())
    }

    /// Checks an accepted write as a whole and line by line: each line's one
    /// scope covers all that line matches, and the write matches exactly
    /// what its lines match.
    fn check_write(
        input: &str,
        any_host: bool,
        candidates: &[String],
    ) -> Result<(), TestCaseError> {
        let Ok(set) = parse(input.as_bytes(), any_host) else {
            return Ok(());
        };
        let mut candidates = candidates.to_vec();
        candidates.extend(candidates_around(&set));
        check_set(&set, &candidates)?;
        let lines: Vec<PatternSet> = input
            .split('\n')
            .filter_map(|line| parse(line.as_bytes(), any_host).ok())
            .collect();
        prop_assert_eq!(lines.len(), set.scan_scopes().len());
        for line in &lines {
            candidates.extend(candidates_around(line));
        }
        for line in &lines {
            prop_assert_eq!(line.scan_scopes().len(), 1);
            check_set(line, &candidates)?;
        }
        for path in &candidates {
            prop_assert_eq!(
                set.matches(path),
                lines.iter().any(|line| line.matches(path)),
                "write and lines disagree on {:?}",
                path
            );
        }
        Ok(())
    }

    /// Byte sequences that are not UTF-8: a stray byte, cut sequences, a
    /// surrogate, an overlong '/'.
    const NOT_UTF8: &[&[u8]] = &[b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"];

    /// Bytes that are mostly pattern syntax, with any byte now and then.
    fn pattern_bytes() -> impl Strategy<Value = Vec<u8>> {
        vec(
            prop_oneof![
                3 => select(b"/*?[]!^\\{},.:#%a-\n\r \t".to_vec()),
                1 => any::<u8>(),
            ],
            0..200,
        )
    }

    proptest! {
        #[test]
        fn any_bytes_are_answered_without_panicking(
            input in prop_oneof![vec(any::<u8>(), 0..600), pattern_bytes()],
            any_host: bool,
            candidates in vec(candidate(), 0..8),
        ) {
            match parse(&input, any_host) {
                Ok(_) => {
                    let text = std::str::from_utf8(&input).expect("an accepted write is UTF-8");
                    check_write(text, any_host, &candidates)?;
                }
                Err(PatternError::LineTooLong { .. }) => {
                    prop_assert!(false, "{} bytes refused as too large", input.len());
                }
                Err(_) => {}
            }
        }

        #[test]
        fn each_kind_of_line_keeps_its_promises(
            input in line(),
            any_host: bool,
            candidates in vec(candidate(), 0..8),
        ) {
            check_write(&input, any_host, &candidates)?;
        }

        #[test]
        fn structured_writes_keep_their_promises(
            input in write(),
            any_host: bool,
            candidates in vec(candidate(), 0..8),
        ) {
            check_write(&input, any_host, &candidates)?;
        }

        #[test]
        fn invalid_utf8_is_refused_with_its_line(
            before in "[ -~\n]{0,40}",
            bad in select(NOT_UTF8),
            after in "[ -~\n]{0,40}",
        ) {
            let mut input = before.clone().into_bytes();
            input.extend_from_slice(bad);
            input.extend_from_slice(after.as_bytes());
            let line = before.matches('\n').count() + 1;
            prop_assert_eq!(parse(&input, true).err(), Some(PatternError::NotUtf8 { line }));
        }

        #[test]
        fn only_a_line_over_the_limit_is_refused(
            extra in 1..MAX_LINE_BYTES,
            line in prop_oneof![mount_path_line(), glob_line(), url_line()],
            any_host: bool,
        ) {
            let mut input = String::new();
            while input.len() <= MAX_LINE_BYTES + extra {
                input.push_str(&line);
                input.push('\n');
            }
            let lines = input.lines().count();
            prop_assert!(
                !matches!(parse(input.as_bytes(), any_host), Err(PatternError::LineTooLong { .. })),
                "{} short lines refused as too long", lines
            );
            let long = format!("/{}\n{input}", "a".repeat(MAX_LINE_BYTES + extra));
            prop_assert_eq!(
                parse(long.as_bytes(), any_host).err(),
                Some(PatternError::LineTooLong { line: 1, bytes: MAX_LINE_BYTES + extra + 1 })
            );
        }
    }
}
