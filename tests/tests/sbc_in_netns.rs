//! `sbc` inside the single-SBC topology: started in its namespace on 198.18.1.1 / 198.18.2.1, its admin API
//! queried from inside that namespace, and SIPp on each side reaching it. The groundwork for the calls tests.

use std::time::Duration;
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::sipp::Sipp;
use tests::Sbc;

#[test]
fn sbc_in_its_namespace_answers_options_from_the_caller_and_from_a_carrier() {
    let topo = Topology::single_sbc().expect("topology");
    let config = format!(
        "[sip]\nlisten = [\"udp:{SBC_A}:5060\", \"udp:{SBC_B}:5060\"]\n\n[api]\nlisten = \"127.0.0.1:8080\"\n\n[log]\nlevel = \"info\"\n"
    );
    let sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        "netns-options",
        &config,
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts in its namespace");
    for (host, local, target) in [(Host::A, CALLER, SBC_A), (Host::B, CARRIER_B, SBC_B)] {
        let run = Sipp::new("options_uac.xml")
            .netns(&topo.ns(host))
            .local_ip(local)
            .target(addr(target, 5060))
            .calls(20)
            .rate(50)
            .limit(Duration::from_secs(20))
            .run()
            .expect("sipp runs");
        run.assert_all_successful(20).expect("every OPTIONS answered");
    }
    let seen = sbc.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"OPTIONS\"").expect("metrics");
    assert_eq!(seen, 40.0, "the SBC counted the OPTIONS of both sides");
}
