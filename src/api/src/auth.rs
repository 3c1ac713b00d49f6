//! Bearer tokens for the control surfaces.
//!
//! A token is a secret of at least [`Token::MIN_LEN`] printable characters kept in a file
//! (one line; `kora dev` and `kora cell up` create one with mode 0600). Servers load it once at
//! start; [`protect`] then lets GET and HEAD through and requires
//! `Authorization: Bearer <token>` on every other method, comparing in constant time. The
//! members of a cell (voters and brokers) present the same token to each other, so a process
//! that cannot read the cell's token file can neither join the quorum nor speak Raft to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use crate::types::ErrorBody;

/// A control-surface secret. Its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("token file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Token {
    /// Shortest secret accepted.
    pub const MIN_LEN: usize = 16;
    /// Longest secret accepted (a token file is not a place for anything else).
    pub const MAX_LEN: usize = 512;

    /// A token from its secret, checked: printable ASCII without spaces, of a sane length.
    pub fn new(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < Self::MIN_LEN || secret.len() > Self::MAX_LEN {
            return Err(format!(
                "a token is {} to {} characters (this one has {})",
                Self::MIN_LEN,
                Self::MAX_LEN,
                secret.len()
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is printable ASCII without spaces".into());
        }
        Ok(Self { secret: secret.to_string() })
    }

    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenError::Io { path: path.into(), source })?;
        Self::new(&text).map_err(|message| TokenError::Invalid { path: path.into(), message })
    }

    /// A new random token: 32 bytes from `rng`, hex-encoded.
    pub fn generate(rng: &mut impl rand::RngCore) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let secret = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self { secret }
    }

    /// The token in `path`, or a new one written there (mode 0600) when the file does not
    /// exist. Creating is exclusive: two processes racing agree on the winner's token.
    pub fn load_or_create(path: &Path, rng: &mut impl rand::RngCore) -> Result<Self, TokenError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| TokenError::Io { path: path.into(), source };
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut f) => {
                let token = Self::generate(rng);
                f.write_all(format!("{}\n", token.secret).as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(token)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io(e)),
        }
    }

    /// The secret, for an `Authorization: Bearer` header.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is this token (constant time in the secret's contents).
    pub fn verifies(&self, presented: &str) -> bool {
        self.secret.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// Puts the token check in front of every route of `router` that changes state (any method
/// but GET and HEAD). `setting` names the config that provides the token, for the answer a
/// server without one gives.
pub fn protect(router: Router, token: Option<Arc<Token>>, setting: &'static str) -> Router {
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let token = token.clone();
        async move {
            match refusal(token.as_deref(), setting, &req) {
                None => next.run(req).await,
                Some(refusal) => refusal,
            }
        }
    }))
}

fn refuse(status: StatusCode, error: String) -> Response {
    let mut r = (status, Json(ErrorBody { error })).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    r
}

/// Path prefixes whose reads need the token too (who the tenants are, and their keys).
pub const PRIVATE_PATHS: &[&str] = &[crate::paths::TENANTS, crate::paths::QUOTA_USAGE];

/// The answer refusing `req`, or None when it may pass.
fn refusal(token: Option<&Token>, setting: &str, req: &Request) -> Option<Response> {
    let private = PRIVATE_PATHS.iter().any(|p| req.uri().path().starts_with(p));
    if matches!(*req.method(), Method::GET | Method::HEAD) && !private {
        return None;
    }
    let Some(token) = token else {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            format!("calls that change state or read tenants are off on this server: it has no {setting}"),
        ));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "this call needs the operator token (Authorization: Bearer)".into(),
        )),
        Some(p) if token.verifies(p.trim()) => None,
        Some(_) => Some(refuse(StatusCode::UNAUTHORIZED, "the bearer token is not this server's".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_printed() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in the middle").is_err());
        let t = Token::new("0123456789abcdef0123\n").expect("valid");
        assert_eq!(t.secret(), "0123456789abcdef0123");
        assert!(t.verifies("0123456789abcdef0123"));
        assert!(!t.verifies("0123456789abcdef012"));
        assert!(!t.verifies("0123456789abcdef01234"));
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn load_or_create_writes_once_with_owner_only_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        let first = Token::load_or_create(&path, &mut rand::rng()).expect("create");
        let again = Token::load_or_create(&path, &mut rand::rng()).expect("load");
        assert_eq!(first, again);
        assert_eq!(first.secret().len(), 64);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "x").expect("write");
        assert!(matches!(Token::load(&path), Err(TokenError::Invalid { .. })));
    }
}
