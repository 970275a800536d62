//! Settings, read once from the TOML file and the command line, then validated.
//!
//! Everything the rest of the daemon sees is already checked: origin names are
//! unique and usable as directory names, URLs are http(s), durations and sizes
//! are parsed. Flags override the file. Proxies come from the origin's
//! `proxy` key or from the environment ([`proxy`]).

mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use proxy::{OriginProxy, Proxy, ProxyEnv};

/// How long a response without any freshness information stays fresh, unless configured.
pub const DEFAULT_TTL: Duration = Duration::ZERO;
/// How long a 404 or 410 without freshness information is remembered.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long one read may wait for an origin to answer: connect and response
/// headers of every request it needs, together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest a body may come, in bytes per second over a 10 s window.
pub const DEFAULT_MIN_RATE: u64 = 16 * 1024;
/// Prefetches of one origin that run at once.
pub const DEFAULT_PREFETCH_CONCURRENCY: usize = 4;
/// Time allowed to open a connection to an origin.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Names that cannot be origins: they are taken by the mount's own tree.
const RESERVED_NAMES: &[&str] = &[".fetchfs", "http", "https"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--origin {0:?}: expected NAME=URL")]
    OriginSyntax(String),
    #[error("origin {name:?}: {message}")]
    Origin { name: String, message: String },
    #[error("origin name {0:?} is given twice")]
    OriginClash(String),
    #[error("environment variable {variable}={value:?}: {message}")]
    ProxyVariable {
        variable: &'static str,
        value: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// How directories below an origin are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListingMode {
    /// Trailing-slash redirects and HTML/JSON autoindex listings.
    #[default]
    Auto,
    /// No listings: a name that is not a file is a virtual directory.
    None,
}

/// What an origin's bodies the fleet tier may share (`share` in its table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ShareMode {
    /// What a shared cache may store by RFC 9111 (no `private`, nothing
    /// fetched with credentials unless `public`, `s-maxage` or
    /// `must-revalidate` says so).
    #[default]
    Auto,
    /// Everything this host may store: every host holds the same credentials.
    Fleet,
    /// Nothing: each host asks the origin itself.
    Never,
}

/// The fleet tier: `[shared]` in the config file.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    /// `redis://host:port/db` or `rediss://…`, without a password.
    pub url: String,
    pub user: Option<String>,
    /// Read from `password_file`, never from the URL (which ends up in logs).
    pub password: Option<String>,
    /// The CA certificates (PEM) a `rediss://` server's certificate must
    /// chain to, from `ca_file`; without it, the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The prefix of every key (`fetchfs:v1`).
    pub namespace: String,
    /// A read-only user: looks up and reads, never publishes.
    pub read_only: bool,
    /// Bodies larger than this stay local-only.
    pub max_object_size: u64,
    pub connect_timeout: Duration,
    /// The deadline of a small request (a record, a manifest).
    pub op_timeout: Duration,
    /// The deadline of one chunk.
    pub chunk_timeout: Duration,
}

impl SharedConfig {
    /// Where and as whom to connect.
    pub fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo;
        let info = self.url.as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.user {
            settings = settings.set_username(user.clone());
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.clone());
        }
        Ok(info.set_redis_settings(settings))
    }
}

/// One named origin, validated.
#[derive(Debug, Clone)]
pub struct Origin {
    pub name: String,
    /// The origin's URL; may carry a base path.
    pub url: Url,
    pub default_ttl: Duration,
    /// Responses are fresh at least this long (unless they demand revalidation).
    pub min_ttl: Duration,
    /// Responses are fresh at most this long.
    pub max_ttl: Option<Duration>,
    pub negative_ttl: Duration,
    pub listing: ListingMode,
    /// How long one read may wait for the origin to answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// A body slower than this (bytes per second, over 10 s) fails; 0: no minimum.
    pub min_rate: u64,
    /// Prefetches of this origin that run at once; the rest wait their turn.
    pub prefetch_concurrency: usize,
    /// With `--allow-other`, whether other users may read what this origin
    /// served privately (`Cache-Control: private`, or with its configured
    /// credentials). Off by default: only the mount's owner and root may.
    pub share_private: bool,
    /// Extra request headers, sent only to this origin's host.
    pub headers: Vec<(String, String)>,
    /// The proxy its requests go through.
    pub proxy: OriginProxy,
    /// What of it the fleet tier shares.
    pub share: ShareMode,
}

impl Origin {
    /// Whether what this origin serves with its credentials, or marks
    /// private, is kept from other users of an `--allow-other` mount.
    pub fn keeps_private(&self) -> bool {
        !self.share_private
    }

    /// Whether requests to this origin carry credentials of its own.
    pub fn has_credentials(&self) -> bool {
        !self.headers.is_empty()
    }

    /// An origin with default settings: from `--origin`, or a host of the `--any-host` tree.
    pub fn with_defaults(name: String, url: Url) -> Origin {
        Origin {
            name,
            url,
            default_ttl: DEFAULT_TTL,
            min_ttl: Duration::ZERO,
            max_ttl: None,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            listing: ListingMode::Auto,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            min_rate: DEFAULT_MIN_RATE,
            prefetch_concurrency: DEFAULT_PREFETCH_CONCURRENCY,
            share_private: false,
            headers: Vec::new(),
            proxy: OriginProxy::Environment,
            share: ShareMode::Auto,
        }
    }
}

/// The validated settings of one mount.
#[derive(Debug, Clone)]
pub struct Config {
    pub cache_dir: PathBuf,
    pub origins: Vec<Origin>,
    pub any_host: bool,
    pub max_cache_size: Option<u64>,
    pub offline: bool,
    pub allow_other: bool,
    /// Let the kernel read stored bodies from their blob files itself.
    pub passthrough: bool,
    /// Mount read-only (`ro`): commands come through the control socket.
    pub read_only: bool,
    /// The proxy environment variables, for the origins without a `proxy` key.
    pub proxy_env: ProxyEnv,
    /// Where to serve `GET /metrics` over HTTP, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The fleet tier, if `[shared]` names one.
    pub shared: Option<SharedConfig>,
}

/// What the command line says, before it is merged with the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// `NAME=URL` strings, as typed.
    pub origins: Vec<String>,
    pub any_host: bool,
    pub max_cache_size: Option<String>,
    pub offline: bool,
    pub allow_other: bool,
    pub no_passthrough: bool,
    pub read_only: bool,
    /// `IP:PORT`, as typed.
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    any_host: bool,
    max_cache_size: Option<String>,
    #[serde(default)]
    offline: bool,
    #[serde(default)]
    allow_other: bool,
    passthrough: Option<bool>,
    metrics_addr: Option<String>,
    #[serde(default)]
    read_only: bool,
    shared: Option<FileShared>,
    #[serde(default)]
    origins: BTreeMap<String, FileOrigin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShared {
    url: String,
    user: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    namespace: Option<String>,
    mode: Option<String>,
    max_object_size: Option<String>,
    connect_timeout: Option<String>,
    op_timeout: Option<String>,
    chunk_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOrigin {
    url: String,
    default_ttl: Option<String>,
    min_ttl: Option<String>,
    max_ttl: Option<String>,
    negative_ttl: Option<String>,
    #[serde(default)]
    listing: ListingMode,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    min_rate: Option<String>,
    prefetch_concurrency: Option<usize>,
    #[serde(default)]
    share_private: bool,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    proxy: Option<String>,
    #[serde(default)]
    share: ShareMode,
}

impl Config {
    /// Reads the config file (if any), applies the flags on top and validates the result.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut origins = Vec::new();
        for (name, origin) in file.origins {
            origins.push(origin_from_file(name, origin)?);
        }
        let from_file = origins.len();
        for spec in &overrides.origins {
            let (name, url) = spec
                .split_once('=')
                .ok_or_else(|| ConfigError::OriginSyntax(spec.clone()))?;
            let url = parse_origin_url(name, url)?;
            // A flag overrides the URL of the file's origin of the same name and keeps its
            // other settings; two flags with one name are a clash.
            match origins.iter().position(|o| o.name == name) {
                Some(i) if i >= from_file => {
                    return Err(ConfigError::OriginClash(name.to_string()));
                }
                Some(i) => origins[i].url = url,
                None => origins.push(Origin::with_defaults(name.to_string(), url)),
            }
        }
        check_origin_names(&origins)?;
        let any_host = overrides.any_host || file.any_host;
        if origins.is_empty() && !any_host {
            return Err(ConfigError::Invalid(
                "no origin configured: pass --origin NAME=URL, a config file with [origins.NAME], or --any-host".into(),
            ));
        }
        let max_cache_size = flag_or_file(&overrides.max_cache_size, &file.max_cache_size)
            .map(parse_size)
            .transpose()?;
        // Only when some origin reads them: a variable meant for other
        // programs must not stop a mount that never uses it.
        let proxy_env = if any_host || origins.iter().any(|o| o.proxy == OriginProxy::Environment) {
            ProxyEnv::from_process()?
        } else {
            ProxyEnv::default()
        };
        let metrics_addr = flag_or_file(&overrides.metrics_addr, &file.metrics_addr)
            .map(parse_metrics_addr)
            .transpose()?;
        let cache_dir = overrides
            .cache_dir
            .clone()
            .or(file.cache_dir)
            .unwrap_or_else(default_cache_dir);
        // Absolute, so the daemon's log, `fetchfs status` and the lock all
        // name it the same way whatever directory they run in.
        let cache_dir = std::path::absolute(&cache_dir).map_err(|error| {
            ConfigError::Invalid(format!("cache dir {}: {error}", cache_dir.display()))
        })?;
        Ok(Config {
            cache_dir,
            origins,
            any_host,
            max_cache_size,
            offline: overrides.offline || file.offline,
            allow_other: overrides.allow_other || file.allow_other,
            passthrough: !overrides.no_passthrough && file.passthrough.unwrap_or(true),
            read_only: overrides.read_only || file.read_only,
            proxy_env,
            metrics_addr,
            shared: file.shared.map(shared_from_file).transpose()?,
        })
    }
}

/// A setting's text: the flag's, else the file's.
fn flag_or_file<'a>(flag: &'a Option<String>, file: &'a Option<String>) -> Option<&'a str> {
    flag.as_deref().or(file.as_deref())
}

/// `$XDG_CACHE_HOME/fetchfs`, else `~/.cache/fetchfs`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("fetchfs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("fetchfs")
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// Bodies above this stay local-only unless `max_object_size` says otherwise.
const DEFAULT_MAX_OBJECT_SIZE: u64 = 1 << 30;

fn shared_from_file(file: FileShared) -> Result<SharedConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid(format!("[shared] {message}"));
    let url =
        url::Url::parse(&file.url).map_err(|e| invalid(format!("url = {:?}: {e}", file.url)))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(invalid(format!(
            "url = {:?}: expected redis:// or rediss://",
            file.url
        )));
    }
    if url.password().is_some() {
        return Err(invalid(
            "url: put the password in password_file, not in the URL (URLs end up in logs)".into(),
        ));
    }
    let password = match &file.password_file {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("password_file {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    };
    let ca_pem = match &file.ca_file {
        None => None,
        Some(path) => Some(
            std::fs::read(path).map_err(|e| invalid(format!("ca_file {}: {e}", path.display())))?,
        ),
    };
    let read_only = match file.mode.as_deref() {
        None | Some("read-write") => false,
        Some("read-only") => true,
        Some(other) => {
            return Err(invalid(format!(
                "mode = {other:?}: expected \"read-write\" or \"read-only\""
            )));
        }
    };
    let duration = |field: &str, value: &Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => match humantime::parse_duration(text) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(invalid(format!("{field} must be longer than 0s"))),
            Err(e) => Err(invalid(format!("{field} = {text:?}: {e}"))),
        },
    };
    Ok(SharedConfig {
        url: file.url.clone(),
        user: file.user,
        password,
        ca_pem,
        namespace: file.namespace.unwrap_or_else(|| "fetchfs:v1".into()),
        read_only,
        max_object_size: file
            .max_object_size
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or(DEFAULT_MAX_OBJECT_SIZE),
        connect_timeout: duration(
            "connect_timeout",
            &file.connect_timeout,
            Duration::from_millis(250),
        )?,
        op_timeout: duration("op_timeout", &file.op_timeout, Duration::from_millis(250))?,
        chunk_timeout: duration("chunk_timeout", &file.chunk_timeout, Duration::from_secs(2))?,
    })
}

fn origin_from_file(name: String, file: FileOrigin) -> Result<Origin, ConfigError> {
    let duration = |field: &str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text).map_err(|e| ConfigError::Origin {
            name: name.clone(),
            message: format!("{field} = {text:?}: {e}"),
        }),
    };
    let positive = |field: &str, value: Option<String>, default: Duration| {
        let duration = duration(field, value, default)?;
        if duration.is_zero() {
            return Err(ConfigError::Origin {
                name: name.clone(),
                message: format!("{field} must be longer than 0s"),
            });
        }
        Ok(duration)
    };
    let min_rate = match &file.min_rate {
        None => DEFAULT_MIN_RATE,
        Some(text) => parse_rate(text).map_err(|message| ConfigError::Origin {
            name: name.clone(),
            message: format!("min_rate = {text:?}: {message}"),
        })?,
    };
    let url = parse_origin_url(&name, &file.url)?;
    let proxy = match &file.proxy {
        None => OriginProxy::Environment,
        Some(text) => OriginProxy::parse(text).map_err(|message| ConfigError::Origin {
            name: name.clone(),
            message: format!("proxy = {text:?}: {message}"),
        })?,
    };
    let mut headers = Vec::new();
    for (key, value) in file.headers {
        let valid = reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(&value).is_ok();
        if !valid {
            return Err(ConfigError::Origin {
                name,
                message: format!("header {key:?} is not a valid HTTP header"),
            });
        }
        headers.push((key, value));
    }
    Ok(Origin {
        default_ttl: duration("default_ttl", file.default_ttl, DEFAULT_TTL)?,
        min_ttl: duration("min_ttl", file.min_ttl, Duration::ZERO)?,
        max_ttl: match file.max_ttl {
            Some(text) => Some(duration("max_ttl", Some(text), Duration::ZERO)?),
            None => None,
        },
        negative_ttl: duration("negative_ttl", file.negative_ttl, DEFAULT_NEGATIVE_TTL)?,
        timeout: positive("timeout", file.timeout, DEFAULT_TIMEOUT)?,
        connect_timeout: positive(
            "connect_timeout",
            file.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        min_rate,
        prefetch_concurrency: match file.prefetch_concurrency {
            None => DEFAULT_PREFETCH_CONCURRENCY,
            Some(0) => {
                return Err(ConfigError::Origin {
                    name,
                    message: "prefetch_concurrency must be at least 1".into(),
                });
            }
            Some(n) => n,
        },
        share_private: file.share_private,
        listing: file.listing,
        headers,
        proxy,
        share: file.share,
        url,
        name,
    })
}

fn parse_origin_url(name: &str, text: &str) -> Result<Url, ConfigError> {
    let bad = |message: String| ConfigError::Origin {
        name: name.to_string(),
        message,
    };
    let url = Url::parse(text).map_err(|e| bad(format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "{text:?}: only http and https URLs are supported"
        )));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(format!(
            "{text:?}: expected scheme://host[:port][/base/path]"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "put credentials in [origins.NAME.headers], not in the URL".into(),
        ));
    }
    Ok(url)
}

fn check_origin_names(origins: &[Origin]) -> Result<(), ConfigError> {
    for (i, origin) in origins.iter().enumerate() {
        let name = origin.name.as_str();
        let usable = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\0'])
            && !RESERVED_NAMES.contains(&name);
        if !usable {
            return Err(ConfigError::Origin {
                name: name.to_string(),
                message: format!("not a usable directory name (reserved: {RESERVED_NAMES:?})"),
            });
        }
        if origins[..i].iter().any(|o| o.name == name) {
            return Err(ConfigError::OriginClash(name.to_string()));
        }
    }
    Ok(())
}

/// Parses a rate, "16KiB/s", "1 MB/s" or "0" (no minimum), into bytes per second.
fn parse_rate(text: &str) -> Result<u64, String> {
    let size = text.trim();
    let size = size.strip_suffix("/s").unwrap_or(size);
    size.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("{e}; expected a size per second, such as \"16KiB/s\""))
}

/// Parses `--metrics-addr`: an IP address and a port, `127.0.0.1:9184` or
/// `[::1]:9184`. Names are not resolved: where the daemon listens is
/// decided here, once, not by a resolver later.
fn parse_metrics_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "metrics address {text:?}: expected IP:PORT, such as 127.0.0.1:9184"
        ))
    })
}

/// Parses "20 GiB", "500MB", "1048576".
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| ConfigError::Invalid(format!("size {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(origins: &[&str]) -> Overrides {
        Overrides {
            origins: origins.iter().map(|s| s.to_string()).collect(),
            cache_dir: Some("/tmp/x".into()),
            ..Overrides::default()
        }
    }

    #[test]
    fn origin_flag_parses() {
        let config = Config::load(&overrides(&["pypi=https://files.example.org/base"])).unwrap();
        assert_eq!(config.origins[0].name, "pypi");
        assert_eq!(config.origins[0].url.path(), "/base");
    }

    #[test]
    fn origin_clash_is_refused() {
        let err = Config::load(&overrides(&["a=http://h/", "a=http://g/"])).unwrap_err();
        assert!(matches!(err, ConfigError::OriginClash(_)), "{err}");
    }

    #[test]
    fn reserved_and_bad_names_are_refused() {
        for spec in [
            ".fetchfs=http://h/",
            "https=http://h/",
            "a/b=http://h/",
            "=http://h/",
        ] {
            assert!(Config::load(&overrides(&[spec])).is_err(), "{spec}");
        }
        assert!(Config::load(&overrides(&["a=ftp://h/"])).is_err());
        assert!(Config::load(&overrides(&["a"])).is_err());
        assert!(Config::load(&overrides(&[])).is_err());
    }

    /// Loads the config file `text` (as `c.toml`) with `flags` on top.
    fn load_file(text: &str, mut flags: Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        flags.config_file = Some(path);
        Config::load(&flags)
    }

    #[test]
    fn file_settings_and_flag_override() {
        let config = load_file(
            "max_cache_size = \"1 MiB\"\n[origins.o]\nurl = \"http://h/a\"\ndefault_ttl = \"1h\"\nlisting = \"none\"\n[origins.o.headers]\nAuthorization = \"Bearer x\"\n",
            overrides(&["o=http://g/b"]),
        )
        .unwrap();
        let origin = &config.origins[0];
        assert_eq!(origin.url.as_str(), "http://g/b");
        assert_eq!(origin.default_ttl, Duration::from_secs(3600));
        assert_eq!(origin.listing, ListingMode::None);
        assert_eq!(
            origin.headers,
            vec![("Authorization".into(), "Bearer x".into())]
        );
        assert_eq!(config.max_cache_size, Some(1024 * 1024));
    }

    /// Loads a config file with one origin `o` that has `setting`.
    fn load_origin_with(setting: &str) -> Result<Config, ConfigError> {
        load_file(
            &format!("[origins.o]\nurl = \"http://h/\"\n{setting}\n"),
            overrides(&[]),
        )
    }

    #[test]
    fn rates_and_zero_timeouts() {
        assert_eq!(parse_rate("16KiB/s"), Ok(16 * 1024));
        assert_eq!(parse_rate(" 1 MB/s "), Ok(1_000_000));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("fast").is_err());
        for (setting, ok) in [
            ("timeout = \"0s\"", false),
            ("connect_timeout = \"0s\"", false),
            ("min_rate = \"1 KiB/s\"", true),
            ("min_rate = \"slow\"", false),
        ] {
            assert_eq!(load_origin_with(setting).is_ok(), ok, "{setting}");
        }
    }

    #[test]
    fn the_proxy_key_is_checked_at_load() {
        let load = |proxy: &str| {
            load_origin_with(&format!("proxy = \"{proxy}\""))
                .map(|config| config.origins[0].proxy.clone())
        };
        assert_eq!(load("").unwrap(), OriginProxy::Direct);
        assert_eq!(
            load("http://squid:3128").unwrap(),
            OriginProxy::Via(Url::parse("http://squid:3128").unwrap())
        );
        let err = load("http//squid").unwrap_err().to_string();
        assert!(
            err.contains("origin \"o\"") && err.contains("proxy = \"http//squid\""),
            "{err}"
        );
    }

    #[test]
    fn metrics_addr_from_the_file_and_the_flag() {
        let with_flag = |flag: Option<&str>| {
            let flags = Overrides {
                metrics_addr: flag.map(String::from),
                ..overrides(&[])
            };
            load_file(
                "metrics_addr = \"127.0.0.1:9184\"\n[origins.o]\nurl = \"http://h/\"\n",
                flags,
            )
        };
        let addr = |text: &str| Some(text.parse::<SocketAddr>().unwrap());
        assert_eq!(
            with_flag(None).unwrap().metrics_addr,
            addr("127.0.0.1:9184")
        );
        assert_eq!(
            with_flag(Some("[::1]:9000")).unwrap().metrics_addr,
            addr("[::1]:9000")
        );
        for bad in ["localhost:9184", "127.0.0.1", ":9184", "127.0.0.1:99999"] {
            let err = with_flag(Some(bad)).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("IP:PORT"), "{bad}: {err}");
        }
        assert_eq!(
            Config::load(&overrides(&["o=http://h/"]))
                .unwrap()
                .metrics_addr,
            None
        );
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let err = load_file("[origins.o]\nurl = 3\n", overrides(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn a_shared_table_names_the_fleet_tier_and_bad_ones_are_refused() {
        let origins = "[origins.o]\nurl = \"http://h/\"\nshare = \"never\"\n";
        let config = load_file(
            &format!("[shared]\nurl = \"redis://10.0.0.5:6379/0\"\nmode = \"read-only\"\nmax_object_size = \"64 MiB\"\nop_timeout = \"100ms\"\n{origins}"),
            overrides(&[]),
        )
        .unwrap();
        let shared = config.shared.unwrap();
        assert_eq!(shared.namespace, "fetchfs:v1");
        assert!(shared.read_only);
        assert_eq!(shared.max_object_size, 64 << 20);
        assert_eq!(shared.op_timeout, Duration::from_millis(100));
        assert_eq!(shared.chunk_timeout, Duration::from_secs(2));
        assert_eq!(config.origins[0].share, ShareMode::Never);
        assert!(load_file(origins, overrides(&[])).unwrap().shared.is_none());

        for (table, said) in [
            ("url = \"http://h:6379\"", "redis://"),
            ("url = \"redis://:pw@h:6379\"", "password_file"),
            ("url = \"redis://h\"\nmode = \"sometimes\"", "read-only"),
            (
                "url = \"redis://h\"\nchunk_timeout = \"0s\"",
                "longer than 0s",
            ),
            (
                "url = \"redis://h\"\npassword_file = \"/no/such/file\"",
                "/no/such/file",
            ),
        ] {
            let err = load_file(&format!("[shared]\n{table}\n{origins}"), overrides(&[]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("[shared]") && err.contains(said),
                "{table}: {err}"
            );
        }
    }
}
