use crate::config::{Config, ConfigError};
use sbc_proto::policy::digest::Secret;
use sbc_proto::routing::{Candidate, TrunkId, UnknownSource, DEFAULT_FAILOVER_CODES};
use sbc_proto::transport::Transport;
use std::path::Path;
use std::time::Duration;

fn parse(t: &str) -> Result<Config, ConfigError> {
    Config::parse(t, Path::new("test.toml"))
}

fn error(t: &str) -> String {
    parse(t).expect_err("should be rejected").to_string()
}

/// Lines 1 to 3 of the files of the route tests.
const CARRIERS: &str = r#"[[trunk]]
name = "carrier-b"
gateways = ["udp:198.18.2.10:5060"]
"#;

fn with_carriers(rest: &str) -> String {
    format!("{CARRIERS}{rest}")
}

#[test]
fn full_trunk_and_route_config_builds_the_plan() {
    let c = parse(
        r#"
[[trunk]]
name = "customer-pbx"
match = { source = ["198.18.1.10/32", "198.18.4.0/24:5070", "[2001:db8::1]:5060"] }
limits = { calls = 200, cps = 20 }

[[trunk]]
name = "carrier-b"
gateways = ["udp:198.18.2.10:5060", "tcp:198.18.2.11:5060"]
probe = { options_every = "10s", down_after = 4, up_after = 1 }
failover_on = [503, 408]
failover_on_timeout = false
pass_headers = ["X-Account"]
follow_redirects = true

[[trunk]]
name = "carrier-c"
gateways = ["udp:198.18.2.11:5060"]
disabled = true

[[route]]
prefix = "+49"
to = [{ trunk = "carrier-b", priority = 1, weight = 70 }, { trunk = "carrier-c", priority = 2 }]

[[route]]
prefix = "+4930"
to = [{ trunk = "carrier-c" }]

[calls]
unknown_source = "drop"
max_tries = 2
max_post_dial = "20s"
"#,
    )
    .expect("valid");
    let plan = &c.plan;
    assert_eq!(plan.trunks.len(), 3);
    let pbx = plan.trunk(TrunkId(0));
    assert_eq!(pbx.sources.len(), 3);
    assert_eq!((pbx.limits.calls, pbx.limits.cps), (Some(200), Some(20)));
    assert!(pbx.gateways.is_empty() && pbx.probe.is_none() && pbx.auth.is_none());
    assert_eq!(plan.identify("198.18.1.10:5060".parse().expect("addr")), Some(TrunkId(0)));
    assert_eq!(plan.identify("198.18.4.7:5070".parse().expect("addr")), Some(TrunkId(0)));
    assert_eq!(plan.identify("198.18.4.7:5060".parse().expect("addr")), None);
    assert_eq!(plan.identify("[2001:db8::1]:5060".parse().expect("addr")), Some(TrunkId(0)));

    let b = plan.trunk(TrunkId(1));
    assert_eq!(b.gateways.len(), 2);
    assert_eq!(b.gateways[1].transport, Transport::Tcp);
    assert_eq!(b.gateways[1].addr, "198.18.2.11:5060".parse::<std::net::SocketAddr>().expect("addr"));
    let probe = b.probe.expect("probe");
    assert_eq!((probe.interval, probe.down_after, probe.up_after), (Duration::from_secs(10), 4, 1));
    assert_eq!(b.failover.codes.iter().collect::<Vec<_>>(), [408, 503]);
    assert!(!b.failover.timeout && b.failover.transport_error);
    assert_eq!(b.pass_headers, ["x-account"]);
    assert!(b.follow_redirects && !b.disabled);

    let cc = plan.trunk(TrunkId(2));
    assert_eq!(cc.failover.codes.iter().collect::<Vec<_>>(), DEFAULT_FAILOVER_CODES);
    assert!(cc.failover.timeout && cc.failover.transport_error && cc.disabled && !cc.follow_redirects);

    let (prefix, to) = plan.route("+4989123").expect("route");
    assert_eq!(prefix, "+49");
    assert_eq!(to, [Candidate { trunk: TrunkId(1), priority: 1, weight: 70 }, Candidate::new(TrunkId(2), 2)]);
    let (prefix, to) = plan.route("+49301234").expect("route");
    assert_eq!((prefix, to), ("+4930", &[Candidate::new(TrunkId(2), 1)][..]));
    assert!(plan.route("+441234").is_none(), "no catch-all");
    assert_eq!(
        (plan.unknown_source, plan.max_tries, plan.max_post_dial),
        (UnknownSource::Drop, 2, Duration::from_secs(20))
    );
}

#[test]
fn no_trunks_gives_an_empty_plan_with_default_call_limits() {
    let c = parse("").expect("empty is fine");
    assert!(c.plan.trunks.is_empty() && c.plan.routes.is_empty() && c.plan.catch_all.is_none());
    assert_eq!(c.plan.identify("198.18.1.10:5060".parse().expect("addr")), None);
    assert_eq!(c.plan.unknown_source, UnknownSource::Reject);
    assert_eq!((c.plan.max_tries, c.plan.max_post_dial), (3, Duration::from_secs(30)));
}

#[test]
fn catch_all_route_goes_to_plan_catch_all() {
    let c = parse(&with_carriers("[[route]]\nprefix = \"\"\nto = [{ trunk = \"carrier-b\" }]\n")).expect("valid");
    assert!(c.plan.routes.is_empty());
    assert_eq!(c.plan.catch_all.as_deref(), Some(&[Candidate::new(TrunkId(0), 1)][..]));
    assert_eq!(c.plan.route("+331234").expect("catch-all").0, "");
}

#[test]
fn second_catch_all_names_both_lines() {
    let e = error(&with_carriers(
        r#"[[route]]
prefix = ""
to = [{ trunk = "carrier-b" }]
[[route]]
prefix = ""
to = [{ trunk = "carrier-b" }]
"#,
    ));
    assert!(e.starts_with("test.toml:8: route[1].prefix: a second catch-all route"), "{e}");
    assert!(e.contains("route[0] (line 5)"), "{e}");
}

#[test]
fn unknown_key_in_trunk_names_its_line() {
    let e = error("[[trunk]]\nname = \"b\"\ngateways = [\"udp:198.18.2.10:5060\"]\nfailover_no = [503]\n");
    assert!(e.starts_with("test.toml:4:"), "{e}");
    assert!(e.contains("failover_no"), "{e}");
    let e = error("[[trunk]]\nname = \"b\"\nprobe = { options_every = \"5s\", down = 3 }\n");
    assert!(e.starts_with("test.toml:3:"), "{e}");
    assert!(e.contains("down"), "{e}");
}

#[test]
fn unknown_trunk_in_route_names_route_to_trunk_key_and_line() {
    let e = error(&with_carriers(
        r#"[[route]]
prefix = "+49"
to = [{ trunk = "carrier-b" }]
[[route]]
prefix = "+44"
to = [
  { trunk = "carrier-b", priority = 1 },
  { trunk = "carrier-x", priority = 2 },
]
"#,
    ));
    assert_eq!(e, "test.toml:11: route[1].to[1].trunk: no [[trunk]] is named \"carrier-x\"");
}

#[test]
fn trunk_without_gateways_in_a_route_is_an_error() {
    let e = error(
        r#"[[trunk]]
name = "pbx"
match = { source = ["198.18.1.10"] }
[[route]]
prefix = "+49"
to = [{ trunk = "pbx" }]
"#,
    );
    assert_eq!(e, "test.toml:6: route[0].to[0].trunk: trunk \"pbx\" has no gateways to send calls to");
}

#[test]
fn bad_cidr_names_the_source_and_line() {
    let e =
        error("[[trunk]]\nname = \"pbx\"\nmatch = { source = [\n  \"198.18.1.10/32\",\n  \"198.18.1.300/32\",\n] }\n");
    assert!(e.starts_with("test.toml:5: trunk[0].match.source[1]: \"198.18.1.300/32\""), "{e}");
    let e = error("[[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.0/33\"] }\n");
    assert!(e.starts_with("test.toml:3: trunk[0].match.source[0]:"), "{e}");
    let e = error("[[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10/24\"] }\n");
    assert!(e.contains("host bits set") && e.contains("198.18.1.0/24") && e.contains("198.18.1.10/32"), "{e}");
    let e = error("[[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10:0\"] }\n");
    assert!(e.contains("port \"0\""), "{e}");
}

#[test]
fn failover_code_200_is_rejected() {
    let e = error("[[trunk]]\nname = \"b\"\ngateways = [\"udp:198.18.2.10:5060\"]\nfailover_on = [503, 200]\n");
    assert!(e.starts_with("test.toml:4: trunk[0].failover_on[1]: status 200 cannot trigger failover"), "{e}");
    let e = error("[[trunk]]\nname = \"b\"\nfailover_on = [70000]\n");
    assert!(e.contains("trunk[0].failover_on[0]: 70000 is not a SIP status code"), "{e}");
}

#[test]
fn duplicate_prefix_names_both_routes() {
    let e = error(&with_carriers(
        r#"[[route]]
prefix = "+49"
to = [{ trunk = "carrier-b" }]
[[route]]
prefix = "+44"
to = [{ trunk = "carrier-b" }]
[[route]]
prefix = "+49"
to = [{ trunk = "carrier-b" }]
"#,
    ));
    assert_eq!(e, "test.toml:11: route[2].prefix: prefix \"+49\" is given twice; the first is route[0] (line 5)");
}

#[test]
fn bad_prefix_names_the_route() {
    let e = error(&with_carriers("[[route]]\nprefix = \"+49 30\"\nto = [{ trunk = \"carrier-b\" }]\n"));
    assert!(e.starts_with("test.toml:5: route[0].prefix: route prefix \"+49 30\": ' ' at position 3"), "{e}");
    let e = error(&with_carriers("[[route]]\nprefix = \"+\"\nto = [{ trunk = \"carrier-b\" }]\n"));
    assert!(e.starts_with("test.toml:5: route[0].prefix: route prefix \"+\" has no digits"), "{e}");
}

#[test]
fn missing_password_env_names_the_key_and_no_secret() {
    let secret = "hunter2-do-not-print";
    let file = std::env::temp_dir().join(format!("sbc-config-test-{}-password", std::process::id()));
    std::fs::write(&file, format!("{secret}\n")).expect("write password file");
    let text = format!(
        r#"[[trunk]]
name = "b"
gateways = ["udp:198.18.2.10:5060"]
auth = {{ username = "sbc", password_file = {file:?} }}

[[trunk]]
name = "c"
gateways = ["udp:198.18.2.11:5060"]
auth = {{ username = "sbc", password_env = "SBC_TEST_UNSET_PASSWORD_VARIABLE" }}
"#
    );
    let e = parse(&text).expect_err("variable unset");
    let debug = format!("{e:?}");
    let e = e.to_string();
    assert_eq!(
        e,
        "test.toml:9: trunk[1].auth.password_env: environment variable SBC_TEST_UNSET_PASSWORD_VARIABLE is not set"
    );
    assert!(!debug.contains(secret), "{debug}");

    // Without the second trunk it loads, with the trailing newline stripped, and Debug hides the value.
    let ok = parse(text.split("\n\n").next().expect("first trunk")).expect("valid");
    std::fs::remove_file(&file).expect("remove password file");
    let auth = ok.plan.trunks[0].auth.as_ref().expect("auth");
    assert_eq!((auth.username.as_str(), &auth.password), ("sbc", &Secret::new(secret)));
    assert!(!format!("{ok:?}").contains(secret));
}

#[test]
fn auth_needs_exactly_one_password_source() {
    let e = error("[[trunk]]\nname = \"b\"\nauth = { username = \"sbc\" }\n");
    assert!(e.starts_with("test.toml:3: trunk[0].auth: needs password_env"), "{e}");
    let e =
        error("[[trunk]]\nname = \"b\"\nauth = { username = \"sbc\", password_env = \"A\", password_file = \"/x\" }\n");
    assert!(e.contains("trunk[0].auth: give either password_env or password_file, not both"), "{e}");
    let e = error("[[trunk]]\nname = \"b\"\nauth = { username = \"sbc\", password_file = \"/nonexistent/sbc-pw\" }\n");
    assert!(e.starts_with("test.toml:3: trunk[0].auth.password_file: cannot read /nonexistent/sbc-pw"), "{e}");
}

#[test]
fn duplicate_trunk_names_and_bad_values_are_all_reported() {
    let e = error(
        r#"[[trunk]]
name = "b"
gateways = ["udp:198.18.2.10"]
[[trunk]]
name = "b"
limits = { calls = 0 }
probe = { options_every = "often" }
pass_headers = ["Via", "X Bad"]
[calls]
max_tries = 0
max_post_dial = "0s"
"#,
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 9, "{e}");
    assert!(lines[0].starts_with("test.toml:3: trunk[0].gateways[0]:"), "{e}");
    assert!(lines[1].starts_with("test.toml:5: trunk[1].name: \"b\" is already the name of trunk[0] (line 2)"), "{e}");
    assert!(lines[2].starts_with("test.toml:6: trunk[1].limits.calls: must be at least 1"), "{e}");
    assert!(lines[3].starts_with("test.toml:7: trunk[1].probe: the trunk has no gateways to probe"), "{e}");
    assert!(lines[4].starts_with("test.toml:7: trunk[1].probe.options_every:"), "{e}");
    assert!(lines[5].starts_with("test.toml:8: trunk[1].pass_headers[0]: Via is built by the SBC"), "{e}");
    assert!(lines[6].starts_with("test.toml:8: trunk[1].pass_headers[1]: \"X Bad\" is not a header name"), "{e}");
    assert!(lines[7].starts_with("test.toml:10: calls.max_tries: must be at least 1"), "{e}");
    assert!(lines[8].starts_with("test.toml:11: calls.max_post_dial:"), "{e}");
}

#[test]
fn twenty_thousand_routes_load_in_one_pass() {
    let mut text = String::from(CARRIERS);
    text.push_str("[[trunk]]\nname = \"carrier-c\"\ngateways = [\"udp:198.18.2.11:5060\"]\n");
    for i in 0..20_000u32 {
        let prefix = 4_900_000 + i;
        text.push_str(&format!("[[route]]\nprefix = \"+{prefix}\"\n"));
        text.push_str("to = [{ trunk = \"carrier-b\" }, { trunk = \"carrier-c\", priority = 2 }]\n");
    }
    let c = parse(&text).expect("valid");
    assert_eq!(c.plan.routes.len(), 20_000);
    let (prefix, to) = c.plan.route("+4912345678").expect("route");
    assert_eq!((prefix, to.len()), ("+4912345", 2));
}

#[test]
fn register_takes_the_account_from_auth_and_the_registrar_from_the_first_gateway() {
    let secret = "reg-secret-do-not-print";
    let file = std::env::temp_dir().join(format!("sbc-config-test-{}-register", std::process::id()));
    std::fs::write(&file, secret).expect("write password file");
    let text = format!(
        r#"[[trunk]]
name = "b"
gateways = ["udp:198.18.2.10:5070", "udp:198.18.2.11:5060"]
auth = {{ username = "acct", password_file = {file:?} }}
register = {{}}
"#
    );
    let c = parse(&text).expect("valid");
    let r = c.plan.trunks[0].register.as_ref().expect("register");
    assert_eq!((r.credentials.username.as_str(), &r.credentials.password), ("acct", &Secret::new(secret)));
    assert_eq!((r.registrar.transport, r.registrar.addr.to_string()), (Transport::Udp, "198.18.2.10:5070".into()));
    assert_eq!(
        (r.domain.as_str(), r.expires, r.contact_user.as_str()),
        ("198.18.2.10:5070", Duration::from_secs(600), "acct")
    );
    assert!(!format!("{c:?}").contains(secret), "the password never shows");

    let own = parse(&text.replace(
        "register = {}",
        r#"register = { username = "other", password_file = "/nonexistent/reg-pw", registrar = "udp:198.18.2.12:5060" }"#,
    ));
    let e = own.expect_err("unreadable file").to_string();
    assert!(e.starts_with("test.toml:5: trunk[0].register.password_file: cannot read /nonexistent/reg-pw"), "{e}");
    let c = parse(&text.replace(
        "register = {}",
        r#"register = { registrar = "udp:198.18.2.12:5060", expires = 3600, contact_user = "sbc-1" }"#,
    ))
    .expect("valid");
    let r = c.plan.trunks[0].register.as_ref().expect("register");
    assert_eq!(
        (r.domain.as_str(), r.expires, r.contact_user.as_str()),
        ("198.18.2.12", Duration::from_secs(3600), "sbc-1")
    );
    std::fs::remove_file(&file).expect("remove password file");

    let e = error("[[trunk]]\nname = \"b\"\nregister = { username = \"acct\", password_env = \"X\" }\n");
    assert!(e.contains("trunk[0].register.registrar: needed: the trunk has no gateway given by its address"), "{e}");
    let e = error("[[trunk]]\nname = \"b\"\ngateways = [\"udp:198.18.2.10:5060\"]\nregister = { expires = 10 }\n");
    assert!(
        e.contains("trunk[0].register.username: needed")
            && e.contains("trunk[0].register.expires: 10 s is out of range"),
        "{e}"
    );
}

#[test]
fn reload_keeps_trunk_ids_by_name_leaves_a_tombstone_and_appends_new_trunks() {
    let path = std::path::Path::new("sbc.toml");
    let old = "[[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10/32\"] }\n\n\
               [[trunk]]\nname = \"b\"\ngateways = [\"udp:198.18.2.10:5060\"]\n\n\
               [[trunk]]\nname = \"c\"\ngateways = [\"udp:198.18.2.11:5060\"]\n\n\
               [[route]]\nprefix = \"\"\nto = [{ trunk = \"b\" }]\n";
    // b removed, c moved to the top of the file, d added.
    let new = "[[trunk]]\nname = \"c\"\ngateways = [\"udp:198.18.2.12:5060\"]\n\n\
               [[trunk]]\nname = \"d\"\ngateways = [\"udp:198.18.2.13:5060\"]\n\n\
               [[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10/32\"] }\n\n\
               [[route]]\nprefix = \"\"\nto = [{ trunk = \"d\" }, { trunk = \"c\", priority = 2 }]\n";
    let old = crate::config::Config::parse(old, path).expect("valid");
    let new = crate::config::Config::parse_after(new, path, Some(&old.plan)).expect("valid");
    let names: Vec<&str> = new.plan.trunks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["pbx", "b", "c", "d"]);
    let b = &new.plan.trunks[1];
    assert!(b.disabled && b.gateways.is_empty() && b.sources.is_empty(), "b is a tombstone: {b:?}");
    assert_eq!(new.plan.trunks[2].gateways[0].addr.port(), 5060);
    assert_eq!(new.plan.trunks[2].gateways[0].addr.ip().to_string(), "198.18.2.12", "c has its new gateway");
    let route: Vec<u32> = new.plan.catch_all.as_ref().expect("catch-all").iter().map(|c| c.trunk.0).collect();
    assert_eq!(route, [3, 2], "the route names d and c by their kept ids");
    assert_eq!(new.plan.identify("198.18.1.10:5060".parse().unwrap()), Some(sbc_proto::routing::TrunkId(0)));
}
