//! The API's JSON as tables for people. Each function takes the JSON of one command and returns the text, so
//! that `--json` and the table show the same answer.

use serde_json::Value;
use std::fmt::Write;

/// A value as a cell: strings bare, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
        let parts: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().map(|h| h.to_string()));
    for r in rows {
        line(&mut out, &mut r.iter().cloned());
    }
    out
}

/// `sbcctl calls`.
pub fn calls(v: &Value) -> String {
    let empty = Vec::new();
    let calls = v["calls"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            ["id", "state", "trunk_in", "trunk_out", "caller", "called", "age_secs", "a_call_id"]
                .iter()
                .map(|k| cell(&c[*k]))
                .collect()
        })
        .collect();
    let mut out = table(&["ID", "STATE", "FROM", "TO", "CALLER", "CALLED", "AGE_S", "A_CALL_ID"], &rows);
    let _ = writeln!(out, "{} calls", calls.len());
    out
}

/// `sbcctl call ID`.
pub fn call(v: &Value) -> String {
    let mut out = String::new();
    for k in [
        "id",
        "state",
        "caller",
        "called_in",
        "called_out",
        "route_prefix",
        "started_at",
        "answered_at",
        "age_secs",
        "answered_secs",
        "failed_attempts",
    ] {
        let _ = writeln!(out, "{k:<16}{}", cell(&v[k]));
    }
    let _ = writeln!(out);
    let legs = ["a", "b"];
    let rows: Vec<Vec<String>> = legs
        .iter()
        .filter(|l| !v["legs"][**l].is_null())
        .map(|l| {
            let leg = &v["legs"][*l];
            let mut row = vec![l.to_string()];
            row.extend(
                ["trunk", "call_id", "local_tag", "remote_tag", "transport", "local", "remote"]
                    .iter()
                    .map(|k| cell(&leg[*k])),
            );
            row
        })
        .collect();
    out.push_str(&table(&["LEG", "TRUNK", "CALL-ID", "OUR TAG", "PEER TAG", "TRANSPORT", "LOCAL", "REMOTE"], &rows));
    if let Some(e) = v["media_error"].as_str() {
        let _ = writeln!(out, "\nmedia: {e}");
    } else if v["media"].is_null() {
        let _ = writeln!(out, "\nmedia: not anchored");
    } else {
        let _ = writeln!(out);
        let rows: Vec<Vec<String>> = legs
            .iter()
            .map(|l| {
                let m = &v["media"][*l];
                let r = &m["received"];
                vec![
                    l.to_string(),
                    cell(&r["packets"]),
                    cell(&m["sent"]),
                    cell(&r["lost"]),
                    cell(&r["jitter_ms"]),
                    cell(&m["kernel_packets"]),
                    cell(&m["latched"]),
                ]
            })
            .collect();
        out.push_str(&table(&["MEDIA", "RECEIVED", "SENT", "LOST", "JITTER_MS", "IN_KERNEL", "LATCHED"], &rows));
    }
    out
}

/// `sbcctl trunks`.
pub fn trunks(v: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v["trunks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|t| {
            let gateways: Vec<String> = t["gateways"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|g| format!("{}({})", cell(&g["address"]), cell(&g["probe"])))
                .collect();
            let registration = match &t["registration"] {
                Value::Null => "-".to_owned(),
                r if r["registered"] == Value::Bool(true) => "registered".to_owned(),
                _ => "not registered".to_owned(),
            };
            vec![
                cell(&t["name"]),
                cell(&t["state"]),
                cell(&t["calls_from"]),
                cell(&t["calls_to"]),
                cell(&t["limits"]["calls"]),
                if gateways.is_empty() { "-".to_owned() } else { gateways.join(" ") },
                registration,
            ]
        })
        .collect();
    table(&["TRUNK", "STATE", "CALLS_FROM", "CALLS_TO", "LIMIT", "GATEWAYS", "REGISTRATION"], &rows)
}

/// `sbcctl route NUMBER`.
pub fn route(v: &Value) -> String {
    let empty = Vec::new();
    let mut out = format!(
        "number {} (routed as {}), route prefix {:?}\n",
        cell(&v["number"]),
        cell(&v["routed_number"]),
        v["prefix"].as_str().unwrap_or_default()
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, c) in v["order"].as_array().unwrap_or(&empty).iter().enumerate() {
        let how = if c["drawn"] == Value::Bool(true) { "weighted draw" } else { "" };
        rows.push(vec![
            (i + 1).to_string(),
            cell(&c["trunk"]),
            cell(&c["priority"]),
            cell(&c["weight"]),
            how.to_owned(),
        ]);
    }
    for s in v["skipped"].as_array().unwrap_or(&empty) {
        rows.push(vec![
            "-".into(),
            cell(&s["trunk"]),
            cell(&s["priority"]),
            cell(&s["weight"]),
            format!("skipped: {}", cell(&s["reason"])),
        ]);
    }
    out.push_str(&table(&["TRY", "TRUNK", "PRIORITY", "WEIGHT", "NOTE"], &rows));
    let _ = writeln!(out, "{}", cell(&v["note"]));
    out
}

/// Any other answer: `key: value` per field (nested values as JSON).
pub fn fields(v: &Value) -> String {
    match v {
        Value::Object(map) => map.iter().map(|(k, x)| format!("{k}: {}\n", cell(x))).collect(),
        other => format!("{}\n", cell(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_table_has_a_row_per_call_and_a_count() {
        let v = json!({"count": 2, "calls": [
            {"id": 1, "state": "answered", "trunk_in": "pbx", "trunk_out": "carrier-b", "caller": "100", "called": "200", "age_secs": 1.5, "a_call_id": "x@y"},
            {"id": 2, "state": "setup", "trunk_in": "pbx", "trunk_out": null, "caller": "100", "called": "201", "age_secs": 0.1, "a_call_id": "z@y"},
        ]});
        let t = calls(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("ID  STATE"), "{t}");
        assert!(lines[2].contains("setup") && lines[2].contains(" - "), "{t}");
        assert_eq!(lines[3], "2 calls");
    }

    #[test]
    fn route_table_lists_tries_then_skips_with_their_reason() {
        let v = json!({"number": "+4930", "routed_number": "+4930", "prefix": "+49", "note": "n",
            "order": [{"trunk": "c", "priority": 2, "weight": 100, "drawn": false}],
            "skipped": [{"trunk": "b", "priority": 1, "weight": 100, "reason": "disabled"}]});
        let t = route(&v);
        assert!(t.contains("1    c"), "{t}");
        assert!(t.contains("skipped: disabled"), "{t}");
    }
}
