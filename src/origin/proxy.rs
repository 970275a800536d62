//! Which proxy, if any, one request goes through.
//!
//! An origin with a `proxy` key sends every request through that proxy,
//! redirects to other hosts included; one with `proxy = ""` never uses one.
//! Any other origin (and every `--any-host` host) follows the proxy
//! environment variables, read once at mount time (`config::proxy`): the
//! proxy of the URL's scheme, unless `no_proxy` names its host. `no_proxy`
//! is matched by hyper-util's matcher, the one reqwest uses, with curl's
//! rules: a name matches itself and its subdomains (`.example.org` and
//! `example.org` alike), an IP address or network (`10.0.0.0/8`) the
//! addresses in it, `*` every host; ports are not compared.
//!
//! The decision is made here and handed to reqwest, whose own reading of
//! the environment is switched off, so that one place decides and a failed
//! request's log line names the proxy it really went through.

use std::sync::Arc;

use hyper_util::client::proxy::matcher::Matcher;
use url::Url;

use crate::config::{Origin, OriginProxy, Proxy, ProxyEnv};

/// The proxies of one origin's requests.
#[derive(Clone)]
pub struct Proxies(Rule);

#[derive(Clone)]
enum Rule {
    Direct,
    All(Proxy),
    Environment {
        env: ProxyEnv,
        /// Tells the URLs `no_proxy` leaves to the scheme's proxy.
        matcher: Arc<Matcher>,
    },
}

impl Proxies {
    pub fn of(origin: &Origin, env: &ProxyEnv) -> Proxies {
        match &origin.proxy {
            OriginProxy::Direct => Proxies(Rule::Direct),
            OriginProxy::Via(url) => Proxies(Rule::All(Proxy {
                url: url.clone(),
                source: format!("the proxy key of origin {:?}", origin.name),
            })),
            OriginProxy::Environment => Proxies::from_env(env),
        }
    }

    /// The proxies the environment gives (those of `--any-host` hosts).
    pub fn from_env(env: &ProxyEnv) -> Proxies {
        if !env.is_set() {
            return Proxies(Rule::Direct);
        }
        let url_of = |proxy: &Option<Proxy>| {
            proxy
                .as_ref()
                .map(|p| p.url.to_string())
                .unwrap_or_default()
        };
        let matcher = Matcher::builder()
            .http(url_of(&env.http))
            .https(url_of(&env.https))
            .no(env.no_proxy.as_str())
            .build();
        Proxies(Rule::Environment {
            env: env.clone(),
            matcher: Arc::new(matcher),
        })
    }

    /// The proxy a request for `url` goes through; `None`: direct.
    pub fn for_url(&self, url: &Url) -> Option<&Proxy> {
        match &self.0 {
            Rule::Direct => None,
            Rule::All(proxy) => Some(proxy),
            Rule::Environment { env, matcher } => {
                let uri = url.as_str().parse::<http::Uri>().ok()?;
                matcher.intercept(&uri)?;
                match url.scheme() {
                    "https" => env.https.as_ref(),
                    _ => env.http.as_ref(),
                }
            }
        }
    }

    /// `builder` with these proxies, and none from reqwest's own reading
    /// of the environment.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if let Rule::Direct = self.0 {
            return builder.no_proxy();
        }
        let proxies = self.clone();
        builder.proxy(reqwest::Proxy::custom(move |url| {
            proxies.for_url(url).map(|proxy| proxy.url.clone())
        }))
    }

    /// One line for the log: where the origin's requests go.
    pub fn describe(&self) -> String {
        match &self.0 {
            Rule::Direct => "direct, no proxy".to_string(),
            Rule::All(proxy) => format!("through {proxy}"),
            Rule::Environment { env, .. } => {
                let scheme = |name: &str, proxy: &Option<Proxy>| match proxy {
                    Some(proxy) => format!("{name} through {proxy}"),
                    None => format!("{name} direct"),
                };
                let mut text = format!(
                    "{}, {}",
                    scheme("http://", &env.http),
                    scheme("https://", &env.https)
                );
                if !env.no_proxy.trim().is_empty() {
                    text.push_str(&format!("; direct to no_proxy {:?}", env.no_proxy));
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(proxy: OriginProxy) -> Origin {
        let mut origin = Origin::with_defaults("o".into(), Url::parse("http://h/").unwrap());
        origin.proxy = proxy;
        origin
    }

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        ProxyEnv::from_pairs(vars).unwrap()
    }

    /// The proxies of an origin without a `proxy` key, in this environment.
    fn from_env(vars: &[(&str, &str)]) -> Proxies {
        Proxies::of(&origin(OriginProxy::Environment), &env(vars))
    }

    fn via(proxies: &Proxies, url: &str) -> Option<String> {
        proxies
            .for_url(&Url::parse(url).unwrap())
            .and_then(|p| p.url.host_str().map(String::from))
    }

    #[test]
    fn the_environment_picks_the_proxy_of_the_scheme() {
        let proxies = from_env(&[
            ("http_proxy", "http://web:3128"),
            ("https_proxy", "http://tls:3128"),
        ]);
        assert_eq!(via(&proxies, "http://a.example/x").as_deref(), Some("web"));
        assert_eq!(via(&proxies, "https://a.example/x").as_deref(), Some("tls"));
    }

    #[test]
    fn no_proxy_follows_curls_rules_and_loopback_is_not_exempt() {
        let proxies = from_env(&[
            ("http_proxy", "http://squid:3128"),
            ("no_proxy", "example.org, .internal, 10.0.0.0/8, ::1"),
        ]);
        for direct in [
            "http://example.org/",
            "http://www.example.org:8080/",
            "http://a.internal/",
            "http://10.1.2.3/",
            "http://[::1]:81/",
        ] {
            assert_eq!(via(&proxies, direct), None, "{direct}");
        }
        for proxied in [
            "http://notexample.org/",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://11.0.0.1/",
        ] {
            assert_eq!(
                via(&proxies, proxied).as_deref(),
                Some("squid"),
                "{proxied}"
            );
        }
        let everything = from_env(&[("http_proxy", "http://squid:3128"), ("no_proxy", "*")]);
        assert_eq!(via(&everything, "http://a.example/"), None);
    }

    #[test]
    fn the_proxy_key_wins_over_the_environment() {
        let env = env(&[("HTTP_PROXY", "http://squid:3128"), ("NO_PROXY", "h")]);
        let key = OriginProxy::Via(Url::parse("http://site:8080").unwrap());
        let proxies = Proxies::of(&origin(key), &env);
        assert_eq!(via(&proxies, "http://h/").as_deref(), Some("site"));
        assert_eq!(
            via(&proxies, "https://cdn.example/").as_deref(),
            Some("site")
        );
        let direct = Proxies::of(&origin(OriginProxy::Direct), &env);
        assert_eq!(via(&direct, "http://a.example/"), None);
        assert_eq!(direct.describe(), "direct, no proxy");
    }
}
