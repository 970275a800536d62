//! Writes to `invalidate`, `evict` and `prefetch`: patterns in, cache actions out.
//!
//! A write is parsed whole before anything happens, so a malformed line
//! changes nothing. Patterns are matched against the mount paths of the
//! cached URLs (a URL can appear under several origins, and under the
//! any-host tree), in the same order the parser maps URLs to paths.

use std::sync::Arc;

use url::Url;

use super::ControlFile;
use super::pattern::{OriginBase, PatternError, PatternSet};
use crate::cache::{Cache, CacheError, Location};
use crate::config::Origin;
use crate::namespace;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("{0} takes writes only of invalidate, evict or prefetch")]
    NotACommand(&'static str),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What a write did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Mount paths whose entries changed: the kernel must forget them.
    pub changed_paths: Vec<String>,
    /// Locations to fetch in the background.
    pub prefetch: Vec<Location>,
}

/// The origins a pattern can name.
pub struct Origins<'a> {
    pub configured: &'a [Arc<Origin>],
    pub any_host: bool,
}

impl Origins<'_> {
    /// Parses and applies one write to a command file.
    pub fn apply(
        &self,
        file: ControlFile,
        input: &[u8],
        cache: &Cache,
    ) -> Result<Applied, CommandError> {
        let bases: Vec<Url> = self
            .configured
            .iter()
            .map(|o| namespace::base_dir_url(&o.url))
            .collect();
        let origin_bases: Vec<OriginBase<'_>> = self
            .configured
            .iter()
            .zip(&bases)
            .map(|(origin, base)| OriginBase {
                name: &origin.name,
                base,
            })
            .collect();
        let patterns = PatternSet::parse(input, &origin_bases, self.any_host)?;
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
                for url in cache.cached_urls()? {
                    let Ok(parsed) = Url::parse(&url) else {
                        continue;
                    };
                    let paths: Vec<String> = self
                        .mount_paths(&parsed, &bases)
                        .into_iter()
                        .filter(|p| patterns.matches(p))
                        .collect();
                    if paths.is_empty() {
                        continue;
                    }
                    if file == ControlFile::Invalidate {
                        cache.invalidate(&url)?;
                    } else {
                        cache.evict(&url)?;
                    }
                    applied.changed_paths.extend(paths);
                }
            }
            other => return Err(CommandError::NotACommand(other.name())),
        }
        Ok(applied)
    }

    /// The mount paths at which `url` appears: under each origin whose base
    /// holds it, then under the any-host tree.
    fn mount_paths(&self, url: &Url, bases: &[Url]) -> Vec<String> {
        let mut paths = Vec::new();
        for (origin, base) in self.configured.iter().zip(bases) {
            if let Some(components) = namespace::relative_components(base, url) {
                paths.push(join_path(&origin.name, &components));
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
                paths.push(join_path(
                    &format!("{}/{host_port}", url.scheme()),
                    &components,
                ));
            }
        }
        paths
    }

    /// The location of a mount path (`/origin/a/b`, `/https/host/a`), if it names one.
    pub fn location_of(&self, path: &str) -> Option<Location> {
        let mut names = path
            .trim_start_matches('/')
            .split('/')
            .filter(|n| !n.is_empty());
        let first = names.next()?;
        let mut loc = match self.configured.iter().find(|o| o.name == first) {
            Some(origin) => Location::root(Arc::clone(origin)),
            None if self.any_host && matches!(first, "http" | "https") => {
                let host = names.next()?;
                let base = namespace::any_host_base(first, host.as_bytes()).ok()?;
                Location::root(Arc::new(Origin::with_defaults(
                    format!("{first}/{host}"),
                    base,
                )))
            }
            None => return None,
        };
        for name in names {
            loc = loc.child(name.as_bytes()).ok()?;
        }
        Some(loc)
    }
}

fn join_path(top: &str, components: &[Vec<u8>]) -> String {
    let mut path = format!("/{top}");
    for component in components {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(component));
    }
    path
}
