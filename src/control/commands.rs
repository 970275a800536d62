//! Writes to `invalidate`, `evict` and `prefetch`: patterns in, cache actions out.
//!
//! A write is parsed whole before anything happens, so a malformed line
//! changes nothing. Each pattern reads only its part of the index: an exact
//! path is one key, a directory or a glob the range of URLs below its literal
//! prefix (the whole index only for a glob in the first component). Downloads
//! under way in that range count too, so `evict` and `invalidate` reach them.
//! The URLs found are matched against their mount paths (a URL can appear
//! under several origins, and under the any-host tree), in the same order the
//! parser maps URLs to paths, and all matches change in one index batch.
//!
//! Reading the index blocks: call [`Origins::apply`] off the FUSE dispatch
//! threads.

use std::collections::BTreeSet;
use std::sync::Arc;

use url::Url;

use super::ControlFile;
use super::pattern::{OriginBase, PatternError, PatternPart, PatternSet, ScanScope};
use crate::cache::{Cache, CacheError, Location};
use crate::config::Origin;
use crate::namespace::{self, MountPath};

/// The comment that names, in a write sent to the fleet, the URL of an
/// origin its globs start with: `# origin NAME URL`.
const ORIGIN_COMMENT: &str = "# origin ";

/// The first name of a mount path or glob (`/o/a/*` is `o`).
fn first_name(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("{0} takes writes only of invalidate, evict or prefetch")]
    NotACommand(&'static str),
    #[error("the cache could not apply it: {0}")]
    Cache(#[from] CacheError),
}

impl CommandError {
    /// Whether the write itself was wrong (rather than the cache failing).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CommandError::Pattern(_) | CommandError::NotACommand(_)
        )
    }
}

/// What a write did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Mount paths whose entries changed: the kernel must forget them.
    pub changed_paths: Vec<MountPath>,
    /// Locations to fetch in the background.
    pub prefetch: Vec<Location>,
    /// The URLs an `invalidate` or `evict` matched.
    pub urls: Vec<String>,
    /// An `invalidate` or `evict` written here, as the other hosts of the
    /// fleet are to read it (see [`Origins::portable_lines`]).
    pub fleet_lines: Vec<u8>,
}

/// The origins a pattern can name.
#[derive(Debug, Clone)]
pub struct Origins {
    pub configured: Vec<Arc<Origin>>,
    pub any_host: bool,
}

impl Origins {
    /// Parses and applies one write to a command file. Blocks on the index.
    /// A write another host of the fleet applied (`from_fleet`) may name
    /// URLs none of this mount's origins holds: those name nothing here.
    pub fn apply(
        &self,
        file: ControlFile,
        input: &[u8],
        cache: &Cache,
        from_fleet: bool,
    ) -> Result<Applied, CommandError> {
        let bases = self.bases();
        let origin_bases = self.origin_bases(&bases);
        let patterns = if from_fleet {
            let input = self.localize(input);
            match PatternSet::parse_from_fleet(&input, &origin_bases, self.any_host)? {
                Some(patterns) => patterns,
                None => return Ok(Applied::default()),
            }
        } else {
            PatternSet::parse(input, &origin_bases, self.any_host)?
        };
        let mut applied = Applied::default();
        match file {
            ControlFile::Prefetch => {
                applied.prefetch = patterns
                    .exact_paths()
                    .iter()
                    .filter_map(|path| self.location_of(path))
                    .collect();
            }
            ControlFile::Invalidate | ControlFile::Evict => {
                let mut matched = Vec::new();
                for url in self.candidate_urls(&patterns, cache)? {
                    let Ok(parsed) = Url::parse(&url) else {
                        continue;
                    };
                    let paths: Vec<MountPath> = self
                        .mount_paths(&parsed, &bases)
                        .into_iter()
                        .filter(|p| patterns.matches(&p.to_text()))
                        .collect();
                    if !paths.is_empty() {
                        matched.push(url);
                        applied.changed_paths.extend(paths);
                    }
                }
                if file == ControlFile::Invalidate {
                    cache.invalidate(&matched)?;
                } else {
                    cache.evict(&matched)?;
                }
                applied.urls = matched;
                if !from_fleet {
                    applied.fleet_lines = self.portable_lines(&patterns, &bases);
                }
            }
            other => return Err(CommandError::NotACommand(other.name())),
        }
        Ok(applied)
    }

    /// `patterns` (a write this mount applied) as every host of the fleet
    /// reads it, whatever it names its origins: an exact path or a
    /// directory under a configured origin becomes the URL it stands for,
    /// which each host maps through its own origins; for a glob whose
    /// first name is a configured origin, a comment line names that
    /// origin's URL (`# origin NAME URL`), by which [`Origins::localize`]
    /// renames it on each host. A glob over the origins themselves (`/*/x`,
    /// `/**`) stays as written.
    fn portable_lines(&self, patterns: &PatternSet, bases: &[Url]) -> Vec<u8> {
        let mut named = BTreeSet::new();
        let mut lines = String::new();
        for part in patterns.parts() {
            let url = match part {
                PatternPart::Path(path) => {
                    self.location_of(path).and_then(|loc| loc.file_url().ok())
                }
                PatternPart::Directory(directory) => self
                    .location_of(&MountPath::from_text(directory))
                    .and_then(|loc| loc.dir_url().ok()),
                PatternPart::Glob(glob) => {
                    let first = first_name(glob);
                    if let Some(i) = self.configured.iter().position(|o| o.name == first) {
                        named.insert(i);
                    }
                    None
                }
            };
            let text = match (url, part) {
                (Some(url), _) => url.to_string(),
                (None, PatternPart::Path(path)) => path.to_text(),
                (None, PatternPart::Directory(text) | PatternPart::Glob(text)) => text.to_string(),
            };
            lines.push_str(&text);
            lines.push('\n');
        }
        let comments: String = named
            .into_iter()
            .map(|i| format!("{ORIGIN_COMMENT}{} {}\n", self.configured[i].name, bases[i]))
            .collect();
        (comments + &lines).into_bytes()
    }

    /// A write another host applied, its globs renamed for this mount: a
    /// glob whose first name is an origin the writer named by its URL
    /// (see [`Origins::portable_lines`]) gets the name this mount gives
    /// that URL, or goes when this mount has no such origin.
    fn localize<'a>(&self, input: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Ok(text) = std::str::from_utf8(input) else {
            return input.into();
        };
        let writer: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix(ORIGIN_COMMENT)?.split_once(' '))
            .collect();
        if writer.is_empty() {
            return input.into();
        }
        let bases = self.bases();
        let mut lines = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            let named = writer
                .iter()
                .find(|(name, _)| trimmed.starts_with('/') && first_name(trimmed) == *name);
            let Some((name, base)) = named else {
                lines.push_str(line);
                lines.push('\n');
                continue;
            };
            let here = self
                .configured
                .iter()
                .zip(&bases)
                .find(|(_, known)| known.as_str() == base.trim());
            if let Some((origin, _)) = here {
                let rest = &trimmed.trim_start_matches('/')[name.len()..];
                lines.push_str(&format!("/{}{rest}\n", origin.name));
            }
        }
        lines.into_bytes().into()
    }

    fn origin_bases<'a>(&'a self, bases: &'a [Url]) -> Vec<OriginBase<'a>> {
        self.configured
            .iter()
            .zip(bases)
            .map(|(origin, base)| OriginBase {
                name: &origin.name,
                base,
            })
            .collect()
    }

    fn bases(&self) -> Vec<Url> {
        self.configured
            .iter()
            .map(|o| namespace::base_dir_url(&o.url))
            .collect()
    }

    /// The URLs, stored or downloading, that the patterns' scopes hold.
    fn candidate_urls(
        &self,
        patterns: &PatternSet,
        cache: &Cache,
    ) -> Result<BTreeSet<String>, CacheError> {
        let mut urls = BTreeSet::new();
        for scope in patterns.scan_scopes() {
            match scope {
                ScanScope::Path(path) => {
                    let url = self.location_of(&path).and_then(|l| l.file_url().ok());
                    if let Some(url) = url
                        && cache.knows_url(url.as_str())?
                    {
                        urls.insert(url.to_string());
                    }
                }
                ScanScope::Below(prefix) => {
                    for url_prefix in self.url_prefixes(&prefix) {
                        urls.extend(cache.urls_below(&url_prefix)?);
                    }
                }
            }
        }
        Ok(urls)
    }

    /// The URL prefixes under which every URL reachable below the mount
    /// directory `mount_prefix` (ending in '/') lies.
    fn url_prefixes(&self, mount_prefix: &str) -> Vec<String> {
        let schemes = ["http", "https"];
        if mount_prefix == "/" {
            let mut prefixes: Vec<String> = self.bases().iter().map(Url::to_string).collect();
            if self.any_host {
                prefixes.extend(schemes.iter().map(|s| format!("{s}://")));
            }
            return prefixes;
        }
        let top = mount_prefix.trim_matches('/');
        if self.any_host && schemes.contains(&top) {
            return vec![format!("{top}://")];
        }
        self.location_of(&MountPath::from_text(mount_prefix))
            .and_then(|loc| loc.dir_url().ok())
            .map(|url| vec![url.to_string()])
            .unwrap_or_default()
    }

    /// The mount paths at which `url` appears: under each origin whose base
    /// holds it, then under the any-host tree.
    fn mount_paths(&self, url: &Url, bases: &[Url]) -> Vec<MountPath> {
        let mut paths = Vec::new();
        for (origin, base) in self.configured.iter().zip(bases) {
            if let Some(components) = namespace::relative_components(base, url) {
                paths.push(MountPath::new(&origin.name, &components));
            }
        }
        if self.any_host
            && let Some(host) = url.host_str()
        {
            let host_port = match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            let base = namespace::any_host_base(url.scheme(), host_port.as_bytes());
            if let Some(components) = base
                .ok()
                .and_then(|base| namespace::relative_components(&base, url))
            {
                paths.push(MountPath::new(
                    &format!("{}/{host_port}", url.scheme()),
                    &components,
                ));
            }
        }
        paths
    }

    /// The location of a mount path (`/origin/a/b`, `/https/host/a`), if it names one.
    pub fn location_of(&self, path: &MountPath) -> Option<Location> {
        let mut names = path.0.iter();
        let first = std::str::from_utf8(names.next()?).ok()?;
        let mut loc = match self.configured.iter().find(|o| o.name == first) {
            Some(origin) => Location::root(Arc::clone(origin)),
            None if self.any_host && matches!(first, "http" | "https") => {
                let host = names.next()?;
                let base = namespace::any_host_base(first, host).ok()?;
                let host = String::from_utf8_lossy(host);
                Location::root(Arc::new(Origin::with_defaults(
                    format!("{first}/{host}"),
                    base,
                )))
            }
            None => return None,
        };
        for name in names {
            loc = loc.child(name).ok()?;
        }
        Some(loc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(any_host: bool) -> Origins {
        let origin = |name: &str, url: &str| {
            Arc::new(Origin::with_defaults(
                name.to_string(),
                Url::parse(url).unwrap(),
            ))
        };
        Origins {
            configured: vec![
                origin("pypi", "https://files.example.org/pypi"),
                origin("rel", "https://downloads.example.org/"),
            ],
            any_host,
        }
    }

    #[test]
    fn a_write_travels_to_the_fleet_as_urls_where_it_names_one() {
        let origins = origins(false);
        let bases = origins.bases();
        let write = PatternSet::parse(
            b"/pypi/packages/a b.whl\n# a comment\n/rel/v1.2/\n/pypi/**/*.whl\n/\n\
              https://downloads.example.org/x.tar\n",
            &origins.origin_bases(&bases),
            false,
        )
        .unwrap();
        let portable = origins.portable_lines(&write, &bases);
        assert_eq!(
            String::from_utf8(portable.clone()).unwrap(),
            "# origin pypi https://files.example.org/pypi/\n\
             https://files.example.org/pypi/packages/a%20b.whl\n\
             https://downloads.example.org/v1.2/\n\
             /pypi/**/*.whl\n\
             /\n\
             https://downloads.example.org/x.tar\n"
        );

        // A host that calls the pypi origin "py", and has no "rel".
        let elsewhere = Origins {
            configured: vec![Arc::new(Origin::with_defaults(
                "py".to_string(),
                Url::parse("https://files.example.org/pypi").unwrap(),
            ))],
            any_host: false,
        };
        let here = elsewhere.localize(&portable);
        let text = std::str::from_utf8(&here).unwrap();
        assert!(text.contains("\n/py/**/*.whl\n"), "{text}");
        assert!(!text.contains("/pypi/**"), "{text}");
        let bases = elsewhere.bases();
        let patterns = PatternSet::parse_from_fleet(&here, &elsewhere.origin_bases(&bases), false)
            .unwrap()
            .unwrap();
        assert!(patterns.matches("/py/packages/a b.whl"));
        assert!(patterns.matches("/py/x/y.whl"));
        // A glob naming an origin this host lacks goes.
        let lines = b"# origin rel https://downloads.example.org/\n/rel/*.tar\n/py/a\n";
        assert_eq!(
            std::str::from_utf8(&elsewhere.localize(lines)).unwrap(),
            "# origin rel https://downloads.example.org/\n/py/a\n"
        );
    }

    #[test]
    fn a_directory_scope_reads_one_origin_range() {
        let origins = origins(false);
        assert_eq!(
            origins.url_prefixes("/pypi/packages/a b/"),
            ["https://files.example.org/pypi/packages/a%20b/"]
        );
        assert_eq!(
            origins.url_prefixes("/rel/"),
            ["https://downloads.example.org/"]
        );
        assert!(origins.url_prefixes("/unknown/").is_empty());
    }

    #[test]
    fn the_root_scope_reads_each_origin_and_the_any_host_trees() {
        assert_eq!(
            origins(false).url_prefixes("/"),
            [
                "https://files.example.org/pypi/",
                "https://downloads.example.org/"
            ]
        );
        let with_any_host = origins(true);
        assert_eq!(with_any_host.url_prefixes("/").len(), 4);
        assert_eq!(with_any_host.url_prefixes("/https/"), ["https://"]);
        assert_eq!(
            with_any_host.url_prefixes("/https/mirror.example.org:8443/a/"),
            ["https://mirror.example.org:8443/a/"]
        );
        assert!(origins(false).url_prefixes("/https/").is_empty());
    }

    #[test]
    fn a_url_appears_under_every_origin_that_holds_it() {
        let origins = Origins {
            configured: vec![
                Arc::new(Origin::with_defaults(
                    "all".into(),
                    Url::parse("https://downloads.example.org/").unwrap(),
                )),
                Arc::new(Origin::with_defaults(
                    "v1".into(),
                    Url::parse("https://downloads.example.org/v1/").unwrap(),
                )),
            ],
            any_host: true,
        };
        let url = Url::parse("https://downloads.example.org/v1/tool.tar.gz").unwrap();
        assert_eq!(
            origins
                .mount_paths(&url, &origins.bases())
                .iter()
                .map(MountPath::to_text)
                .collect::<Vec<_>>(),
            [
                "/all/v1/tool.tar.gz",
                "/v1/tool.tar.gz",
                "/https/downloads.example.org/v1/tool.tar.gz"
            ]
        );
    }

    #[test]
    fn bad_input_is_told_apart_from_a_failing_cache() {
        assert!(CommandError::Pattern(PatternError::Empty).is_bad_input());
        assert!(CommandError::NotACommand("stats").is_bad_input());
        let disk = CommandError::Cache(CacheError::Io(std::io::Error::from_raw_os_error(
            libc::ENOSPC,
        )));
        assert!(!disk.is_bad_input());
    }
}
