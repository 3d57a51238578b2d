//! The Flight port's trust rule: one interceptor reads every call's `authorization` header
//! (a bearer token is checked there, before any handler runs); each handler then names the
//! [`Right`] it needs, and the guard refuses a caller without it. Refusals and admin actions
//! go to the audit log.

use std::sync::Arc;

use arrow_flight::HandshakeResponse;
use base64::Engine;
use futures::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Response, Status};

use crate::auth::{Audit, AuditEvent, AuthError, Authenticator, Caller, Right};

const AUTHORIZATION: &str = "authorization";

/// What a call presented, as the interceptor found it. Not `Debug`: it may hold a password.
#[derive(Clone)]
pub enum Presented {
    Caller(Caller),
    /// Basic credentials, which only Handshake takes.
    Basic {
        user: String,
        password: String,
    },
    Nothing,
}

fn source_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// Reads the `authorization` header of every Flight call.
#[derive(Clone)]
pub struct Authenticate {
    auth: Option<Arc<Authenticator>>,
    audit: Audit,
}

impl Authenticate {
    /// `auth`: `None` when the node has no auth file (every caller is anonymous).
    pub fn new(auth: Option<Arc<Authenticator>>, audit: Audit) -> Self {
        Self { auth, audit }
    }

    fn presented<T>(&self, request: &Request<T>) -> Result<Presented, AuthError> {
        let Some(auth) = &self.auth else {
            return Ok(Presented::Caller(Caller::anonymous()));
        };
        let Some(header) = request.metadata().get(AUTHORIZATION) else {
            return Ok(Presented::Nothing);
        };
        let header = header.to_str().map_err(|_| AuthError::BadToken)?;
        if let Some(token) = strip_scheme(header, "bearer") {
            return auth.bearer(token).map(Presented::Caller);
        }
        if let Some(encoded) = strip_scheme(header, "basic") {
            return basic_credentials(encoded)
                .map(|(user, password)| Presented::Basic { user, password })
                .ok_or(AuthError::BadPassword);
        }
        Err(AuthError::BadToken)
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.presented(&request) {
            Ok(presented) => {
                request.extensions_mut().insert(presented);
                Ok(request)
            }
            Err(error) => {
                self.audit.record(AuditEvent {
                    user: "?".into(),
                    action: "flight call".into(),
                    target: String::new(),
                    outcome: format!("refused: {error}"),
                    source: source_of(&request),
                });
                Err(Status::unauthenticated(error.to_string()))
            }
        }
    }
}

/// `header` without its `scheme ` prefix (the scheme compared without case).
fn strip_scheme<'h>(header: &'h str, scheme: &str) -> Option<&'h str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Holds each call to the right it needs.
#[derive(Clone)]
pub struct Guard {
    audit: Audit,
}

impl Guard {
    pub fn new(audit: Audit) -> Self {
        Self { audit }
    }

    /// The caller of `request` if it has `right`; refused (and audited) otherwise.
    /// `action` and `target` name the call in errors and in the audit log.
    pub fn require<T>(
        &self,
        request: &Request<T>,
        right: Right,
        action: &str,
        target: &str,
    ) -> Result<Caller, Status> {
        let refused = |status: Status, user: &str| {
            self.refuse(user, action, target, &source_of(request), status)
        };
        match request.extensions().get::<Presented>() {
            Some(Presented::Caller(caller)) if caller.role.allows(right) => Ok(caller.clone()),
            Some(Presented::Caller(caller)) => Err(refused(
                Status::permission_denied(format!(
                    "{action} needs the {} right; user {:?} has the role {}",
                    right_name(right),
                    caller.user,
                    caller.role.as_str()
                )),
                &caller.user,
            )),
            Some(Presented::Basic { user, .. }) => Err(refused(
                Status::unauthenticated(
                    "Basic credentials are taken only by Handshake: sign in there and send the bearer token it returns (authorization: Bearer …)",
                ),
                user,
            )),
            Some(Presented::Nothing) | None => Err(refused(
                Status::unauthenticated(format!(
                    "{action} needs authentication: sign in with a Handshake (authorization: Basic …) and send the bearer token it returns (authorization: Bearer …)"
                )),
                "?",
            )),
        }
    }

    /// Refuses `caller` a table outside its grants.
    pub fn table<T>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        action: &str,
        table: &str,
    ) -> Result<(), Status> {
        self.table_at(&source_of(request), caller, action, table)
    }

    /// [`Guard::table`] for a call whose request is gone (a write stream names its table
    /// in its first message).
    pub fn table_at(
        &self,
        source: &str,
        caller: &Caller,
        action: &str,
        table: &str,
    ) -> Result<(), Status> {
        if caller.may_use_table(table) {
            return Ok(());
        }
        let status = Status::permission_denied(format!(
            "user {:?} has no grant for table {}",
            caller.user,
            crate::quote::quoted(table)
        ));
        Err(self.refuse(&caller.user, action, table, source, status))
    }

    fn refuse(
        &self,
        user: &str,
        action: &str,
        target: &str,
        source: &str,
        status: Status,
    ) -> Status {
        self.audit.record(AuditEvent {
            user: user.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: format!("refused: {}", status.message()),
            source: source.to_string(),
        });
        status
    }

    /// Records an admin action and its outcome.
    pub fn record_admin<T>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        action: &str,
        target: &str,
        outcome: Result<(), &Status>,
    ) {
        let outcome = match outcome {
            Ok(()) => "ok".to_string(),
            Err(status) => format!("failed: {:?}: {}", status.code(), status.message()),
        };
        self.audit.record(AuditEvent {
            user: caller.user.clone(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            source: source_of(request),
        });
    }

    pub fn source<T>(request: &Request<T>) -> String {
        source_of(request)
    }
}

fn right_name(right: Right) -> &'static str {
    match right {
        Right::Read => "read",
        Right::Write => "write",
        Right::Admin => "admin",
    }
}

type HandshakeStream = futures::stream::BoxStream<'static, Result<HandshakeResponse, Status>>;

/// The Handshake: Basic credentials in, `authorization: Bearer <token>` back (also as the
/// response's payload). Without an auth file it succeeds empty, as before.
pub async fn handshake<T>(
    auth: Option<&Authenticator>,
    guard: &Guard,
    request: &Request<T>,
) -> Result<Response<HandshakeStream>, Status> {
    let Some(auth) = auth else {
        return Ok(Response::new(futures::stream::empty().boxed()));
    };
    let source = source_of(request);
    let (user, password) = match request.extensions().get::<Presented>() {
        Some(Presented::Basic { user, password }) => (user.clone(), password.clone()),
        // A valid bearer token: nothing to exchange.
        Some(Presented::Caller(_)) => return Ok(Response::new(futures::stream::empty().boxed())),
        _ => {
            let status = Status::unauthenticated(
                "Handshake needs Basic credentials (authorization: Basic base64(user:password))",
            );
            return Err(guard.refuse("?", "handshake", "", &source, status));
        }
    };
    let (_, token) = auth.sign_in(&user, &password).await.map_err(|e| {
        let status = match e {
            AuthError::Busy => Status::unavailable(e.to_string()),
            _ => Status::unauthenticated(e.to_string()),
        };
        guard.refuse(&user, "handshake", "", &source, status)
    })?;
    let header = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|e| Status::internal(format!("token header: {e}")))?;
    let payload = HandshakeResponse {
        protocol_version: 0,
        payload: token.into_bytes().into(),
    };
    let mut response = Response::new(futures::stream::iter([Ok(payload)]).boxed());
    response.metadata_mut().insert(AUTHORIZATION, header);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse() {
        assert_eq!(strip_scheme("Bearer abc", "bearer"), Some("abc"));
        assert_eq!(strip_scheme("bearer  abc ", "bearer"), Some("abc"));
        assert_eq!(strip_scheme("Basic abc", "bearer"), None);
        let encoded = base64::engine::general_purpose::STANDARD.encode("ann:p:w");
        assert_eq!(
            basic_credentials(&encoded),
            Some(("ann".to_string(), "p:w".to_string()))
        );
        assert_eq!(basic_credentials("not base64!"), None);
    }
}
