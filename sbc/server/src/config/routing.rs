//! `[[trunk]]`, `[[route]]` and `[calls]`: validated into [`sbc_proto::routing::Plan`].
//!
//! Every entry is checked even after an error, and each error names its key as `trunk[2].gateways[0]` or
//! `route[3].to[0].trunk` (0-based, in file order) with the line. Loading is linear in the number of routes:
//! names and prefixes are looked up in hash maps, and lines are only computed for errors.

use super::trunk::{trunk, RawTrunk};
use super::{ConfigError, Validator};
use sbc_proto::routing::{
    Candidate, FailoverLimits, Plan, PrefixError, PrefixTable, PrefixTableBuilder, Trunk, TrunkId, UnknownSource,
    DEFAULT_WEIGHT,
};
use serde::Deserialize;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Priority of a route target that gives none.
const DEFAULT_PRIORITY: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    prefix: Spanned<String>,
    to: Spanned<Vec<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    trunk: Spanned<String>,
    priority: Option<u32>,
    weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalls {
    unknown_source: Option<RawUnknownSource>,
    max_tries: Option<Spanned<u32>>,
    max_post_dial: Option<Spanned<String>>,
    max_duration: Option<Spanned<String>>,
    keepalive: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawUnknownSource {
    Reject,
    Drop,
}

/// Collects errors so that one load reports all of them.
pub(super) struct Check<'v, 'a> {
    pub(super) v: &'v Validator<'a>,
    pub(super) errors: &'v mut Vec<ConfigError>,
}

impl Check<'_, '_> {
    pub(super) fn error(&mut self, span: Range<usize>, key: &str, message: &str) {
        self.errors.push(self.v.invalid(span, key, message));
    }
}

/// Builds the plan, pushing every error found; `None` when there was any (here or before).
pub(super) fn plan(
    v: &Validator<'_>,
    trunks: &[RawTrunk],
    routes: &[RawRoute],
    calls: Option<RawCalls>,
    previous: Option<&Plan>,
    errors: &mut Vec<ConfigError>,
) -> Option<(Plan, Vec<super::DialSpec>, Vec<super::DnsName>)> {
    let mut c = Check { v, errors };
    let base_dir = v.path.parent().unwrap_or(Path::new(""));
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(trunks.len());
    let mut built = Vec::with_capacity(trunks.len());
    let mut dial: Vec<super::DialSpec> = Vec::new();
    let mut names: Vec<super::DnsName> = Vec::new();
    for (i, raw) in trunks.iter().enumerate() {
        let name = raw.name.get_ref();
        match by_name.entry(name.as_str()) {
            Entry::Occupied(first) => {
                let line = v.line(trunks[*first.get()].name.span().start);
                c.error(
                    raw.name.span(),
                    &format!("trunk[{i}].name"),
                    &format!("\"{name}\" is already the name of trunk[{}] (line {line})", first.get()),
                );
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
        let (t, tls) = trunk(&mut c, i, raw, base_dir);
        super::trunk::dial_specs(&mut c, i, raw, &t, tls, &mut dial, &mut names);
        built.push(t);
    }
    let (slots, built) = keep_ids(built, previous);
    for n in &mut names {
        n.trunk = TrunkId(slots[n.trunk.0 as usize]);
    }
    let routes = route_table(&mut c, routes, trunks, &by_name, &slots);
    let (max_duration, keepalive) = call_timers(&mut c, calls.as_ref());
    let (unknown_source, max_tries, max_post_dial) = call_limits(&mut c, calls);
    let (routes, catch_all) = routes?;
    if !c.errors.is_empty() {
        return None;
    }
    let plan =
        Plan { trunks: built, routes, catch_all, unknown_source, max_tries, max_post_dial, max_duration, keepalive };
    Some((plan, dial, names))
}

/// The trunks in id order, and the id of each `[[trunk]]` by its place in the file.
///
/// Trunk ids are indexes into `plan.trunks`, and calls, probes, per-trunk counters and metric labels hold them. A
/// reload therefore keeps them: a trunk of the `previous` plan keeps its id by name, a removed one leaves a
/// [`Trunk::tombstone`] in its slot (its calls in progress hold the full trunk in their own plan), and new trunks
/// are appended. Slots are never reused by another name, so an id means one trunk for the life of the process.
fn keep_ids(built: Vec<Trunk>, previous: Option<&Plan>) -> (Vec<u32>, Vec<Trunk>) {
    let Some(prev) = previous else {
        return ((0..built.len() as u32).collect(), built);
    };
    let by_name: HashMap<&str, usize> = prev.trunks.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    let mut kept: Vec<Option<Trunk>> = prev.trunks.iter().map(|_| None).collect();
    let mut slots = vec![0u32; built.len()];
    let mut added = Vec::new();
    for (i, t) in built.into_iter().enumerate() {
        match by_name.get(t.name.as_str()) {
            // A name given twice is an error reported by the caller; the second one is appended meanwhile.
            Some(&k) if kept[k].is_none() => {
                slots[i] = k as u32;
                kept[k] = Some(t);
            }
            _ => added.push((i, t)),
        }
    }
    let mut trunks: Vec<Trunk> = kept
        .into_iter()
        .zip(&prev.trunks)
        .map(|(t, p)| t.unwrap_or_else(|| Trunk::tombstone(p.name.clone())))
        .collect();
    for (i, t) in added {
        slots[i] = trunks.len() as u32;
        trunks.push(t);
    }
    (slots, trunks)
}

type Routes = (PrefixTable<Vec<Candidate>>, Option<Vec<Candidate>>);

/// The prefix table and the catch-all route. Duplicates are found here, with a hash map, so that the error can
/// name both routes and their lines (the table builder only knows the prefix).
fn route_table(
    c: &mut Check<'_, '_>,
    routes: &[RawRoute],
    trunks: &[RawTrunk],
    by_name: &HashMap<&str, usize>,
    slots: &[u32],
) -> Option<Routes> {
    let mut builder = PrefixTableBuilder::with_capacity(routes.len());
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(routes.len());
    let mut catch_all = None;
    for (i, r) in routes.iter().enumerate() {
        let candidates = candidates(c, i, r, trunks, by_name, slots);
        let prefix = r.prefix.get_ref().as_str();
        let key = || format!("route[{i}].prefix");
        match seen.entry(prefix) {
            Entry::Occupied(first) => {
                let j = *first.get();
                let line = c.v.line(routes[j].prefix.span().start);
                let what = if prefix.is_empty() {
                    "a second catch-all route (prefix \"\")".to_owned()
                } else {
                    format!("prefix \"{prefix}\" is given twice")
                };
                c.error(r.prefix.span(), &key(), &format!("{what}; the first is route[{j}] (line {line})"));
                continue;
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
        if prefix.is_empty() {
            catch_all = Some(candidates);
        } else if let Err(e) = builder.insert(prefix, candidates) {
            c.error(r.prefix.span(), &key(), &prefix_message(&e));
        }
    }
    match builder.build() {
        Ok(table) => Some((table, catch_all)),
        Err(e) => {
            // Duplicates were caught above; what is left (a table too large) is blamed on the route it names.
            let at = match &e {
                PrefixError::Duplicate { prefix } | PrefixError::TooLarge { prefix } => seen.get(prefix.as_str()),
                _ => None,
            };
            let (span, key) =
                at.map_or((0..0, "route".to_owned()), |&i| (routes[i].prefix.span(), format!("route[{i}].prefix")));
            c.error(span, &key, &prefix_message(&e));
            None
        }
    }
}

fn prefix_message(e: &PrefixError) -> String {
    match e {
        PrefixError::Empty { .. } => {
            format!("{e}: a prefix is ASCII digits, optionally led by '+'; the catch-all route is prefix = \"\"")
        }
        _ => e.to_string(),
    }
}

fn candidates(
    c: &mut Check<'_, '_>,
    i: usize,
    r: &RawRoute,
    trunks: &[RawTrunk],
    by_name: &HashMap<&str, usize>,
    slots: &[u32],
) -> Vec<Candidate> {
    let to = r.to.get_ref();
    if to.is_empty() {
        c.error(r.to.span(), &format!("route[{i}].to"), "needs at least one trunk");
    }
    let mut out: Vec<Candidate> = Vec::with_capacity(to.len());
    for (j, t) in to.iter().enumerate() {
        let name = t.trunk.get_ref();
        let key = || format!("route[{i}].to[{j}].trunk");
        let Some(&k) = by_name.get(name.as_str()) else {
            c.error(t.trunk.span(), &key(), &format!("no [[trunk]] is named \"{name}\""));
            continue;
        };
        if !trunks[k].has_gateways() && c.v.users_trunk.as_deref() != Some(name.as_str()) {
            c.error(t.trunk.span(), &key(), &format!("trunk \"{name}\" has no gateways to send calls to"));
            continue;
        }
        let id = TrunkId(slots[k]);
        // Lists are a handful of carriers: a linear scan is cheaper than a set.
        if out.iter().any(|o| o.trunk == id) {
            c.error(t.trunk.span(), &key(), &format!("trunk \"{name}\" is listed twice in this route"));
            continue;
        }
        out.push(Candidate {
            trunk: id,
            priority: t.priority.unwrap_or(DEFAULT_PRIORITY),
            weight: t.weight.unwrap_or(DEFAULT_WEIGHT),
        });
    }
    out
}

fn call_limits(c: &mut Check<'_, '_>, calls: Option<RawCalls>) -> (UnknownSource, u32, Duration) {
    let limits = FailoverLimits::default();
    let defaults = (UnknownSource::default(), limits.max_tries, limits.max_post_dial);
    let Some(calls) = calls else { return defaults };
    let unknown_source = match calls.unknown_source {
        None => defaults.0,
        Some(RawUnknownSource::Reject) => UnknownSource::Reject,
        Some(RawUnknownSource::Drop) => UnknownSource::Drop,
    };
    let max_tries = match calls.max_tries {
        None => defaults.1,
        Some(n) if *n.get_ref() == 0 => {
            c.error(n.span(), "calls.max_tries", "must be at least 1");
            defaults.1
        }
        Some(n) => *n.get_ref(),
    };
    let max_post_dial = match calls.max_post_dial {
        None => defaults.2,
        Some(s) => c.v.duration(&s, "calls.max_post_dial").unwrap_or_else(|e| {
            c.errors.push(e);
            defaults.2
        }),
    };
    (unknown_source, max_tries, max_post_dial)
}

/// `calls.max_duration` and `calls.keepalive`: optional durations, off when absent.
fn call_timers(c: &mut Check<'_, '_>, calls: Option<&RawCalls>) -> (Option<Duration>, Option<Duration>) {
    let mut one = |v: Option<&Spanned<String>>, key: &str| {
        v.and_then(|s| match c.v.duration(s, key) {
            Ok(d) => Some(d),
            Err(e) => {
                c.errors.push(e);
                None
            }
        })
    };
    let Some(calls) = calls else { return (None, None) };
    (one(calls.max_duration.as_ref(), "calls.max_duration"), one(calls.keepalive.as_ref(), "calls.keepalive"))
}

#[cfg(test)]
mod tests;
