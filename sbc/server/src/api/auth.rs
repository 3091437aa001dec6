//! The bearer token (`[api] token_env` / `token_file`): every request but `/health` must carry
//! `Authorization: Bearer TOKEN`; one without it, or with another, gets 401 and is counted.

use super::ApiError;
use crate::config::ApiToken;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `app` with every route but `/health` behind `token`; `None`: `app` as it is (loopback without a token).
pub fn require_token(app: axum::Router, token: Option<ApiToken>) -> axum::Router {
    let Some(token) = token else { return app };
    app.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let token = token.clone();
        async move { check(&token, req, next).await }
    }))
}

async fn check(token: &ApiToken, req: Request, next: Next) -> Response {
    // Health checks (systemd, load balancers) carry no credentials and learn nothing from the answer.
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(p) if same(p.trim().as_bytes(), token.expose().as_bytes()) => next.run(req).await,
        Some(_) => deny("wrong bearer token"),
        None => deny("this API needs Authorization: Bearer TOKEN (the token of [api] token_env or token_file)"),
    }
}

fn deny(reason: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

/// Compares in time independent of where the inputs differ, so that the answer's timing does not reveal how much
/// of a guess was right. Hand-written: five lines do not warrant a crate.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
