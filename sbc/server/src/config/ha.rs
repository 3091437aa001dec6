//! `[ha]`: a hot-standby pair. Present, this box pairs with `peer`: the active replicates every call (being set up
//! and answered), the standby takes over the `vips` when the active falls silent on every heartbeat path.

use super::{ConfigError, Validator};
use sbc_proto::policy::digest::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// One service address that moves with the active role: `198.18.1.1/24 dev a0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// Address with prefix length, as `ip addr add` takes it.
    pub cidr: String,
    /// The address alone (for gratuitous ARP).
    pub address: std::net::IpAddr,
    /// The network device.
    pub dev: String,
}

/// A group of service addresses with roles of its own (active/active: each box is active for its home group and
/// the standby of the other's). A pair without `groups` has one group, named "", of `vips` and `priority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipGroup {
    /// `name`: in logs, `/ha` and heartbeats; the same on both boxes.
    pub name: String,
    /// `priority`: this box's for the group; the box with the higher one is the group's home (active when both
    /// are up from the start, and given the group back when it returns and the group has no calls left).
    pub priority: u32,
    /// `vips`: the group's service addresses.
    pub vips: Vec<Vip>,
}

/// A heartbeat path: UDP from `local` to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPath {
    /// This box's address and port on that network.
    pub local: SocketAddr,
    /// The peer's.
    pub peer: SocketAddr,
}

/// Who decides the roles and moves the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaMode {
    /// This pair: heartbeats, failure detection, addresses moved by `sbc` (the default).
    Builtin,
    /// keepalived moves the addresses and tells `sbc` through its notify scripts (`POST /ha/active`,
    /// `POST /ha/standby`); `paths` and `vips` are not used.
    Keepalived,
}

/// `[ha]`.
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// `mode`: `"builtin"` (default) or `"keepalived"`.
    pub mode: HaMode,
    /// `node`: this box's name (logs, `/ha`, the tie-break on equal priority: the lower name wins).
    pub node: String,
    /// `priority`: higher is preferred as active when both boxes start together. Default 100. A returning box
    /// never preempts an active peer. With `groups`, each group has its own.
    pub priority: u32,
    /// `listen`: where the peer's replication link connects (TCP).
    pub listen: SocketAddr,
    /// `peer`: the peer's replication address.
    pub peer: SocketAddr,
    /// `paths`: heartbeat paths, one per network (the replication link and each service network), so that a cut
    /// replication link alone never looks like a dead peer.
    pub paths: Vec<HeartbeatPath>,
    /// `vips` / `groups`: the service addresses, by group. Without `groups`, one group (named "") of `vips`
    /// and `priority`: the classic pair, one box active for everything.
    pub groups: Vec<VipGroup>,
    /// `heartbeat`: interval. Default 100 ms.
    pub heartbeat: Duration,
    /// `dead_after`: the peer is dead when no path carried its heartbeat this long. Default 300 ms.
    pub dead_after: Duration,
    /// `secret_env` / `secret_file`: the pair's shared secret, the same on both boxes, from an environment variable
    /// or a file (never in the config itself, never logged). Digest nonces are made with it, so a caller's nonce
    /// from one box is accepted by the other after a takeover. Default none: each box makes a secret of its own
    /// and nothing is derived for the pair (callers are challenged again after a takeover).
    pub secret: Option<Secret>,
    /// The keys derived from the secret: the replication link's (Noise PSK) and the heartbeats' (HMAC). `None`
    /// without a secret: then the pair's links are neither authenticated nor encrypted.
    pub keys: Option<crate::ha::PairKeys>,
    /// `accept_plain_peer`: for a rolling upgrade from a build without the secured links only. A box with a
    /// secret also pairs with a peer that speaks the plain link and plain heartbeats, and speaks to it as it
    /// speaks (a peer once heard sealed is never taken plain again). Default false; an error without a secret.
    pub accept_plain_peer: bool,
}

impl HaSettings {
    /// Every service address of every group.
    pub fn vips(&self) -> impl Iterator<Item = &Vip> {
        self.groups.iter().flat_map(|g| g.vips.iter())
    }

    /// Active/active: more than one group, or groups by name.
    pub fn active_active(&self) -> bool {
        self.groups.len() > 1 || self.groups.iter().any(|g| !g.name.is_empty())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    mode: Option<Spanned<String>>,
    node: Spanned<String>,
    priority: Option<u32>,
    listen: Spanned<String>,
    peer: Spanned<String>,
    #[serde(default)]
    paths: Vec<RawPath>,
    #[serde(default)]
    vips: Vec<Spanned<String>>,
    groups: Option<Spanned<Vec<RawGroup>>>,
    heartbeat: Option<Spanned<String>>,
    dead_after: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    accept_plain_peer: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    priority: Option<u32>,
    vips: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    local: Spanned<String>,
    peer: Spanned<String>,
}

impl Validator<'_> {
    fn socket(&self, s: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        s.get_ref().parse().map_err(|_| self.invalid(s.span(), key, "expected ADDRESS:PORT"))
    }

    fn vips(&self, raw: &[Spanned<String>], key: &str) -> Result<Vec<Vip>, ConfigError> {
        let mut vips = Vec::new();
        for (i, v) in raw.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let bad = || {
                self.invalid(v.span(), &key, "expected \"ADDRESS/PREFIX dev DEVICE\", e.g. \"198.18.1.1/24 dev a0\"")
            };
            let parts: Vec<&str> = v.get_ref().split_whitespace().collect();
            let [cidr, "dev", dev] = parts[..] else { return Err(bad()) };
            let net: ipnet::IpNet = cidr.parse().map_err(|_| bad())?;
            vips.push(Vip { cidr: cidr.to_owned(), address: net.addr(), dev: dev.to_owned() });
        }
        Ok(vips)
    }

    pub(super) fn ha(&self, raw: Option<RawHa>) -> Result<Option<HaSettings>, ConfigError> {
        let Some(h) = raw else { return Ok(None) };
        if h.node.get_ref().is_empty() {
            return Err(self.invalid(h.node.span(), "ha.node", "must not be empty"));
        }
        let listen = self.socket(&h.listen, "ha.listen")?;
        let peer = self.socket(&h.peer, "ha.peer")?;
        let mut paths = vec![HeartbeatPath {
            local: SocketAddr::new(listen.ip(), listen.port() + 1),
            peer: SocketAddr::new(peer.ip(), peer.port() + 1),
        }];
        for (i, p) in h.paths.iter().enumerate() {
            let path = HeartbeatPath {
                local: self.socket(&p.local, &format!("ha.paths[{i}].local"))?,
                peer: self.socket(&p.peer, &format!("ha.paths[{i}].peer"))?,
            };
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        let groups = match &h.groups {
            None => vec![VipGroup {
                name: String::new(),
                priority: h.priority.unwrap_or(100),
                vips: self.vips(&h.vips, "ha.vips")?,
            }],
            Some(g) => {
                if !h.vips.is_empty() {
                    return Err(self.invalid(g.span(), "ha.groups", "give either ha.vips or ha.groups, not both"));
                }
                if g.get_ref().is_empty() {
                    return Err(self.invalid(g.span(), "ha.groups", "must name at least one group"));
                }
                let mut groups: Vec<VipGroup> = Vec::new();
                for (i, raw) in g.get_ref().iter().enumerate() {
                    let name = raw.name.get_ref().clone();
                    if name.is_empty() || groups.iter().any(|g| g.name == name) {
                        let why = "must be a name of its own, not empty";
                        return Err(self.invalid(raw.name.span(), &format!("ha.groups[{i}].name"), why));
                    }
                    let vips = self.vips(&raw.vips, &format!("ha.groups[{i}].vips"))?;
                    if vips.is_empty() {
                        let why = "a group needs at least one service address";
                        return Err(self.invalid(raw.name.span(), &format!("ha.groups[{i}].vips"), why));
                    }
                    if let Some(v) =
                        vips.iter().find(|v| groups.iter().any(|g| g.vips.iter().any(|o| o.address == v.address)))
                    {
                        let why = format!("{} is in two groups", v.address);
                        return Err(self.invalid(raw.name.span(), &format!("ha.groups[{i}].vips"), &why));
                    }
                    groups.push(VipGroup { name, priority: raw.priority.unwrap_or(100), vips });
                }
                groups
            }
        };
        let heartbeat = match &h.heartbeat {
            None => Duration::from_millis(100),
            Some(s) => self.duration(s, "ha.heartbeat")?,
        };
        let dead_after = match &h.dead_after {
            None => Duration::from_millis(300),
            Some(s) => self.duration(s, "ha.dead_after")?,
        };
        if dead_after < heartbeat * 2 {
            let span = h.dead_after.as_ref().map_or(0..0, Spanned::span);
            return Err(self.invalid(span, "ha.dead_after", "must be at least twice ha.heartbeat"));
        }
        let mode = match h.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("builtin", _)) => HaMode::Builtin,
            Some(("keepalived", _)) => HaMode::Keepalived,
            Some((_, span)) => return Err(self.invalid(span, "ha.mode", "expected \"builtin\" or \"keepalived\"")),
        };
        if let (HaMode::Keepalived, Some(g)) = (mode, &h.groups) {
            let why = "keepalived moves the addresses itself: give each group its own VRRP instance there instead";
            return Err(self.invalid(g.span(), "ha.groups", why));
        }
        let mut keys = None;
        let secret = match (&h.secret_env, &h.secret_file) {
            (None, None) => None,
            (env, file) => {
                let whole = env.iter().chain(file).map(Spanned::span).min_by_key(|s| s.start).unwrap_or(0..0);
                let base_dir = self.path.parent().unwrap_or(std::path::Path::new(""));
                match super::secret::read("secret", env.as_ref(), file.as_ref(), "ha", whole, base_dir) {
                    Ok(s) => {
                        keys = Some(crate::ha::PairKeys::derive(s.as_bytes()));
                        Some(Secret::new(s))
                    }
                    Err((span, key, message)) => return Err(self.invalid(span, &key, &message)),
                }
            }
        };
        let accept_plain_peer = match &h.accept_plain_peer {
            Some(a) if *a.get_ref() && keys.is_none() => {
                let why = "only means something with ha.secret_env or ha.secret_file (a box without a secret \
                           speaks the plain link anyway)";
                return Err(self.invalid(a.span(), "ha.accept_plain_peer", why));
            }
            Some(a) => *a.get_ref(),
            None => false,
        };
        Ok(Some(HaSettings {
            mode,
            node: h.node.into_inner(),
            priority: h.priority.unwrap_or(100),
            listen,
            peer,
            paths,
            groups,
            heartbeat,
            dead_after,
            secret,
            keys,
            accept_plain_peer,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const HA: &str =
        "[ha]\nnode = \"sbc1\"\npriority = 200\nlisten = \"198.18.3.1:7070\"\npeer = \"198.18.3.2:7070\"\n\
paths = [{ local = \"198.18.1.2:7071\", peer = \"198.18.1.3:7071\" }]\nvips = [\"198.18.1.1/24 dev a0\"]\n";

    #[test]
    fn ha_section_with_a_path_per_network() {
        let c = Config::parse(HA, Path::new("t.toml")).unwrap();
        let h = c.ha.expect("ha");
        assert_eq!(h.paths.len(), 2, "the replication network is always a path (port + 1)");
        assert_eq!(h.paths[0].peer, "198.18.3.2:7071".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(h.groups[0].vips[0].dev, "a0");
        assert!(!h.active_active());
        assert_eq!(h.dead_after, std::time::Duration::from_millis(300));
    }

    #[test]
    fn ha_secret_comes_from_a_file_or_the_environment_and_never_prints() {
        let dir = std::env::temp_dir().join(format!("sbc-ha-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pair.secret"), "s3cret-of-the-pair\n").unwrap();
        let text = format!("{HA}secret_file = \"pair.secret\"\n");
        let h = Config::parse(&text, &dir.join("sbc.toml")).unwrap().ha.expect("ha");
        let secret = h.secret.expect("a secret");
        assert_eq!(secret, sbc_proto::policy::digest::Secret::new("s3cret-of-the-pair"), "the newline is the file's");
        assert!(!format!("{secret:?}").contains("s3cret"), "never printed");
        assert_eq!(h.keys, Some(crate::ha::PairKeys::derive(b"s3cret-of-the-pair")), "the link's keys come from it");
        assert!(!format!("{:?}", h.keys).contains("s3cret"), "never printed");
        let none = Config::parse(HA, Path::new("t.toml")).unwrap().ha.expect("ha");
        assert!(none.secret.is_none() && none.keys.is_none(), "no secret unless configured");
        for (extra, key, says) in [
            ("secret_env = \"SBC_TEST_UNSET_HA_SECRET\"\n", "ha.secret_env", "is not set"),
            ("secret_file = \"missing.secret\"\n", "ha.secret_file", "cannot read"),
            ("secret_env = \"X\"\nsecret_file = \"pair.secret\"\n", "ha", "not both"),
        ] {
            let e = Config::parse(&format!("{HA}{extra}"), &dir.join("sbc.toml")).expect_err(extra).to_string();
            assert!(e.contains(key) && e.contains(says), "{extra}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn accept_plain_peer_needs_a_secret_and_is_off_by_default() {
        std::env::set_var("SBC_TEST_HA_SECRET_PLAIN_PEER", "s3cret");
        let with_secret = format!("{HA}secret_env = \"SBC_TEST_HA_SECRET_PLAIN_PEER\"\n");
        let h = Config::parse(&with_secret, Path::new("t.toml")).unwrap().ha.expect("ha");
        assert!(!h.accept_plain_peer, "off unless configured");
        let on = format!("{with_secret}accept_plain_peer = true\n");
        assert!(Config::parse(&on, Path::new("t.toml")).unwrap().ha.expect("ha").accept_plain_peer);
        let e = Config::parse(&format!("{HA}accept_plain_peer = true\n"), Path::new("t.toml"))
            .expect_err("without a secret")
            .to_string();
        assert!(e.contains("ha.accept_plain_peer") && e.contains("secret"), "{e}");
    }

    #[test]
    fn active_active_groups_and_their_mistakes() {
        let groups = "groups = [\n  { name = \"g1\", priority = 200, vips = [\"198.18.1.1/24 dev a0\"] },\n  \
{ name = \"g2\", vips = [\"198.18.1.4/24 dev a0\"] },\n]\n";
        let text = HA.replace("vips = [\"198.18.1.1/24 dev a0\"]\n", groups);
        let h = Config::parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}")).ha.expect("ha");
        assert!(h.active_active());
        assert_eq!(
            h.groups.iter().map(|g| (g.name.as_str(), g.priority)).collect::<Vec<_>>(),
            [("g1", 200), ("g2", 100)]
        );
        assert_eq!(h.vips().count(), 2);
        for (bad, good, says) in [
            ("name = \"g2\"", "name = \"g1\"", "ha.groups[1].name"),
            ("198.18.1.4/24", "198.18.1.1/24", "two groups"),
            ("198.18.1.4/24 dev a0", "198.18.1.4", "ha.groups[1].vips[0]"),
            ("vips = [\"198.18.1.4/24 dev a0\"]", "vips = []", "at least one service address"),
        ] {
            let e = Config::parse(&text.replace(bad, good), Path::new("t.toml")).expect_err(good).to_string();
            assert!(e.contains(says), "{good}: {e}");
        }
        let both = text.replace("groups = [", "vips = [\"198.18.1.9/24 dev a0\"]\ngroups = [");
        let e = Config::parse(&both, Path::new("t.toml")).expect_err("vips and groups").to_string();
        assert!(e.contains("not both"), "{e}");
        let keepalived = format!("{text}mode = \"keepalived\"\n");
        let e = Config::parse(&keepalived, Path::new("t.toml")).expect_err("keepalived with groups").to_string();
        assert!(e.contains("ha.groups") && e.contains("keepalived"), "{e}");
    }

    #[test]
    fn bad_ha_values_name_their_key() {
        for (bad, key) in [
            ("198.18.1.1/24 dev a0", "198.18.1.1 on a0"),
            ("listen = \"198.18.3.1:7070\"", "listen = \"nowhere\""),
            ("vips = [\"198.18.1.1/24 dev a0\"]", "vips = [\"198.18.1.1/24\"]\ndead_after = \"100ms\""),
        ] {
            let text = HA.replace(bad, key);
            let e = Config::parse(&text, Path::new("t.toml")).expect_err(&text).to_string();
            assert!(e.contains("ha."), "{text}: {e}");
        }
    }
}
