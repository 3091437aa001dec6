//! Registered users survive a takeover: in the hot-standby pair ([`Topology::pair`]) user 1001 registers over UDP
//! (`uac_register.xml`, from carrier c's host 198.18.2.11:5062 to the VIP 198.18.2.1) with the active box, the
//! binding is replicated to the standby, the active is killed (SIGKILL), and a call from the customer
//! (198.18.1.10) to 1001 through the new active reaches the user's SIPp UAS on the address it registered from.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::netns::{addr, pair_sbc_config, Host, Topology, CALLER, CARRIER_C, VIP_A, VIP_B};
use tests::sipp::Sipp;
use tests::Sbc;

const PASSWORD: &str = "u1001-pair";
const USER_PORT: u16 = 5062;

/// The users' pseudo-trunk, the route of 100x to it and the registrar, appended to each box's pair config.
fn registrar_tables(password_file: &std::path::Path) -> String {
    format!(
        r#"
[[trunk]]
name = "users"

[[route]]
prefix = "100"
to = [{{ trunk = "users" }}]

[registrar]
trunk = "users"
domains = ["{VIP_B}"]

[[registrar.user]]
name = "1001"
password_file = "{}"
"#,
        password_file.display()
    )
}

fn start(topo: &Topology, node: u8, priority: u32, extra: &str) -> Sbc {
    let cdr = topo.dir().join(format!("cdr-sbc{node}.jsonl"));
    let config = pair_sbc_config(node, priority, &cdr) + extra;
    Sbc::start_in(&topo.ns(Host::pair_box(node)), &format!("hareg-sbc{node}"), &config, addr(VIP_A, 5060), api())
        .unwrap_or_else(|e| panic!("sbc{node} starts: {e:#}"))
}

fn api() -> std::net::SocketAddr {
    addr([127, 0, 0, 1].into(), 8080)
}

fn role(sbc: &Sbc) -> String {
    let v: Option<Value> = sbc.http_get("/ha").ok().and_then(|b| serde_json::from_str(&b).ok());
    v.and_then(|v| v["role"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// Polls until `check` holds; fails with `what` and the box's log after `limit`.
fn wait(sbc: &Sbc, what: &str, limit: Duration, check: impl Fn(&Sbc) -> bool) -> Duration {
    let start = Instant::now();
    while !check(sbc) {
        assert!(start.elapsed() < limit, "{what} not within {limit:?}\n--- log ---\n{}", sbc.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
fn a_user_registered_on_the_active_is_called_through_the_standby_after_the_active_is_killed() {
    let topo = Topology::pair().expect("pair topology");
    let password_file = topo.dir().join("users.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let extra = registrar_tables(&password_file);
    let sbc1 = start(&topo, 1, 200, &extra);
    let sbc2 = start(&topo, 2, 100, &extra);
    wait(&sbc1, "sbc1 active", Duration::from_secs(10), |s| role(s) == "active");
    wait(&sbc2, "sbc2 standby", Duration::from_secs(10), |s| role(s) == "standby");

    let reg = Sipp::new("uac_register.xml")
        .netns(&topo.ns(Host::C))
        .local_ip(CARRIER_C)
        .local_port(USER_PORT)
        .target(addr(VIP_B, 5060))
        .service("1001")
        .arg("-au")
        .arg("1001")
        .arg("-ap")
        .arg(PASSWORD)
        .set("expires", "300")
        .set("expected", "200")
        .calls(1)
        .limit(Duration::from_secs(10))
        .trace_messages(true)
        .run()
        .expect("the REGISTER runs");
    reg.assert_all_successful(1).expect("1001 registers with the active");
    assert_eq!(sbc1.metric("sbc_registrar_bindings").ok(), Some(1.0), "the active holds the binding");
    let replicated = wait(&sbc2, "the binding on the standby", Duration::from_secs(5), |s| {
        s.metric("sbc_registrar_bindings").ok() == Some(1.0)
    });
    eprintln!("binding on the standby {replicated:?} after the 200");

    let killed = Instant::now();
    let status = Command::new("kill").args(["-KILL", &sbc1.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -KILL sbc1");
    let took = wait(&sbc2, "sbc2 active", Duration::from_secs(10), |s| role(s) == "active");
    eprintln!("sbc2 active {took:?} after the kill ({:?} since)", killed.elapsed());

    let ns_c = topo.ns(Host::C);
    let mut user = Sipp::new("uas_answer.xml")
        .netns(&ns_c)
        .local_ip(CARRIER_C)
        .local_port(USER_PORT)
        .calls(1)
        .limit(Duration::from_secs(20))
        .trace_messages(true)
        .spawn()
        .expect("user uas starts");
    user.wait_listening(Some(&ns_c), USER_PORT, Duration::from_secs(5)).expect("user uas listens");
    // The service addresses may still be moving: the caller's retransmissions cover that.
    let call = Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(VIP_A, 5060))
        .service("1001")
        .calls(1)
        .pause(Duration::from_millis(300))
        .limit(Duration::from_secs(15))
        .trace_messages(true)
        .run()
        .expect("the customer's call runs");
    call.assert_all_successful(1).expect("the call to 1001 through sbc2 is answered");
    user.wait()
        .expect("user uas ends")
        .assert_all_successful(1)
        .expect("1001 answered on the address it registered from");
    assert_eq!(sbc2.metric("sbc_registrar_bindings").ok(), Some(1.0), "sbc2 still holds the binding");
}
