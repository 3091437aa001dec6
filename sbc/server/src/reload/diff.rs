//! What a new configuration file changes against the running one: the list logged and answered for a reload, and
//! the first change that cannot be applied live (named by key and line, so the reload is refused as a whole).

use crate::config::Config;
use std::path::Path;
use toml::{Table, Value};

/// Top-level sections set up once at start, and why each needs a restart to change.
const AT_START: &[(&str, &str)] = &[
    ("sip", "TLS and transport limits are set up at start; only sip.listen changes live"),
    ("log", "the logger is set up at start"),
    ("api", "the admin API is bound at start"),
    ("cdr", "the CDR file is opened at start"),
    ("media", "the media relay (mode, interfaces, ports, XDP) is set up at start"),
    ("ha", "the pair's identity, addresses and links are set up at start"),
    ("edge", "the edge guard is set up at start"),
    ("overload", "overload control is set up at start"),
    ("dns", "the gateway resolvers are started at start"),
    ("hep", "the HEP sender and its collector connection are set up at start"),
    ("registrar", "the registrar's users and bindings are set up at start"),
];

/// What a new file changes.
#[derive(Debug, Default)]
pub struct Diff {
    /// Changes that apply live, one line each (`trunk "x" added`).
    pub changes: Vec<String>,
    /// The first change that needs a restart, as `FILE:LINE: KEY: requires a restart (why)`.
    pub restart: Option<String>,
}

/// Compares the running file (`old_text`, loaded as `old`) with the new one (`new_text`, valid as `new`).
pub fn diff(path: &Path, old_text: &str, old: &Config, new_text: &str, new: &Config) -> Diff {
    let parse = |t: &str| t.parse::<Table>().unwrap_or_default();
    let (mut a, mut b) = (parse(old_text), parse(new_text));
    // Listeners are added and removed live (`crate::listeners`); the rest of [sip] is set up at start.
    let listen = (take_listen(&mut a), take_listen(&mut b));
    let mut d = Diff::default();
    let refuse = |key: String, line: usize, why: &str| {
        format!("{}:{line}: {key}: requires a restart ({why}); nothing was changed", path.display())
    };
    for (section, why) in AT_START {
        if let Some(key) = first_difference(section, a.get(*section), b.get(*section)) {
            let line = line_of_key(new_text, &key).or_else(|| line_of_key(old_text, &key)).unwrap_or(1);
            d.restart.get_or_insert_with(|| refuse(key, line, why));
        }
    }
    let (old_trunks, new_trunks) = (trunks(&a), trunks(&b));
    for (i, (name, t)) in new_trunks.iter().enumerate() {
        let line = line_of_name(new_text, name).unwrap_or(1);
        match old_trunks.iter().find(|(n, _)| n == name) {
            None => d.changes.push(format!("trunk \"{name}\" added")),
            Some((_, o)) if o != t => d.changes.push(format!("trunk \"{name}\" changed (new calls only)")),
            Some(_) => {}
        }
        let old_t = old_trunks.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        if old_t.and_then(|t| t.get("register")) != t.get("register") {
            let why = "registrations with carriers are set up at start";
            d.restart.get_or_insert_with(|| refuse(format!("trunk[{i}].register"), line, why));
        }
        // Canary calls are built with the core and their RTP sockets opened when the driver starts (crate::canary).
        if old_t.and_then(|t| t.get("canary")) != t.get("canary") {
            let why = "canary calls and their media sockets are set up at start";
            d.restart.get_or_insert_with(|| refuse(format!("trunk[{i}].canary"), line, why));
        }
        if connections(old, name) != connections(new, name) {
            let why = "connections to tcp:/tls: gateways and the resolvers of DNS-named ones are set up at start";
            d.restart.get_or_insert_with(|| refuse(format!("trunk[{i}].gateways"), line, why));
        }
    }
    for (name, t) in &old_trunks {
        if !new_trunks.iter().any(|(n, _)| n == name) {
            d.changes.push(format!("trunk \"{name}\" removed (its calls in progress keep it until they end)"));
            if t.contains_key("register") || t.contains_key("canary") {
                // Nothing of the trunk is left in the new file to point at: the first trunk's line, else the top.
                let line = new_text.lines().position(|l| l.trim() == "[[trunk]]").map_or(1, |n| n + 1);
                let why = "registrations and canary calls are set up at start";
                let key = if t.contains_key("register") { "register" } else { "canary" };
                d.restart.get_or_insert_with(|| refuse(format!("trunk \"{name}\" (removed).{key}"), line, why));
            }
        }
    }
    if listen.0 != listen.1 {
        d.changes.push("sip.listen changed".to_owned());
    }
    if a.get("route") != b.get("route") {
        d.changes.push("routes changed (new calls only)".to_owned());
    }
    if a.get("calls") != b.get("calls") {
        d.changes.push("[calls] changed (new calls only)".to_owned());
    }
    d
}

fn take_listen(t: &mut Table) -> Option<Value> {
    t.get_mut("sip").and_then(Value::as_table_mut).and_then(|s| s.remove("listen"))
}

/// The dotted key of the first difference under `key` (`media.xdp`), or `None` when equal.
fn first_difference(key: &str, a: Option<&Value>, b: Option<&Value>) -> Option<String> {
    match (a, b) {
        (Some(Value::Table(x)), Some(Value::Table(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| first_difference(&format!("{key}.{k}"), x.get(k), y.get(k)))
        }
        (x, y) if x == y => None,
        _ => Some(key.to_owned()),
    }
}

fn trunks(t: &Table) -> Vec<(String, &Table)> {
    let Some(Value::Array(list)) = t.get("trunk") else { return Vec::new() };
    list.iter().filter_map(Value::as_table).filter_map(|t| Some((t.get("name")?.as_str()?.to_owned(), t))).collect()
}

/// What the server opens or resolves for trunk `name` at start: its `tcp:`/`tls:` gateways and DNS names.
fn connections(c: &Config, name: &str) -> (Vec<String>, Vec<String>) {
    let dial = c.dial.iter().filter(|d| d.trunk == name).map(|d| format!("{:?}", (d.transport, d.addr, &d.tls)));
    let dns = c.dns.names.iter().filter(|n| n.trunk_name == name).map(|n| format!("{:?}", n.gateway));
    (dial.collect(), dns.collect())
}

/// The 1-based line of a dotted key (`media.xdp`): its `key =` line inside its `[table]`, else the table's header.
pub(super) fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.split_once('.').unwrap_or((dotted, ""));
    let leaf = key.split('.').next().unwrap_or("");
    let mut current = String::new();
    let mut header = None;
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.trim_matches(['[', ']']).trim().to_owned();
            if current == table {
                header = Some(n + 1);
            }
            continue;
        }
        let is_key = |k: &str| !k.is_empty() && l.starts_with(k) && l[k.len()..].trim_start().starts_with(['=', '.']);
        if current == table && is_key(leaf) {
            return Some(n + 1);
        }
        // `sip.listen = ...` at the top level, or a table written inline.
        if current.is_empty() && (is_key(dotted) || is_key(table)) {
            return Some(n + 1);
        }
    }
    header
}

/// The line of `name = "NAME"` (a trunk's name).
fn line_of_name(text: &str, name: &str) -> Option<usize> {
    let quoted = format!("\"{name}\"");
    text.lines().position(|l| l.trim_start().starts_with("name") && l.contains(&quoted)).map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n\n[cdr]\npath = \"/tmp/cdr-a.jsonl\"\n\n\
                        [[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10/32\"] }\n\n\
                        [[trunk]]\nname = \"b\"\ngateways = [\"udp:198.18.2.10:5060\"]\n\n\
                        [[route]]\nprefix = \"\"\nto = [{ trunk = \"b\" }]\n";

    fn load(text: &str) -> Config {
        Config::parse(text, Path::new("sbc.toml")).expect("valid")
    }

    #[test]
    fn trunk_added_changed_and_removed_are_listed_and_apply_live() {
        let new = BASE.replace("\"b\"", "\"c\"").replace("[[route]]", "[[trunk]]\nname = \"d\"\n\n[[route]]");
        let d = diff(Path::new("sbc.toml"), BASE, &load(BASE), &new, &load(&new));
        assert_eq!(d.restart, None);
        assert_eq!(
            d.changes,
            [
                "trunk \"c\" added",
                "trunk \"d\" added",
                "trunk \"b\" removed (its calls in progress keep it until they end)",
                "routes changed (new calls only)"
            ]
        );
    }

    #[test]
    fn cdr_path_change_is_refused_naming_its_key_and_line() {
        let new = BASE.replace("cdr-a", "cdr-b");
        let d = diff(Path::new("sbc.toml"), BASE, &load(BASE), &new, &load(&new));
        let why = d.restart.expect("refused");
        assert!(why.starts_with("sbc.toml:5: cdr.path: requires a restart"), "{why}");
    }

    #[test]
    fn listener_change_applies_live_but_another_sip_key_needs_a_restart() {
        let new = BASE.replace("127.0.0.1:5060\"]", "127.0.0.1:5062\"]");
        let d = diff(Path::new("sbc.toml"), BASE, &load(BASE), &new, &load(&new));
        assert_eq!((d.restart, d.changes), (None, vec!["sip.listen changed".to_owned()]));
        let new = new.replace("5062\"]", "5062\"]\nmax_message_size = 4096");
        let d = diff(Path::new("sbc.toml"), BASE, &load(BASE), &new, &load(&new));
        let why = d.restart.expect("refused");
        assert!(why.starts_with("sbc.toml:3: sip.max_message_size: requires a restart"), "{why}");
    }

    #[test]
    fn canary_added_to_a_trunk_is_refused_as_needing_a_restart() {
        let new = BASE.replace(
            "gateways = [\"udp:198.18.2.10:5060\"]\n",
            "gateways = [\"udp:198.18.2.10:5060\"]\ncanary = { number = \"100\", every = \"1m\" }\n",
        );
        let d = diff(Path::new("sbc.toml"), BASE, &load(BASE), &new, &load(&new));
        let why = d.restart.expect("refused");
        assert!(why.starts_with("sbc.toml:12: trunk[1].canary: requires a restart"), "{why}");
    }
}
