//! Basic auth for `/system/*`. Credentials are generated at first start,
//! stored with mode 0600, and read back on every later start.

use std::io::{self, Read};
use std::path::Path;

use ferrofaas_types::base64;
use http::HeaderValue;
use serde::{Deserialize, Serialize};

pub const DEFAULT_USER: &str = "admin";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the credentials at `path`, or makes new ones and stores them
    /// there (mode 0600). `true` if they were just made.
    pub fn load_or_create(path: &Path) -> io::Result<(Credentials, bool)> {
        match Credentials::load(path) {
            Ok(creds) => Ok((creds, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let creds = Credentials { username: DEFAULT_USER.into(), password: random_password()? };
                let json = serde_json::to_vec_pretty(&creds).map_err(io::Error::other)?;
                ferrofaas_provider::fsutil::write_atomic(path, &json, 0o600)?;
                Ok((creds, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the credentials at `path`, which must exist.
    pub fn load(path: &Path) -> io::Result<Credentials> {
        let bytes = std::fs::read(path)?;
        let creds: Credentials = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        if creds.username.is_empty() || creds.password.is_empty() {
            return Err(io::Error::other(format!("{}: the username or password is empty", path.display())));
        }
        Ok(creds)
    }

    /// Does an `Authorization` header carry these credentials?
    pub fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some(value) = header.and_then(|h| h.to_str().ok()) else { return false };
        let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return false;
        };
        let Some(decoded) = base64::decode(encoded.trim()) else { return false };
        let expected = format!("{}:{}", self.username, self.password);
        constant_time_eq(&decoded, expected.as_bytes())
    }

    /// The `Authorization` header value for these credentials.
    pub fn header_value(&self) -> String {
        format!("Basic {}", base64::encode(format!("{}:{}", self.username, self.password).as_bytes()))
    }
}

/// Equal, in a time that depends on the lengths alone.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut raw = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(raw)
}

/// 32 characters from the operating system's random source.
fn random_password() -> io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let raw: [u8; 64] = random_bytes()?;
    // 256 is not a multiple of the alphabet: drop bytes past the last full
    // cycle, so that every character is equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let out: String = raw
        .iter()
        .filter(|&&b| usize::from(b) < limit)
        .take(32)
        .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect();
    if out.len() < 32 {
        return random_password();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let (a, created) = Credentials::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(a.username, "admin");
        assert_eq!(a.password.len(), 32);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (b, created) = Credentials::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        assert!(!format!("{a:?}").contains(&a.password), "Debug must not show the password");
    }

    #[test]
    fn checks_basic_auth() {
        let c = Credentials { username: "admin".into(), password: "s3cret".into() };
        let good = HeaderValue::from_str(&c.header_value()).unwrap();
        assert!(c.check(Some(&good)));
        for bad in ["Basic YWRtaW46d3Jvbmc=", "Bearer", "Bearer s3cret", "Basic !!", ""] {
            assert!(!c.check(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!c.check(None));
    }
}
