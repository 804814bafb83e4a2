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
}
