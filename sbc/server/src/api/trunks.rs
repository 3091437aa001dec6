//! `GET /trunks`, `POST /trunks/{name}/disable`, `POST /trunks/{name}/enable`, `GET /route/{number}`.

use super::{render, ApiError, DriverHandle, Request};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) fn routes(driver: DriverHandle) -> Router {
    Router::new()
        .route("/trunks", get(list))
        .route("/trunks/{name}/disable", post(|s, p| set(s, p, false)))
        .route("/trunks/{name}/enable", post(|s, p| set(s, p, true)))
        .route("/route/{number}", get(route))
        .with_state(driver)
}

async fn list(State(driver): State<DriverHandle>) -> Result<Json<Value>, ApiError> {
    let trunks = driver.ask(|reply| Request::Trunks { reply }).await?;
    Ok(Json(json!({ "trunks": trunks.iter().map(render::trunk).collect::<Vec<_>>() })))
}

async fn set(
    State(driver): State<DriverHandle>,
    Path(name): Path<String>,
    enabled: bool,
) -> Result<Json<Value>, ApiError> {
    let n = name.clone();
    let changed = driver
        .ask(|reply| Request::SetTrunk { name: n, enabled, reply })
        .await?
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(Json(json!({ "trunk": name, "enabled": enabled, "changed": changed })))
}

/// `?from=TRUNK`: the inbound trunk whose number rules a call would go through first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct From {
    from: Option<String>,
}

async fn route(
    State(driver): State<DriverHandle>,
    Path(number): Path<String>,
    query: Result<Query<From>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(From { from }) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let n = number.clone();
    let (lookup, names) = driver.ask(|reply| Request::Route { number: n, from, reply }).await?;
    match lookup.map_err(|e| ApiError::not_found(e.to_string()))? {
        Some(r) => Ok(Json(render::route(&number, &r, &names))),
        None => Err(ApiError::not_found(format!("no route for {number}: a call to it is answered 404"))),
    }
}
