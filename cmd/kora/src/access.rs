//! How the CLI authenticates to Kora's HTTP surfaces.
//!
//! The operator token comes from `--token-file` (or `KORA_TOKEN_FILE`). Without one, the CLI
//! looks up the address it calls in `tokens.json` in the user's config directory
//! (`$KORA_CONFIG_DIR`, else `$XDG_CONFIG_HOME/kora`, else `~/.config/kora`), where `kora dev`
//! and `kora cell up` record the token file of every address they serve. A process that runs
//! a server (`kora meta`) uses `--token-file` as its own token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kora_api::{ApiError, Client, Token};
use serde::{Deserialize, Serialize};

/// Entries kept in `tokens.json` (newest last); older ones are dropped.
const MAX_REMEMBERED: usize = 256;

#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// `--token-file` / `KORA_TOKEN_FILE`.
    pub(crate) token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    /// (address as host:port, token file), newest last.
    tokens: Vec<(String, PathBuf)>,
}

fn config_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("KORA_CONFIG_DIR")
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("kora")))
        .or_else(|| var("HOME").map(|h| h.join(".config").join("kora")))
}

/// `http://host:port/` and `host:port` name the same server.
fn key(addr: &str) -> String {
    let a = addr.trim();
    let a = a.strip_prefix("http://").or_else(|| a.strip_prefix("https://")).unwrap_or(a);
    a.trim_end_matches('/').to_string()
}

fn load(dir: &Path) -> Remembered {
    std::fs::read(dir.join("tokens.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records that `addrs` take the token in `token_file`, for later commands.
pub(crate) fn remember(addrs: &[String], token_file: &Path) -> Result<()> {
    let Some(dir) = config_dir() else { return Ok(()) };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let token_file = std::fs::canonicalize(token_file)
        .with_context(|| format!("cannot resolve {}", token_file.display()))?;
    // Several `kora dev` may start at once: one writer at a time.
    let lock = std::fs::File::create(dir.join("tokens.lock"))
        .with_context(|| format!("cannot create {}", dir.join("tokens.lock").display()))?;
    lock.lock().context("cannot lock tokens.lock")?;
    let mut r = load(&dir);
    let keys: Vec<String> = addrs.iter().map(|a| key(a)).collect();
    r.tokens.retain(|(a, _)| !keys.contains(a));
    r.tokens.extend(keys.into_iter().map(|k| (k, token_file.clone())));
    let excess = r.tokens.len().saturating_sub(MAX_REMEMBERED);
    r.tokens.drain(..excess);
    let tmp = dir.join(format!("tokens.json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&r)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("tokens.json")).context("cannot replace tokens.json")?;
    Ok(())
}

impl Access {
    /// The token to present to `addr`, if any is known.
    fn token_for(&self, addr: &str) -> Result<Option<Arc<Token>>> {
        let file = match &self.token_file {
            Some(f) => Some(f.clone()),
            None => config_dir().and_then(|d| {
                let k = key(addr);
                load(&d).tokens.into_iter().rev().find(|(a, _)| *a == k).map(|(_, f)| f)
            }),
        };
        match file {
            Some(f) => Ok(Some(Arc::new(Token::load(&f)?))),
            None => Ok(None),
        }
    }

    /// A client of the server at `addr` presenting the operator token when one is known.
    pub(crate) fn client(&self, addr: &str, timeout: Duration) -> Result<Client> {
        Ok(Client::new(addr, self.token_for(addr)?, timeout)?)
    }

    /// An API error with what to do about it when it is a refusal for want of a token.
    pub(crate) fn explain(&self, e: ApiError) -> anyhow::Error {
        let hint = match (&e, &self.token_file) {
            (ApiError::Unauthorized { .. }, None) => Some(
                "this call needs the operator token: pass --token-file FILE or set KORA_TOKEN_FILE \
                 (kora dev and kora cell up keep it in <data-dir>/admin.token)",
            ),
            (ApiError::Unauthorized { .. }, Some(_)) => {
                Some("the token in --token-file is not this server's")
            }
            (ApiError::Forbidden { .. }, _) => {
                Some("the server has no operator token configured (admin.token.file)")
            }
            _ => None,
        };
        match hint {
            Some(h) => anyhow::Error::new(e).context(h),
            None => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_without_scheme() {
        assert_eq!(key("http://127.0.0.1:9644/"), "127.0.0.1:9644");
        assert_eq!(key("127.0.0.1:9644"), "127.0.0.1:9644");
    }
}
