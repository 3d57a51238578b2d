//! The auth file: one `[[user]]` table per user, with a password hash (argon2, PHC string),
//! a role and optional table grants.
//!
//! ```toml
//! [[user]]
//! name = "ingest"
//! password-hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # `arka hash-password`
//! role = "writer"                                      # reader | writer | admin
//! tables = ["events_", "orders"]                       # optional: table name prefixes
//! token-sha256 = "…"                                   # optional: a static service token
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;

use super::Role;

/// Users one auth file may hold; a larger file is refused at start.
pub const USERS_MAX: usize = 10_000;
/// Longest user name and password accepted (a longer one is refused before it is hashed).
pub const NAME_BYTES_MAX: usize = 256;
pub const PASSWORD_BYTES_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read auth file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("bad auth file {path}: {reason}")]
    Invalid { path: String, reason: BadUsers },
}

/// What is wrong with the users of an auth file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUsers {
    #[error("{0}")]
    Toml(String),
    #[error("{0} users; at most {USERS_MAX}")]
    TooMany(usize),
    #[error("user {0:?} is listed twice")]
    Twice(String),
    #[error("user name {0:?} must be 1 to {NAME_BYTES_MAX} bytes without ':'")]
    BadName(String),
    #[error("user {name:?}: password-hash is not a PHC string: {reason}")]
    BadHash { name: String, reason: String },
    #[error("user {0:?}: token-sha256 must be 64 hex digits")]
    BadToken(String),
    #[error("user {0:?} has neither password-hash nor token-sha256: it could never sign in")]
    NoCredential(String),
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password must be 1 to {PASSWORD_BYTES_MAX} bytes")]
    Length,
    #[error("no randomness for a salt")]
    NoRandomness,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct UserEntry {
    name: String,
    password_hash: Option<String>,
    role: Role,
    tables: Option<Vec<String>>,
    token_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

/// One user of the auth file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// Table name prefixes this user may touch; `None`: every table.
    pub tables: Option<Vec<String>>,
    password_hash: Option<String>,
    token_sha256: Option<[u8; 32]>,
}

/// The users of an auth file, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: BTreeMap<String, User>,
}

impl Users {
    pub fn from_file(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| UsersError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Self, BadUsers> {
        let file: AuthFile = toml::from_str(text).map_err(|e| BadUsers::Toml(e.to_string()))?;
        if file.user.len() > USERS_MAX {
            return Err(BadUsers::TooMany(file.user.len()));
        }
        let mut by_name = BTreeMap::new();
        for entry in file.user {
            let user = check_entry(entry)?;
            if by_name.contains_key(&user.name) {
                return Err(BadUsers::Twice(user.name));
            }
            by_name.insert(user.name.clone(), user);
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    /// The user whose password this is; `None` for an unknown user or a wrong password
    /// (the caller is not told which). Costs one argon2 verification: call it off the
    /// async runtime's threads.
    pub fn verify_password(&self, name: &str, password: &str) -> Option<&User> {
        if password.len() > PASSWORD_BYTES_MAX {
            return None;
        }
        let user = self.by_name.get(name)?;
        let hash = PasswordHash::new(user.password_hash.as_deref()?).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()
            .map(|()| user)
    }

    /// The user whose static service token this is.
    pub fn by_static_token(&self, token: &str) -> Option<&User> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        self.by_name.values().find(|u| {
            u.token_sha256
                .is_some_and(|t| t.as_slice() == digest.as_ref())
        })
    }
}

fn check_entry(entry: UserEntry) -> Result<User, BadUsers> {
    let name = entry.name;
    if name.is_empty() || name.len() > NAME_BYTES_MAX || name.contains(':') {
        return Err(BadUsers::BadName(name));
    }
    if let Some(hash) = &entry.password_hash {
        PasswordHash::new(hash).map_err(|e| BadUsers::BadHash {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    }
    let token_sha256 = entry
        .token_sha256
        .as_deref()
        .map(|hex| parse_sha256(hex).ok_or_else(|| BadUsers::BadToken(name.clone())))
        .transpose()?;
    if entry.password_hash.is_none() && token_sha256.is_none() {
        return Err(BadUsers::NoCredential(name));
    }
    Ok(User {
        name,
        role: entry.role,
        tables: entry.tables,
        password_hash: entry.password_hash,
        token_sha256,
    })
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The argon2id PHC hash of `password` with a random salt, for an auth file.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() || password.len() > PASSWORD_BYTES_MAX {
        return Err(PasswordError::Length);
    }
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| PasswordError::NoRandomness)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(hash: &str) -> String {
        format!(
            "[[user]]\nname = \"ann\"\npassword-hash = \"{hash}\"\nrole = \"writer\"\ntables = [\"ev_\"]\n\
             [[user]]\nname = \"svc\"\nrole = \"reader\"\ntoken-sha256 = \"{}\"\n",
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        )
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("s3cret").expect("hash");
        let users = Users::parse(&file(&hash)).expect("parse");
        let ann = users
            .verify_password("ann", "s3cret")
            .expect("right password");
        assert_eq!((ann.role, ann.name.as_str()), (Role::Writer, "ann"));
        assert!(users.verify_password("ann", "wrong").is_none());
        assert!(users.verify_password("bob", "s3cret").is_none());
        assert!(
            users.verify_password("svc", "").is_none(),
            "no password set"
        );
        assert_eq!(ann.tables, Some(vec!["ev_".to_string()]));
    }

    #[test]
    fn static_tokens_are_found_by_their_digest() {
        let users = Users::parse(&file(&hash_password("x").expect("hash"))).expect("parse");
        // sha256("foo")
        assert_eq!(
            users.by_static_token("foo").map(|u| u.name.as_str()),
            Some("svc")
        );
        assert!(users.by_static_token("bar").is_none());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, reason) in [
            (
                "[[user]]\nname = \"a\"\nrole = \"root\"\npassword-hash = \"x\"",
                "unknown variant",
            ),
            (
                "[[user]]\nname = \"a\"\nrole = \"reader\"\npassword-hash = \"plain\"",
                "PHC",
            ),
            (
                "[[user]]\nname = \"a\"\nrole = \"reader\"",
                "could never sign in",
            ),
            (
                "[[user]]\nname = \"a:b\"\nrole = \"reader\"\ntoken-sha256 = \"00\"",
                "without ':'",
            ),
            (
                "[[user]]\nname = \"a\"\nrole = \"reader\"\ntoken-sha256 = \"00\"",
                "64 hex",
            ),
            (
                "[[user]]\nname = \"a\"\nrole = \"reader\"\npasword-hash = \"x\"",
                "unknown field",
            ),
        ] {
            let err = Users::parse(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}
