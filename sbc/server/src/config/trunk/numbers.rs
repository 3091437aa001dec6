//! The number and identity keys of a `[[trunk]]`: `numbers_in`, `numbers_out` (validated into
//! [`NumberRules`]), `trusted`, `verified_number` and `cli` (into [`IdentityIn`] and [`IdentityOut`]).

use super::super::routing::Check;
use sbc_proto::policy::numbers::is_number;
use sbc_proto::policy::{Affix, Cli, DiallingPlan, IdentityIn, IdentityOut, NumberRuleError, NumberRules, Rewrite};
use serde::Deserialize;
use toml::Spanned;

/// `numbers_in` / `numbers_out`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawNumbers {
    country_code: Option<Spanned<String>>,
    national_prefix: Option<Spanned<String>>,
    international_prefix: Option<Spanned<String>>,
    strip: Option<Spanned<String>>,
    add: Option<Spanned<String>>,
    rewrite: Option<Vec<RawRewrite>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    replace: Spanned<String>,
}

/// `cli`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::config) enum RawCli {
    Keep,
    Asserted,
}

/// The identity keys of one trunk, as read.
pub(in crate::config) struct RawIdentity<'a> {
    pub(in crate::config) trusted: Option<bool>,
    pub(in crate::config) verified_number: Option<&'a Spanned<String>>,
    pub(in crate::config) cli: Option<RawCli>,
}

/// `trunk[i].numbers_in` or `trunk[i].numbers_out` (`field` says which). Every bad value is reported; a bad
/// part is left out of the rules.
pub(in crate::config) fn number_rules(
    c: &mut Check<'_, '_>,
    i: usize,
    field: &str,
    raw: Option<&RawNumbers>,
) -> NumberRules {
    let Some(raw) = raw else { return NumberRules::default() };
    let key = |k: &str| format!("trunk[{i}].{field}.{k}");
    let e164 = match &raw.country_code {
        None => {
            for (name, value) in
                [("national_prefix", &raw.national_prefix), ("international_prefix", &raw.international_prefix)]
            {
                if let Some(v) = value {
                    c.error(v.span(), &key(name), "has no effect without country_code (E.164 normalisation needs it)");
                }
            }
            None
        }
        Some(cc) => {
            let national = raw.national_prefix.as_ref();
            let international = raw.international_prefix.as_ref();
            let plan = DiallingPlan::new(
                cc.get_ref(),
                national.map_or(DiallingPlan::DEFAULT_NATIONAL_PREFIX, |s| s.get_ref()),
                international.map_or(DiallingPlan::DEFAULT_INTERNATIONAL_PREFIX, |s| s.get_ref()),
            );
            plan.map_err(|e| {
                // Each variant names its setting; a default value is never wrong, so the setting is in the file.
                let (span, name) = match (&e, national, international) {
                    (NumberRuleError::NationalPrefix(_), Some(n), _) => (n.span(), "national_prefix"),
                    (NumberRuleError::InternationalPrefix(_) | NumberRuleError::SamePrefixes(_), _, Some(p)) => {
                        (p.span(), "international_prefix")
                    }
                    (NumberRuleError::SamePrefixes(_), Some(n), None) => (n.span(), "national_prefix"),
                    _ => (cc.span(), "country_code"),
                };
                c.error(span, &key(name), &e.to_string());
            })
            .ok()
        }
    };
    let mut affix = |value: &Option<Spanned<String>>, name: &str| match value {
        None => Affix::default(),
        Some(s) => Affix::new(s.get_ref()).unwrap_or_else(|e| {
            c.error(s.span(), &key(name), &e.to_string());
            Affix::default()
        }),
    };
    let strip = affix(&raw.strip, "strip");
    let add = affix(&raw.add, "add");
    let rewrite = raw
        .rewrite
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(j, r)| {
            Rewrite::new(r.pattern.get_ref(), r.replace.get_ref())
                .map_err(|e| {
                    let (span, name) = match e {
                        NumberRuleError::MissingGroup { .. } => (r.replace.span(), "replace"),
                        _ => (r.pattern.span(), "match"),
                    };
                    c.error(span, &key(&format!("rewrite[{j}].{name}")), &e.to_string());
                })
                .ok()
        })
        .collect();
    NumberRules { e164, strip, add, rewrite }
}

/// `trusted`, `verified_number` and `cli` of `trunk[i]`.
pub(in crate::config) fn identity(c: &mut Check<'_, '_>, i: usize, raw: RawIdentity<'_>) -> (IdentityIn, IdentityOut) {
    let trusted = raw.trusted.unwrap_or(false);
    let verified_number = raw.verified_number.and_then(|n| {
        if is_number(n.get_ref()) {
            Some(n.get_ref().clone())
        } else {
            let message = format!("\"{}\": a number is an optional '+' and digits, e.g. \"+4940123456\"", n.get_ref());
            c.error(n.span(), &format!("trunk[{i}].verified_number"), &message);
            None
        }
    });
    let cli = match raw.cli {
        None | Some(RawCli::Keep) => Cli::Keep,
        Some(RawCli::Asserted) => Cli::Asserted,
    };
    (IdentityIn { trusted, verified_number }, IdentityOut { trusted, cli })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use sbc_proto::policy::Cli;
    use sbc_proto::routing::TrunkId;
    use std::path::Path;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    fn error(t: &str) -> String {
        parse(t).expect_err("should be rejected").to_string()
    }

    #[test]
    fn numbers_and_identity_keys_build_the_trunk_policy() {
        let c = parse(
            r#"
[[trunk]]
name = "customer-pbx"
match = { source = ["198.18.1.10/32"] }
numbers_in = { country_code = "49" }
verified_number = "+4940123456"

[[trunk]]
name = "carrier-b"
gateways = ["udp:198.18.2.10:5060"]
trusted = true
cli = "asserted"
numbers_out = { strip = "+", add = "00", rewrite = [
    { match = '^0049(.*)$', replace = "0$1" },
    { match = '^00(.*)$', replace = "00${1}" },
] }
"#,
        )
        .expect("valid");
        let pbx = c.plan.trunk(TrunkId(0));
        assert_eq!(pbx.numbers_in.apply("0301234"), "+49301234");
        assert_eq!(pbx.numbers_in.apply("0049301234"), "+49301234");
        assert!(pbx.numbers_out.is_identity());
        assert_eq!(pbx.identity_in.verified_number.as_deref(), Some("+4940123456"));
        assert!(!pbx.identity_in.trusted && !pbx.identity_out.trusted);
        assert_eq!(pbx.identity_out.cli, Cli::Keep);

        let b = c.plan.trunk(TrunkId(1));
        assert!(b.numbers_in.is_identity());
        assert_eq!(b.numbers_out.apply("+49301234"), "0301234");
        assert_eq!(b.numbers_out.apply("+33123456"), "0033123456");
        assert!(b.identity_in.trusted && b.identity_out.trusted);
        assert_eq!(b.identity_in.verified_number, None);
        assert_eq!(b.identity_out.cli, Cli::Asserted);
    }

    #[test]
    fn long_rules_can_be_written_as_sub_tables() {
        let c = parse(
            r#"[[trunk]]
name = "carrier-c"
gateways = ["udp:198.18.2.11:5060"]
[trunk.numbers_out]
country_code = "49"
[[trunk.numbers_out.rewrite]]
match = '^\+49(.*)$'
replace = "0$1"
"#,
        )
        .expect("valid");
        assert_eq!(c.plan.trunk(TrunkId(0)).numbers_out.apply("0049301234"), "0301234");
    }

    #[test]
    fn national_and_international_prefixes_can_be_set() {
        let c = parse(
            "[[trunk]]\nname = \"us\"\nnumbers_in = { country_code = \"1\", national_prefix = \"1\", international_prefix = \"011\" }\n",
        )
        .expect("valid");
        let us = c.plan.trunk(TrunkId(0));
        assert_eq!(us.numbers_in.apply("0114930123"), "+4930123");
        assert_eq!(us.numbers_in.apply("12125550100"), "+12125550100");
    }

    #[test]
    fn invalid_regex_names_the_rewrite_match_key_and_line() {
        let e = error(
            r#"[[trunk]]
name = "a"
[[trunk]]
name = "b"
[[trunk]]
name = "c"
numbers_in = { rewrite = [
  { match = '^(\+49', replace = "0$1" },
] }
"#,
        );
        assert!(e.starts_with("test.toml:8: trunk[2].numbers_in.rewrite[0].match: invalid regular expression"), "{e}");
    }

    #[test]
    fn replacement_with_a_missing_group_names_the_replace_key() {
        let e = error(
            "[[trunk]]\nname = \"b\"\nnumbers_out = { rewrite = [{ match = '^\\+49(.*)$', replace = \"0$1x\" }] }\n",
        );
        assert!(e.starts_with("test.toml:3: trunk[0].numbers_out.rewrite[0].replace:"), "{e}");
        assert!(e.contains("${1}x"), "{e}");
    }

    #[test]
    fn bad_dialling_plan_values_name_their_keys() {
        let e = error("[[trunk]]\nname = \"b\"\nnumbers_in = { country_code = \"+49\" }\n");
        assert!(e.starts_with("test.toml:3: trunk[0].numbers_in.country_code: \"+49\""), "{e}");
        let e =
            error("[[trunk]]\nname = \"b\"\nnumbers_out = { country_code = \"49\", international_prefix = \"0\" }\n");
        assert!(e.starts_with("test.toml:3: trunk[0].numbers_out.international_prefix:"), "{e}");
        assert!(e.contains("both \"0\""), "{e}");
        let e = error("[[trunk]]\nname = \"b\"\n[trunk.numbers_in]\ncountry_code = \"49\"\nnational_prefix = \"x\"\n");
        assert!(e.starts_with("test.toml:5: trunk[0].numbers_in.national_prefix:"), "{e}");
        let e = error("[[trunk]]\nname = \"b\"\nnumbers_in = { national_prefix = \"0\" }\n");
        assert!(e.contains("trunk[0].numbers_in.national_prefix: has no effect without country_code"), "{e}");
    }

    #[test]
    fn bad_prefixes_verified_number_and_cli_are_all_reported() {
        let e = error(
            r#"[[trunk]]
name = "b"
numbers_in = { strip = "x" }
numbers_out = { add = "0+" }
verified_number = "anonymous"
"#,
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("test.toml:3: trunk[0].numbers_in.strip:"), "{e}");
        assert!(lines[1].starts_with("test.toml:4: trunk[0].numbers_out.add:"), "{e}");
        assert!(lines[2].starts_with("test.toml:5: trunk[0].verified_number:"), "{e}");
        let e = error("[[trunk]]\nname = \"b\"\ncli = \"screened\"\n");
        assert!(e.starts_with("test.toml:3:") && e.contains("keep") && e.contains("asserted"), "{e}");
        let e = error("[[trunk]]\nname = \"b\"\nnumbers_in = { country = \"49\" }\n");
        assert!(e.starts_with("test.toml:3:") && e.contains("country"), "{e}");
    }
}
