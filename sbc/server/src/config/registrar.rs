//! `[registrar]` and its `[[registrar.user]]` tables: the SBC as registrar for a configured set of users
//! (`sbc_proto::registrar`). The users form a pseudo-trunk, a `[[trunk]]` with no gateways, no `match`, no
//! `inbound_auth` and no `register`, named by `trunk`: routes name it to reach users, CDRs and metrics name it for
//! their calls, and its limits, number rules and identity policy apply to them.

use super::trunk::RawTrunk;
use super::{ConfigError, Validator};
use sbc_proto::policy::digest::Secret;
use sbc_proto::registrar::{RegistrarConfig, User};
use sbc_proto::routing::Plan;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistrar {
    pub(super) trunk: Spanned<String>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    realm: Option<Spanned<String>>,
    min_expires: Option<Spanned<u32>>,
    max_expires: Option<Spanned<u32>>,
    default_expires: Option<Spanned<u32>>,
    max_contacts: Option<Spanned<usize>>,
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

impl Validator<'_> {
    /// `[registrar]` against the trunks of the file and the plan built from them (`None` when the plan had errors:
    /// only what does not need it is checked).
    pub(super) fn registrar(
        &self,
        raw: Option<Spanned<RawRegistrar>>,
        trunks: &[RawTrunk],
        plan: Option<&Plan>,
    ) -> Result<Option<RegistrarConfig>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let whole = raw.span();
        let r = raw.into_inner();
        let mut errors = Vec::new();
        let name = r.trunk.get_ref();
        match trunks.iter().find(|t| t.name.get_ref() == name) {
            None => errors.push(self.invalid(
                r.trunk.span(),
                "registrar.trunk",
                &format!("no [[trunk]] is named \"{name}\""),
            )),
            Some(t) if !t.is_pseudo() => errors.push(self.invalid(
                r.trunk.span(),
                "registrar.trunk",
                &format!(
                    "trunk \"{name}\" must have no gateways, match, inbound_auth or register: it stands for the users"
                ),
            )),
            Some(_) => {}
        }
        let domains: Vec<String> = r.domains.iter().map(|d| d.get_ref().to_ascii_lowercase()).collect();
        for (i, d) in r.domains.iter().enumerate() {
            if d.get_ref().is_empty() || d.get_ref().contains(|c: char| c.is_whitespace() || c == '@' || c == ':') {
                errors.push(self.invalid(d.span(), &format!("registrar.domains[{i}]"), "not a host name or address"));
            }
        }
        let realm = match &r.realm {
            Some(s) if s.get_ref().is_empty() || s.get_ref().contains('"') => {
                errors.push(self.invalid(s.span(), "registrar.realm", "must be non-empty and hold no '\"'"));
                String::new()
            }
            Some(s) => s.get_ref().clone(),
            None => domains.first().cloned().unwrap_or_else(|| "sbc".into()),
        };
        let defaults = RegistrarConfig::default();
        let get = |v: &Option<Spanned<u32>>, d: u32| v.as_ref().map_or(d, |v| *v.get_ref());
        let (min, max, default) = (
            get(&r.min_expires, defaults.min_expires),
            get(&r.max_expires, defaults.max_expires),
            get(&r.default_expires, defaults.default_expires),
        );
        if min == 0 || !(min <= default && default <= max) {
            let span = r
                .min_expires
                .as_ref()
                .or(r.default_expires.as_ref())
                .or(r.max_expires.as_ref())
                .map_or(whole.clone(), |s| s.span());
            errors.push(self.invalid(
                span,
                "registrar.min_expires",
                &format!(
                    "needs 1 <= min_expires <= default_expires <= max_expires (seconds); have {min}, {default}, {max}"
                ),
            ));
        }
        let max_contacts = r.max_contacts.as_ref().map_or(defaults.max_contacts, |m| *m.get_ref());
        if max_contacts == 0 {
            let span = r.max_contacts.as_ref().map_or(whole.clone(), |s| s.span());
            errors.push(self.invalid(span, "registrar.max_contacts", "must be at least 1"));
        }
        if r.user.is_empty() {
            errors.push(self.invalid(whole.clone(), "registrar.user", "needs at least one [[registrar.user]]"));
        }
        let base_dir = self.path.parent().unwrap_or(Path::new(""));
        let mut seen = HashSet::new();
        let mut users = Vec::with_capacity(r.user.len());
        for (i, u) in r.user.iter().enumerate() {
            let key = format!("registrar.user[{i}]");
            let n = u.get_ref().name.get_ref();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b)) {
                errors.push(self.invalid(
                    u.get_ref().name.span(),
                    &format!("{key}.name"),
                    &format!("\"{n}\" is not a user name (letters, digits, - _ . +)"),
                ));
            } else if !seen.insert(n.clone()) {
                errors.push(self.invalid(
                    u.get_ref().name.span(),
                    &format!("{key}.name"),
                    &format!("user \"{n}\" is listed twice"),
                ));
            }
            let raw = u.get_ref();
            match super::secret::read(
                "password",
                raw.password_env.as_ref(),
                raw.password_file.as_ref(),
                &key,
                u.span(),
                base_dir,
            ) {
                Ok(p) => users.push(User { name: n.clone(), password: Secret::new(p) }),
                Err((span, key, message)) => errors.push(self.invalid(span, &key, &message)),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError::from_list(errors));
        }
        // The plan is missing only when it had errors of its own, already reported.
        let trunk = plan.and_then(|p| p.by_name(name)).unwrap_or(sbc_proto::routing::TrunkId(0));
        Ok(Some(RegistrarConfig {
            domains,
            realm,
            users,
            min_expires: min,
            max_expires: max,
            default_expires: default,
            max_contacts,
            trunk,
            // Set from `[sip] tcp_idle_timeout` once the whole configuration is read (`with_flow_timer`).
            flow_timer: RegistrarConfig::default().flow_timer,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    const TRUNKS: &str =
        "[[trunk]]\nname = \"users\"\n[[trunk]]\nname = \"carrier\"\ngateways = [\"udp:198.18.2.10:5060\"]\n\
                          [[route]]\nprefix = \"100\"\nto = [{ trunk = \"users\" }]\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{TRUNKS}{extra}"), Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn registrar_with_users_loads_and_names_its_trunk() {
        std::env::set_var("SBC_TEST_USER_1001_PW", "pw");
        let c = parse(
            "[registrar]\ntrunk = \"users\"\ndomains = [\"SBC.example\"]\nmin_expires = 30\n\
             [[registrar.user]]\nname = \"1001\"\npassword_env = \"SBC_TEST_USER_1001_PW\"\n",
        )
        .expect("valid");
        let r = c.registrar.expect("registrar");
        assert_eq!((r.domains.as_slice(), r.realm.as_str()), (&["sbc.example".to_owned()][..], "sbc.example"));
        assert_eq!((r.min_expires, r.default_expires, r.max_expires, r.max_contacts), (30, 600, 3600, 5));
        assert_eq!(c.plan.trunk(r.trunk).name, "users");
        assert!(!format!("{:?}", r.users).contains("\"pw\""), "passwords never print");
    }

    #[test]
    fn registrar_errors_name_their_keys() {
        let e = parse("[registrar]\ntrunk = \"carrier\"\n[[registrar.user]]\nname = \"a b\"\npassword_env = \"SBC_TEST_UNSET_USER_PW\"\n")
            .expect_err("invalid");
        assert!(e.contains("registrar.trunk: trunk \"carrier\" must have no gateways"), "{e}");
        assert!(e.contains("registrar.user[0].name: \"a b\" is not a user name"), "{e}");
        assert!(
            e.contains("registrar.user[0].password_env: environment variable SBC_TEST_UNSET_USER_PW is not set"),
            "{e}"
        );
        let e = parse("[registrar]\ntrunk = \"users\"\nmin_expires = 900\n").expect_err("invalid");
        assert!(e.contains("registrar.min_expires: needs 1 <= min_expires <= default_expires"), "{e}");
        assert!(e.contains("registrar.user: needs at least one"), "{e}");
    }

    #[test]
    fn a_route_to_a_trunk_without_gateways_is_refused_unless_it_is_the_users_trunk() {
        let e =
            Config::parse(TRUNKS, Path::new("test.toml")).map(|_| ()).expect_err("no registrar: users has no gateways");
        assert!(e.to_string().contains("trunk \"users\" has no gateways"), "{e}");
    }
}
