//! A place in an origin's URL space, as the filesystem walks it.

use std::sync::Arc;

use url::Url;

use crate::config::Origin;
use crate::namespace::{self, NamespaceError};

/// An origin and the path components below its base URL.
#[derive(Debug, Clone)]
pub struct Location {
    pub origin: Arc<Origin>,
    /// The origin's base URL, ending in '/'; shared by every location of
    /// the origin (a million remembered paths need not hold a million).
    pub base: Arc<Url>,
    pub components: Vec<Vec<u8>>,
}

impl Location {
    /// The top of an origin's tree.
    pub fn root(origin: Arc<Origin>) -> Location {
        let base = Arc::new(namespace::base_dir_url(&origin.url));
        Location {
            origin,
            base,
            components: Vec::new(),
        }
    }

    /// The location one name further down; refuses names that would leave the origin.
    pub fn child(&self, name: &[u8]) -> Result<Location, NamespaceError> {
        let mut components = self.components.clone();
        components.push(name.to_vec());
        let refs: Vec<&[u8]> = components.iter().map(Vec::as_slice).collect();
        namespace::child_url(&self.base, &refs, false)?;
        Ok(Location {
            origin: Arc::clone(&self.origin),
            base: Arc::clone(&self.base),
            components,
        })
    }

    /// The URL of this location as a file.
    pub fn file_url(&self) -> Result<Url, NamespaceError> {
        self.url(false)
    }

    /// The URL of this location as a directory (ending in '/').
    pub fn dir_url(&self) -> Result<Url, NamespaceError> {
        if self.components.is_empty() {
            return Ok(Url::clone(&self.base));
        }
        self.url(true)
    }

    /// The parent directory's URL and this location's name, unless this is the root.
    pub fn parent_and_name(&self) -> Option<(Location, &[u8])> {
        let (name, parents) = self.components.split_last()?;
        let parent = Location {
            origin: Arc::clone(&self.origin),
            base: Arc::clone(&self.base),
            components: parents.to_vec(),
        };
        Some((parent, name.as_slice()))
    }

    fn url(&self, dir: bool) -> Result<Url, NamespaceError> {
        let refs: Vec<&[u8]> = self.components.iter().map(Vec::as_slice).collect();
        namespace::child_url(&self.base, &refs, dir)
    }
}
