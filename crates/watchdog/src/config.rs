//! The watchdog's configuration, read from the same environment variables as
//! OpenFaaS's of-watchdog, plus a few ferrofaas extensions.
//!
//! Everything is validated before any socket is bound; an error names the
//! variable and the value that was wrong.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderValue;
use http::uri::{Authority, Uri};

use ferrofaas_types::duration;

/// Process to run (per request in fork modes, once in `http` mode).
pub const ENV_FPROCESS: &str = "fprocess";
/// Alias of [`ENV_FPROCESS`].
pub const ENV_FUNCTION_PROCESS: &str = "function_process";
/// `streaming` (default), `serializing`, `http` or `static`.
pub const ENV_MODE: &str = "mode";
/// `http` mode: where the function's own HTTP server listens.
pub const ENV_UPSTREAM_URL: &str = "upstream_url";
/// Alias of [`ENV_UPSTREAM_URL`].
pub const ENV_HTTP_UPSTREAM_URL: &str = "http_upstream_url";
/// TCP port to listen on; `0` picks a free one (default 8080).
pub const ENV_PORT: &str = "port";
/// Address to listen on (ferrofaas extension; default `0.0.0.0`).
pub const ENV_LISTEN_ADDRESS: &str = "listen_address";
/// Optional second port serving `/metrics` (of-watchdog uses 8081; off by default
/// here so that many replicas can share a host). Metrics are always on
/// `/_/metrics` of the main port.
pub const ENV_METRICS_PORT: &str = "metrics_port";
/// Time allowed to read a request's headers, and in serializing mode its body.
pub const ENV_READ_TIMEOUT: &str = "read_timeout";
/// Time allowed to finish in-flight requests when draining on SIGTERM.
pub const ENV_WRITE_TIMEOUT: &str = "write_timeout";
/// Time a function may run per request; `0` disables it.
pub const ENV_EXEC_TIMEOUT: &str = "exec_timeout";
/// Requests served at once before answering 429; `0` means no limit.
pub const ENV_MAX_INFLIGHT: &str = "max_inflight";
/// On SIGTERM: how long to keep serving while reporting not ready, so that
/// load balancers notice before the listener closes (default: `write_timeout`).
pub const ENV_HEALTHCHECK_INTERVAL: &str = "healthcheck_interval";
/// Forces the Content-Type of responses in the fork modes.
pub const ENV_CONTENT_TYPE: &str = "content_type";
/// `true`: do not write the lock file `$TMPDIR/.lock` when ready.
pub const ENV_SUPPRESS_LOCK: &str = "suppress_lock";
/// `true` (default): prefix each line the function prints with time and stream.
pub const ENV_PREFIX_LOGS: &str = "prefix_logs";
/// `http` mode: buffer request bodies before forwarding (for servers that do
/// not accept chunked requests).
pub const ENV_HTTP_BUFFER_REQ_BODY: &str = "http_buffer_req_body";
/// Deprecated alias of [`ENV_HTTP_BUFFER_REQ_BODY`].
pub const ENV_BUFFER_HTTP: &str = "buffer_http";
/// `http` mode: `/_/ready` asks the function at this path.
pub const ENV_READY_PATH: &str = "ready_path";
/// `static` mode: the folder to serve (default `/home/app/public`).
pub const ENV_STATIC_PATH: &str = "static_path";
/// Fork modes: `true` sends the function's STDERR in the response along with
/// STDOUT, as the classic watchdog did. Default `false`: STDERR goes to the log.
pub const ENV_COMBINE_OUTPUT: &str = "combine_output";
/// `plain` (default) or `json` for the watchdog's own log lines.
pub const ENV_LOG_FORMAT: &str = "log_format";
/// `wasm` mode: bytes (or `128Mi`, `1G`) each instance's memory may grow to
/// (default 128 MiB).
pub const ENV_WASM_MEMORY_LIMIT: &str = "wasm_memory_limit";
/// `wasm` mode: a component precompiled for this watchdog, used in place of
/// `fprocess` when it is of this watchdog's engine (it is checked).
pub const ENV_WASM_PRECOMPILED: &str = "wasm_precompiled";
/// Where secrets are (the function's and, in `wasm` mode, what its
/// instances may read).
pub const ENV_SECRET_MOUNT_PATH: &str = "secret_mount_path";

/// `wasm` mode: the memory an instance gets without `wasm_memory_limit`.
pub const DEFAULT_WASM_MEMORY: u64 = 128 << 20;

/// How the watchdog runs the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fork per request, body streamed to STDIN and STDOUT streamed back.
    Streaming,
    /// Fork per request, whole body in and whole output out.
    Serializing,
    /// Start the function once and reverse-proxy to its HTTP server.
    Http,
    /// Serve files from a folder.
    Static,
    /// Run a WebAssembly component (`fprocess`: its file), a fresh
    /// instance per request (the `wasm` feature).
    Wasm,
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "streaming" => Ok(Mode::Streaming),
            "serializing" | "serialising" => Ok(Mode::Serializing),
            "http" => Ok(Mode::Http),
            "static" => Ok(Mode::Static),
            "wasm" => Ok(Mode::Wasm),
            _ => Err(()),
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Streaming => "streaming",
            Mode::Serializing => "serializing",
            Mode::Http => "http",
            Mode::Static => "static",
            Mode::Wasm => "wasm",
        }
    }
}

/// Format of the watchdog's own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Where `http` mode forwards requests.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` of the function's server.
    pub authority: Authority,
    /// Path prefix from `upstream_url`, without a trailing slash (often empty).
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// The function process as argv; empty only in static mode.
    pub fprocess: Vec<String>,
    pub upstream: Option<Upstream>,
    pub listen_address: IpAddr,
    pub port: u16,
    pub metrics_port: Option<u16>,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// `None` when disabled (`exec_timeout=0`).
    pub exec_timeout: Option<Duration>,
    pub healthcheck_interval: Duration,
    /// `0` means unlimited.
    pub max_inflight: usize,
    pub content_type: Option<HeaderValue>,
    pub suppress_lock: bool,
    pub prefix_logs: bool,
    pub buffer_http: bool,
    pub ready_path: Option<String>,
    pub static_path: PathBuf,
    pub combine_output: bool,
    pub log_format: LogFormat,
    /// `wasm` mode: each instance's memory limit, in bytes.
    pub wasm_memory_limit: u64,
    pub wasm_precompiled: Option<PathBuf>,
    /// `secret_mount_path` (default `/var/openfaas/secrets`).
    pub secret_mount_path: PathBuf,
}

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid { var: &'static str, value: String, reason: &'static str },
    #[error("{var} is required in {mode} mode")]
    Missing { var: &'static str, mode: &'static str },
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(std::env::vars())
    }

    /// Reads the configuration from `(name, value)` pairs.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let env = Env { vars: &vars };

        let mode = match env.get(ENV_MODE) {
            None => Mode::Streaming,
            Some(v) => v.parse().map_err(|()| {
                invalid(ENV_MODE, v, "expected streaming, serializing, http, static or wasm")
            })?,
        };

        let (fprocess_var, fprocess_raw) = match env.get(ENV_FPROCESS) {
            Some(v) => (ENV_FPROCESS, Some(v)),
            None => (ENV_FUNCTION_PROCESS, env.get(ENV_FUNCTION_PROCESS)),
        };
        let fprocess = match fprocess_raw {
            Some(raw) => shlex::split(raw).ok_or_else(|| invalid(fprocess_var, raw, "unbalanced quotes"))?,
            None => Vec::new(),
        };
        if fprocess.is_empty() && mode != Mode::Static {
            return Err(ConfigError::Missing { var: ENV_FPROCESS, mode: mode.as_str() });
        }

        let upstream = match (mode, env.first(&[ENV_UPSTREAM_URL, ENV_HTTP_UPSTREAM_URL])) {
            (Mode::Http, None) => {
                return Err(ConfigError::Missing { var: ENV_UPSTREAM_URL, mode: "http" });
            }
            (Mode::Http, Some((var, raw))) => Some(parse_upstream(var, raw)?),
            _ => None,
        };

        let write_timeout = env.duration(ENV_WRITE_TIMEOUT, DEFAULT_TIMEOUT)?;
        let exec_timeout = env.duration(ENV_EXEC_TIMEOUT, DEFAULT_TIMEOUT)?;
        let ready_path = match env.get(ENV_READY_PATH) {
            None => None,
            Some(p) if p.starts_with('/') && p.parse::<http::uri::PathAndQuery>().is_ok() => {
                Some(p.to_owned())
            }
            Some(p) => {
                return Err(invalid(ENV_READY_PATH, p, "must be a URL path starting with '/'"));
            }
        };
        let content_type = match env.get(ENV_CONTENT_TYPE) {
            None => None,
            Some(v) => Some(
                HeaderValue::from_str(v)
                    .map_err(|_| invalid(ENV_CONTENT_TYPE, v, "not a valid header value"))?,
            ),
        };
        let log_format = match env.get(ENV_LOG_FORMAT) {
            None | Some("plain") | Some("text") => LogFormat::Plain,
            Some("json") => LogFormat::Json,
            Some(v) => return Err(invalid(ENV_LOG_FORMAT, v, "expected plain or json")),
        };
        let listen_address = match env.get(ENV_LISTEN_ADDRESS) {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(v) => v.parse().map_err(|_| invalid(ENV_LISTEN_ADDRESS, v, "expected an IP address"))?,
        };
        let wasm_memory_limit = match env.get(ENV_WASM_MEMORY_LIMIT) {
            None => DEFAULT_WASM_MEMORY,
            Some(v) => {
                ferrofaas_types::function::parse_memory(v).filter(|&b| b >= 1 << 20).ok_or_else(|| {
                    invalid(ENV_WASM_MEMORY_LIMIT, v, "expected a size of 1Mi or more, such as 128Mi")
                })?
            }
        };
        let metrics_port = match env.number::<u16>(ENV_METRICS_PORT, 0)? {
            0 => None,
            p => Some(p),
        };

        Ok(Config {
            mode,
            fprocess,
            upstream,
            listen_address,
            port: env.number(ENV_PORT, 8080)?,
            metrics_port,
            read_timeout: env.duration(ENV_READ_TIMEOUT, DEFAULT_TIMEOUT)?,
            write_timeout,
            exec_timeout: Some(exec_timeout).filter(|d| !d.is_zero()),
            healthcheck_interval: env.duration(ENV_HEALTHCHECK_INTERVAL, write_timeout)?,
            max_inflight: env.number(ENV_MAX_INFLIGHT, 0)?,
            content_type,
            suppress_lock: env.boolean(ENV_SUPPRESS_LOCK, false)?,
            prefix_logs: env.boolean(ENV_PREFIX_LOGS, true)?,
            buffer_http: match env.first(&[ENV_HTTP_BUFFER_REQ_BODY, ENV_BUFFER_HTTP]) {
                None => false,
                Some((var, v)) => parse_bool(v).ok_or_else(|| invalid(var, v, BOOL_REASON))?,
            },
            ready_path,
            static_path: env.get(ENV_STATIC_PATH).unwrap_or("/home/app/public").into(),
            combine_output: env.boolean(ENV_COMBINE_OUTPUT, false)?,
            log_format,
            wasm_memory_limit,
            wasm_precompiled: env.get(ENV_WASM_PRECOMPILED).map(PathBuf::from),
            secret_mount_path: env.get(ENV_SECRET_MOUNT_PATH).unwrap_or("/var/openfaas/secrets").into(),
        })
    }

    /// The lock file written when the watchdog is ready, unless suppressed.
    /// It lives in `$TMPDIR`, so replicas given their own `TMPDIR` never share it.
    pub fn lock_file(&self) -> Option<PathBuf> {
        (!self.suppress_lock).then(|| std::env::temp_dir().join(".lock"))
    }
}

const BOOL_REASON: &str = "expected true or false";

fn invalid(var: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { var, value: value.to_owned(), reason }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_upstream(var: &'static str, raw: &str) -> Result<Upstream, ConfigError> {
    let uri: Uri = raw.parse().map_err(|_| invalid(var, raw, "not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(var, raw, "only http:// upstreams are supported"));
    }
    let authority = uri.authority().ok_or_else(|| invalid(var, raw, "the URL has no host"))?;
    if uri.query().is_some() {
        return Err(invalid(var, raw, "the URL must not have a query"));
    }
    // Always host:port, and `localhost` as the loopback address (RFC 6761):
    // the watchdog is a static executable and must not depend on the image's
    // name service configuration to reach its own function.
    let host = match authority.host() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    let authority: Authority = format!("{host}:{}", authority.port_u16().unwrap_or(80))
        .parse()
        .map_err(|_| invalid(var, raw, "invalid host or port"))?;
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Upstream { authority, base_path })
}

/// Looks up variables, treating empty values as unset (as of-watchdog does).
struct Env<'a> {
    vars: &'a HashMap<String, String>,
}

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    fn first(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names.iter().find_map(|&n| self.get(n).map(|v| (n, v)))
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => duration::parse(v)
                .ok_or_else(|| invalid(var, v, "expected a duration such as 10s, 500ms or 1m")),
        }
    }

    fn number<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => {
                v.trim().parse().map_err(|_| invalid(var, v, "expected a non-negative whole number in range"))
            }
        }
    }

    fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| invalid(var, v, BOOL_REASON)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_of_watchdog() {
        let c = cfg(&[("fprocess", "cat")]).unwrap();
        assert_eq!(c.mode, Mode::Streaming);
        assert_eq!(c.fprocess, vec!["cat"]);
        assert_eq!(c.port, 8080);
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.exec_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.healthcheck_interval, c.write_timeout);
        assert_eq!(c.max_inflight, 0);
        assert!(c.prefix_logs);
        assert!(!c.suppress_lock);
        assert!(!c.combine_output);
        assert_eq!(c.static_path, PathBuf::from("/home/app/public"));
        assert_eq!(c.metrics_port, None);
    }

    #[test]
    fn fprocess_is_split_like_a_shell() {
        let c = cfg(&[("function_process", r#"sh -c 'echo "a b"'"#)]).unwrap();
        assert_eq!(c.fprocess, vec!["sh", "-c", r#"echo "a b""#]);
        assert!(matches!(
            cfg(&[("fprocess", "sh -c 'oops")]),
            Err(ConfigError::Invalid { var: "fprocess", .. })
        ));
    }

    #[test]
    fn fprocess_required_except_in_static_mode() {
        assert_eq!(cfg(&[]).unwrap_err(), ConfigError::Missing { var: "fprocess", mode: "streaming" });
        assert!(cfg(&[("mode", "static"), ("static_path", "/srv")]).is_ok());
    }

    #[test]
    fn http_mode_needs_a_valid_upstream() {
        assert!(matches!(
            cfg(&[("mode", "http"), ("fprocess", "srv")]),
            Err(ConfigError::Missing { var: "upstream_url", .. })
        ));
        for bad in ["https://x:1", "nonsense url", "http://x:1/?q=1"] {
            assert!(cfg(&[("mode", "http"), ("fprocess", "srv"), ("upstream_url", bad)]).is_err(), "{bad}");
        }
        let c = cfg(&[
            ("mode", "http"),
            ("fprocess", "srv"),
            ("http_upstream_url", "http://127.0.0.1:5000/api/"),
        ])
        .unwrap();
        let up = c.upstream.unwrap();
        assert_eq!(up.authority.as_str(), "127.0.0.1:5000");
        assert_eq!(up.base_path, "/api");
        let c = cfg(&[("mode", "http"), ("fprocess", "srv"), ("upstream_url", "http://localhost")]).unwrap();
        assert_eq!(c.upstream.unwrap().authority.as_str(), "127.0.0.1:80");
    }

    #[test]
    fn errors_name_the_variable() {
        let err = cfg(&[("fprocess", "cat"), ("exec_timeout", "soon")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec_timeout=\"soon\" is invalid: expected a duration such as 10s, 500ms or 1m"
        );
        assert!(cfg(&[("fprocess", "cat"), ("mode", "afterburn")]).is_err());
        assert!(cfg(&[("fprocess", "cat"), ("port", "70000")]).is_err());
        assert!(cfg(&[("fprocess", "cat"), ("max_inflight", "-1")]).is_err());
        assert!(cfg(&[("fprocess", "cat"), ("prefix_logs", "maybe")]).is_err());
        assert!(cfg(&[("fprocess", "cat"), ("ready_path", "health")]).is_err());
        assert!(cfg(&[("fprocess", "cat"), ("listen_address", "localhost")]).is_err());
    }

    #[test]
    fn zero_exec_timeout_disables_it() {
        let c = cfg(&[("fprocess", "cat"), ("exec_timeout", "0")]).unwrap();
        assert_eq!(c.exec_timeout, None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = cfg(&[("fprocess", "cat"), ("port", ""), ("mode", " ")]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.mode, Mode::Streaming);
    }
}
