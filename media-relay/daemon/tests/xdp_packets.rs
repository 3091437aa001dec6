//! Packet tests of the XDP fast path through BPF_PROG_TEST_RUN, plus one real run over veth and a check that a
//! SIGKILLed process leaves no program attached.
//!
//! Each test re-executes this binary (`--exact NAME`) under `ip netns exec` in a fresh network namespace it
//! creates (veth pairs, addresses from 198.18.0.0/15 and 2001:db8::/32, static neighbours, forwarding on), so
//! `bpf_fib_lookup` succeeds and the expected frames carry known MACs. Namespaces are named `xdpt-PID-N-*` and
//! removed at the end, also on failure. Needs root: without it every test fails saying so (no silent skip).

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use media_relay::xdp::{ActionCounters, FlowKey, FlowTarget, PassProgram, Xdp, XdpMode};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

// The namespace "relay" of the test_run tests: a0 (198.18.0.1, 2001:db8:a::1) <-> a1 and b0 (198.18.1.1,
// 2001:db8:b::1) <-> b1, peers 198.18.0.2 / 198.18.1.2 as static neighbours behind a0 / b0.
const MAC_A0: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x00];
const MAC_A1: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const MAC_B0: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x00];
const MAC_B1: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const MAC_PA: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const MAC_PB: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x02];

// ---------------------------------------------------------------------------------------------------------
// Namespaces and re-execution.

const ENV_ROLE: &str = "XDP_TEST_ROLE";
static SEQ: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2).map(str::to_owned)))
        .flatten();
    if uid.as_deref() != Some("0") {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        panic!(
            "the XDP packet tests need root (network namespaces, BPF){}: run `sudo -E cargo test -p media-relay \
             --test xdp_packets`",
            if ci { " and CI=true: the CI runner must run as root" } else { "" }
        );
    }
}

/// Network namespaces that are deleted on drop.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn new(names: &[&str]) -> Self {
        require_root();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut me = Namespaces(Vec::new());
        for name in names {
            let full = format!("xdpt-{}-{n}-{name}", std::process::id());
            sh(&["ip", "netns", "add", &full]);
            me.0.push(full);
        }
        me
    }
    fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// This binary running test `test` with `ENV_ROLE=role` inside namespace `ns`.
fn reexec(ns: &str, test: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(exe).args(["--exact", test, "--nocapture", "--test-threads=1"]);
    cmd.env(ENV_ROLE, role);
    cmd
}

fn role() -> Option<String> {
    std::env::var(ENV_ROLE).ok()
}

fn ip(ns: &str, args: &str) {
    let mut v = vec!["ip", "-n", ns];
    v.extend(args.split_whitespace());
    sh(&v);
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The one-namespace "relay" setup of the test_run tests.
fn setup_relay_ns(ns: &str) {
    ip(ns, "link set lo up");
    ip(ns, "link add a0 type veth peer name a1");
    ip(ns, "link add b0 type veth peer name b1");
    for (dev, m) in [("a0", MAC_A0), ("a1", MAC_A1), ("b0", MAC_B0), ("b1", MAC_B1)] {
        ip(ns, &format!("link set {dev} address {} up", mac(m)));
    }
    ip(ns, "addr add 198.18.0.1/24 dev a0");
    ip(ns, "addr add 198.18.1.1/24 dev b0");
    ip(ns, "addr add 2001:db8:a::1/64 dev a0 nodad");
    ip(ns, "addr add 2001:db8:b::1/64 dev b0 nodad");
    ip(ns, &format!("neigh add 198.18.0.2 lladdr {} dev a0 nud permanent", mac(MAC_PA)));
    ip(ns, &format!("neigh add 198.18.1.2 lladdr {} dev b0 nud permanent", mac(MAC_PB)));
    ip(ns, &format!("neigh add 2001:db8:a::2 lladdr {} dev a0 nud permanent", mac(MAC_PA)));
    ip(ns, &format!("neigh add 2001:db8:b::2 lladdr {} dev b0 nud permanent", mac(MAC_PB)));
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
}

/// Runs the body of test `test` in a fresh relay namespace: returns true in the child (run the body), false in
/// the parent after the child passed.
fn in_relay_ns(test: &str) -> bool {
    if role().as_deref() == Some("relay") {
        return true;
    }
    let nss = Namespaces::new(&["relay"]);
    setup_relay_ns(nss.name(0));
    // The child's output is shown only on failure: its libtest summary lines would read as extra test runs.
    let out = reexec(nss.name(0), test, "relay").output().expect("spawn ip netns exec");
    assert!(
        out.status.success(),
        "{test} failed inside namespace {}:\n{}{}",
        nss.name(0),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

fn ifindex(name: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).unwrap().trim().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// Frames, built from scratch with full (not incremental) checksums.

/// RFC 1071 one's-complement sum, folded, not inverted.
fn sum16(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for c in chunks {
        for pair in c.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[derive(Clone, Debug)]
struct Udp {
    smac: [u8; 6],
    dmac: [u8; 6],
    vlan: Option<u16>,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    proto: u8,
    frag: u16,
    ip_options: Vec<u8>,
    zero_csum: bool,
    /// The UDP checksum field holds only the pseudo-header sum, as a local socket's CHECKSUM_PARTIAL frame.
    partial_csum: bool,
    payload: Vec<u8>,
}

impl Udp {
    fn new(src: &str, dst: &str) -> Self {
        Udp {
            smac: MAC_PA,
            dmac: MAC_A0,
            vlan: None,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 64,
            proto: 17,
            frag: 0,
            ip_options: Vec::new(),
            zero_csum: false,
            partial_csum: false,
            payload: (0..172u8).collect(), // an RTP-sized payload (12 + 160)
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dmac);
        f.extend_from_slice(&self.smac);
        if let Some(vid) = self.vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&vid.to_be_bytes());
        }
        let ulen = (8 + self.payload.len()) as u16;
        let mut udp = Vec::new();
        udp.extend_from_slice(&self.src.port().to_be_bytes());
        udp.extend_from_slice(&self.dst.port().to_be_bytes());
        udp.extend_from_slice(&ulen.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&self.payload);
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let hlen = 20 + self.ip_options.len();
                assert_eq!(hlen % 4, 0);
                let mut h = vec![(0x40 | (hlen / 4)) as u8, 0xb8];
                h.extend_from_slice(&((hlen + udp.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0x12, 0x34]);
                h.extend_from_slice(&self.frag.to_be_bytes());
                h.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&self.ip_options);
                let c = !sum16(&[&h]);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                if !self.zero_csum {
                    let pseudo = [&s.octets()[..], &d.octets()[..], &[0, 17], &ulen.to_be_bytes()].concat();
                    let c = match !sum16(&[&pseudo, &udp]) {
                        _ if self.partial_csum => sum16(&[&pseudo]),
                        0 => 0xffff,
                        c => c,
                    };
                    udp[6..8].copy_from_slice(&c.to_be_bytes());
                }
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                let mut h = vec![0x60, 0x00, 0x00, 0x00];
                h.extend_from_slice(&(udp.len() as u16).to_be_bytes());
                h.extend_from_slice(&[self.proto, self.ttl]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                if !self.zero_csum {
                    let pseudo =
                        [&s.octets()[..], &d.octets()[..], &u32::from(ulen).to_be_bytes(), &[0, 0, 0, 17]].concat();
                    let c = match !sum16(&[&pseudo, &udp]) {
                        _ if self.partial_csum => sum16(&[&pseudo]),
                        0 => 0xffff,
                        c => c,
                    };
                    udp[6..8].copy_from_slice(&c.to_be_bytes());
                }
                f.extend_from_slice(&h);
            }
            _ => panic!("mixed families"),
        }
        f.extend_from_slice(&udp);
        f
    }

    /// What the relay should send for this packet: new addresses, TTL - 1, MACs from the neighbour table.
    fn relayed(&self, from: &str, to: &str, smac: [u8; 6], dmac: [u8; 6]) -> Self {
        Udp { src: from.parse().unwrap(), dst: to.parse().unwrap(), ttl: self.ttl - 1, smac, dmac, ..self.clone() }
    }
}

/// Independent check of the checksums of an output frame (sums over header / pseudo-header + datagram).
fn verify_checksums(frame: &[u8]) {
    let (mut off, mut et) = (14, u16::from_be_bytes([frame[12], frame[13]]));
    if et == 0x8100 {
        et = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    if et == 0x0800 {
        let hlen = usize::from(frame[off] & 0xf) * 4;
        let h = &frame[off..off + hlen];
        assert_eq!(sum16(&[h]), 0xffff, "IPv4 header checksum");
        let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let udp = &frame[off + hlen..off + tot];
        if udp[6..8] != [0, 0] {
            let pseudo = [&h[12..20], &[0, 17], &udp[4..6]].concat();
            assert_eq!(sum16(&[&pseudo, udp]), 0xffff, "UDP/IPv4 checksum");
        }
    } else {
        let h = &frame[off..off + 40];
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let udp = &frame[off + 40..off + 40 + plen];
        assert_ne!(&udp[6..8], &[0, 0], "UDP/IPv6 checksum must not be 0");
        let pseudo = [&h[8..40], &(plen as u32).to_be_bytes(), &[0, 0, 0, 17]].concat();
        assert_eq!(sum16(&[&pseudo, udp]), 0xffff, "UDP/IPv6 checksum");
    }
}

fn target(expect: &str, from: &str, to: &str, strict: bool) -> FlowTarget {
    FlowTarget {
        expect: expect.parse().unwrap(),
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        strict,
        pass_rtcp: false,
    }
}

fn key(local: &str) -> FlowKey {
    FlowKey { local: local.parse().unwrap() }
}

fn delta(after: ActionCounters, before: ActionCounters) -> [u64; 11] {
    let a = |c: ActionCounters| {
        [
            c.redirect,
            c.tx,
            c.pass_miss,
            c.pass_source,
            c.pass_fib,
            c.pass_ttl,
            c.pass_frag,
            c.pass_other,
            c.pass_egress,
            c.pass_csum,
            c.pass_rtcp,
        ]
    };
    let (x, y) = (a(after), a(before));
    std::array::from_fn(|i| x[i] - y[i])
}

/// Which `relay_action` a case must count (index into [`delta`]).
#[derive(Clone, Copy, Debug)]
enum Why {
    Redirect = 0,
    Tx = 1,
    Miss = 2,
    Source = 3,
    Ttl = 5,
    Frag = 6,
    Other = 7,
    Egress = 8,
    Csum = 9,
    Rtcp = 10,
}

struct Case {
    what: &'static str,
    input: Vec<u8>,
    action: u32,
    why: Why,
    /// `None`: the frame must come back unchanged.
    output: Option<Vec<u8>>,
}

fn loaded() -> Xdp {
    loaded_on(&["a0", "b0"])
}

/// The flows of [`loaded`], with only `devmap` as interfaces that take XDP frames.
fn loaded_on(devmap: &[&str]) -> Xdp {
    let ifs: Vec<String> = devmap.iter().map(|s| (*s).to_owned()).collect();
    let mut xdp = Xdp::load_unattached(&ifs).expect("load relay_xdp");
    // IPv4: peer A 198.18.0.2:5000 -> relay 198.18.0.1:40000 ==> relay 198.18.1.1:40002 -> peer B 198.18.1.2:6000
    xdp.install(key("198.18.0.1:40000"), target("198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000", true))
        .unwrap();
    // Same-side hairpin (for VLAN and XDP_TX): 198.18.0.1:40010 ==> 198.18.0.1:40011 -> 198.18.0.2:5010
    xdp.install(key("198.18.0.1:40010"), target("198.18.0.2:5000", "198.18.0.1:40011", "198.18.0.2:5010", true))
        .unwrap();
    // Non-strict: any source.
    xdp.install(key("198.18.0.1:40020"), target("198.18.0.9:1", "198.18.1.1:40022", "198.18.1.2:6020", false)).unwrap();
    // A plain RTP flow whose RTCP user space rewrites: RTCP muxed on it goes up, RTP is forwarded.
    xdp.install(
        key("198.18.0.1:40030"),
        FlowTarget { pass_rtcp: true, ..target("198.18.0.2:5000", "198.18.1.1:40032", "198.18.1.2:6030", true) },
    )
    .unwrap();
    // IPv6
    xdp.install(
        key("[2001:db8:a::1]:40000"),
        target("[2001:db8:a::2]:5000", "[2001:db8:b::1]:40002", "[2001:db8:b::2]:6000", true),
    )
    .unwrap();
    xdp
}

fn cases() -> Vec<Case> {
    let v4 = Udp::new("198.18.0.2:5000", "198.18.0.1:40000");
    let v4_out = v4.relayed("198.18.1.1:40002", "198.18.1.2:6000", MAC_B0, MAC_PB);
    let v6 = Udp::new("[2001:db8:a::2]:5000", "[2001:db8:a::1]:40000");
    let v6_out = v6.relayed("[2001:db8:b::1]:40002", "[2001:db8:b::2]:6000", MAC_B0, MAC_PB);
    let mut cases = vec![
        Case {
            what: "IPv4 hit",
            input: v4.build(),
            action: XDP_REDIRECT,
            why: Why::Redirect,
            output: Some(v4_out.build()),
        },
        Case {
            what: "IPv6 hit",
            input: v6.build(),
            action: XDP_REDIRECT,
            why: Why::Redirect,
            output: Some(v6_out.build()),
        },
    ];
    let mut z = v4.clone();
    z.zero_csum = true;
    let mut z_out = v4_out.clone();
    z_out.zero_csum = true;
    cases.push(Case {
        what: "IPv4 hit, UDP checksum 0 stays 0",
        input: z.build(),
        action: XDP_REDIRECT,
        why: Why::Redirect,
        output: Some(z_out.build()),
    });
    let mut o = v4.clone();
    o.ip_options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let mut o_out = v4_out.clone();
    o_out.ip_options = o.ip_options.clone();
    cases.push(Case {
        what: "IPv4 with options hit",
        input: o.build(),
        action: XDP_REDIRECT,
        why: Why::Redirect,
        output: Some(o_out.build()),
    });
    let mut pad = v4.build();
    pad.extend_from_slice(&[0; 20]);
    let mut pad_out = v4_out.build();
    pad_out.extend_from_slice(&[0; 20]);
    cases.push(Case {
        what: "IPv4 hit with Ethernet padding",
        input: pad,
        action: XDP_REDIRECT,
        why: Why::Redirect,
        output: Some(pad_out),
    });
    let mut t = Udp::new("198.18.0.2:5000", "198.18.0.1:40010");
    t.vlan = Some(100);
    let t_out = t.relayed("198.18.0.1:40011", "198.18.0.2:5010", MAC_A0, MAC_PA);
    cases.push(Case {
        what: "VLAN-tagged IPv4 hit (same interface: XDP_TX, tag kept)",
        input: t.build(),
        action: XDP_TX,
        why: Why::Tx,
        output: Some(t_out.build()),
    });
    let mut t2 = v4.clone();
    t2.vlan = Some(100);
    cases.push(Case {
        what: "VLAN-tagged IPv4 hit, other egress -> PASS",
        input: t2.build(),
        action: XDP_PASS,
        why: Why::Other,
        output: None,
    });
    let u = Udp::new("198.18.0.2:5000", "198.18.0.1:40010");
    let u_out = u.relayed("198.18.0.1:40011", "198.18.0.2:5010", MAC_A0, MAC_PA);
    cases.push(Case {
        what: "IPv4 hairpin hit (XDP_TX)",
        input: u.build(),
        action: XDP_TX,
        why: Why::Tx,
        output: Some(u_out.build()),
    });
    let ns = Udp::new("198.18.0.77:7777", "198.18.0.1:40020");
    let ns_out = ns.relayed("198.18.1.1:40022", "198.18.1.2:6020", MAC_B0, MAC_PB);
    cases.push(Case {
        what: "non-strict flow, any source",
        input: ns.build(),
        action: XDP_REDIRECT,
        why: Why::Redirect,
        output: Some(ns_out.build()),
    });
    for (what, frame, why) in [
        ("miss (port)", Udp::new("198.18.0.2:5000", "198.18.0.1:40001"), Why::Miss),
        ("miss (address)", Udp::new("198.18.0.2:5000", "198.18.0.3:40000"), Why::Miss),
        ("wrong source address, strict", Udp::new("198.18.0.3:5000", "198.18.0.1:40000"), Why::Source),
        ("wrong source port, strict", Udp::new("198.18.0.2:5001", "198.18.0.1:40000"), Why::Source),
        ("IPv6 wrong source, strict", Udp::new("[2001:db8:a::3]:5000", "[2001:db8:a::1]:40000"), Why::Source),
        ("non-UDP (TCP)", Udp { proto: 6, ..v4.clone() }, Why::Other),
        ("IPv6 non-UDP (extension header)", Udp { proto: 0, ..v6.clone() }, Why::Other),
        ("IPv6 UDP checksum 0", Udp { zero_csum: true, ..v6.clone() }, Why::Other),
        ("IPv4 fragment, MF", Udp { frag: 0x2000, ..v4.clone() }, Why::Frag),
        ("IPv4 fragment, offset", Udp { frag: 0x0010, ..v4.clone() }, Why::Frag),
        ("IPv4 DF is not a fragment", Udp { frag: 0x4000, ttl: 1, ..v4.clone() }, Why::Ttl),
        ("TTL 1", Udp { ttl: 1, ..v4.clone() }, Why::Ttl),
        ("TTL 0", Udp { ttl: 0, ..v4.clone() }, Why::Ttl),
        ("IPv6 hop limit 1", Udp { ttl: 1, ..v6.clone() }, Why::Ttl),
        (
            "IPv4 partial checksum (a local sender's CHECKSUM_PARTIAL)",
            Udp { partial_csum: true, ..v4.clone() },
            Why::Csum,
        ),
        ("IPv6 partial checksum", Udp { partial_csum: true, ..v6.clone() }, Why::Csum),
    ] {
        cases.push(Case { what, input: frame.build(), action: XDP_PASS, why, output: None });
    }
    // RFC 5761 §4: RTCP is version 2 with a second byte in 192..=223; RTP's marker + payload type never is
    // when multiplexed. 0x80 0x00 is RTP (PCMU); 0x80 0xc8 an SR; 0x81 0xc9 an RR; 0x81 0xca an SDES.
    let with_payload = |dst: &str, head: &[u8]| {
        let mut u = Udp::new("198.18.0.2:5000", dst);
        u.payload[..head.len()].copy_from_slice(head);
        u
    };
    for (what, head, why) in [
        ("RTP on a pass-RTCP flow is forwarded", &[0x80, 0x00][..], Why::Redirect),
        ("RTP with marker, PT 96 on a pass-RTCP flow is forwarded", &[0x80, 0xe0][..], Why::Redirect),
        ("RTCP SR (200) on a pass-RTCP flow is passed", &[0x80, 200][..], Why::Rtcp),
        ("RTCP RR (201) on a pass-RTCP flow is passed", &[0x81, 201][..], Why::Rtcp),
        ("RTCP SDES (202) on a pass-RTCP flow is passed", &[0x81, 202][..], Why::Rtcp),
        ("second byte 192 on a pass-RTCP flow is passed", &[0x80, 192][..], Why::Rtcp),
        ("second byte 223 on a pass-RTCP flow is passed", &[0x80, 223][..], Why::Rtcp),
        ("second byte 224 is RTP, forwarded", &[0x80, 224][..], Why::Redirect),
        ("second byte 191 is RTP, forwarded", &[0x80, 191][..], Why::Redirect),
        ("version 1 with byte 200 is not RTCP, forwarded", &[0x40, 200][..], Why::Redirect),
    ] {
        let u = with_payload("198.18.0.1:40030", head);
        let (action, output) = match why {
            Why::Redirect => {
                (XDP_REDIRECT, Some(u.relayed("198.18.1.1:40032", "198.18.1.2:6030", MAC_B0, MAC_PB).build()))
            }
            _ => (XDP_PASS, None),
        };
        cases.push(Case { what, input: u.build(), action, why, output });
    }
    let sr = with_payload("198.18.0.1:40000", &[0x80, 200]);
    cases.push(Case {
        what: "RTCP on a flow without pass-RTCP is forwarded (SRTP streams keep SRTCP in the kernel)",
        input: sr.build(),
        action: XDP_REDIRECT,
        why: Why::Redirect,
        output: Some(sr.relayed("198.18.1.1:40002", "198.18.1.2:6000", MAC_B0, MAC_PB).build()),
    });
    let mut arp = v4.build();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(Case { what: "ARP", input: arp, action: XDP_PASS, why: Why::Other, output: None });
    let mut lenlie = v4.build();
    lenlie[16..18].copy_from_slice(&1000u16.to_be_bytes()); // IPv4 total length beyond the frame
    cases.push(Case {
        what: "IPv4 total length > frame",
        input: lenlie,
        action: XDP_PASS,
        why: Why::Other,
        output: None,
    });
    cases
}

fn run_case(xdp: &Xdp, ingress: u32, c: &Case) {
    let before = xdp.actions().unwrap();
    let out = xdp.test_run(&c.input, ingress, 1).unwrap_or_else(|e| panic!("{}: test_run: {e}", c.what));
    let d = delta(xdp.actions().unwrap(), before);
    assert_eq!(out.action, c.action, "{}: action", c.what);
    let mut want = [0u64; 11];
    want[c.why as usize] = 1;
    assert_eq!(d, want, "{}: action counters (redirect tx miss source fib ttl frag other egress csum rtcp)", c.what);
    match &c.output {
        Some(expected) => {
            verify_checksums(&out.frame);
            assert_eq!(out.frame, *expected, "{}: output frame", c.what);
        }
        None => assert_eq!(out.frame, c.input, "{}: a passed frame must be untouched", c.what),
    }
    eprintln!("ok: {}", c.what);
}

// ---------------------------------------------------------------------------------------------------------
// The tests.

#[test]
fn packet_cases() {
    if !in_relay_ns("packet_cases") {
        return;
    }
    let xdp = loaded();
    let a0 = ifindex("a0");
    for c in cases() {
        run_case(&xdp, a0, &c);
    }
    // The IPv4 hit was counted in its flow: 5 hits on 198.18.0.1:40000 (plain, zero checksum, options, padding,
    // RTCP on a flow without pass-RTCP).
    let k = xdp.counters(&key("198.18.0.1:40000")).unwrap().expect("installed");
    assert_eq!((k.packets, k.bytes), (5, 5 * 172));
    // The pass-RTCP flow counted only what it forwarded: the 5 RTP-looking packets, not the 5 RTCP ones.
    let r = xdp.counters(&key("198.18.0.1:40030")).unwrap().expect("installed");
    assert_eq!((r.packets, r.bytes), (5, 5 * 172));
    assert!(k.last_seen_ns > 0);
    let k6 = xdp.counters(&key("[2001:db8:a::1]:40000")).unwrap().expect("installed");
    assert_eq!((k6.packets, k6.bytes), (1, 172));
}

/// A flow whose egress (or, for XDP_TX, whose ingress) is not in relay_devmap is passed, untouched: such an
/// interface cannot take XDP frames now, and a redirect there would lose the packet.
#[test]
fn egress_that_cannot_take_frames_passes() {
    if !in_relay_ns("egress_that_cannot_take_frames_passes") {
        return;
    }
    let a0 = ifindex("a0");
    let v4 = Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build();
    let hairpin = Udp::new("198.18.0.2:5000", "198.18.0.1:40010");
    let hairpin_out = hairpin.relayed("198.18.0.1:40011", "198.18.0.2:5010", MAC_A0, MAC_PA).build();
    let xdp = loaded_on(&["a0"]);
    let cases = [
        Case {
            what: "redirect to b0, not in devmap",
            input: v4.clone(),
            action: XDP_PASS,
            why: Why::Egress,
            output: None,
        },
        Case {
            what: "XDP_TX out of a0, in devmap",
            input: hairpin.build(),
            action: XDP_TX,
            why: Why::Tx,
            output: Some(hairpin_out),
        },
    ];
    for c in &cases {
        run_case(&xdp, a0, c);
    }
    drop(xdp);
    let xdp = loaded_on(&["b0"]);
    let c = Case {
        what: "XDP_TX out of a0, not in devmap",
        input: hairpin.build(),
        action: XDP_PASS,
        why: Why::Egress,
        output: None,
    };
    run_case(&xdp, a0, &c);
    let c =
        Case { what: "redirect to b0, in devmap", input: v4, action: XDP_REDIRECT, why: Why::Redirect, output: None };
    let out = xdp.test_run(&c.input, a0, 1).expect("test_run");
    assert_eq!(out.action, XDP_REDIRECT, "{}", c.what);
}

/// Which interfaces take XDP frames follows their veth peers: none while the peers have neither an XDP program
/// nor GRO (an explicit native attach refuses them, naming the remedy; auto attaches and keeps them out of
/// relay_devmap), and each one as soon as its peer gets either, and out again when the peer loses it.
#[test]
fn egress_follows_the_veth_peer() {
    if !in_relay_ns("egress_follows_the_veth_peer") {
        return;
    }
    let ifs = ["a0".to_owned(), "b0".to_owned()];
    let err = Xdp::attach(XdpMode::Native, &ifs).expect_err("native refuses interfaces that cannot take frames");
    let msg = err.to_string();
    assert!(msg.contains("a0 cannot take XDP frames") && msg.contains("gro on"), "{msg}");
    let (mut xdp, mode) = Xdp::attach(XdpMode::Auto, &ifs).expect("auto attaches");
    assert_eq!(mode, media_relay::xdp::AttachedMode::Native);
    assert_eq!(xdp.blocked_egress(), ["a0", "b0"], "no peer has XDP or GRO");
    assert!(xdp.feature_watch().is_some(), "the kernel announces device changes");

    sh(&["ethtool", "-K", "b1", "gro", "on"]);
    let changes = xdp.sync_egress();
    assert_eq!(changes, [media_relay::xdp::EgressChange { iface: "b0".into(), ready: true }]);
    assert_eq!(xdp.blocked_egress(), ["a0"]);
    // A hit towards b0 is redirected now.
    let v4 = Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build();
    xdp.install(key("198.18.0.1:40000"), target("198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000", true))
        .unwrap();
    assert_eq!(xdp.test_run(&v4, ifindex("a0"), 1).unwrap().action, XDP_REDIRECT);

    let pass = PassProgram::attach(&["a1".to_owned()], false).expect("relay_pass on a1");
    xdp.sync_egress();
    assert!(xdp.blocked_egress().is_empty(), "a1 has an XDP program: {:?}", xdp.blocked_egress());
    drop(pass);
    sh(&["ethtool", "-K", "b1", "gro", "off"]);
    let mut changes = xdp.sync_egress();
    changes.sort_by(|x, y| x.iface.cmp(&y.iface));
    assert_eq!(
        changes,
        [
            media_relay::xdp::EgressChange { iface: "a0".into(), ready: false },
            media_relay::xdp::EgressChange { iface: "b0".into(), ready: false }
        ]
    );
    let before = xdp.actions().unwrap();
    assert_eq!(xdp.test_run(&v4, ifindex("a0"), 1).unwrap().action, XDP_PASS, "b0 cannot take frames again");
    assert_eq!(delta(xdp.actions().unwrap(), before)[Why::Egress as usize], 1);

    // Explicit native attaches once every peer is ready.
    drop(xdp);
    sh(&["ethtool", "-K", "a1", "gro", "on"]);
    sh(&["ethtool", "-K", "b1", "gro", "on"]);
    let (xdp, _) = Xdp::attach(XdpMode::Native, &ifs).expect("native with ready peers");
    assert!(xdp.blocked_egress().is_empty());
}

/// A banned source's packets are dropped whatever they are (UDP to no flow, TCP, to a flow it is not the peer
/// of) and counted under the ban's reason; other sources are untouched; lifting the ban lets it through again.
#[test]
fn banned_sources_are_dropped_and_counted_per_reason() {
    if !in_relay_ns("banned_sources_are_dropped_and_counted_per_reason") {
        return;
    }
    const XDP_DROP: u32 = 1;
    let a0 = ifindex("a0");
    let mut xdp = loaded();
    let banned: IpAddr = "198.18.0.66".parse().unwrap();
    let udp = Udp::new("198.18.0.66:5060", "198.18.0.1:5060").build();
    let tcp = Udp { proto: 6, ..Udp::new("198.18.0.66:40000", "198.18.0.1:5060") }.build();
    let to_flow = Udp::new("198.18.0.66:5000", "198.18.0.1:40000").build();
    let other = Udp::new("198.18.0.67:5060", "198.18.0.1:5060").build();
    assert_eq!(xdp.test_run(&udp, a0, 1).unwrap().action, XDP_PASS, "nobody banned yet");
    xdp.ban(banned, 4).unwrap();
    for (what, frame) in [("SIP over UDP", &udp), ("TCP", &tcp), ("to a flow of another peer", &to_flow)] {
        assert_eq!(xdp.test_run(frame, a0, 1).unwrap().action, XDP_DROP, "{what} from a banned source");
    }
    assert_eq!(xdp.test_run(&other, a0, 1).unwrap().action, XDP_PASS, "another source");
    // The flow's own peer is still forwarded (the hit path makes no ban lookup).
    let hit = Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build();
    assert_eq!(xdp.test_run(&hit, a0, 1).unwrap().action, XDP_REDIRECT);
    assert_eq!(xdp.ban_drops().unwrap()[4], 3, "counted under reason 4");
    xdp.unban(banned).unwrap();
    assert_eq!(xdp.test_run(&udp, a0, 1).unwrap().action, XDP_PASS, "ban lifted");
    assert_eq!(xdp.ban_drops().unwrap()[4], 3);
    // IPv6 too.
    let v6: IpAddr = "2001:db8:a::66".parse().unwrap();
    xdp.ban(v6, 1).unwrap();
    let udp6 = Udp::new("[2001:db8:a::66]:5060", "[2001:db8:a::1]:5060").build();
    assert_eq!(xdp.test_run(&udp6, a0, 1).unwrap().action, XDP_DROP);
    assert_eq!(xdp.ban_drops().unwrap()[1], 1);
}

#[test]
fn truncated_frames_pass() {
    if !in_relay_ns("truncated_frames_pass") {
        return;
    }
    let xdp = loaded();
    let a0 = ifindex("a0");
    let mut frames = vec![
        Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build(),
        Udp::new("[2001:db8:a::2]:5000", "[2001:db8:a::1]:40000").build(),
        Udp { vlan: Some(7), ..Udp::new("198.18.0.2:5000", "198.18.0.1:40010") }.build(),
        Udp { ip_options: vec![1; 40], ..Udp::new("198.18.0.2:5000", "198.18.0.1:40000") }.build(),
    ];
    for f in &mut frames {
        // Keep the IP/UDP length fields as they are: every cut below is a truncated datagram.
        let full = f.clone();
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (EINVAL), so start there.
        for len in 14..full.len() {
            let cut = &full[..len];
            let out = xdp.test_run(cut, a0, 1).unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert_eq!(out.action, XDP_PASS, "truncated to {len} of {}", full.len());
            assert_eq!(out.frame, cut, "truncated frame {len} must be untouched");
        }
        let out = xdp.test_run(&full, a0, 1).unwrap();
        assert_ne!(out.action, XDP_PASS, "the full frame is a hit");
    }
    let c = xdp.counters(&key("198.18.0.1:40000")).unwrap().unwrap();
    assert_eq!(c.packets, 2, "only the two full IPv4 frames were forwarded");
}

#[test]
fn install_remove_counters() {
    if !in_relay_ns("install_remove_counters") {
        return;
    }
    let mut xdp = loaded();
    let a0 = ifindex("a0");
    let frame = Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build();
    for _ in 0..3 {
        assert_eq!(xdp.test_run(&frame, a0, 1).unwrap().action, XDP_REDIRECT);
    }
    let k = key("198.18.0.1:40000");
    let fin = xdp.remove(&k).unwrap().expect("was installed");
    assert_eq!((fin.packets, fin.bytes), (3, 3 * 172));
    assert_eq!(xdp.remove(&k).unwrap(), None);
    assert_eq!(xdp.counters(&k).unwrap(), None);
    assert_eq!(xdp.test_run(&frame, a0, 1).unwrap().action, XDP_PASS, "removed: miss");
    // Re-installed: a fresh (zeroed) slot, even though it reuses the freed one.
    let mapped = FlowKey { local: "[::ffff:198.18.0.1]:40000".parse().unwrap() };
    xdp.install(mapped, target("198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000", true)).unwrap();
    assert_eq!(xdp.counters(&k).unwrap().unwrap().packets, 0);
    assert_eq!(xdp.test_run(&frame, a0, 1).unwrap().action, XDP_REDIRECT, "mapped v4 key = v4 key");
    assert_eq!(xdp.counters(&k).unwrap().unwrap().packets, 1);
    // Cross-family targets are refused.
    let err = xdp.install(key("198.18.0.1:1"), target("198.18.0.2:1", "[2001:db8:b::1]:1", "[2001:db8:b::2]:1", true));
    assert!(err.is_err());
    // Mode parsing.
    assert_eq!("native".parse::<XdpMode>().unwrap(), XdpMode::Native);
    assert!("fast".parse::<XdpMode>().unwrap_err().to_string().contains("\"generic\""));
}

/// The flow maps are sized at load from the relay's capacity: 100,000 IPv4 flows (more than the object's default
/// of 65,536) all fit, the last one installed forwards its packet (and so does the first), one more is refused as
/// full, and the redirect total derived from the flows' counters sees both packets.
#[test]
fn hundred_thousand_flows_fit_and_the_last_one_forwards() {
    if !in_relay_ns("hundred_thousand_flows_fit_and_the_last_one_forwards") {
        return;
    }
    const FLOWS: u32 = 100_000;
    let ifs = ["a0".to_owned(), "b0".to_owned()];
    let mut xdp = Xdp::load_unattached_sized(&ifs, FLOWS).expect("load relay_xdp sized for 100,000 flows");
    assert_eq!(xdp.capacity(), FLOWS);
    // Keys 198.19.0.0 .. 198.19.255.255 on port 40000, then on port 40001 (a key need not be an address of the
    // host for a test run).
    let local = |i: u32| format!("198.19.{}.{}:{}", (i >> 8) & 0xff, i & 0xff, 40000 + (i >> 16));
    let flow = target("198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000", true);
    for i in 0..FLOWS {
        xdp.install(key(&local(i)), flow).unwrap_or_else(|e| panic!("flow {i} of {FLOWS}: {e}"));
    }
    let err = xdp.install(key("198.18.0.1:1"), flow).expect_err("one flow more than the capacity");
    assert!(err.to_string().contains("full"), "{err}");
    let a0 = ifindex("a0");
    for i in [FLOWS - 1, 0] {
        let out = xdp.test_run(&Udp::new("198.18.0.2:5000", &local(i)).build(), a0, 1).unwrap();
        assert_eq!(out.action, XDP_REDIRECT, "flow {i}");
        assert_eq!(xdp.counters(&key(&local(i))).unwrap().unwrap().packets, 1, "flow {i}");
    }
    assert_eq!(xdp.counters(&key(&local(FLOWS / 2))).unwrap().unwrap().packets, 0);
    assert_eq!(xdp.actions().unwrap().redirect, 2, "redirects derived from 100,000 flows' counters");
    assert!(Xdp::load_unattached_sized(&ifs, 0).is_err(), "a capacity of 0 is refused");
}

/// The program caches a flow's next hop; a neighbour change announced by the kernel must reach the flow at its
/// next packet, within a second: the peer's MAC changes (its frames then carry the new one), the neighbour goes
/// away (its packets are passed to user space, counted as `fib`, never dropped) and comes back.
#[test]
fn neighbour_change_reaches_a_flow_within_a_second() {
    if !in_relay_ns("neighbour_change_reaches_a_flow_within_a_second") {
        return;
    }
    const MAC_PB_NEW: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x09];
    let xdp = loaded();
    let a0 = ifindex("a0");
    let frame = Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build();
    let dmac = |out: &media_relay::xdp::TestRunOutput| -> [u8; 6] { out.frame[..6].try_into().unwrap() };
    // Many packets first, so the cached hop is the one in use when the change comes.
    for _ in 0..100 {
        let out = xdp.test_run(&frame, a0, 1).unwrap();
        assert_eq!((out.action, dmac(&out)), (XDP_REDIRECT, MAC_PB));
    }
    // Polls the flow until `done` holds for a packet's outcome; returns how long that took (at most 1 s).
    let until = |what: &str, done: &dyn Fn(&media_relay::xdp::TestRunOutput) -> bool| -> Duration {
        let start = Instant::now();
        loop {
            let out = xdp.test_run(&frame, a0, 1).unwrap();
            if done(&out) {
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(1), "{what}: not seen by the flow within 1 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    sh(&["ip", "neigh", "replace", "198.18.1.2", "lladdr", &mac(MAC_PB_NEW), "dev", "b0", "nud", "permanent"]);
    let took = until("the peer's new MAC", &|o| o.action == XDP_REDIRECT && dmac(o) == MAC_PB_NEW);
    eprintln!("new MAC in use after {took:?}");
    let before = xdp.actions().unwrap();
    sh(&["ip", "neigh", "del", "198.18.1.2", "dev", "b0"]);
    let took = until("the neighbour's removal", &|o| o.action == XDP_PASS);
    eprintln!("neighbour gone: passed after {took:?}");
    let out = xdp.test_run(&frame, a0, 1).unwrap();
    assert_eq!((out.action, &out.frame), (XDP_PASS, &frame), "passed untouched while there is no neighbour");
    let d = delta(xdp.actions().unwrap(), before);
    assert!(d[4] >= 2, "passed as `fib` (next hop unknown): {d:?}");
    assert_eq!(d[4] + d[0], d.iter().sum::<u64>(), "nothing else happened to the packets: {d:?}");
    sh(&["ip", "neigh", "replace", "198.18.1.2", "lladdr", &mac(MAC_PB), "dev", "b0", "nud", "permanent"]);
    let took = until("the neighbour's return", &|o| o.action == XDP_REDIRECT && dmac(o) == MAC_PB);
    eprintln!("neighbour back after {took:?}");
    // The other flows' hops were looked up again too, and are still right.
    let v6 = xdp.test_run(&Udp::new("[2001:db8:a::2]:5000", "[2001:db8:a::1]:40000").build(), a0, 1).unwrap();
    assert_eq!((v6.action, dmac(&v6)), (XDP_REDIRECT, MAC_PB));
}

/// The per-CPU counters summed by user space are exact: N packets (runs spread over threads, so over both CPUs
/// when the scheduler likes) count N packets and N payloads in their flows and N forwarded actions.
#[test]
fn counters_are_exact_over_many_packets() {
    if !in_relay_ns("counters_are_exact_over_many_packets") {
        return;
    }
    let mut xdp = loaded();
    // Two flows that rewrite into each other (as in test_run_timing): every repetition is a hit.
    xdp.install(key("198.18.0.2:5000"), target("198.18.1.1:40002", "198.18.0.1:40000", "198.18.1.2:6000", true))
        .unwrap();
    xdp.install(key("198.18.1.2:6000"), target("198.18.0.1:40000", "198.18.1.1:40002", "198.18.0.2:5000", true))
        .unwrap();
    let c = ifindex("b1");
    let looped = Udp { ttl: 255, ..Udp::new("198.18.1.1:40002", "198.18.0.2:5000") }.build();
    let before = xdp.actions().unwrap();
    const THREADS: u64 = 4;
    const CALLS: u64 = 50;
    const REPEAT: u32 = 250;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..CALLS {
                    assert_eq!(xdp.test_run(&looped, c, REPEAT).unwrap().action, XDP_REDIRECT);
                }
            });
        }
    });
    let n = THREADS * CALLS * u64::from(REPEAT);
    let d = delta(xdp.actions().unwrap(), before);
    assert_eq!(d[0], n, "every run redirected and counted");
    let x = xdp.counters(&key("198.18.0.2:5000")).unwrap().unwrap();
    let y = xdp.counters(&key("198.18.1.2:6000")).unwrap().unwrap();
    assert_eq!((x.packets, y.packets), (n / 2, n / 2), "the two flows take turns");
    assert_eq!((x.bytes, y.bytes), (n / 2 * 172, n / 2 * 172));
    assert!(x.last_seen_ns > 0 && y.last_seen_ns > 0, "seen");
    // A read that finds no new packet keeps the time of the last one that did.
    assert_eq!(xdp.counters(&key("198.18.0.2:5000")).unwrap().unwrap().last_seen_ns, x.last_seen_ns);
}

/// ns per packet from BPF_PROG_TEST_RUN's own timing. With `repeat` the kernel feeds the rewritten frame back
/// in (and the TTL goes down each time), so the hit path is timed two ways: (1) the mean of the kernel-reported
/// duration of 100,000 single runs; (2) repeat=250 on a TTL-255 frame and two flows that rewrite into each other.
/// The miss path (frame unchanged) runs with repeat=1,000,000.
#[test]
fn test_run_timing() {
    if !in_relay_ns("test_run_timing") {
        return;
    }
    let mut xdp = loaded();
    // Two flows that rewrite into each other, keyed on the peers' addresses (not local, so fib forwards):
    // 198.18.1.1:40002 -> 198.18.0.2:5000  ==>  198.18.0.1:40000 -> 198.18.1.2:6000  ==>  back again.
    xdp.install(key("198.18.0.2:5000"), target("198.18.1.1:40002", "198.18.0.1:40000", "198.18.1.2:6000", true))
        .unwrap();
    xdp.install(key("198.18.1.2:6000"), target("198.18.0.1:40000", "198.18.1.1:40002", "198.18.0.2:5000", true))
        .unwrap();
    let c = ifindex("b1"); // an ingress that is neither egress: every run redirects
    let before = xdp.actions().unwrap();
    const SINGLE: u32 = 100_000;
    let frame = Udp::new("198.18.0.2:5000", "198.18.0.1:40000").build();
    let mut total = Duration::ZERO;
    for _ in 0..SINGLE {
        let out = xdp.test_run(&frame, c, 1).unwrap();
        assert_eq!(out.action, XDP_REDIRECT);
        total += out.duration;
    }
    let looped = Udp { ttl: 255, ..Udp::new("198.18.1.1:40002", "198.18.0.2:5000") }.build();
    const LOOP: u32 = 250;
    let hit = xdp.test_run(&looped, c, LOOP).unwrap();
    assert_eq!(hit.action, XDP_REDIRECT);
    let d = delta(xdp.actions().unwrap(), before);
    assert_eq!(d[0], u64::from(SINGLE + LOOP), "every run redirected (hit path)");
    const N: u32 = 1_000_000;
    let miss = xdp.test_run(&Udp::new("198.18.0.2:5000", "198.18.0.1:1").build(), c, N).unwrap();
    assert_eq!(miss.action, XDP_PASS);
    eprintln!(
        "BPF_PROG_TEST_RUN: IPv4 hit (parse, lookup, fib, rewrite, redirect): {} ns/packet (mean of {SINGLE} single \
         runs), {} ns/packet (repeat={LOOP}); miss: {} ns/packet (repeat={N})",
        total.as_nanos() / u128::from(SINGLE),
        hit.duration.as_nanos(),
        miss.duration.as_nanos()
    );
}

// ---------------------------------------------------------------------------------------------------------
// Real traffic over veth: namespaces A (peer, a1) <-> R (relay, a0 + b0) <-> B (peer, b1).

fn wait_line(child: &mut Child, want: &str) -> String {
    let out = child.stdout.as_mut().expect("piped");
    let mut r = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("child exited before printing {want:?}");
        }
        if line.contains(want) {
            return line.trim().to_owned();
        }
    }
}

#[test]
fn veth_end_to_end() {
    match role().as_deref() {
        Some("relay") => {
            let ifs = ["a0".to_owned(), "b0".to_owned()];
            let (mut xdp, mode) = Xdp::attach(XdpMode::Native, &ifs).expect("attach native");
            assert_eq!(mode, media_relay::xdp::AttachedMode::Native);
            xdp.install(
                key("198.18.0.1:40000"),
                target("198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000", true),
            )
            .unwrap();
            println!("ready");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let c = xdp.counters(&key("198.18.0.1:40000")).unwrap().unwrap();
                if c.packets >= 3 || Instant::now() > deadline {
                    println!("counters {c:?} actions {:?}", xdp.actions().unwrap());
                    println!("lost after the program: {}", xdp.drops().unwrap().total());
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Some("recv") => {
            let _pass = PassProgram::attach(&["b1".to_owned()], false).expect("pass on b1");
            let s = UdpSocket::bind("198.18.1.2:6000").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            println!("ready");
            let mut buf = [0u8; 2048];
            let mut got = 0;
            while got < 3 {
                let Ok((n, from)) = s.recv_from(&mut buf) else { break };
                println!("got {n} from {from} payload {:?}", std::str::from_utf8(&buf[..n]).unwrap_or("?"));
                got += 1;
            }
            println!("done {got}");
            return;
        }
        Some("send") => {
            // A raw IPPROTO_UDP socket with the UDP checksum computed here: a plain UDP socket over veth leaves
            // a CHECKSUM_PARTIAL frame (only the pseudo-header sum in the checksum field), which is not what a
            // NIC delivers and which the fast path cannot complete (see the report / xdp module docs).
            use socket2::{Domain, Protocol, SockAddr, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).unwrap();
            let dst: SocketAddr = "198.18.0.1:0".parse().unwrap();
            for i in 0..20 {
                let mut u = Udp::new("198.18.0.2:5000", "198.18.0.1:40000");
                u.payload = format!("rtp {i}").into_bytes();
                let frame = u.build();
                s.send_to(&frame[14 + 20..], &SockAddr::from(dst)).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        _ => {}
    }
    let nss = Namespaces::new(&["a", "r", "b"]);
    let (a, r, b) = (nss.name(0), nss.name(1), nss.name(2));
    for ns in [a, r, b] {
        ip(ns, "link set lo up");
    }
    ip(r, &format!("link add a0 type veth peer name a1 netns {a}"));
    ip(r, &format!("link add b0 type veth peer name b1 netns {b}"));
    ip(r, &format!("link set a0 address {} up", mac(MAC_A0)));
    ip(r, &format!("link set b0 address {} up", mac(MAC_B0)));
    ip(a, &format!("link set a1 address {} up", mac(MAC_PA)));
    ip(b, &format!("link set b1 address {} up", mac(MAC_PB)));
    ip(r, "addr add 198.18.0.1/24 dev a0");
    ip(r, "addr add 198.18.1.1/24 dev b0");
    ip(a, "addr add 198.18.0.2/24 dev a1");
    ip(b, "addr add 198.18.1.2/24 dev b1");
    ip(r, &format!("neigh add 198.18.1.2 lladdr {} dev b0 nud permanent", mac(MAC_PB)));
    ip(a, &format!("neigh add 198.18.0.1 lladdr {} dev a1 nud permanent", mac(MAC_A0)));
    sh(&["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // Native XDP takes only interfaces whose veth peers take XDP frames: a1 by GRO, b1 by relay_pass.
    sh(&["ip", "netns", "exec", a, "ethtool", "-K", "a1", "gro", "on"]);

    let mut recv = reexec(b, "veth_end_to_end", "recv").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_line(&mut recv, "ready");
    let mut relay =
        reexec(r, "veth_end_to_end", "relay").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_line(&mut relay, "ready");
    let send = reexec(a, "veth_end_to_end", "send").output().unwrap();
    assert!(send.status.success(), "sender: {}", String::from_utf8_lossy(&send.stdout));
    let recv_out = recv.wait_with_output().unwrap();
    let relay_out = relay.wait_with_output().unwrap();
    let recv_text = String::from_utf8_lossy(&recv_out.stdout);
    let relay_text = String::from_utf8_lossy(&relay_out.stdout);
    eprintln!("receiver:\n{recv_text}relay:\n{relay_text}");
    assert!(recv_out.status.success() && relay_out.status.success());
    assert!(recv_text.contains("got 5 from 198.18.1.1:40002 payload \"rtp 0\""), "rewritten packet arrived at B");
    assert!(recv_text.contains("done 3"));
    assert!(relay_text.contains("packets: 3") || relay_text.contains("packets: 4"), "counted by the kernel");
    assert!(relay_text.contains("lost after the program: 0"), "nothing lost");
}

/// Sends `n` UDP datagrams 198.18.0.2:5000 -> 198.18.0.1:40000 from this namespace: with full checksums through
/// a raw socket (as a NIC would deliver them), or through a plain UDP socket (CHECKSUM_PARTIAL over veth).
fn send_from_a(n: usize, raw: bool) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let dst: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    if raw {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).unwrap();
        for i in 0..n {
            let mut u = Udp::new("198.18.0.2:5000", "198.18.0.1:40000");
            u.payload = format!("rtp {i}").into_bytes();
            s.send_to(&u.build()[14 + 20..], &SockAddr::from(dst)).unwrap();
        }
    } else {
        let s = UdpSocket::bind("198.18.0.2:5000").unwrap();
        for i in 0..n {
            s.send_to(format!("rtp {i}").as_bytes(), dst).unwrap();
        }
    }
}

/// Frames that the kernel fails to deliver after the program redirected them are counted, not lost unseen: b1
/// loses GRO while a flow to it is up (so b0 cannot take XDP frames any more) and the relay has not noticed yet:
/// every redirected frame shows up in the drop counters. Once the relay syncs, the flow's packets are passed to
/// user space instead (reason egress); packets with a partial checksum from a local socket are passed too.
/// A twin relay in a twin namespace, whose a0 and b0 have the same ifindexes, counts none of those losses: the
/// kernel's xdp tracepoints fire for every namespace, and the counters once took any device of the same number
/// for their own (a flake of the tests run side by side, and wrong figures on a host with containers).
#[test]
fn frames_lost_after_a_redirect_are_counted() {
    const TEST: &str = "frames_lost_after_a_redirect_are_counted";
    match role().as_deref() {
        Some("relay") => {
            let ifs = ["a0".to_owned(), "b0".to_owned()];
            let (mut xdp, _) = Xdp::attach(XdpMode::Native, &ifs).expect("attach native: both peers have GRO");
            xdp.install(
                key("198.18.0.1:40000"),
                target("198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000", true),
            )
            .unwrap();
            println!("ready");
            let mut lines = BufReader::new(std::io::stdin()).lines();
            while let Some(Ok(cmd)) = lines.next() {
                match cmd.as_str() {
                    "sync" => println!("changes {:?}", xdp.sync_egress()),
                    _ => {
                        let a = xdp.actions().unwrap();
                        let d = xdp.drops().unwrap();
                        println!(
                            "redirected {} lost {} egress {} checksum {} ({d:?})",
                            a.redirect,
                            d.total(),
                            a.pass_egress,
                            a.pass_csum
                        );
                    }
                }
            }
            return;
        }
        Some("send-raw") => return send_from_a(20, true),
        Some("send-udp") => return send_from_a(5, false),
        _ => {}
    }
    let nss = Namespaces::new(&["a", "r", "b", "a2", "r2", "b2"]);
    let (a, r, b) = (nss.name(0), nss.name(1), nss.name(2));
    let (a2, r2, b2) = (nss.name(3), nss.name(4), nss.name(5));
    // The same commands in the twin namespaces: fresh namespaces number their devices alike.
    for (a, r, b) in [(a, r, b), (a2, r2, b2)] {
        for ns in [a, r, b] {
            ip(ns, "link set lo up");
        }
        ip(r, &format!("link add a0 type veth peer name a1 netns {a}"));
        ip(r, &format!("link add b0 type veth peer name b1 netns {b}"));
        ip(r, &format!("link set a0 address {} up", mac(MAC_A0)));
        ip(r, &format!("link set b0 address {} up", mac(MAC_B0)));
        ip(a, &format!("link set a1 address {} up", mac(MAC_PA)));
        ip(b, &format!("link set b1 address {} up", mac(MAC_PB)));
        ip(r, "addr add 198.18.0.1/24 dev a0");
        ip(r, "addr add 198.18.1.1/24 dev b0");
        ip(a, "addr add 198.18.0.2/24 dev a1");
        ip(b, "addr add 198.18.1.2/24 dev b1");
        ip(r, &format!("neigh add 198.18.1.2 lladdr {} dev b0 nud permanent", mac(MAC_PB)));
        ip(a, &format!("neigh add 198.18.0.1 lladdr {} dev a1 nud permanent", mac(MAC_A0)));
        sh(&["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        sh(&["ip", "netns", "exec", a, "ethtool", "-K", "a1", "gro", "on"]);
        sh(&["ip", "netns", "exec", b, "ethtool", "-K", "b1", "gro", "on"]);
    }
    let index = |ns: &str, dev: &str| {
        let out =
            Command::new("ip").args(["netns", "exec", ns, "cat", &format!("/sys/class/net/{dev}/ifindex")]).output();
        String::from_utf8_lossy(&out.expect("ip netns exec").stdout).trim().to_owned()
    };
    assert_eq!((index(r, "a0"), index(r, "b0")), (index(r2, "a0"), index(r2, "b0")), "the twins' ifindexes");

    let start = |ns: &str| {
        let mut relay = reexec(ns, TEST, "relay").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut link = Link {
            out: BufReader::new(relay.stdout.take().expect("piped")),
            stdin: relay.stdin.take().expect("piped"),
        };
        link.ask("", "ready");
        (relay, link)
    };
    let (mut relay, mut link) = start(r);
    let (mut twin, mut twin_link) = start(r2);
    let send = |role: &str| {
        let o = reexec(a, TEST, role).output().unwrap();
        assert!(o.status.success(), "{role}: {}", String::from_utf8_lossy(&o.stderr));
    };

    sh(&["ip", "netns", "exec", b, "ethtool", "-K", "b1", "gro", "off"]);
    send("send-raw");
    let line = link.counters_until(20);
    assert!(line.starts_with("redirected 20 lost 20 egress 0 checksum 0"), "{line}");

    let line = link.ask("sync", "changes");
    assert!(line.contains("iface: \"b0\", ready: false"), "{line}");
    send("send-raw");
    send("send-udp");
    std::thread::sleep(Duration::from_millis(200));
    let line = link.counters_until(20);
    assert!(line.starts_with("redirected 20 lost 20 egress 20 checksum 5"), "{line}");
    let line = twin_link.counters_until(0);
    assert!(line.starts_with("redirected 0 lost 0 "), "the twin counts none of another namespace's losses: {line}");
    // End of their commands: the children end (their stdout stays read until then, or their last lines would fail).
    for (child, link) in [(&mut relay, link), (&mut twin, twin_link)] {
        let Link { mut out, stdin } = link;
        drop(stdin);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "{rest}");
    }
}

/// A line protocol with a child: a command on its stdin, its next line of stdout from `want` on back.
struct Link {
    out: BufReader<std::process::ChildStdout>,
    stdin: std::process::ChildStdin,
}

impl Link {
    fn ask(&mut self, cmd: &str, want: &str) -> String {
        use std::io::Write;
        if !cmd.is_empty() {
            writeln!(self.stdin, "{cmd}").unwrap();
        }
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "the child ended before {want:?}");
            // libtest prints "test NAME ... " before the test runs, without a newline: the first line may follow it.
            if let Some(at) = line.find(want) {
                return line[at..].trim().to_owned();
            }
        }
    }

    /// Asks for the counters until `redirected` packets were redirected (up to 5 s); the last answer.
    fn counters_until(&mut self, redirected: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let line = self.ask("count", "redirected");
            if line.starts_with(&format!("redirected {redirected} ")) || Instant::now() > deadline {
                return line;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A process holding the program attached through bpf_link is SIGKILLed: nothing stays attached.
#[test]
fn killed_process_leaves_no_xdp() {
    if role().as_deref() == Some("relay") {
        let (_xdp, _) = Xdp::attach(XdpMode::Auto, &["a0".to_owned()]).expect("attach");
        println!("ready");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let nss = Namespaces::new(&["kill"]);
    let ns = nss.name(0);
    setup_relay_ns(ns);
    let mut child = reexec(ns, "killed_process_leaves_no_xdp", "relay")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_line(&mut child, "ready");
    let show = || {
        let o = Command::new("ip").args(["-n", ns, "link", "show", "a0"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(show().contains("xdp"), "attached while running: {}", show());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while show().contains("xdp") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!show().contains("xdp"), "still attached after SIGKILL: {}", show());
}

// ---------------------------------------------------------------------------------------------------------
// Every receive queue: a veth with one or two queues, two senders in A pinned to different CPUs. veth delivers a
// frame on the peer's receive queue of the same number as the transmit queue it left by, which XPS picks by the
// sender's CPU (tx-K: CPU K here): with two queues the two senders' frames arrive on rx queues 0 and 1 of a0, with
// one both on queue 0. veth counts XDP actions per receive queue (`ethtool -S`: rx_queue_K_xdp_redirect).

/// Frames each sender sends (one flow per sender).
const QUEUE_FRAMES: u64 = 200;

/// `ethtool -S DEV` in `ns`: every `name: number` line.
fn ethtool_stats(ns: &str, dev: &str) -> std::collections::HashMap<String, u64> {
    let out = Command::new("ip").args(["netns", "exec", ns, "ethtool", "-S", dev]).output().expect("ethtool -S");
    assert!(out.status.success(), "ethtool -S {dev}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(k, v)| Some((k.trim().to_owned(), v.trim().parse().ok()?)))
        .collect()
}

/// Runs the two-sender setup on veths of `queues` queues and returns a0's `rx_queue_K_xdp_redirect` for each
/// queue, after asserting that every frame reached B rewritten.
fn forward_over_queues(test: &str, queues: u32) -> Vec<u64> {
    // The two tests pin their senders to the same two CPUs: run side by side (cargo's test threads), each starved
    // the other's receiving NAPI, and once a frame was lost after the program (a full veth ring, most likely).
    // One at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The two flows: sender K sends from 198.18.0.2:5000+2K to 198.18.0.1:40000+4K, out to 198.18.1.2:6000 from
    // 198.18.1.1:40002+4K.
    let flow = |k: u16| {
        (
            format!("198.18.0.2:{}", 5000 + 2 * k),
            format!("198.18.0.1:{}", 40000 + 4 * k),
            format!("198.18.1.1:{}", 40002 + 4 * k),
        )
    };
    match role().as_deref() {
        Some("relay") => {
            let ifs = ["a0".to_owned(), "b0".to_owned()];
            let (mut xdp, mode) = Xdp::attach(XdpMode::Native, &ifs).expect("attach native");
            assert_eq!(mode, media_relay::xdp::AttachedMode::Native);
            for k in 0..2 {
                let (src, local, from) = flow(k);
                xdp.install(key(&local), target(&src, &from, "198.18.1.2:6000", true)).unwrap();
            }
            println!("ready");
            let deadline = Instant::now() + Duration::from_secs(10);
            let count = |k: u16| xdp.counters(&key(&flow(k).1)).unwrap().map_or(0, |c| c.packets);
            while (count(0) < QUEUE_FRAMES || count(1) < QUEUE_FRAMES) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            println!("flow packets {} {}", count(0), count(1));
            println!("lost after the program: {}", xdp.drops().unwrap().total());
            return Vec::new();
        }
        Some("recv") => {
            let _pass = PassProgram::attach(&["b1".to_owned()], false).expect("pass on b1");
            let s = UdpSocket::bind("198.18.1.2:6000").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            println!("ready");
            let mut buf = [0u8; 2048];
            let mut from_flow = [0u64; 2];
            while from_flow.iter().sum::<u64>() < 2 * QUEUE_FRAMES {
                let Ok((_, from)) = s.recv_from(&mut buf) else { break };
                for k in 0..2 {
                    if from.to_string() == flow(k).2 {
                        from_flow[k as usize] += 1;
                    }
                }
            }
            println!("received {} {}", from_flow[0], from_flow[1]);
            return Vec::new();
        }
        Some(r) if r.starts_with("send") => {
            use socket2::{Domain, Protocol, SockAddr, Socket, Type};
            let k: u16 = r["send".len()..].parse().unwrap();
            let (src, local, _) = flow(k);
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).unwrap();
            let dst: SocketAddr = local.parse().unwrap();
            for i in 0..QUEUE_FRAMES {
                let mut u = Udp::new(&src, &local);
                u.payload = format!("rtp {i}").into_bytes();
                s.send_to(&u.build()[14 + 20..], &SockAddr::from(dst)).unwrap();
                // Paced: the receiving socket's buffer and the rings never overflow, so every loss is a finding.
                std::thread::sleep(Duration::from_micros(500));
            }
            return Vec::new();
        }
        _ => {}
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "this test pins two senders to CPUs 0 and 1: it needs 2 CPUs, this process may use {cpus}");
    let nss = Namespaces::new(&["a", "r", "b"]);
    let (a, r, b) = (nss.name(0), nss.name(1), nss.name(2));
    for ns in [a, r, b] {
        ip(ns, "link set lo up");
    }
    let q = format!("numtxqueues {queues} numrxqueues {queues}");
    ip(r, &format!("link add a0 {q} type veth peer name a1 {q} netns {a}"));
    ip(r, &format!("link add b0 {q} type veth peer name b1 {q} netns {b}"));
    ip(r, &format!("link set a0 address {} up", mac(MAC_A0)));
    ip(r, &format!("link set b0 address {} up", mac(MAC_B0)));
    ip(a, &format!("link set a1 address {} up", mac(MAC_PA)));
    ip(b, &format!("link set b1 address {} up", mac(MAC_PB)));
    ip(r, "addr add 198.18.0.1/24 dev a0");
    ip(r, "addr add 198.18.1.1/24 dev b0");
    ip(a, "addr add 198.18.0.2/24 dev a1");
    ip(b, "addr add 198.18.1.2/24 dev b1");
    ip(r, &format!("neigh add 198.18.1.2 lladdr {} dev b0 nud permanent", mac(MAC_PB)));
    ip(a, &format!("neigh add 198.18.0.1 lladdr {} dev a1 nud permanent", mac(MAC_A0)));
    sh(&["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    sh(&["ip", "netns", "exec", a, "ethtool", "-K", "a1", "gro", "on"]);
    let channels = Command::new("ip").args(["netns", "exec", r, "ethtool", "-l", "a0"]).output().unwrap();
    let channels = String::from_utf8_lossy(&channels.stdout).into_owned();
    let current = channels.split("Current hardware settings:").nth(1).unwrap_or_default();
    assert!(current.contains(&format!("RX:\t\t{queues}")), "a0 should have {queues} rx queue(s): {channels}");
    // XPS: a frame sent on CPU K leaves a1 by tx queue K. With one queue there is nothing to map (the kernel
    // refuses it): every frame leaves by queue 0.
    for k in (0..queues).filter(|_| queues > 1) {
        let path = format!("/sys/class/net/a1/queues/tx-{k}/xps_cpus");
        sh(&["ip", "netns", "exec", a, "sh", "-c", &format!("echo {:x} > {path}", 1u32 << k)]);
    }

    let spawn = |ns: &str, role: &str| reexec(ns, test, role).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut recv = spawn(b, "recv").unwrap();
    wait_line(&mut recv, "ready");
    let mut relay = spawn(r, "relay").unwrap();
    wait_line(&mut relay, "ready");
    let before = ethtool_stats(r, "a0");
    let senders: Vec<Child> = (0..2u32)
        .map(|k| {
            let inner = reexec(a, test, &format!("send{k}"));
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &k.to_string()]).arg(inner.get_program()).args(inner.get_args());
            cmd.envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("taskset (util-linux)")
        })
        .collect();
    for s in senders {
        let out = s.wait_with_output().unwrap();
        assert!(out.status.success(), "sender: {}", String::from_utf8_lossy(&out.stderr));
    }
    let recv_out = recv.wait_with_output().unwrap();
    let relay_out = relay.wait_with_output().unwrap();
    let after = ethtool_stats(r, "a0");
    let recv_text = String::from_utf8_lossy(&recv_out.stdout);
    let relay_text = String::from_utf8_lossy(&relay_out.stdout);
    let per_queue: Vec<u64> = (0..queues)
        .map(|k| {
            let name = format!("rx_queue_{k}_xdp_redirect");
            let v = |m: &std::collections::HashMap<String, u64>| *m.get(&name).unwrap_or_else(|| panic!("{name}"));
            v(&after) - v(&before)
        })
        .collect();
    eprintln!(
        "{queues} queue(s): a0 rx_queue_K_xdp_redirect {per_queue:?}\nreceiver:\n{recv_text}relay:\n{relay_text}"
    );
    assert!(recv_out.status.success() && relay_out.status.success());
    let n = QUEUE_FRAMES;
    assert!(recv_text.contains(&format!("received {n} {n}")), "every frame of both flows reached B: {recv_text}");
    assert!(relay_text.contains(&format!("flow packets {n} {n}")), "the program forwarded both flows: {relay_text}");
    assert!(relay_text.contains("lost after the program: 0"), "nothing lost: {relay_text}");
    assert_eq!(per_queue.iter().sum::<u64>(), 2 * n, "every frame redirected by the program on a0: {per_queue:?}");
    per_queue
}

#[test]
fn xdp_forwards_on_a_one_queue_veth_all_on_queue_0() {
    const TEST: &str = "xdp_forwards_on_a_one_queue_veth_all_on_queue_0";
    if role().is_some() {
        forward_over_queues(TEST, 1);
        return;
    }
    assert_eq!(forward_over_queues(TEST, 1), [2 * QUEUE_FRAMES]);
}

#[test]
fn xdp_forwards_on_both_rx_queues_of_a_two_queue_veth() {
    const TEST: &str = "xdp_forwards_on_both_rx_queues_of_a_two_queue_veth";
    if role().is_some() {
        forward_over_queues(TEST, 2);
        return;
    }
    // Sender K's frames arrive on queue K: each queue's program run redirected one flow's frames.
    assert_eq!(forward_over_queues(TEST, 2), [QUEUE_FRAMES, QUEUE_FRAMES]);
}
