//! Hop-by-hop headers: they belong to one connection, not to the message, so
//! a proxy removes them before forwarding (RFC 9110 section 7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Is this one of the fixed hop-by-hop headers? (`Transfer-Encoding` is left
/// to the HTTP library, which frames each hop itself.)
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
}

/// Removes the hop-by-hop headers, including any that `Connection` names.
/// Most messages have none: one pass over the names finds that out.
pub fn strip(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION).cloned()
        && let Ok(conn) = conn.to_str()
    {
        for name in conn.split(',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                headers.remove(name);
            }
        }
    }
    let found: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for name in found {
        headers.remove(name);
    }
}

/// The protocol a request asks to switch to: its `Upgrade` header, if
/// `Connection` names `upgrade` (RFC 9110 section 7.8). A proxy that passes
/// an upgrade on puts both back with [`keep_upgrade`] after [`strip`].
///
/// On the request path: an ordinary request has no `Upgrade`, and that one
/// lookup is all it costs.
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let protocol = headers.get(header::UPGRADE).filter(|p| !p.is_empty())?;
    let asked = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")))
    });
    asked.then(|| protocol.clone())
}

/// Whether an `Upgrade` value asks for a WebSocket (RFC 6455).
pub fn is_websocket(protocol: &HeaderValue) -> bool {
    protocol.to_str().is_ok_and(|p| p.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// Sets the two headers that carry an upgrade over the next hop.
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-call-id", "abc".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        strip(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-call-id", "content-type"]);
    }

    #[test]
    fn leaves_ordinary_messages_alone() {
        let mut h = HeaderMap::new();
        h.insert("host", "x".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn upgrades_need_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert_eq!(upgrade_requested(&h), None, "Upgrade without Connection: upgrade");
        h.append("connection", "keep-alive".parse().unwrap());
        h.append("connection", "Upgrade".parse().unwrap());
        let protocol = upgrade_requested(&h).unwrap();
        assert!(is_websocket(&protocol));
        assert!(!is_websocket(&HeaderValue::from_static("h2c")));
        strip(&mut h);
        assert!(h.is_empty());
        keep_upgrade(&mut h, protocol);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        let mut h = HeaderMap::new();
        h.insert("connection", "upgrade".parse().unwrap());
        assert_eq!(upgrade_requested(&h), None, "Connection: upgrade without Upgrade");
    }
}
