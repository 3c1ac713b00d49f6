//! SASL/PLAIN (RFC 4616): one client message, `[authzid] NUL authcid NUL passwd`, checked in
//! Kafka's order with Kafka's texts (PlainSaslServer): the user name and password must be
//! present, the password is verified, then an authorization id other than the user name is
//! refused. The principal is always the user name.

use crate::AuthError;

/// A parsed PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub authzid: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

/// Splits the client's message; refuses anything but exactly three NUL-separated UTF-8 parts.
pub fn parse(message: &[u8]) -> Result<PlainMessage<'_>, AuthError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| AuthError::Malformed("Invalid SASL/PLAIN response: not UTF-8".into()))?;
    let parts: Vec<&str> = text.splitn(4, '\0').collect();
    if parts.len() != 3 {
        return Err(AuthError::Malformed(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        )));
    }
    Ok(PlainMessage { authzid: parts[0], username: parts[1], password: parts[2] })
}

/// Authenticates one PLAIN message: `verify(user, password)` says whether the pair is valid
/// (in constant time: see [`crate::scram::ScramCredential::verify_password`]). Returns the
/// authenticated user name.
pub fn authenticate(message: &[u8], verify: impl FnOnce(&str, &str) -> bool) -> Result<&str, AuthError> {
    let m = parse(message)?;
    if m.username.is_empty() {
        return Err(AuthError::Malformed("Authentication failed: username not specified".into()));
    }
    if m.password.is_empty() {
        return Err(AuthError::Malformed("Authentication failed: password not specified".into()));
    }
    if !verify(m.username, m.password) {
        return Err(AuthError::Malformed("Authentication failed: Invalid username or password".into()));
    }
    if !m.authzid.is_empty() && m.authzid != m.username {
        return Err(AuthError::AuthzidMismatch);
    }
    Ok(m.username)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(u: &str, p: &str) -> bool {
        u == "alice" && p == "secret"
    }

    #[test]
    fn accepts_the_three_forms_kafka_accepts() {
        assert_eq!(authenticate(b"\0alice\0secret", ok), Ok("alice"));
        assert_eq!(authenticate(b"alice\0alice\0secret", ok), Ok("alice"));
    }

    #[test]
    fn refuses_with_kafkas_texts_in_kafkas_order() {
        let text = |m: &[u8]| authenticate(m, ok).expect_err("refused").to_string();
        assert_eq!(text(b"alice\0secret"), "Invalid SASL/PLAIN response: expected 3 tokens, got 2");
        assert_eq!(text(b"a\0b\0c\0d"), "Invalid SASL/PLAIN response: expected 3 tokens, got 4");
        assert_eq!(text(b"\0\0secret"), "Authentication failed: username not specified");
        assert_eq!(text(b"\0alice\0"), "Authentication failed: password not specified");
        assert_eq!(text(b"\0alice\0wrong"), "Authentication failed: Invalid username or password");
        assert_eq!(text(b"\0bob\0secret"), "Authentication failed: Invalid username or password");
        // A wrong password is reported before a mismatched authzid.
        assert_eq!(text(b"bob\0alice\0wrong"), "Authentication failed: Invalid username or password");
        assert_eq!(authenticate(b"bob\0alice\0secret", ok), Err(AuthError::AuthzidMismatch));
        assert!(text(&[0xff, 0, b'a', 0, b'b']).contains("not UTF-8"));
    }
}
