//! API tokens scoped to one namespace and a role, beside the admin's basic
//! auth: `Authorization: Bearer fft_<id>_<secret>`, as faas-cli's `--token`
//! sends it.
//!
//! A token is shown once, when it is made (its secret: 32 random bytes in
//! hex). The gateway keeps its id, name,
//! namespace, role and the SHA-256 of the whole token (the secret is 256
//! random bits from the operating system: a slow hash would add nothing),
//! in `tokens.json` (mode 0600) in the state folder. A request's token is
//! found by its id and its digest compared in constant time; a revoked
//! token is gone from the table at once.
//!
//! Gateways that share a store (a Swarm's, on NATS) keep their tokens on
//! its [`Board`] too (`token.<id>`): a token is made or revoked there
//! first, and every gateway applies each change as it comes (a revoked
//! token is refused by the others once the change reaches them, within
//! milliseconds). The file is then this gateway's copy.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use ferrofaas_types::hex;
use ferrofaas_usage::Board;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do, each role all that the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the namespace's functions, secrets' names, logs and usage.
    Read,
    /// And call its private functions.
    Invoke,
    /// And deploy, update, scale and remove its functions and secrets.
    Deploy,
    /// And make and revoke its tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Invoke => "invoke",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }
}

/// A token as kept (no secret) and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub role: Role,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    info: TokenInfo,
    /// SHA-256 of the whole token, hex.
    sha256: String,
}

/// Who a request to `/system/*` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The admin's basic auth (or a gateway without auth): everything.
    Admin,
    /// A token: its namespace, at its role.
    Token { id: String, namespace: String, role: Role },
}

impl Caller {
    /// May this caller act at `role` in `namespace`?
    pub fn may(&self, role: Role, namespace: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Token { namespace: ns, role: r, .. } => *r >= role && ns == namespace,
        }
    }
}

/// Who may use the gateway: the admin (basic auth) and the tokens.
pub struct Access {
    /// `None`: no auth, every caller is the admin.
    pub credentials: Option<crate::auth::Credentials>,
    pub tokens: Arc<Tokens>,
}

impl Access {
    /// The caller an `Authorization` header makes, if any.
    pub fn caller(&self, header: Option<&HeaderValue>) -> Option<Caller> {
        let Some(creds) = &self.credentials else { return Some(Caller::Admin) };
        let header = header?;
        if creds.check(Some(header)) {
            return Some(Caller::Admin);
        }
        self.tokens.verify(header)
    }

    /// Is this `Authorization` the platform's own: the admin's credentials
    /// or one of its tokens? Such a header is never passed on to a
    /// function.
    pub fn is_platform_credential(&self, header: &HeaderValue) -> bool {
        let bytes = header.as_bytes();
        let bearer = bytes.len() > 11
            && bytes[..7].eq_ignore_ascii_case(b"bearer ")
            && bytes[7..].starts_with(b"fft_");
        bearer || self.credentials.as_ref().is_some_and(|c| c.check(Some(header)))
    }
}

const PREFIX: &str = "fft_";

/// Most tokens one namespace may have: each one made rewrites the file.
pub const MAX_PER_NAMESPACE: usize = 1000;

/// The tokens of a gateway.
pub struct Tokens {
    path: Option<PathBuf>,
    table: ArcSwap<HashMap<String, Arc<Stored>>>,
    write: Mutex<()>,
    /// Where the gateways sharing a store keep them, once shared.
    board: OnceLock<Arc<dyn Board>>,
}

const BOARD_PREFIX: &str = "token.";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// No tokens, kept nowhere (tests).
    pub fn in_memory() -> Tokens {
        Tokens { path: None, table: ArcSwap::default(), write: Mutex::new(()), board: OnceLock::new() }
    }

    /// The tokens kept at `path` (none if it does not exist yet).
    pub fn open(path: PathBuf) -> io::Result<Tokens> {
        let stored: Vec<Stored> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let table = stored.into_iter().map(|s| (s.info.id.clone(), Arc::new(s))).collect();
        Ok(Tokens {
            path: Some(path),
            table: ArcSwap::from_pointee(table),
            write: Mutex::new(()),
            board: OnceLock::new(),
        })
    }

    /// Keeps the tokens on `board`, with the other gateways': those this
    /// gateway had are put there (unless the board had them: one it
    /// deleted is deleted here), and from then on every change there is
    /// applied here.
    pub async fn share(self: &Arc<Self>, board: Arc<dyn Board>) -> Result<(), ferrofaas_usage::UsageError> {
        let entries: Vec<(String, Vec<u8>)> = self
            .table
            .load()
            .values()
            .filter_map(|s| Some((format!("{BOARD_PREFIX}{}", s.info.id), serde_json::to_vec(&**s).ok()?)))
            .collect();
        // Beside the tokens' file: this gateway's tokens are on the board
        // (so one the board lacks was revoked, never to be put back).
        let marker = self.path.as_ref().map(|p| p.with_extension("shared"));
        let followed_before = marker.as_ref().is_some_and(|m| m.exists());
        let local = ferrofaas_usage::Local { entries, followed_before };
        let weak = Arc::downgrade(self);
        let apply = move |key: &str, value: Option<&[u8]>| {
            if let Some(tokens) = weak.upgrade() {
                tokens.apply(key, value);
            }
        };
        board.follow(BOARD_PREFIX, local, Box::new(apply)).await?;
        if let Some(marker) = marker.filter(|_| !followed_before) {
            ferrofaas_provider::fsutil::write_atomic(&marker, b"", 0o600)
                .map_err(|e| ferrofaas_usage::UsageError::Store(format!("{}: {e}", marker.display())))?;
        }
        let _ = self.board.set(board);
        Ok(())
    }

    /// A change from the board: `key`'s token as stored, or `None` once
    /// revoked. One that does not read as a token of its key is refused.
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let Some(id) = key.strip_prefix(BOARD_PREFIX) else { return };
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut table: HashMap<String, Arc<Stored>> = (**self.table.load()).clone();
        match value {
            Some(json) => match serde_json::from_slice::<Stored>(json) {
                Ok(s) if s.info.id == id && hex::decode::<32>(&s.sha256).is_some() => {
                    table.insert(id.to_owned(), Arc::new(s));
                }
                _ => {
                    tracing::warn!(%key, "a shared token does not read as one; passed over");
                    return;
                }
            },
            None => {
                if table.remove(id).is_none() {
                    return;
                }
            }
        }
        if let Err(e) = self.save(&table) {
            tracing::warn!(error = %e, "could not keep the shared tokens in the state folder");
        }
        self.table.store(Arc::new(table));
    }

    /// Stores `stored` on the board, if shared (`None`: deletes `id`).
    async fn publish(&self, id: &str, stored: Option<&Stored>) -> io::Result<()> {
        let Some(board) = self.board.get() else { return Ok(()) };
        let json = stored.map(serde_json::to_vec).transpose().map_err(io::Error::other)?;
        board.put(&format!("{BOARD_PREFIX}{id}"), json).await.map_err(io::Error::other)
    }

    fn save(&self, table: &HashMap<String, Arc<Stored>>) -> io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut all: Vec<&Stored> = table.values().map(|s| &**s).collect();
        all.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        let json = serde_json::to_vec_pretty(&all).map_err(io::Error::other)?;
        ferrofaas_provider::fsutil::write_atomic(path, &json, 0o600)
    }

    /// The caller a `Bearer` header names, if it is a token of this
    /// gateway's.
    pub fn verify(&self, header: &HeaderValue) -> Option<Caller> {
        let value = header.to_str().ok()?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
        let id = token.strip_prefix(PREFIX)?.split('_').next()?;
        let table = self.table.load();
        let stored = table.get(id)?;
        let want = ferrofaas_types::hex::decode::<32>(&stored.sha256)?;
        crate::auth::constant_time_eq(&digest(token), &want).then(|| Caller::Token {
            id: stored.info.id.clone(),
            namespace: stored.info.namespace.clone(),
            role: stored.info.role,
        })
    }

    /// Makes a token; the returned string is the only time its secret is
    /// seen.
    /// `None` if the namespace has [`MAX_PER_NAMESPACE`] tokens already.
    pub async fn create(
        &self,
        name: &str,
        namespace: &str,
        role: Role,
    ) -> io::Result<Option<(TokenInfo, String)>> {
        let id = hex::encode(&crate::auth::random_bytes::<6>()?);
        let secret = hex::encode(&crate::auth::random_bytes::<32>()?);
        let token = format!("{PREFIX}{id}_{secret}");
        let info = TokenInfo {
            id: id.clone(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            role,
            created_at: ferrofaas_types::time::format(std::time::SystemTime::now(), false),
        };
        let stored = Stored { info: info.clone(), sha256: hex::encode(&digest(&token)) };
        let full = |table: &HashMap<String, Arc<Stored>>| {
            table.values().filter(|s| s.info.namespace == namespace).count() >= MAX_PER_NAMESPACE
        };
        if full(&self.table.load()) {
            return Ok(None);
        }
        self.publish(&id, Some(&stored)).await?;
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut table: HashMap<String, Arc<Stored>> = (**self.table.load()).clone();
        table.insert(id, Arc::new(stored));
        self.save(&table)?;
        self.table.store(Arc::new(table));
        Ok(Some((info, token)))
    }

    /// The tokens of `namespace` (all, with `None`), oldest first.
    pub fn list(&self, namespace: Option<&str>) -> Vec<TokenInfo> {
        let mut out: Vec<TokenInfo> = self
            .table
            .load()
            .values()
            .filter(|s| namespace.is_none_or(|ns| s.info.namespace == ns))
            .map(|s| s.info.clone())
            .collect();
        out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        out
    }

    /// The token `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<TokenInfo> {
        self.table.load().get(id).map(|s| s.info.clone())
    }

    /// Revokes `id`: refused from the next request on. `false` if unknown.
    pub async fn revoke(&self, id: &str) -> io::Result<bool> {
        if !self.table.load().contains_key(id) {
            return Ok(false);
        }
        // The board's change may reach this gateway's table first.
        self.publish(id, None).await?;
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut table: HashMap<String, Arc<Stored>> = (**self.table.load()).clone();
        if table.remove(id).is_none() {
            return Ok(true);
        }
        self.save(&table)?;
        self.table.store(Arc::new(table));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    /// A board in memory: every put is applied to every follower.
    #[derive(Default)]
    struct MemoryBoard {
        keys: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
        followers: Mutex<Vec<ferrofaas_usage::Apply>>,
    }

    #[async_trait::async_trait]
    impl Board for MemoryBoard {
        async fn put(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), ferrofaas_usage::UsageError> {
            match &value {
                Some(v) => self.keys.lock().unwrap().insert(key.to_owned(), v.clone()),
                None => self.keys.lock().unwrap().remove(key),
            };
            for apply in self.followers.lock().unwrap().iter() {
                apply(key, value.as_deref());
            }
            Ok(())
        }

        async fn follow(
            &self,
            prefix: &str,
            local: ferrofaas_usage::Local,
            apply: ferrofaas_usage::Apply,
        ) -> Result<(), ferrofaas_usage::UsageError> {
            let mut keys = self.keys.lock().unwrap();
            for (k, v) in keys.iter().filter(|(k, _)| k.starts_with(prefix)) {
                apply(k, Some(v));
            }
            for (k, v) in local.entries {
                if keys.contains_key(&k) {
                    continue;
                }
                if local.followed_before {
                    apply(&k, None);
                } else {
                    keys.insert(k, v);
                }
            }
            self.followers.lock().unwrap().push(apply);
            Ok(())
        }
    }

    #[tokio::test]
    async fn shared_tokens_are_every_gateways_and_forged_ones_are_refused() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let board: Arc<dyn Board> = Arc::new(MemoryBoard::default());
        // A token made before sharing goes to the board.
        let one = Arc::new(Tokens::open(d1.path().join("tokens.json")).unwrap());
        let (before, before_token) = one.create("old", "a", Role::Read).await.unwrap().unwrap();
        one.share(Arc::clone(&board)).await.unwrap();
        let two = Arc::new(Tokens::open(d2.path().join("tokens.json")).unwrap());
        two.share(Arc::clone(&board)).await.unwrap();
        assert!(two.verify(&bearer(&before_token)).is_some(), "the other gateway takes it");
        // Made through one, taken by the other; revoked through it, refused.
        let (made, made_token) = two.create("new", "b", Role::Deploy).await.unwrap().unwrap();
        assert!(one.verify(&bearer(&made_token)).unwrap().may(Role::Deploy, "b"));
        assert!(one.revoke(&made.id).await.unwrap());
        assert!(two.verify(&bearer(&made_token)).is_none());
        // What does not read as a token of its key is passed over.
        let mut forged = serde_json::to_value(&*one.table.load()[&before.id]).unwrap();
        forged["id"] = "ffffffffffff".into();
        board.put("token.000000000000", Some(serde_json::to_vec(&forged).unwrap())).await.unwrap();
        forged["id"] = "000000000001".into();
        forged["sha256"] = "not hex".into();
        board.put("token.000000000001", Some(serde_json::to_vec(&forged).unwrap())).await.unwrap();
        assert_eq!(one.list(None).len(), 1, "{:?}", one.list(None));
        // Revoked while a gateway was away: gone when it comes back, even
        // if the board no longer says so (its file still has it).
        drop(two);
        let again = Arc::new(Tokens::open(d2.path().join("tokens.json")).unwrap());
        assert!(again.verify(&bearer(&before_token)).is_some(), "its file has it");
        let empty: Arc<dyn Board> = Arc::new(MemoryBoard::default());
        again.share(empty).await.unwrap();
        assert!(again.verify(&bearer(&before_token)).is_none(), "followed before: the board is the truth");
    }

    #[tokio::test]
    async fn a_namespace_has_at_most_so_many_tokens() {
        let tokens = Tokens::in_memory();
        for _ in 0..MAX_PER_NAMESPACE {
            assert!(tokens.create("t", "a", Role::Read).await.unwrap().is_some());
        }
        assert!(tokens.create("t", "a", Role::Read).await.unwrap().is_none());
        assert!(tokens.create("t", "b", Role::Read).await.unwrap().is_some(), "other namespaces go on");
    }

    #[tokio::test]
    async fn tokens_verify_revoke_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let tokens = Tokens::open(path.clone()).unwrap();
        let (info, token) = tokens.create("ci", "team-a", Role::Deploy).await.unwrap().unwrap();
        assert!(token.starts_with("fft_") && token.len() > 50, "{token}");
        let caller = tokens.verify(&bearer(&token)).unwrap();
        assert_eq!(
            caller,
            Caller::Token { id: info.id.clone(), namespace: "team-a".into(), role: Role::Deploy }
        );
        assert!(caller.may(Role::Read, "team-a") && caller.may(Role::Deploy, "team-a"));
        assert!(!caller.may(Role::Admin, "team-a") && !caller.may(Role::Read, "team-b"));
        // The secret is not kept; a token one character off is refused.
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(!kept.contains(token.rsplit('_').next().unwrap()), "{kept}");
        let mut wrong = token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        assert!(tokens.verify(&bearer(&wrong)).is_none());
        assert!(tokens.verify(&bearer(&format!("fft_{}_x", info.id))).is_none());
        assert!(tokens.verify(&HeaderValue::from_static("Basic YWRtaW46eA==")).is_none());
        // Read back by a restarted gateway; revoked at once.
        let again = Tokens::open(path.clone()).unwrap();
        assert!(again.verify(&bearer(&token)).is_some());
        assert!(again.revoke(&info.id).await.unwrap());
        assert!(again.verify(&bearer(&token)).is_none());
        assert!(!again.revoke(&info.id).await.unwrap());
        assert!(Tokens::open(path).unwrap().list(None).is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tokens.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
