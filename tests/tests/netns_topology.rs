//! The single-SBC network-namespace topology: addresses, reachability on each side (real UDP round trips), isolation
//! between the sides, side-by-side use, and removal on drop, also when a test panics.

use std::net::SocketAddrV4;
use std::time::Duration;
use tests::netns::{self, Host, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A, SBC_B};

const WAIT: Duration = Duration::from_secs(3);

fn gone(names: &[String]) -> Vec<String> {
    names.iter().filter(|n| netns::namespace_exists(n)).cloned().collect()
}

#[test]
fn single_sbc_topology_reaches_both_sides_keeps_them_apart_and_is_removed_on_drop() {
    let topo = Topology::single_sbc().expect("topology");
    let names = topo.namespaces().to_vec();
    assert_eq!(names.len(), 5, "{names:?}");
    for host in [Host::A, Host::Sbc, Host::B, Host::C, Host::Switch] {
        let ns = topo.ns(host);
        assert!(netns::namespace_exists(&ns), "{ns} exists");
        assert!(ns.len() <= 20, "short namespace names: {ns}");
        let lo = topo.exec(host, "ip", &["-br", "link", "show", "lo"]).expect("ip link");
        assert!(lo.contains("UP"), "loopback up in {ns}: {lo}");
    }
    let sbc_addrs = topo.exec(Host::Sbc, "ip", &["-br", "-4", "addr"]).expect("ip addr");
    assert!(sbc_addrs.lines().any(|l| l.starts_with("a0") && l.contains("198.18.1.1/24")), "{sbc_addrs}");
    assert!(sbc_addrs.lines().any(|l| l.starts_with("b0") && l.contains("198.18.2.1/24")), "{sbc_addrs}");
    let bridge = topo.exec(Host::Switch, "ip", &["-br", "link", "show", "master", "br0"]).expect("bridge ports");
    assert_eq!(bridge.lines().count(), 3, "sbc, b and c plug into br0: {bridge}");

    // Side a: caller <-> SBC, both ways.
    topo.udp_exchange(Host::A, CALLER, Host::Sbc, SocketAddrV4::new(SBC_A, 7000), WAIT).expect("a -> sbc");
    topo.udp_exchange(Host::Sbc, SBC_A, Host::A, SocketAddrV4::new(CALLER, 7000), WAIT).expect("sbc -> a");
    // Side b: SBC <-> both carriers, and carrier <-> carrier over the same bridge.
    topo.udp_exchange(Host::Sbc, SBC_B, Host::B, SocketAddrV4::new(CARRIER_B, 7000), WAIT).expect("sbc -> b");
    topo.udp_exchange(Host::Sbc, SBC_B, Host::C, SocketAddrV4::new(CARRIER_C, 7000), WAIT).expect("sbc -> c");
    topo.udp_exchange(Host::B, CARRIER_B, Host::Sbc, SocketAddrV4::new(SBC_B, 7001), WAIT).expect("b -> sbc");
    topo.udp_exchange(Host::C, CARRIER_C, Host::B, SocketAddrV4::new(CARRIER_B, 7001), WAIT).expect("c -> b");
    // No forwarding: the caller cannot reach a carrier except through a process in the SBC namespace.
    let leak =
        topo.udp_exchange(Host::A, CALLER, Host::B, SocketAddrV4::new(CARRIER_B, 7002), Duration::from_millis(500));
    assert!(leak.is_err(), "side a must not reach side b directly");

    drop(topo);
    assert_eq!(gone(&names), Vec::<String>::new(), "namespaces left after drop");
}

#[test]
fn two_topologies_side_by_side_do_not_interfere() {
    let one = Topology::single_sbc().expect("first topology");
    let two = Topology::single_sbc().expect("second topology");
    assert_ne!(one.tag(), two.tag());
    // The same addresses and ports in both, at the same time.
    let echo = SocketAddrV4::new(CARRIER_B, 7100);
    let t = std::thread::spawn(move || {
        one.udp_exchange(Host::Sbc, SBC_B, Host::B, echo, WAIT).expect("first");
        one
    });
    two.udp_exchange(Host::Sbc, SBC_B, Host::B, echo, WAIT).expect("second");
    let one = t.join().expect("thread");
    let names: Vec<String> = one.namespaces().iter().chain(two.namespaces()).cloned().collect();
    one.remove().expect("remove first");
    two.remove().expect("remove second");
    assert_eq!(gone(&names), Vec::<String>::new());
}

#[test]
fn a_panicking_test_still_removes_its_namespaces_and_processes() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let topo = Topology::single_sbc().expect("topology");
        let _sleeper = topo.spawn(Host::B, "sleeper", "sleep", &["60"]).expect("spawn");
        tx.send(topo.namespaces().to_vec()).expect("send");
        panic!("a failing assertion");
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let names = rx.recv().expect("names");
    assert_eq!(gone(&names), Vec::<String>::new(), "namespaces left after a panic");
}
