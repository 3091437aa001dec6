//! The operations files under `ops/` against the code: the Grafana dashboard is JSON Grafana can import, and every
//! metric the dashboard and the Prometheus alert rules name is one the SBC exports, so that renaming a metric breaks
//! this test instead of a panel or an alert in production. (`make ops-check` runs promtool on the rules and
//! `systemd-analyze verify` on the units.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Metrics the dashboard and rules use that another part of issue 16 adds (the canary calls): allowed to be missing
/// from the code until that part is merged.
const PENDING: &[&str] = &[];

/// Where metrics are recorded: the `sbc` binary and the relay daemon it embeds.
const SOURCES: &[&str] = &["sbc/server/src", "media-relay/daemon/src"];

fn root() -> PathBuf {
    tests::repo_root()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Every `sbc_…` name in `text` (metric names are lower case, digits and underscores).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sbc_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end.max(start + 4);
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The metric names the code records: every `"sbc_…"` string literal in the sources.
fn exported() -> BTreeSet<String> {
    let mut files = Vec::new();
    for dir in SOURCES {
        rust_files(&root().join(dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source file");
        for name in metric_names(&text) {
            if text.contains(&format!("\"{name}\"")) {
                names.insert(name);
            }
        }
    }
    assert!(names.len() > 50, "found only {} metric names in {SOURCES:?}: is the scan broken?", names.len());
    names
}

/// Names in `used` that the code does not export (a summary's `_sum` and `_count` count as its own name).
fn unknown(used: &BTreeSet<String>) -> Vec<String> {
    let exported = exported();
    used.iter()
        .filter(|n| {
            let base = n.strip_suffix("_sum").or_else(|| n.strip_suffix("_count")).unwrap_or(n);
            !exported.contains(n.as_str()) && !exported.contains(base) && !PENDING.contains(&n.as_str())
        })
        .cloned()
        .collect()
}

#[test]
fn grafana_dashboard_is_json_with_a_query_in_every_panel_on_exported_metrics_only() {
    let text = read("ops/grafana/sbc.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("ops/grafana/sbc.json is JSON");
    assert_eq!(dash["uid"], "sbc-overview");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().expect("x"), grid["w"].as_u64().expect("w"));
        assert!(x + w <= 24, "panel {} is wider than the grid: {grid}", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(expr.contains("instance=~\"$instance\""), "panel {}: {expr} ignores the SBC selector", p["title"]);
            exprs.push(expr.to_owned());
        }
    }
    let used = metric_names(&exprs.join("\n"));
    // What the dashboard is for: calls, CPS, ASR/NER/ACD, media, loss, jitter, XDP share, HA, overload, CDRs.
    for needed in [
        "sbc_calls_active",
        "sbc_calls_in_total",
        "sbc_calls_answered_total",
        "sbc_call_attempts_total",
        "sbc_calls_failed_total",
        "sbc_call_duration_seconds_sum",
        "sbc_media_packets_forwarded_total",
        "sbc_media_kernel_packets_total",
        "sbc_media_lost_packets_total",
        "sbc_media_jitter_seconds_sum",
        "sbc_ha_role",
        "sbc_ha_lag_records",
        "sbc_overload_admission",
        "sbc_cdr_spill",
        "sbc_canary_up",
    ] {
        assert!(used.contains(needed), "the dashboard has no panel on {needed}");
    }
    assert_eq!(unknown(&used), Vec::<String>::new(), "the dashboard names metrics the code does not export");
}

#[test]
fn alert_rules_name_exported_metrics_only_and_each_rule_has_a_unit_test() {
    let rules = read("ops/prometheus/alerts.yml");
    let tests = read("ops/prometheus/alerts_test.yml");
    let used = metric_names(&rules);
    assert!(used.len() >= 8, "only {used:?} in the rules");
    assert_eq!(unknown(&used), Vec::<String>::new(), "alerts.yml names metrics the code does not export");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    for wanted in
        ["SbcTrunkDown", "SbcAsrDrop", "SbcCanaryFailing", "SbcHaPeerLost", "SbcCdrSpill", "SbcMediaRelayDown"]
    {
        assert!(alerts.contains(&wanted), "no rule {wanted} in alerts.yml: {alerts:?}");
    }
    for alert in &alerts {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(cases >= 2, "{alert}: {cases} cases in alerts_test.yml, want one firing and one quiet at least");
    }
}

#[test]
fn metric_name_scan_finds_names_at_word_starts_only() {
    let names = metric_names("rate(sbc_calls_in_total{a=\"x\"}[1m]) / xsbc_no + sbc_cdr_spill");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["sbc_calls_in_total", "sbc_cdr_spill"]);
}
