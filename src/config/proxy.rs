//! Proxy settings: an origin's `proxy` key and the proxy environment
//! variables, read and checked once at mount time. Which proxy one request
//! takes is decided in `origin::proxy`.
//!
//! The environment is read the way curl reads it, so that a site's proxy
//! settings mean to fetchfs what they mean to the curl next to it:
//! - `http_proxy` serves http:// URLs, `https_proxy` https:// URLs, and
//!   `all_proxy` either scheme whose own variable is unset.
//! - Each name is looked up in lower case first, then in upper case. curl
//!   never reads `HTTP_PROXY` (in a CGI script any client can set it,
//!   "httpoxy"); fetchfs is no CGI script and sites do set it, so it is read
//!   after `http_proxy`.
//! - An empty variable counts as unset, and a value without a scheme
//!   (`proxy.example.org:3128`) is an http:// proxy.
//! - `no_proxy` lists the hosts reached directly, with curl's rules.
//!   Loopback is not exempt by itself: like curl, fetchfs sends a request for
//!   127.0.0.1 or localhost through the proxy unless `no_proxy` names it.
//!
//! A value fetchfs cannot use (a SOCKS proxy, a URL with a path, garbage)
//! stops the mount with a message naming the variable: going direct instead
//! could go round a proxy the site requires.

use std::fmt;

use url::Url;

use super::ConfigError;

/// What an origin's `proxy` key says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OriginProxy {
    /// No `proxy` key: the proxy environment variables decide, request by request.
    #[default]
    Environment,
    /// `proxy = ""`: never a proxy, whatever the environment says.
    Direct,
    /// `proxy = "http://host:port"`: every request of the origin goes through it.
    Via(Url),
}

impl OriginProxy {
    /// The value of an origin's `proxy` key.
    pub fn parse(text: &str) -> Result<OriginProxy, String> {
        if text.trim().is_empty() {
            return Ok(OriginProxy::Direct);
        }
        parse_proxy_url(text).map(OriginProxy::Via)
    }
}

/// A proxy, and the setting that named it (for log lines and errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub url: Url,
    /// `http_proxy`, `HTTPS_PROXY`, `the origin's proxy key`, ...
    pub source: String,
}

impl fmt::Display for Proxy {
    /// The URL without its password, and where it came from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let url = url.as_str().trim_end_matches('/');
        write!(f, "the proxy {url} (set by {})", self.source)
    }
}

/// The proxy environment variables, as curl reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// The proxy for http:// URLs.
    pub http: Option<Proxy>,
    /// The proxy for https:// URLs.
    pub https: Option<Proxy>,
    /// `no_proxy`, as given: hosts, domains, IP addresses and networks
    /// reached directly, comma-separated; `*` for all.
    pub no_proxy: String,
}

impl ProxyEnv {
    /// The variables of this process.
    pub fn from_process() -> Result<ProxyEnv, ConfigError> {
        ProxyEnv::read(|name| std::env::var(name).ok())
    }

    /// The variables as `var` tells them (`None`: unset).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<ProxyEnv, ConfigError> {
        let first_set = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let proxy = |names| match first_set(names) {
            None => Ok(None),
            Some((variable, value)) => match parse_proxy_url(&value) {
                Ok(url) => Ok(Some(Proxy {
                    url,
                    source: variable.to_string(),
                })),
                Err(message) => Err(ConfigError::ProxyVariable {
                    variable,
                    value,
                    message,
                }),
            },
        };
        let http = proxy(["http_proxy", "HTTP_PROXY"])?;
        let https = proxy(["https_proxy", "HTTPS_PROXY"])?;
        let all = if http.is_none() || https.is_none() {
            proxy(["all_proxy", "ALL_PROXY"])?
        } else {
            None
        };
        Ok(ProxyEnv {
            http: http.or_else(|| all.clone()),
            https: https.or(all),
            no_proxy: first_set(["no_proxy", "NO_PROXY"])
                .map(|(_, list)| list)
                .unwrap_or_default(),
        })
    }

    /// The variables `vars` lists, for tests.
    #[cfg(test)]
    pub fn from_pairs(vars: &[(&str, &str)]) -> Result<ProxyEnv, ConfigError> {
        ProxyEnv::read(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Whether any proxy is set.
    pub fn is_set(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }
}

/// A proxy URL: `http://host:port` or `https://host:port`, with optional
/// `user:password@`; `host:port` means `http://host:port`.
pub fn parse_proxy_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| format!("not a proxy URL ({e}); expected http://HOST:PORT"))?;
    match url.scheme() {
        "http" | "https" => {}
        scheme if scheme.starts_with("socks") => {
            return Err(format!(
                "{scheme} proxies are not supported; use an HTTP proxy (http://HOST:PORT)"
            ));
        }
        scheme => {
            return Err(format!(
                "the scheme {scheme}: is not a proxy scheme; expected http://HOST:PORT"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty)
        || !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err("expected http://HOST:PORT, with no path, query or fragment".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<ProxyEnv, ConfigError> {
        ProxyEnv::from_pairs(vars)
    }

    fn source(proxy: &Option<Proxy>) -> Option<&str> {
        proxy.as_ref().map(|p| p.source.as_str())
    }

    #[test]
    fn lower_case_comes_first_as_in_curl() {
        let read = env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
            ("NO_PROXY", "upper.example"),
            ("no_proxy", "lower.example"),
        ])
        .unwrap();
        assert_eq!(source(&read.https), Some("https_proxy"));
        assert_eq!(read.https.unwrap().url.host_str(), Some("lower"));
        assert_eq!(read.no_proxy, "lower.example");
        assert_eq!(read.http, None);
    }

    #[test]
    fn upper_case_http_proxy_is_read_after_the_lower_case_one() {
        let read = env(&[("HTTP_PROXY", "http://squid:3128")]).unwrap();
        assert_eq!(source(&read.http), Some("HTTP_PROXY"));
        let read = env(&[("HTTP_PROXY", "http://a:1"), ("http_proxy", "http://b:1")]).unwrap();
        assert_eq!(source(&read.http), Some("http_proxy"));
    }

    #[test]
    fn all_proxy_fills_in_for_an_unset_scheme_only() {
        let read = env(&[
            ("ALL_PROXY", "http://all:1"),
            ("http_proxy", "http://web:1"),
        ])
        .unwrap();
        assert_eq!(source(&read.http), Some("http_proxy"));
        assert_eq!(source(&read.https), Some("ALL_PROXY"));
        // An unusable all_proxy that nothing needs is not an error.
        let read = env(&[
            ("all_proxy", "socks5://s:1080"),
            ("http_proxy", "http://web:1"),
            ("https_proxy", "http://web:1"),
        ]);
        assert!(read.is_ok(), "{read:?}");
    }

    #[test]
    fn empty_variables_are_unset() {
        let read = env(&[("http_proxy", ""), ("HTTP_PROXY", "http://upper:1")]).unwrap();
        assert_eq!(source(&read.http), Some("HTTP_PROXY"));
        assert_eq!(env(&[("https_proxy", " ")]).unwrap(), ProxyEnv::default());
        assert!(!ProxyEnv::default().is_set());
    }

    #[test]
    fn a_value_fetchfs_cannot_use_names_the_variable() {
        for value in [
            "socks5h://s:1080",
            "ftp://p:21",
            "http://p:1/path",
            "http://[::1",
        ] {
            let err = env(&[("HTTPS_PROXY", value)]).unwrap_err().to_string();
            assert!(
                err.contains("HTTPS_PROXY") && err.contains(value),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn proxy_urls() {
        let url = parse_proxy_url("squid.example.org:3128").unwrap();
        assert_eq!(url.as_str(), "http://squid.example.org:3128/");
        let url = parse_proxy_url(" https://u:p%40ss@squid:443/ ").unwrap();
        assert_eq!((url.scheme(), url.username()), ("https", "u"));
        assert!(parse_proxy_url("http://").is_err());
        assert!(parse_proxy_url("http://p:1?x").is_err());
        assert!(parse_proxy_url("http://p:99999").is_err());
        assert!(
            parse_proxy_url("socks5://p:1")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn the_proxy_key() {
        assert_eq!(OriginProxy::parse(""), Ok(OriginProxy::Direct));
        assert!(matches!(
            OriginProxy::parse("http://p:3128"),
            Ok(OriginProxy::Via(_))
        ));
        assert!(OriginProxy::parse("http://p:3128/x").is_err());
    }

    #[test]
    fn a_proxy_is_shown_without_its_password() {
        let proxy = Proxy {
            url: parse_proxy_url("http://user:secret@squid:3128").unwrap(),
            source: "http_proxy".into(),
        };
        assert_eq!(
            proxy.to_string(),
            "the proxy http://user:***@squid:3128 (set by http_proxy)"
        );
    }
}
