//! `GET /calls`, `GET /calls/{id}`, `POST /calls/{id}/hangup`.

use super::{render, ApiError, DriverHandle, Request};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use relay_proto::control::SessionStats;
use sbc_proto::b2bua::{CallState, HangupError};
use serde::Deserialize;
use serde_json::{json, Value};

/// How long `GET /calls/{id}` waits for the relay's figures before showing the call without them.
const FIGURES_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

pub(super) fn routes(driver: DriverHandle) -> Router {
    Router::new()
        .route("/calls", get(list))
        .route("/calls/{id}", get(one))
        .route("/calls/{id}/hangup", post(hangup))
        .with_state(driver)
}

/// The filters of `GET /calls`, all optional and combined.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    /// Calls with a leg on this trunk.
    trunk: Option<String>,
    /// `setup`, `answered` or `ending`.
    state: Option<String>,
    /// Calls whose called number (as received or as sent) starts with this.
    number: Option<String>,
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| ApiError::bad_request(format!("call id {id:?} is not a number (see GET /calls)")))
}

async fn list(
    State(driver): State<DriverHandle>,
    query: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(filter) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let state = match filter.state.as_deref() {
        None => None,
        Some(s) => Some(
            [CallState::Setup, CallState::Answered, CallState::Ending]
                .into_iter()
                .find(|c| c.label() == s)
                .ok_or_else(|| ApiError::bad_request(format!("state {s:?}: expected setup, answered or ending")))?,
        ),
    };
    let (calls, names) = driver.ask(|reply| Request::Calls { reply }).await?;
    let on_trunk = |t: sbc_proto::routing::TrunkId| {
        filter.trunk.as_deref().is_none_or(|n| names.get(t.0 as usize).is_some_and(|x| x == n))
    };
    let shown: Vec<Value> = calls
        .iter()
        .filter(|c| state.is_none_or(|s| c.state == s))
        .filter(|c| on_trunk(c.a.trunk) || c.b.as_ref().is_some_and(|b| on_trunk(b.trunk)))
        .filter(|c| filter.number.as_deref().is_none_or(|p| c.called_in.starts_with(p) || c.called_out.starts_with(p)))
        .map(|c| render::call_summary(c, &names))
        .collect();
    Ok(Json(json!({ "count": shown.len(), "calls": shown })))
}

async fn one(State(driver): State<DriverHandle>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let (call, names) = driver.ask(|reply| Request::Call { id, reply }).await?;
    let call = call.ok_or_else(|| ApiError::not_found(format!("no call {id}")))?;
    let media = match call.media_session {
        None => Ok(None),
        Some(session) => figures(&driver, session).await.map(Some),
    };
    Ok(Json(render::call_detail(&call, &names, media)))
}

async fn figures(
    driver: &DriverHandle,
    session: relay_proto::control::SessionId,
) -> Result<SessionStats, &'static str> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    driver.tx.try_send(Request::Figures { session, reply }).map_err(|_| "the SBC is busy")?;
    match tokio::time::timeout(FIGURES_WAIT, answer).await {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(_)) => Err("media is not anchored by a relay"),
        Err(_) => Err("the media relay did not answer in time"),
    }
}

async fn hangup(
    State(driver): State<DriverHandle>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id)?;
    match driver.ask(|reply| Request::Hangup { id, reply }).await? {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "ending": true })))),
        Err(e @ HangupError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
    }
}
