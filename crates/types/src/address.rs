//! Broker addresses as messages may show them.

/// `url` (or a comma-separated list of them) without the user and
/// password any of them carries: `nats://u:p@h:4222` is shown as
/// `nats://h:4222`.
pub fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = one.split_once("://").unwrap_or(("", one));
            let host_at = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..host_at].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            if scheme.is_empty() { rest.to_owned() } else { format!("{scheme}://{rest}") }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A list of NATS servers as `faas serve` takes it (`nats://host:port`,
/// comma-separated), and the credentials one of them carries
/// (`nats://user:password@host:port`, or a token: `nats://token@host`),
/// for the client to present to all (it does not read them off the URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsServers {
    /// Each server's URL, without credentials.
    pub servers: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl NatsServers {
    pub fn parse(url: &str) -> NatsServers {
        let (mut user, mut password) = (None, None);
        for one in url.split(',') {
            let rest = one.trim().split_once("://").map_or(one.trim(), |(_, r)| r);
            let host_at = rest.find('/').unwrap_or(rest.len());
            if user.is_none()
                && let Some(at) = rest[..host_at].rfind('@')
            {
                match rest[..at].split_once(':') {
                    Some((u, p)) => (user, password) = (Some(u.to_owned()), Some(p.to_owned())),
                    None => user = Some(rest[..at].to_owned()),
                }
            }
        }
        let servers = without_credentials(url).split(',').map(str::to_owned).collect();
        NatsServers { servers, user, password }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_credentials_are_taken_off_the_urls() {
        let s = NatsServers::parse("nats://gw:s3cret@a:4222,nats://b:4222");
        assert_eq!(s.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!((s.user.as_deref(), s.password.as_deref()), (Some("gw"), Some("s3cret")));
        let t = NatsServers::parse("nats://tok@a:4222");
        assert_eq!((t.user.as_deref(), t.password), (Some("tok"), None));
        assert_eq!(NatsServers::parse("nats://a:4222").user, None);
    }

    #[test]
    fn credentials_are_left_out() {
        assert_eq!(without_credentials("nats://u:p@h:4222"), "nats://h:4222");
        assert_eq!(without_credentials("nats://a:4222, nats://tok@b:4222"), "nats://a:4222,nats://b:4222");
        assert_eq!(without_credentials("nats://h:4222/x@y"), "nats://h:4222/x@y");
        assert_eq!(without_credentials("h:4222"), "h:4222");
        assert_eq!(without_credentials("u:p@h"), "h");
    }
}
