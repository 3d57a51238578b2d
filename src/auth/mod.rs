//! Client authentication and authorization on the Flight port.
//!
//! With an auth file configured, every Flight call but Handshake must carry
//! `authorization: Bearer <token>`; the Handshake takes `authorization: Basic …` (what
//! pyarrow's `authenticate_basic_token`, the ADBC Flight SQL driver and Java's
//! `BasicCallHeaderAuthenticator` send) and answers with the bearer token in its response
//! headers. Each user has a role; each call needs a [`Right`] that the role must grant.
//! Without an auth file, every caller is [`Caller::anonymous`], with every right (a first try
//! on a laptop; a production node sets `auth-file`).

pub mod audit;
pub mod token;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use arka_cluster::ClusterSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

pub use audit::{Audit, AuditEvent};
pub use users::{hash_password, User, Users};

/// Password checks (argon2, ~20 MiB and tens of ms each) run at once at most; more sign-ins
/// wait, so that a flood of Handshakes costs bounded memory and CPU.
const PASSWORD_CHECKS_MAX: usize = 2;
/// How long a sign-in waits for a password check slot before it is refused.
const PASSWORD_CHECK_WAIT_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, right: Right) -> bool {
        let needed = match right {
            Right::Read => Role::Reader,
            Right::Write => Role::Writer,
            Right::Admin => Role::Admin,
        };
        self >= needed
    }
}

/// What a call needs: reading (and status), writing (and creating tables, producer
/// sessions, flush), or administering (dropping tables, retention, membership, snapshots,
/// faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Read,
    Write,
    Admin,
}

/// Who made a call, as the Flight service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    /// Table name prefixes the caller may touch; `None`: every table.
    pub tables: Option<Vec<String>>,
}

impl Caller {
    /// Every caller of a node without an auth file.
    pub fn anonymous() -> Self {
        Self {
            user: "anonymous".into(),
            role: Role::Admin,
            tables: None,
        }
    }

    fn of(user: &User) -> Self {
        Self {
            user: user.name.clone(),
            role: user.role,
            tables: user.tables.clone(),
        }
    }

    pub fn may_use_table(&self, table: &str) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|prefixes| prefixes.iter().any(|p| table.starts_with(p.as_str())))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("unknown user or wrong password")]
    BadPassword,
    #[error("the bearer token is not valid for this cluster")]
    BadToken,
    #[error("{}", crate::wire::TOKEN_EXPIRED)]
    Expired,
    #[error("user {0:?} no longer exists")]
    UnknownUser(String),
    #[error("too many sign-ins at once: retry")]
    Busy,
}

/// Checks credentials against the auth file and issues bearer tokens.
pub struct Authenticator {
    users: Arc<Users>,
    secret: ClusterSecret,
    token_ttl: Duration,
    password_checks: Arc<Semaphore>,
}

impl Authenticator {
    pub fn new(users: Users, secret: ClusterSecret, token_ttl: Duration) -> Self {
        Self {
            users: Arc::new(users),
            secret,
            token_ttl,
            password_checks: Arc::new(Semaphore::new(PASSWORD_CHECKS_MAX)),
        }
    }

    /// The caller a bearer token stands for: a token issued by a Handshake (of any node of
    /// the cluster), or a user's static service token.
    pub fn bearer(&self, token: &str) -> Result<Caller, AuthError> {
        if !token::is_issued(token) {
            return self
                .users
                .by_static_token(token)
                .map(Caller::of)
                .ok_or(AuthError::BadToken);
        }
        let name = token::check(&self.secret, token).map_err(|e| match e {
            token::TokenError::Invalid => AuthError::BadToken,
            token::TokenError::Expired => AuthError::Expired,
        })?;
        self.users
            .get(&name)
            .map(Caller::of)
            .ok_or(AuthError::UnknownUser(name))
    }

    /// Checks a user's password and issues a token for it.
    pub async fn sign_in(&self, user: &str, password: &str) -> Result<(Caller, String), AuthError> {
        let _slot = tokio::time::timeout(
            PASSWORD_CHECK_WAIT_MAX,
            self.password_checks.clone().acquire_owned(),
        )
        .await
        .map_err(|_| AuthError::Busy)?
        .map_err(|_| AuthError::Busy)?;
        let users = self.users.clone();
        let (user, password) = (user.to_string(), password.to_string());
        let caller = tokio::task::spawn_blocking(move || {
            users.verify_password(&user, &password).map(Caller::of)
        })
        .await
        .map_err(|_| AuthError::Busy)?
        .ok_or(AuthError::BadPassword)?;
        let token = token::issue(&self.secret, &caller.user, self.token_ttl);
        Ok((caller, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_the_rights_of_the_roles_below_it() {
        use Right::*;
        let table = [
            (Role::Reader, [true, false, false]),
            (Role::Writer, [true, true, false]),
            (Role::Admin, [true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Read, Write, Admin].map(|right| role.allows(right));
            assert_eq!(got, expected, "{role:?}");
        }
    }

    #[tokio::test]
    async fn a_signed_in_user_gets_a_token_that_names_it_with_the_files_role() {
        let hash = hash_password("pw").expect("hash");
        let users = Users::parse(&format!(
            "[[user]]\nname = \"ann\"\npassword-hash = \"{hash}\"\nrole = \"admin\"\n"
        ))
        .expect("users");
        let secret = ClusterSecret::new(b"0123456789abcdef").expect("secret");
        let auth = Authenticator::new(users, secret, Duration::from_secs(60));
        assert_eq!(
            auth.sign_in("ann", "nope").await.err(),
            Some(AuthError::BadPassword)
        );
        let (caller, token) = auth.sign_in("ann", "pw").await.expect("sign in");
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(auth.bearer(&token), Ok(caller));
        assert_eq!(auth.bearer("made up"), Err(AuthError::BadToken));
    }
}
