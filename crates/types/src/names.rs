//! Names of functions, namespaces and secrets, validated as OpenFaaS (and
//! Kubernetes, where OpenFaaS came from) requires them.

use std::fmt;

/// The namespace functions live in when none is given.
pub const DEFAULT_NAMESPACE: &str = "openfaas-fn";

/// A name that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {rule}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub rule: &'static str,
}

const LABEL_RULE: &str = "use lowercase letters, digits and '-', start with a letter, end with a letter or \
                          digit, at most 63 characters";
const NAMESPACE_RULE: &str = "use lowercase letters, digits and '-', start and end with a letter or digit, \
                              at most 63 characters";
const SECRET_RULE: &str = "use lowercase letters, digits, '-' and '.', start and end with a letter or digit, \
                           at most 253 characters";

/// A function name: an RFC 1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most
/// 63 characters).
pub fn validate_function_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok { Ok(()) } else { Err(NameError { kind: "function name", name: name.into(), rule: LABEL_RULE }) }
}

/// A namespace: an RFC 1123 label (may start with a digit).
pub fn validate_namespace(ns: &str) -> Result<(), NameError> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok { Ok(()) } else { Err(NameError { kind: "namespace", name: ns.into(), rule: NAMESPACE_RULE }) }
}

/// A secret name: an RFC 1123 subdomain (labels of the namespace form joined
/// by dots). It becomes a file name, so no `/` and no `..` can pass.
pub fn validate_secret_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| validate_namespace(label).is_ok());
    if ok { Ok(()) } else { Err(NameError { kind: "secret name", name: name.into(), rule: SECRET_RULE }) }
}

/// A function as `/function/<name>` or `/function/<name>.<namespace>` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionRef {
    pub name: String,
    pub namespace: String,
}

impl FunctionRef {
    pub fn new(name: &str, namespace: Option<&str>) -> Result<FunctionRef, NameError> {
        validate_function_name(name)?;
        let namespace = match namespace {
            None | Some("") => DEFAULT_NAMESPACE,
            Some(ns) => {
                validate_namespace(ns)?;
                ns
            }
        };
        Ok(FunctionRef { name: name.to_owned(), namespace: namespace.to_owned() })
    }

    /// Parses `name` or `name.namespace`.
    pub fn parse(qualified: &str) -> Result<FunctionRef, NameError> {
        match qualified.split_once('.') {
            Some((name, ns)) => FunctionRef::new(name, Some(ns)),
            None => FunctionRef::new(qualified, None),
        }
    }
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// Splits `name` or `name.namespace` without allocating or validating (for
/// the request path, where the lookup itself is the validation).
pub fn split_qualified(qualified: &str) -> (&str, &str) {
    match qualified.split_once('.') {
        Some((name, ns)) => (name, ns),
        None => (qualified, DEFAULT_NAMESPACE),
    }
}

/// An environment variable name: not empty, no `=` and no NUL.
pub fn validate_env_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty() && !name.contains(['=', '\0']);
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind: "environment variable",
            name: name.into(),
            rule: "must be non-empty, without '=' or NUL",
        })
    }
}

/// An image reference as Docker reads one, split: `[domain[:port]/]path`,
/// its tag (`latest` when none is given) and its digest, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference<'a> {
    /// The repository, domain included.
    pub name: &'a str,
    pub tag: Option<&'a str>,
    /// The hex of `@sha256:<hex>`.
    pub digest: Option<&'a str>,
}

impl ImageReference<'_> {
    /// The repository without its registry (`ghcr.io/team/fn` -> `team/fn`).
    pub fn path(&self) -> &str {
        match self.name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
            _ => self.name,
        }
    }
}

/// Parses `image` by Docker's reference grammar: path components of
/// lowercase letters and digits joined by `.`, `_`, `__` or dashes; a first
/// component with a `.` or a `:` (or `localhost`) is a registry host and
/// port; a tag of at most 128 letters, digits, `_`, `.`, `-`, not starting
/// with `.` or `-`; a digest `sha256:` and 64 hex digits. `sha256:<hex>`
/// alone (an image id) is a digest with no name.
pub fn parse_image_reference(image: &str) -> Result<ImageReference<'_>, String> {
    let bad = |why: &str| format!("{image:?} is not a valid image reference: {why}");
    if image.len() > 255 + 1 + 128 + 72 {
        return Err(bad("it is too long"));
    }
    if let Some(hex) = image.strip_prefix("sha256:") {
        return if is_sha256_hex(hex) {
            Ok(ImageReference { name: "", tag: None, digest: Some(hex) })
        } else {
            Err(bad("sha256: must be followed by 64 hex digits"))
        };
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => {
            let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad("the digest is not sha256:<hex>"))?;
            if !is_sha256_hex(hex) {
                return Err(bad("the digest is not sha256: and 64 hex digits"));
            }
            (rest, Some(hex))
        }
        None => (image, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a
    // registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("the name must have 1 to 255 characters"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let domain = parts.remove(0);
        let (host, port) = match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let port_ok =
            port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return Err(bad("the registry is not host[:port]"));
        }
    }
    for part in &parts {
        if !is_path_component(part) {
            return Err(bad(&format!(
                "{part:?}: a name's parts are lowercase letters and digits, joined by '.', '_', '__' or '-'"
            )));
        }
    }
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(bad(
                "a tag has at most 128 letters, digits, '_', '.' and '-', and starts with neither of the last two",
            ));
        }
    }
    Ok(ImageReference { name, tag, digest })
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(part: &str) -> bool {
    let b = part.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_are_rfc1035_labels() {
        for good in ["a", "echo", "my-fn-2", &"a".repeat(63)] {
            assert!(validate_function_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Echo", "2fn", "-fn", "fn-", "my_fn", "a.b", "../x", "fn/x", &"a".repeat(64), "é"] {
            assert!(validate_function_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_and_secrets() {
        assert!(validate_namespace("openfaas-fn").is_ok());
        assert!(validate_namespace("1team").is_ok());
        assert!(validate_namespace("Team").is_err());
        assert!(validate_secret_name("db-password").is_ok());
        assert!(validate_secret_name("api.key-2").is_ok());
        for bad in ["", ".", "..", "a..b", "../etc", "a/b", "Key", "-a", "a."] {
            assert!(validate_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            FunctionRef::parse("echo").unwrap(),
            FunctionRef { name: "echo".into(), namespace: "openfaas-fn".into() }
        );
        assert_eq!(FunctionRef::parse("echo.team-a").unwrap().namespace, "team-a");
        assert!(FunctionRef::parse("echo.Team").is_err());
        assert!(FunctionRef::parse("echo.a.b").is_err());
        assert_eq!(split_qualified("echo.openfaas-fn"), ("echo", "openfaas-fn"));
        assert_eq!(FunctionRef::parse("echo").unwrap().to_string(), "echo.openfaas-fn");
    }

    #[test]
    fn error_messages_say_the_rule() {
        let e = validate_function_name("My_Fn").unwrap_err().to_string();
        assert!(e.starts_with("invalid function name \"My_Fn\": use lowercase letters"), "{e}");
    }

    #[test]
    fn image_references_by_dockers_grammar() {
        let r = |s| parse_image_reference(s);
        assert_eq!(r("wc").unwrap(), ImageReference { name: "wc", tag: None, digest: None });
        assert_eq!(r("ghcr.io/team/fn:1").unwrap().path(), "team/fn");
        assert_eq!(r("localhost:5000/fn").unwrap().path(), "fn");
        assert_eq!(r("team/fn").unwrap().path(), "team/fn");
        assert_eq!(r("team/wc:1.2").unwrap().tag, Some("1.2"));
        assert_eq!(r("localhost:5000/fn:v1").unwrap().name, "localhost:5000/fn");
        assert_eq!(r("ghcr.io/openfaas/figlet:latest").unwrap().name, "ghcr.io/openfaas/figlet");
        assert_eq!(
            r("registry:5000/a/b").unwrap(),
            ImageReference { name: "registry:5000/a/b", tag: None, digest: None }
        );
        assert!(r("my_fn__x.y-z---w:T_1.-").is_ok());
        let hex = "ab".repeat(32);
        let (pinned, id) = (format!("wc:1@sha256:{hex}"), format!("sha256:{hex}"));
        assert_eq!(r(&pinned).unwrap().digest, Some(hex.as_str()));
        assert_eq!(r(&id).unwrap().name, "");
        for bad in [
            "",
            "a:b:c",
            "WC",
            "wc:",
            "wc:bad tag",
            "wc:.x",
            "wc:-x",
            "-wc",
            "wc-",
            "a//b",
            "a/../b",
            "a/./b",
            "a___b",
            "a..b",
            "wc@md5:00",
            "sha256:xyz",
            "ho st/x",
            ":5000/x",
            "host:port/x",
            "wc:1:2",
            &format!("wc:{}", "t".repeat(129)),
            &"a".repeat(256),
        ] {
            assert!(r(bad).is_err(), "{bad:?}");
        }
    }
}
