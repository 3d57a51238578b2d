//! Bearer tokens handed out by the Flight Handshake: `arka1.<user>.<expiry>.<tag>`, the user
//! name in URL-safe base64, the expiry in Unix seconds, and an HMAC tag keyed from the
//! cluster secret. A token is checked without any state, so one issued by any node is good
//! on every node of the cluster (a client redirected to the leader keeps its token); it ends
//! at its expiry, and the user's role is looked up in the auth file at every call, so
//! editing the file and restarting takes a role or a user away at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arka_cluster::ClusterSecret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const PREFIX: &str = "arka1";
/// Longest token accepted; anything longer is refused before it is decoded.
pub const TOKEN_BYTES_MAX: usize = 1024;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claims(user_b64: &str, expiry: u64) -> Vec<u8> {
    format!("{PREFIX}.{user_b64}.{expiry}").into_bytes()
}

/// A token for `user`, good for `ttl`.
pub fn issue(secret: &ClusterSecret, user: &str, ttl: Duration) -> String {
    let user_b64 = URL_SAFE_NO_PAD.encode(user);
    let expiry = now_secs().saturating_add(ttl.as_secs());
    let tag = URL_SAFE_NO_PAD.encode(secret.token_tag(&claims(&user_b64, expiry)));
    format!("{PREFIX}.{user_b64}.{expiry}.{tag}")
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not one of ours: malformed, or its tag does not verify.
    Invalid,
    Expired,
}

/// The user a token names, if it is genuine and not expired.
pub fn check(secret: &ClusterSecret, token: &str) -> Result<String, TokenError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(TokenError::Invalid);
    }
    let mut parts = token.split('.');
    let (Some(PREFIX), Some(user_b64), Some(expiry), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Invalid);
    };
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Invalid)?;
    if !secret.token_tag_matches(&claims(user_b64, expiry), &tag) {
        return Err(TokenError::Invalid);
    }
    if expiry <= now_secs() {
        return Err(TokenError::Expired);
    }
    let user = URL_SAFE_NO_PAD
        .decode(user_b64)
        .map_err(|_| TokenError::Invalid)?;
    String::from_utf8(user).map_err(|_| TokenError::Invalid)
}

/// Whether `token` has the shape of an issued token (as opposed to a static service token).
pub fn is_issued(token: &str) -> bool {
    token.starts_with("arka1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes()).expect("secret")
    }

    #[test]
    fn a_token_is_good_on_any_holder_of_the_secret_until_it_expires() {
        let ours = secret("0123456789abcdef");
        let token = issue(&ours, "ann.o'neil", Duration::from_secs(60));
        assert!(is_issued(&token));
        assert_eq!(
            check(&secret("0123456789abcdef"), &token),
            Ok("ann.o'neil".into())
        );
        assert_eq!(
            check(&secret("fedcba9876543210"), &token),
            Err(TokenError::Invalid)
        );
        let expired = issue(&ours, "ann", Duration::ZERO);
        assert_eq!(check(&ours, &expired), Err(TokenError::Expired));
    }

    #[test]
    fn altered_or_malformed_tokens_are_invalid() {
        let ours = secret("0123456789abcdef");
        let token = issue(&ours, "ann", Duration::from_secs(60));
        let parts: Vec<&str> = token.split('.').collect();
        let later = format!("{}.{}.{}.{}", parts[0], parts[1], u64::MAX, parts[3]);
        let other_user = format!(
            "{}.{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("root"),
            parts[2],
            parts[3]
        );
        for bad in [
            later,
            other_user,
            "arka1.x".into(),
            "".into(),
            "a".repeat(2000),
            format!("{token}.x"),
        ] {
            assert_eq!(check(&ours, &bad), Err(TokenError::Invalid), "{bad}");
        }
    }
}
