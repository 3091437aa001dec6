//! The systemd units run `sbc` and `media-relay` as an unprivileged user with only the capabilities their
//! `AmbientCapabilities=` line grants (ops/systemd/). This runs each binary the same way (`setpriv`: another
//! user, the unit's capabilities as ambient, inheritable and bounding set, nothing else) in a namespace with a veth,
//! and checks that it starts with the XDP fast path attached natively; and, for the relay, that it does not start
//! without any one of them, so the set is also the least one.

use std::path::Path;
use std::time::{Duration, Instant};
use tests::netns::{self, Host, Process, Topology};

/// `nobody`: any user without privileges of its own stands for the units' `sbc`.
const UNPRIVILEGED: &str = "65534";

/// The capabilities of the unit's `AmbientCapabilities=` line, as `setpriv` names them (`net_admin`, ...).
fn unit_capabilities(unit: &str) -> Vec<String> {
    let text = std::fs::read_to_string(tests::repo_root().join("ops/systemd").join(unit)).expect("unit file");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap_or_else(|| panic!("{unit} has no AmbientCapabilities="));
    let bounding = text.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("CapabilityBoundingSet=");
    assert_eq!(line, bounding, "{unit}: the bounding set is the ambient set");
    line.split_whitespace().map(|c| c.trim_start_matches("CAP_").to_lowercase()).collect()
}

/// `setpriv` arguments that run a program as [`UNPRIVILEGED`] with exactly `caps`.
fn setpriv(caps: &[String], program: &Path) -> Vec<String> {
    let set = std::iter::once("-all".to_owned()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>();
    let set = set.join(",");
    vec![
        format!("--reuid={UNPRIVILEGED}"),
        format!("--regid={UNPRIVILEGED}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        program.display().to_string(),
    ]
}

/// A namespace with a veth pair: `v0` 198.18.9.1/24 for the binaries, `v1` its peer with GRO on, so that `v0`
/// takes XDP frames (native XDP then keeps flows in the kernel).
fn veth_host() -> Topology {
    let topo = Topology::loopback_only().expect("namespace");
    let ns = topo.ns(Host::Sbc);
    for args in [
        vec!["-n", &ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        vec!["-n", &ns, "addr", "add", "198.18.9.1/24", "dev", "v0"],
        vec!["-n", &ns, "link", "set", "v0", "up"],
        vec!["-n", &ns, "link", "set", "v1", "up"],
    ] {
        netns::ip(&args).expect("veth");
    }
    topo.exec(Host::Sbc, "ethtool", &["-K", "v1", "gro", "on"]).expect("GRO on v1");
    topo
}

/// Waits until `process`'s log has `line`, or it exits, or 30 s pass; returns whether the line came.
fn wait_log(process: &mut Process, line: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if plain(process).contains(line) {
            return true;
        }
        if process.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The log (stdout for `media-relay`, stderr for `sbc`) without terminal colours.
fn plain(process: &Process) -> String {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let text = read(&process.stdout) + &read(&process.stderr);
    let mut out = String::with_capacity(text.len());
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn media_relay_attaches_native_xdp_as_an_unprivileged_user_with_its_units_capabilities_and_needs_each() {
    tests::require_tool("setpriv", "util-linux");
    tests::require_tool("ethtool", "ethtool");
    let relay = tests::media_relay_binary().expect("media-relay builds");
    let caps = unit_capabilities("media-relay.service");
    assert_eq!(caps, ["net_admin", "bpf", "perfmon"]);
    let topo = veth_host();
    let run = |caps: &[String], name: &str| {
        let mut args = setpriv(caps, &relay);
        args.extend(
            [
                "--control",
                "127.0.0.1:2299",
                "--xdp",
                "native",
                "--interface",
                "v0",
                "--interface",
                "v1",
                "--threads",
                "1",
            ]
            .map(String::from),
        );
        let mut p = topo.spawn(Host::Sbc, name, "setpriv", &args).expect("spawning media-relay");
        let ready = wait_log(&mut p, "media relay ready");
        let log = plain(&p);
        let _ = p.terminate(Duration::from_secs(10));
        (ready, log)
    };

    let (ready, log) = run(&caps, "relay-unit-caps");
    assert!(ready, "media-relay did not start with {caps:?}:\n{log}");
    assert!(log.contains("relay_xdp attached mode=native"), "no native XDP with {caps:?}:\n{log}");

    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let (ready, log) = run(&fewer, &format!("relay-without-{missing}"));
        assert!(!ready, "media-relay started without {missing}: the unit grants more than it needs:\n{log}");
        assert!(log.contains("Error"), "without {missing} media-relay should say why it cannot start:\n{log}");
    }
}

#[test]
fn sbc_runs_with_native_xdp_as_an_unprivileged_user_with_its_units_capabilities() {
    tests::require_tool("setpriv", "util-linux");
    tests::require_tool("ethtool", "ethtool");
    let sbc = tests::sbc_binary().expect("sbc builds");
    let caps = unit_capabilities("sbc.service");
    for needed in ["net_admin", "bpf", "perfmon"] {
        assert!(caps.iter().any(|c| c == needed), "sbc.service lacks {needed}: {caps:?}");
    }
    let topo = veth_host();
    let config = topo.dir().join("sbc.toml");
    std::fs::write(
        &config,
        "[sip]\nlisten = [\"udp:198.18.9.1:5060\"]\n\n[api]\nlisten = \"127.0.0.1:8080\"\n\n\
         [media]\ninterfaces = [{ name = \"a\", address = \"198.18.9.1\" }]\nxdp = \"native\"\n",
    )
    .expect("config");
    // The unprivileged user reads the config: the unit's /etc/sbc is group-readable for it.
    let mut args = setpriv(&caps, &sbc);
    args.extend(["--config".to_owned(), config.display().to_string()]);
    std::fs::set_permissions(topo.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut p = topo.spawn(Host::Sbc, "sbc-unit-caps", "setpriv", &args).expect("spawning sbc");
    assert!(wait_log(&mut p, "admin API listening"), "sbc did not start with {caps:?}:\n{}", plain(&p));

    let probe = tests::netprobe_binary().expect("netprobe");
    // The driver exports the relay's gauges once a second: the first scrape may come before the first export.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mode = loop {
        let metrics = netns::run(netns::command(Some(&topo.ns(Host::Sbc)), probe.clone()).args([
            "http-get",
            "127.0.0.1:8080",
            "/metrics",
        ]))
        .expect("GET /metrics");
        let mode = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sbc_media_xdp_mode "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if mode != 0.0 || std::time::Instant::now() >= deadline {
            break mode;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(mode, 2.0, "XDP mode (2 native) as an unprivileged user with {caps:?}:\n{}", plain(&p));
    let status = p.terminate(Duration::from_secs(10)).expect("sbc stops");
    assert!(status.success(), "sbc exited with {status}:\n{}", plain(&p));
}
