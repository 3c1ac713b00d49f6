//! The token check in front of a real HTTP server, called through the real client.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use kora_api::{auth, ApiError, Client, Token};

async fn serve(token: Option<Arc<Token>>) -> String {
    provider();
    let app = Router::new()
        .route("/v1/thing", get(|| async { "{\"read\":true}" }).post(|| async { "{\"written\":true}" }));
    let app = auth::protect(app, token, "admin.token.file");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// reqwest is built without a default TLS provider; processes install one at start.
fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(serde::Deserialize, Debug)]
struct Written {
    written: bool,
}

#[derive(serde::Deserialize, Debug)]
struct Read {
    read: bool,
}

#[tokio::test]
async fn state_changes_need_the_servers_token_and_reads_do_not() {
    let token = Arc::new(Token::new("0123456789abcdef0123456789abcdef").expect("token"));
    let addr = serve(Some(token.clone())).await;
    let t = Duration::from_secs(5);

    let anonymous = Client::new(&addr, None, t).expect("client");
    let read: Read = anonymous.get("/v1/thing").await.expect("reads are open");
    assert!(read.read);
    let e = anonymous.post::<_, Written>("/v1/thing", &(), None).await.expect_err("refused without a token");
    assert!(matches!(e, ApiError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("needs the operator token"), "{e}");

    let wrong = Client::new(&addr, Some(Arc::new(Token::new("not-the-right-token-at-all").expect("t"))), t)
        .expect("client");
    let e = wrong.post::<_, Written>("/v1/thing", &(), None).await.expect_err("refused with a wrong token");
    assert!(matches!(e, ApiError::Unauthorized { .. }), "{e}");

    let operator = Client::new(&addr, Some(token), t).expect("client");
    let w: Written = operator.post("/v1/thing", &(), None).await.expect("accepted with the token");
    assert!(w.written);
}

#[tokio::test]
async fn a_server_without_a_token_takes_no_state_changes() {
    let addr = serve(None).await;
    let c = Client::new(
        &addr,
        Some(Arc::new(Token::new("0123456789abcdef0123").expect("t"))),
        Duration::from_secs(5),
    )
    .expect("client");
    let e = c.post::<_, Written>("/v1/thing", &(), None).await.expect_err("refused");
    assert!(matches!(e, ApiError::Forbidden { .. }), "{e}");
    assert!(e.to_string().contains("admin.token.file"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    provider();
    let c = Client::new("127.0.0.1:1", None, Duration::from_secs(2)).expect("client");
    let e = c.quorum_status().await.expect_err("nothing listens on port 1");
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}
