//! Where the results of asynchronous calls may be sent (`X-Callback-Url`).
//! Anyone may ask for a callback, so by default none goes to this machine
//! or its networks: loopback, link-local (the clouds' metadata service at
//! 169.254.169.254), private, shared (carrier-grade NAT), unique-local,
//! multicast and unspecified addresses are refused, unless the operator
//! allows them (`faas serve --callback-allow 10.1.0.0/16`).
//!
//! A URL naming such an address is refused when the call is accepted (400).
//! A host name is resolved when the callback is sent, and the connection
//! goes to the address that was checked (a second lookup cannot point it
//! elsewhere); if every address is refused, so is the callback, which the
//! call's status records. Redirects are not followed.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Net, String> {
        let bad = || format!("{s:?} is not an address or a block such as 10.1.0.0/16 or fd00::/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        // An IPv4 block written as IPv6 (`::ffff:10.0.0.0/104`) is IPv4.
        match canonical(addr) {
            v4 @ IpAddr::V4(_) if addr.is_ipv6() => Ok(Net { addr: v4, prefix: prefix.saturating_sub(96) }),
            addr => Ok(Net { addr, prefix }),
        }
    }
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 addresses written as IPv6 (`::ffff:127.0.0.1`) are IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of address refused by default `ip` is, if it is one.
fn restricted(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_unspecified() || a == 0 => "an unspecified address",
        () if ip.is_private() => "a private address",
        () if a == 100 && (64..128).contains(&b) => "a shared (carrier-grade NAT) address",
        () if ip.is_link_local() => "a link-local address",
        () if ip.is_multicast() || ip.is_broadcast() || a >= 240 => "a multicast or reserved address",
        () => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_unspecified() => "an unspecified address",
        () if first & 0xfe00 == 0xfc00 => "a unique-local address",
        () if first & 0xffc0 == 0xfe80 => "a link-local address",
        () if ip.is_multicast() => "a multicast address",
        // NAT64 (64:ff9b::/96) carries an IPv4 address: judge that one.
        () if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let [.., c, d] = ip.segments();
            return restricted_v4(Ipv4Addr::from((u32::from(c) << 16) | u32::from(d)));
        }
        () => return None,
    })
}

/// Where callbacks may go: anywhere public, and the blocks the operator
/// allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    pub allow: Vec<Net>,
}

impl CallbackPolicy {
    /// Why a callback to `ip` is refused, if it is.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow.iter().any(|net| net.contains(ip)) {
            return None;
        }
        restricted(ip)
    }

    /// Checks an `X-Callback-Url` when the call is accepted: an `http://`
    /// URL with a host, which is not a refused address.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let uri: Uri = url.parse().map_err(|_| "X-Callback-Url is not a URL".to_owned())?;
        if uri.scheme_str() != Some("http") {
            return Err("X-Callback-Url: an http:// URL is required".into());
        }
        let host = uri.host().ok_or_else(|| "X-Callback-Url has no host".to_owned())?;
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
            && let Some(why) = self.refuses(ip)
        {
            return Err(refusal(host, ip, why));
        }
        Ok(())
    }
}

fn refusal(host: &str, ip: IpAddr, why: &str) -> String {
    let at = if host.trim_matches(['[', ']']) == ip.to_string() { String::new() } else { format!(" ({ip})") };
    format!(
        "X-Callback-Url: {host}{at} is {why}; callbacks to this machine and its networks are refused unless \
         the operator allows them (faas serve --callback-allow)"
    )
}

/// A callback refused by the policy: not retried.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The callback client's connector: resolves the host, drops refused
/// addresses, and connects to the first of the others that answers.
#[derive(Clone)]
pub struct CheckedConnector {
    policy: Arc<CallbackPolicy>,
    inner: HttpConnector,
}

impl CheckedConnector {
    pub fn new(policy: Arc<CallbackPolicy>, inner: HttpConnector) -> CheckedConnector {
        CheckedConnector { policy, inner }
    }
}

impl tower_service::Service<Uri> for CheckedConnector {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let (policy, mut inner) = (Arc::clone(&self.policy), self.inner.clone());
        Box::pin(async move {
            let host = dst.host().ok_or("the callback URL has no host")?.to_owned();
            let port = dst.port_u16().unwrap_or(80);
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port)).await?.collect();
            let (mut refused, mut failed) = (None, None);
            for addr in addrs {
                match policy.refuses(addr.ip()) {
                    None => {
                        let checked: Uri = format!("http://{addr}").parse()?;
                        match inner.call(checked).await {
                            Ok(connection) => return Ok(connection),
                            Err(e) => failed = Some(e),
                        }
                    }
                    Some(why) => refused = refused.or(Some((addr.ip(), why))),
                }
            }
            match (failed, refused) {
                (Some(e), _) => Err(e.into()),
                (None, Some((ip, why))) => Err(Box::new(Refused(refusal(&host, ip, why))) as BoxError),
                (None, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

/// The refusal in an error's sources, if there is one.
pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_this_machine_and_its_networks_by_default() {
        let p = CallbackPolicy::default();
        for (addr, why) in [
            ("127.0.0.1", "a loopback address"),
            ("::1", "a loopback address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("169.254.169.254", "a link-local address"),
            ("fe80::1", "a link-local address"),
            ("10.1.2.3", "a private address"),
            ("172.20.0.1", "a private address"),
            ("192.168.1.1", "a private address"),
            ("100.64.0.1", "a shared (carrier-grade NAT) address"),
            ("fd12::1", "a unique-local address"),
            ("0.0.0.0", "an unspecified address"),
            ("::", "an unspecified address"),
            ("224.0.0.1", "a multicast or reserved address"),
            ("64:ff9b::a9fe:a9fe", "a link-local address"),
        ] {
            assert_eq!(p.refuses(ip(addr)), Some(why), "{addr}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert_eq!(p.refuses(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_operator_allows_blocks() {
        let p = CallbackPolicy { allow: vec!["10.1.0.0/16".parse().unwrap(), "::1".parse().unwrap()] };
        assert_eq!(p.refuses(ip("10.1.200.3")), None);
        assert_eq!(p.refuses(ip("10.2.0.1")), Some("a private address"));
        assert_eq!(p.refuses(ip("::1")), None);
        assert_eq!(p.refuses(ip("127.0.0.1")), Some("a loopback address"));
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("localhost".parse::<Net>().is_err());
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("127.0.0.1")) && !all.contains(ip("::1")));
    }

    #[test]
    fn urls_are_checked_when_accepted() {
        let p = CallbackPolicy::default();
        assert!(p.check_url("http://example.com/done").is_ok());
        assert!(p.check_url("http://93.184.216.34:8080/x").is_ok());
        for bad in ["http://127.0.0.1:9/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data"] {
            let e = p.check_url(bad).unwrap_err();
            assert!(e.contains("--callback-allow"), "{bad}: {e}");
        }
        assert!(p.check_url("ftp://example.com/").unwrap_err().contains("http://"));
        assert!(p.check_url("not a url").is_err());
    }
}
