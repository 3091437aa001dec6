//! `GET /config`, `POST /config/validate`, `POST /config/reload`: the admin API of [`Reloader`].

use super::{ReloadError, Reloader};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

/// A JSON answer (axum's `Json` needs a feature whose crates this workspace does not carry).
fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default() + "\n";
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The body of `POST /config/validate` (optional): the file to check instead of the running one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    path: Option<std::path::PathBuf>,
}

fn error(e: &ReloadError) -> Response {
    let status = match e {
        ReloadError::Invalid(_) | ReloadError::RestartRequired(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_response(status, &json!({ "error": e.to_string() }))
}

/// The routes of the reload part, to merge into the admin app.
pub fn routes(reloader: Reloader) -> Router {
    Router::new()
        .route("/config", get(|State(r): State<Reloader>| async move { json_response(StatusCode::OK, &r.loaded()) }))
        .route(
            "/config/validate",
            post(|State(r): State<Reloader>, body: axum::body::Bytes| async move {
                let body: ValidateBody = if body.is_empty() {
                    ValidateBody::default()
                } else {
                    match serde_json::from_slice(&body) {
                        Ok(b) => b,
                        Err(e) => {
                            let reason = format!("body: expected {{\"path\": FILE}} or nothing: {e}");
                            return json_response(StatusCode::BAD_REQUEST, &json!({ "error": reason }));
                        }
                    }
                };
                match r.check(body.path.as_deref()) {
                    Ok((_, text, changes)) => json_response(
                        StatusCode::OK,
                        &json!({ "valid": true, "version": super::version_of(&text), "changes": changes }),
                    ),
                    Err(e) => error(&e),
                }
            }),
        )
        .route(
            "/config/reload",
            post(|State(r): State<Reloader>| async move {
                match r.reload("api").await {
                    Ok(applied) => json_response(StatusCode::OK, &applied),
                    Err(e) => error(&e),
                }
            }),
        )
        .with_state(reloader)
}
