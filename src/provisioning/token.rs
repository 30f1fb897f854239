//! Where the Pairing agent token comes from: `pairing_token_file`, or a token an administrator
//! hands over with the D-Bus method `Register`. Provisioning waits on [`Tokens::changed`] when a
//! token is missing or refused, so it never retries a refused token and wakes up as soon as a
//! new one appears (the file is checked every [`FILE_POLL`]: a `stat` of one small file).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::watch;

use crate::credentials::Secret;

/// How often the token file is looked at while provisioning waits for a token.
pub const FILE_POLL: Duration = Duration::from_secs(2);
/// Longest token accepted (file or D-Bus): Astarte JWTs are well under 4 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("the token is not a JWT (three base64url parts separated by dots)")]
    NotJwt,
}

/// The agent token sources, shared by provisioning and the D-Bus face.
#[derive(Debug)]
pub struct Tokens {
    file: Option<PathBuf>,
    given: Mutex<Option<Secret>>,
    /// Bumped by every `Register`: wakes a waiting provisioning.
    generation: watch::Sender<u64>,
}

/// Which token an attempt used: provisioning waits until it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    generation: u64,
    file: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// A token in hand, and where it came from (for operator messages).
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub origin: String,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum NoToken {
    #[error("no agent token: neither pairing_token_file nor a token given with Register")]
    NotConfigured,
    #[error("the agent token file {path} is missing or empty")]
    Missing { path: PathBuf },
    #[error("couldn't read the agent token file {path}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent token from {origin} is unusable: {problem}")]
    Malformed { origin: String, problem: TokenError },
    #[error("the agent token from {origin} expired {ago_secs} s ago")]
    Expired { origin: String, ago_secs: u64 },
}

impl Tokens {
    pub fn new(file: Option<PathBuf>) -> Tokens {
        Tokens {
            file,
            given: Mutex::new(None),
            generation: watch::Sender::new(0),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Takes a token from `Register`; it is kept in memory only (never written to disk) and
    /// wins over the file.
    pub fn give(&self, token: &str) -> Result<(), TokenError> {
        let token = check(token)?;
        *self.given.lock().unwrap_or_else(|e| e.into_inner()) = Some(Secret::new(token));
        self.generation.send_modify(|n| *n += 1);
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            generation: *self.generation.borrow(),
            file: self.file.as_deref().and_then(stamp),
        }
    }

    /// The token to register with: the one given over D-Bus, else the file's. Blocking (reads
    /// a small file).
    pub fn current(&self) -> Result<Token, NoToken> {
        if let Some(value) = self.given.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return usable(value, "the Register call".to_owned());
        }
        let path = self.file.as_ref().ok_or(NoToken::NotConfigured)?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(NoToken::Missing { path: path.clone() });
            }
            Err(source) => {
                return Err(NoToken::Unreadable {
                    path: path.clone(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Err(NoToken::Missing { path: path.clone() });
        }
        usable(Secret::new(text.trim()), path.display().to_string())
    }

    /// Resolves once the token differs from `since`: a `Register` call, or the file created,
    /// replaced or rewritten.
    pub async fn changed(&self, since: &Snapshot) {
        let mut generation = self.generation.subscribe();
        loop {
            if *generation.borrow_and_update() != since.generation {
                return;
            }
            if self.file.as_deref().and_then(stamp) != since.file {
                return;
            }
            tokio::select! {
                _ = generation.changed() => {}
                () = tokio::time::sleep(FILE_POLL), if self.file.is_some() => {}
            }
        }
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

fn usable(value: Secret, origin: String) -> Result<Token, NoToken> {
    check(value.expose()).map_err(|problem| NoToken::Malformed {
        origin: origin.clone(),
        problem,
    })?;
    if let Some(exp) = expiry(value.expose()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if exp <= now {
            return Err(NoToken::Expired {
                origin,
                ago_secs: now - exp,
            });
        }
    }
    Ok(Token { value, origin })
}

/// Shape only: exactly three dot-separated parts (header, payload, signature), each non-empty
/// base64url text (`A`–`Z`, `a`–`z`, `0`–`9`, `-`, `_`; JWTs carry no padding). Pairing
/// checks the signature itself.
fn check(token: &str) -> Result<&str, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|part| base64url(part)) {
        return Err(TokenError::NotJwt);
    }
    Ok(token)
}

/// The `exp` claim (seconds since 1970), when the payload is readable and has one.
fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2ln",
            part(&serde_json::json!({"alg": "ES256"})),
            part(&claims)
        )
    }

    #[test]
    fn a_given_token_wins_over_the_file_and_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, jwt(serde_json::json!({"a_pa": [".*::.*"]}))).unwrap();
        let tokens = Tokens::new(Some(file.clone()));
        assert_eq!(tokens.current().unwrap().origin, file.display().to_string());
        assert_eq!(tokens.give("   "), Err(TokenError::Empty));
        assert_eq!(tokens.give("not a jwt"), Err(TokenError::NotJwt));
        let given = jwt(serde_json::json!({}));
        tokens.give(&given).unwrap();
        let current = tokens.current().unwrap();
        assert_eq!(current.value.expose(), given);
        assert_eq!(current.origin, "the Register call");
    }

    #[test]
    fn a_token_is_three_non_empty_base64url_parts() {
        for good in [
            "a.b.c",
            "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
            "A-_.0.z_-",
            " a.b.c\n",
        ] {
            assert_eq!(check(good), Ok(good.trim()), "{good:?}");
        }
        for bad in [
            "a.b", "a.b.c.d", "a.b.", ".b.c", "a..c", "-.a-.∑", "a.b.c d", "a.b.c=", "a.b+.c",
            "a/b.c.d", "a.b.é",
        ] {
            assert_eq!(check(bad), Err(TokenError::NotJwt), "{bad:?}");
        }
        assert_eq!(check(" \t"), Err(TokenError::Empty));
        let long = format!("a.b.{}", "c".repeat(MAX_TOKEN_LEN));
        assert_eq!(check(&long), Err(TokenError::TooLong));
    }

    #[test]
    fn an_expired_token_is_refused_before_pairing_sees_it() {
        let tokens = Tokens::new(None);
        tokens.give(&jwt(serde_json::json!({"exp": 1000}))).unwrap();
        assert!(matches!(tokens.current(), Err(NoToken::Expired { .. })));
        tokens
            .give(&jwt(serde_json::json!({"exp": u64::MAX / 2})))
            .unwrap();
        assert!(tokens.current().is_ok());
    }

    #[test]
    fn missing_and_empty_files_are_missing_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let tokens = Tokens::new(Some(file.clone()));
        assert!(matches!(tokens.current(), Err(NoToken::Missing { .. })));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(tokens.current(), Err(NoToken::Missing { .. })));
        assert!(matches!(
            Tokens::new(None).current(),
            Err(NoToken::NotConfigured)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn changed_wakes_on_register_and_on_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let tokens = std::sync::Arc::new(Tokens::new(Some(file.clone())));
        let before = tokens.snapshot();
        let waiter = tokio::spawn({
            let tokens = tokens.clone();
            async move { tokens.changed(&before).await }
        });
        tokio::time::sleep(FILE_POLL * 3).await;
        assert!(!waiter.is_finished(), "nothing changed yet");
        std::fs::write(&file, jwt(serde_json::json!({}))).unwrap();
        tokio::time::timeout(FILE_POLL * 2, waiter)
            .await
            .expect("a new file wakes the waiter")
            .unwrap();

        let before = tokens.snapshot();
        let waiter = tokio::spawn({
            let tokens = tokens.clone();
            async move { tokens.changed(&before).await }
        });
        tokio::task::yield_now().await;
        tokens.give(&jwt(serde_json::json!({}))).unwrap();
        tokio::time::timeout(Duration::from_millis(10), waiter)
            .await
            .expect("Register wakes the waiter")
            .unwrap();
    }
}
