//! The gateway's settings, validated before anything binds or connects.

use std::time::Duration;

use farm_proto::limits::{
    DEFAULT_MAX_REST_LOAD_TEST_SECONDS, MAX_DURATION_SECONDS, MAX_REST_REQUEST_TIMEOUT_MS,
    MAX_SERVERS, MIN_REST_REQUEST_TIMEOUT_MS,
};
use http::HeaderValue;

/// How long connecting to the controller may take before a request fails with 503. Short
/// on purpose: the controller is on the same machine or network, and a client should
/// hear "unavailable" quickly rather than wait.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where browsers may call the gateway from (CORS), and which web pages may change the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// The gateway's own origin (the dashboard it serves), the dashboard's dev server
    /// (`http://localhost:3000`), and these origins besides: the default, with none.
    Farm(Vec<HeaderValue>),
    /// Any origin (`*`), only when asked for: any web page the farm's user opens can then
    /// read the farm and, with the token when one is needed, change it.
    Any,
}

impl Default for CorsOrigins {
    fn default() -> Self {
        Self::Farm(Vec::new())
    }
}

/// The origins of the dashboard's dev server (`npm run dev`), allowed by default.
const DEV_SERVER_ORIGINS: [&str; 3] = [
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://[::1]:3000",
];

impl CorsOrigins {
    /// Whether a page of `origin` may call a gateway reached as `host` (the request's `Host`).
    pub fn allows(&self, origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
        let Self::Farm(listed) = self else {
            return true;
        };
        let origin_text = origin.to_str().unwrap_or_default();
        let own = host.and_then(|h| h.to_str().ok()).is_some_and(|host| {
            origin_text.strip_prefix("http://") == Some(host)
                || origin_text.strip_prefix("https://") == Some(host)
        });
        own || DEV_SERVER_ORIGINS.contains(&origin_text) || listed.contains(origin)
    }
}

/// The form [`FromStr`](std::str::FromStr) reads: `*`, or the listed origins joined by
/// commas.
impl std::fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Farm(origins) => {
                let texts: Vec<&str> = origins.iter().filter_map(|o| o.to_str().ok()).collect();
                f.write_str(&texts.join(","))
            }
        }
    }
}

impl std::str::FromStr for CorsOrigins {
    type Err = ConfigError;

    /// `*` for any origin, or a comma-separated list of origins (`scheme://host[:port]`)
    /// allowed besides the farm's own and the dev server; empty for none besides them.
    fn from_str(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(Self::Any);
        }
        if raw.is_empty() {
            return Ok(Self::Farm(Vec::new()));
        }
        let mut origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let uri: http::Uri = origin
                .parse()
                .map_err(|_| ConfigError::CorsOrigin(origin.to_string()))?;
            let well_formed = matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
                && !origin.ends_with('/');
            if !well_formed {
                return Err(ConfigError::CorsOrigin(origin.to_string()));
            }
            origins.push(
                HeaderValue::from_str(origin)
                    .map_err(|_| ConfigError::CorsOrigin(origin.to_string()))?,
            );
        }
        if origins.is_empty() {
            return Err(ConfigError::CorsOrigin(raw.to_string()));
        }
        Ok(Self::Farm(origins))
    }
}

/// Everything the gateway needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The controller's gRPC URL, e.g. `http://127.0.0.1:50051`.
    pub controller_url: String,
    /// The CA certificates (PEM) trusted for an `https://` controller.
    pub controller_ca: Option<Vec<u8>>,
    /// Who may call the gateway from a browser.
    pub cors_origins: CorsOrigins,
    /// The deadline of an ordinary REST request (one that does not carry its own, like a
    /// load test's duration or a broadcast's `timeout_ms`); past it the client gets a 504.
    pub request_timeout: Duration,
    /// Longest load test `POST /api/load-test` runs, in seconds (1 to 3600).
    pub max_load_test_seconds: u32,
    /// Most servers `POST /api/scale` may ask for (1 to the controller's bound, 1000).
    pub max_servers: u32,
    /// The farm's token: sent with every call to the controller, and, with
    /// [`Config::require_token`], asked of every change through the gateway.
    pub token: Option<farm_proto::auth::Token>,
    /// Whether changes through the gateway need the farm's token: whenever it listens beyond
    /// loopback. Reads stay open.
    pub require_token: bool,
    /// Most connections the gateway holds at once; past it a new connection is closed at
    /// once, so that a flood cannot exhaust the file descriptors it shares with the
    /// controller, nor its memory.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, and sit idle between
    /// requests; a streaming answer (a watch) is not cut.
    pub idle_timeout: Duration,
    /// Host names a request may name in its `Host` header besides IP addresses and
    /// `localhost`: a name that resolves to the gateway for its users. Any other name is
    /// refused, so that a web page cannot reach the farm through DNS rebinding.
    pub allowed_hosts: Vec<String>,
}

impl Config {
    /// Defaults for a controller at `controller_url`.
    pub fn new(controller_url: impl Into<String>) -> Self {
        Self {
            controller_url: controller_url.into(),
            controller_ca: None,
            cors_origins: CorsOrigins::default(),
            request_timeout: Duration::from_secs(10),
            max_load_test_seconds: DEFAULT_MAX_REST_LOAD_TEST_SECONDS,
            max_servers: MAX_SERVERS,
            token: None,
            require_token: false,
            max_connections: farm_proto::limits::DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Duration::from_millis(farm_proto::limits::DEFAULT_IDLE_TIMEOUT_MS),
            allowed_hosts: Vec::new(),
        }
    }

    /// Whether a request may name `host` (its `Host` header, port included): an IP address,
    /// `localhost`, or one of [`Config::allowed_hosts`].
    pub fn allows_host(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => {
                return rest
                    .split(']')
                    .next()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
            }
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.parse::<u16>().is_ok() {
                    name
                } else {
                    host
                }
            }),
        };
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let uri: http::Uri = self
            .controller_url
            .parse()
            .map_err(|_| ConfigError::ControllerUrl(self.controller_url.clone()))?;
        let usable = matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty());
        if !usable {
            return Err(ConfigError::ControllerUrl(self.controller_url.clone()));
        }
        farm_proto::tls::endpoint(&self.controller_url, self.controller_ca.as_deref())
            .map_err(ConfigError::ControllerTls)?;
        let timeout_bounds = Duration::from_millis(u64::from(MIN_REST_REQUEST_TIMEOUT_MS))
            ..=Duration::from_millis(u64::from(MAX_REST_REQUEST_TIMEOUT_MS));
        if !timeout_bounds.contains(&self.request_timeout) {
            return Err(ConfigError::RequestTimeout(self.request_timeout));
        }
        if !(1..=MAX_DURATION_SECONDS).contains(&self.max_load_test_seconds) {
            return Err(ConfigError::MaxLoadTestSeconds(self.max_load_test_seconds));
        }
        if !(1..=MAX_SERVERS).contains(&self.max_servers) {
            return Err(ConfigError::MaxServers(self.max_servers));
        }
        if self.require_token && self.token.is_none() {
            return Err(ConfigError::TokenRequired);
        }
        Ok(())
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The controller URL is not `http(s)://host[:port]`.
    #[error("controller URL {0:?} is not of the form http://host:port")]
    ControllerUrl(String),
    /// TLS to the controller cannot be set up (an `https://` URL without a CA).
    #[error("{0}")]
    ControllerTls(String),
    /// A CORS origin is not `scheme://host[:port]`.
    #[error("CORS origin {0:?} is not `*` or a list of origins like http://localhost:3000")]
    CorsOrigin(String),
    /// The request timeout is out of bounds.
    #[error(
        "request timeout {0:?} must be {MIN_REST_REQUEST_TIMEOUT_MS} to {MAX_REST_REQUEST_TIMEOUT_MS} ms"
    )]
    RequestTimeout(Duration),
    /// The load-test bound is out of bounds.
    #[error("max load-test seconds must be 1 to {MAX_DURATION_SECONDS}, got {0}")]
    MaxLoadTestSeconds(u32),
    /// Changes need a token, and the gateway has none.
    #[error(
        "the gateway listens beyond loopback, so changes need the farm's token: give it with --token or FARM_TOKEN"
    )]
    TokenRequired,
    /// The scale bound is out of bounds.
    #[error("max servers must be 1 to {MAX_SERVERS}, got {0}")]
    MaxServers(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_or_are_named() {
        assert_eq!("*".parse::<CorsOrigins>().unwrap(), CorsOrigins::Any);
        let CorsOrigins::Farm(list) = "http://localhost:3000, https://farm.example"
            .parse::<CorsOrigins>()
            .unwrap()
        else {
            panic!("a list")
        };
        assert_eq!(list.len(), 2);
        assert_eq!("".parse::<CorsOrigins>().unwrap(), CorsOrigins::default());
        for bad in [
            "localhost:3000",
            "ftp://x",
            "http://x/path",
            ",",
            "http://x/",
        ] {
            assert!(bad.parse::<CorsOrigins>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_bound_is_checked() {
        assert!(Config::new("http://127.0.0.1:50051").validate().is_ok());
        assert!(matches!(
            Config::new("127.0.0.1:50051").validate(),
            Err(ConfigError::ControllerUrl(_))
        ));
        let mut c = Config::new("http://c:1");
        c.request_timeout = Duration::from_millis(5);
        assert!(matches!(c.validate(), Err(ConfigError::RequestTimeout(_))));
        let mut c = Config::new("http://c:1");
        c.max_load_test_seconds = 0;
        assert!(c.validate().is_err());
        let mut c = Config::new("http://c:1");
        c.max_servers = 1001;
        assert!(c.validate().is_err());
    }
}
