//! The core's answers as JSON: instants become wall-clock times (RFC 3339, UTC) and ages in seconds, trunk
//! numbers become names. The shapes are those of docs/admin-api.md.

use relay_proto::control::SessionStats;
use sbc_proto::b2bua::{CallSnapshot, LegSnapshot, RouteLookup};
use sbc_proto::endpoint::admin::TrunkStatus;
use sbc_proto::routing::{HealthState, TrunkId};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

fn name(names: &[String], id: TrunkId) -> String {
    names.get(id.0 as usize).cloned().unwrap_or_else(|| id.to_string())
}

/// `ago` before now, as an RFC 3339 time.
fn at(ago: Duration) -> String {
    let t = SystemTime::now().checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(t).to_string()
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// One line of `GET /calls`.
pub fn call_summary(c: &CallSnapshot, names: &[String]) -> Value {
    json!({
        "id": c.id,
        "state": c.state.label(),
        "trunk_in": name(names, c.a.trunk),
        "trunk_out": c.b.as_ref().map(|b| name(names, b.trunk)),
        "caller": c.caller,
        "called": c.called_in,
        "a_call_id": c.a.call_id,
        "b_call_id": c.b.as_ref().map(|b| b.call_id.clone()),
        "started_at": at(c.since_setup),
        "age_secs": secs(c.since_setup),
        "answered_secs": c.since_answer.map(secs),
    })
}

fn leg(l: &LegSnapshot, names: &[String]) -> Value {
    json!({
        "call_id": l.call_id,
        "local_tag": l.local_tag,
        "remote_tag": l.remote_tag,
        "trunk": name(names, l.trunk),
        "transport": l.transport.as_str(),
        "local": l.local.to_string(),
        "remote": l.remote.to_string(),
    })
}

/// `GET /calls/{id}`: both legs, and the relay's figures when there are some (`media` null: not anchored;
/// `media_error`: anchored, but the relay did not answer).
pub fn call_detail(c: &CallSnapshot, names: &[String], media: Result<Option<SessionStats>, &str>) -> Value {
    let mut v = json!({
        "id": c.id,
        "state": c.state.label(),
        "caller": c.caller,
        "called_in": c.called_in,
        "called_out": c.called_out,
        "route_prefix": c.route_prefix,
        "started_at": at(c.since_setup),
        "answered_at": c.since_answer.map(at),
        "age_secs": secs(c.since_setup),
        "answered_secs": c.since_answer.map(secs),
        "failed_attempts": c.failed_attempts,
        "media_session": c.media_session.map(|s| s.0),
        "legs": { "a": leg(&c.a, names), "b": c.b.as_ref().map(|b| leg(b, names)) },
        "media": Value::Null,
    });
    match media {
        Ok(Some(stats)) => {
            v["media"] = json!({
                "a": serde_json::to_value(stats.legs[0]).unwrap_or_default(),
                "b": serde_json::to_value(stats.legs[1]).unwrap_or_default(),
            })
        }
        Ok(None) => {}
        Err(e) => v["media_error"] = json!(e),
    }
    v
}

/// One trunk of `GET /trunks`.
pub fn trunk(t: &TrunkStatus) -> Value {
    let state = if t.disabled_by_config || t.disabled_by_admin {
        "disabled"
    } else if t.up {
        "up"
    } else {
        "down"
    };
    let gateways: Vec<Value> = t
        .gateways
        .iter()
        .map(|g| {
            json!({
                "address": format!("{}:{}", g.gateway.transport.as_str(), g.gateway.addr),
                "from_dns": g.from_dns,
                "probe": match g.probe {
                    None => "not_probed",
                    Some(HealthState::Up) => "up",
                    Some(HealthState::Down) => "down",
                },
            })
        })
        .collect();
    json!({
        "name": t.name,
        "state": state,
        "up": t.up,
        "disabled_by_config": t.disabled_by_config,
        "disabled_by_admin": t.disabled_by_admin,
        "active": t.active,
        "calls_from": t.calls_from,
        "calls_to": t.calls_to,
        "limits": { "calls": t.limits.calls, "cps": t.limits.cps },
        "gateways": gateways,
        "registration": t.registration.as_ref().map(|r| json!({
            "registrar": format!("{}:{}", r.registrar.transport.as_str(), r.registrar.addr),
            "aor": r.aor,
            "registered": r.registered,
            "expires_in_secs": r.expires_in.map(|d| d.as_secs()),
            "failures": r.failures,
            "running": r.running,
        })),
    })
}

/// `GET /route/{number}`.
pub fn route(asked: &str, r: &RouteLookup, names: &[String]) -> Value {
    let order: Vec<Value> = r
        .selection
        .ordered
        .iter()
        .map(|c| {
            json!({
                "trunk": name(names, c.trunk),
                "priority": c.priority,
                "weight": c.weight,
                "drawn": r.drawn.contains(&c.priority),
            })
        })
        .collect();
    let skipped: Vec<Value> = r
        .selection
        .skipped
        .iter()
        .map(|s| {
            json!({
                "trunk": name(names, s.candidate.trunk),
                "priority": s.candidate.priority,
                "weight": s.candidate.weight,
                "reason": s.reason.label(),
            })
        })
        .collect();
    let note = if r.drawn.is_empty() {
        "fixed order: no priority has two usable carriers to draw between".to_owned()
    } else {
        format!(
            "carriers of priority {} are ordered by a weighted draw per call: this is one draw; a call picks each \
             first in proportion to its weight",
            r.drawn.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        )
    };
    json!({
        "number": asked,
        "routed_number": r.number,
        "prefix": r.prefix,
        "order": order,
        "skipped": skipped,
        "weighted_priorities": r.drawn,
        "note": note,
    })
}
