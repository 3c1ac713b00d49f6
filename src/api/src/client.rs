//! One client for every Kora HTTP surface.
//!
//! A [`Client`] addresses one server (`http://host:port`, or `host:port`) and carries the
//! token it presents, if any. Errors say which URL failed and why, with the server's own
//! message; a 401 or 403 is its own variant so that callers can say what to do about it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Token;
use crate::paths;
use crate::types::*;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The server wants a token (none was given, or it is not the server's).
    #[error("{url}: unauthorized (HTTP 401): {message}")]
    Unauthorized { url: String, message: String },
    /// The server takes no state-changing calls at all (it has no token configured).
    #[error("{url}: forbidden (HTTP 403): {message}")]
    Forbidden { url: String, message: String },
    #[error("{url}: not found (HTTP 404): {message}")]
    NotFound { url: String, message: String },
    /// 503: no leader, leadership moving, or a broker shutting down. Worth retrying.
    #[error("{url}: unavailable (HTTP 503): {message}")]
    Unavailable { url: String, message: String },
    #[error("{url}: HTTP {status}: {message}")]
    Status { url: String, status: u16, message: String },
    /// Nothing answered (refused, timed out, reset).
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what this surface sends: not a Kora server, or another version.
    #[error("{url}: unexpected answer: {message}")]
    Decode { url: String, message: String },
    #[error("http client: {0}")]
    Build(String),
}

impl ApiError {
    /// Nothing answered: another member of the same quorum may.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Transport { .. })
    }

    /// A failure that a retry (here or at another member) may not repeat.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ApiError::Transport { .. } | ApiError::Unavailable { .. })
    }

    /// A refusal for want of the right token.
    pub fn is_auth(&self) -> bool {
        matches!(self, ApiError::Unauthorized { .. } | ApiError::Forbidden { .. })
    }
}

/// A client of one Kora server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Arc<Token>>,
}

/// `host:port` or a URL, without a trailing slash.
fn base_url(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

impl Client {
    /// A client with its own connection pool; each call fails after `timeout`.
    pub fn new(addr: &str, token: Option<Arc<Token>>, timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ApiError::Build(e.to_string()))?;
        Ok(Self::with_http(http, addr, token))
    }

    /// A client sharing `http`'s connection pool (servers calling their peers).
    pub fn with_http(http: reqwest::Client, addr: &str, token: Option<Arc<Token>>) -> Self {
        Self { http, base: base_url(addr), token }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method, &url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t.secret());
        }
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        (url, rb)
    }

    async fn send(url: &str, rb: reqwest::RequestBuilder) -> Result<bytes::Bytes, ApiError> {
        let resp = rb.send().await.map_err(|source| ApiError::Transport { url: url.into(), source })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|source| ApiError::Transport { url: url.into(), source })?;
        if status.is_success() {
            return Ok(body);
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(&body).trim().chars().take(300).collect(),
        };
        let url = url.to_string();
        Err(match status.as_u16() {
            401 => ApiError::Unauthorized { url, message },
            403 => ApiError::Forbidden { url, message },
            404 => ApiError::NotFound { url, message },
            503 => ApiError::Unavailable { url, message },
            status => ApiError::Status { url, status, message },
        })
    }

    fn decode<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(body).map_err(|e| ApiError::Decode {
            url: url.into(),
            message: format!("{e} (in {:?})", String::from_utf8_lossy(&body[..body.len().min(120)])),
        })
    }

    /// GET `path`, JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (url, rb) = self.request(Method::GET, path, None);
        let body = Self::send(&url, rb).await?;
        Self::decode(&url, &body)
    }

    /// POST `body` as JSON to `path`, JSON answer; `timeout` overrides the client's.
    pub async fn post<Req: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        timeout: Option<Duration>,
    ) -> Result<T, ApiError> {
        let (url, rb) = self.request(Method::POST, path, timeout);
        let body = Self::send(&url, rb.json(body)).await?;
        Self::decode(&url, &body)
    }

    /// Sends raw JSON bytes with any method and returns the raw answer (a voter relaying a
    /// call to its leader).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&'static str, &'static str)],
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes), ApiError> {
        let (url, mut rb) = self.request(method, path, Some(timeout));
        rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.map_err(|source| ApiError::Transport { url: url.clone(), source })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ApiError::Transport { url, source })?;
        Ok((status, body))
    }

    /// DELETE `path`, JSON answer.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (url, rb) = self.request(Method::DELETE, path, None);
        let body = Self::send(&url, rb).await?;
        Self::decode(&url, &body)
    }

    // ---- broker admin ----

    pub async fn broker_health(&self) -> Result<BrokerHealth, ApiError> {
        self.get(paths::HEALTH).await
    }

    /// Prometheus text.
    pub async fn metrics(&self) -> Result<String, ApiError> {
        let (url, rb) = self.request(Method::GET, paths::METRICS, None);
        let body = Self::send(&url, rb).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A topic as this broker holds it.
    pub async fn broker_topic(&self, name: &str) -> Result<TopicDescription, ApiError> {
        self.get(&format!("{}/{}", paths::BROKER_TOPIC, encode_segment(name))).await
    }

    /// Fault injection: cut the broker off from its cell (`true`) or heal it.
    pub async fn set_isolated(&self, isolated: bool) -> Result<Isolation, ApiError> {
        if isolated {
            self.post(paths::FAULTS_ISOLATE, &(), None).await
        } else {
            self.delete(paths::FAULTS_ISOLATE).await
        }
    }

    // ---- metadata voters ----

    pub async fn tenants(&self) -> Result<Vec<TenantInfo>, ApiError> {
        self.get(paths::TENANTS).await
    }

    pub async fn tenant(&self, tenant: &str) -> Result<TenantInfo, ApiError> {
        self.get(&format!("{}/{tenant}", paths::TENANTS)).await
    }

    pub async fn create_tenant(&self, req: &CreateTenant) -> Result<TenantCreated, ApiError> {
        self.post(paths::TENANTS, req, None).await
    }

    pub async fn delete_tenant(&self, tenant: &str) -> Result<TenantInfo, ApiError> {
        self.delete(&format!("{}/{tenant}", paths::TENANTS)).await
    }

    pub async fn tenant_quotas(&self, tenant: &str) -> Result<TenantQuotas, ApiError> {
        self.get(&format!("{}/{tenant}/quotas", paths::TENANTS)).await
    }

    pub async fn alter_tenant_quotas(
        &self,
        tenant: &str,
        req: &AlterTenantQuotas,
    ) -> Result<TenantQuotas, ApiError> {
        self.post(&format!("{}/{tenant}/quotas", paths::TENANTS), req, None).await
    }

    pub async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, ApiError> {
        self.get(&format!("{}/{tenant}/usage", paths::TENANTS)).await
    }

    pub async fn broker_usage(&self) -> Result<BrokerUsage, ApiError> {
        self.get(paths::QUOTA_USAGE).await
    }

    pub async fn cell_report(&self) -> Result<crate::CellReport, ApiError> {
        self.get(paths::CELL_REPORT).await
    }

    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyInfo>, ApiError> {
        self.get(&format!("{}/{tenant}/api-keys", paths::TENANTS)).await
    }

    pub async fn create_api_key(&self, tenant: &str, req: &CreateApiKey) -> Result<ApiKeyCreated, ApiError> {
        self.post(&format!("{}/{tenant}/api-keys", paths::TENANTS), req, None).await
    }

    pub async fn delete_api_key(&self, tenant: &str, key: &str) -> Result<ApiKeyInfo, ApiError> {
        self.delete(&format!("{}/{tenant}/api-keys/{key}", paths::TENANTS)).await
    }

    pub async fn acls(&self, tenant: &str) -> Result<Vec<AclEntry>, ApiError> {
        self.get(&format!("{}/{tenant}/acls", paths::TENANTS)).await
    }

    pub async fn create_acls(&self, tenant: &str, acls: &[AclEntry]) -> Result<Vec<AclEntry>, ApiError> {
        self.post(&format!("{}/{tenant}/acls", paths::TENANTS), acls, None).await
    }

    pub async fn delete_acls(
        &self,
        tenant: &str,
        filter: &AclEntryFilter,
    ) -> Result<Vec<AclEntry>, ApiError> {
        self.post(&format!("{}/{tenant}/acls/delete", paths::TENANTS), filter, None).await
    }

    pub async fn quorum_status(&self) -> Result<QuorumStatus, ApiError> {
        self.get(paths::QUORUM).await
    }

    pub async fn add_voter(&self, voter: &AddVoter) -> Result<QuorumStatus, ApiError> {
        self.post(paths::QUORUM_VOTERS, voter, None).await
    }

    pub async fn add_learner(&self, learner: &AddVoter) -> Result<QuorumStatus, ApiError> {
        self.post(paths::QUORUM_LEARNERS, learner, None).await
    }

    pub async fn remove_voter(&self, id: u64) -> Result<QuorumStatus, ApiError> {
        self.delete(&format!("{}/{id}", paths::QUORUM_VOTERS)).await
    }

    pub async fn topics(&self) -> Result<Vec<TopicInfo>, ApiError> {
        self.get(paths::TOPICS).await
    }

    pub async fn create_topic(&self, topic: &CreateTopic) -> Result<TopicInfo, ApiError> {
        self.post(paths::TOPICS, topic, None).await
    }
}

/// Percent-encodes a path segment (topic names may hold '.', '_' and '-' only, but group ids
/// and names from users may hold anything).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Calls `f` on each client in turn until one answers; a server that answers with an error
/// ends the search (the quorum relays to its leader, so any member's answer stands), one that
/// does not answer passes to the next.
pub async fn first_answer<T, F, Fut>(clients: &[Client], f: F) -> Result<T, ApiError>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut last = None;
    for c in clients {
        match f(c.clone()).await {
            Err(e) if e.is_unreachable() => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| ApiError::Build("no server address given".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_base_urls() {
        assert_eq!(base_url("127.0.0.1:9644"), "http://127.0.0.1:9644");
        assert_eq!(base_url("http://127.0.0.1:9644/"), "http://127.0.0.1:9644");
        assert_eq!(base_url(" https://h:1 "), "https://h:1");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("orders.v1-x_y"), "orders.v1-x_y");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
