//! The calling identity across the B2BUA: P-Asserted-Identity (RFC 3325), Privacy (RFC 3323) and the From user
//! (CLIP no screening), decided from what leg A presented, the inbound trunk's trust and verified number, and the
//! outbound trunk's trust and CLI policy.
//!
//! Call order for one attempt towards trunk B of a call from trunk A (number rules are applied around
//! [`outbound`], not inside it, so that each trunk's rules touch exactly the numbers that cross its boundary):
//! ```text
//! let mut presented = Presented { from_user, from_display, pai, privacy_id: privacy_requested(privacy_header) };
//! presented.rewrite(&a.numbers_in);                       // what A presented, in A's rules
//! let mut out = outbound(&presented, &a.identity_in, &b.identity_out);
//! out.rewrite(&b.numbers_out);                            // what B receives, in B's rules
//! ```
//! The verified number of trunk A is used as configured (not through A's `numbers_in`) and goes through B's
//! `numbers_out` like every number sent to B.
//!
//! Rules, in the order [`outbound`] applies them:
//! 1. The asserted identity: trunk A's verified number if it has one, whatever A presented; else the presented
//!    PAI if trunk A is trusted; else none (an untrusted peer's PAI is ignored and never forwarded).
//! 2. Privacy requested (see [`Presented::privacy_id`]): the From is anonymous in both directions
//!    (`"Anonymous" <sip:anonymous@anonymous.invalid>`, RFC 3323 §4.1.1.3) and `Privacy: id` is sent. Towards a
//!    trusted trunk the PAI goes along, which `Privacy: id` tells it to withhold from the called party (RFC 3325
//!    §9.3); towards an untrusted trunk there is no PAI.
//! 3. Otherwise the From user is as presented (`Cli::Keep`) or the asserted identity (`Cli::Asserted`), the
//!    display name as presented, and the PAI is sent only towards a trusted trunk: the trust boundary removes it.

use super::numbers::NumberRules;

/// The display name of an anonymous From (RFC 3323 §4.1.1.3).
pub const ANONYMOUS_DISPLAY: &str = "Anonymous";
/// The user of an anonymous From.
pub const ANONYMOUS_USER: &str = "anonymous";
/// The host of an anonymous From, for [`Outbound::from_host_anonymous`] (RFC 3323 §4.1.1.3).
pub const ANONYMOUS_HOST: &str = "anonymous.invalid";

/// The calling identity as leg A presented it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presented {
    /// The user part of the From URI (empty when it has none).
    pub from_user: String,
    /// The From display name, without quotes, if any.
    pub from_display: Option<String>,
    /// The user part (the number) of the P-Asserted-Identity URI, `sip:` or `tel:`, if the request had one.
    pub pai: Option<String>,
    /// Whether the caller asked to withhold its identity: a Privacy header with `id`, `user` or `header` (see
    /// [`privacy_requested`]). A From user `anonymous` counts as a request too, even without a Privacy header:
    /// a PBX that anonymised the From and forgot the header still means it.
    pub privacy_id: bool,
}

impl Presented {
    /// Applies the inbound trunk's number rules to the From user and the PAI number.
    pub fn rewrite(&mut self, rules: &NumberRules) {
        self.from_user = rules.apply(&self.from_user);
        if let Some(pai) = &mut self.pai {
            *pai = rules.apply(pai);
        }
    }

    fn hides_identity(&self) -> bool {
        self.privacy_id || self.from_user.eq_ignore_ascii_case(ANONYMOUS_USER)
    }
}

/// Whether one Privacy header value (`id`, `user;id`, `none`; RFC 3323 §4.2) asks to withhold the caller's
/// identity. `id` (RFC 3325 §9.3), `user` and `header` are honoured alike, failing closed: each means the called
/// party must not learn who calls, and the SBC cannot tell which of the caller's headers would reveal it. `none`,
/// `session` and `critical` alone do not. Call it once per Privacy header; any `true` wins.
pub fn privacy_requested(value: &str) -> bool {
    value
        .split([';', ','])
        .map(str::trim)
        .any(|v| v.eq_ignore_ascii_case("id") || v.eq_ignore_ascii_case("user") || v.eq_ignore_ascii_case("header"))
}

/// Identity policy of a trunk for calls from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityIn {
    /// Whether the trunk is in our trust domain (RFC 3325 §2.3), so that its P-Asserted-Identity is believed.
    /// Default false: an incoming PAI is ignored.
    pub trusted: bool,
    /// The trunk's verified number: the asserted identity of every call from it, whatever it presents. Default
    /// `None`.
    pub verified_number: Option<String>,
}

/// Identity policy of a trunk for calls to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityOut {
    /// Whether the trunk is in our trust domain, so that it receives P-Asserted-Identity. Default false: the PAI
    /// is removed at this trust boundary.
    pub trusted: bool,
    /// What the From user is. Default [`Cli::Keep`].
    pub cli: Cli,
}

/// The From user sent to a trunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cli {
    /// The From user as presented, after number rules (CLIP no screening: the asserted identity travels in
    /// P-Asserted-Identity only). The default.
    #[default]
    Keep,
    /// The From user replaced by the asserted identity when there is one (for carriers that screen the From).
    Asserted,
}

/// The calling identity to send on leg B. The caller builds the headers: From from `from_display`, `from_user`
/// and our address (or [`ANONYMOUS_HOST`]), `P-Asserted-Identity: <sip:NUMBER@HOST;user=phone>` from `pai`, and
/// `Privacy` from `privacy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The user part of the From URI.
    pub from_user: String,
    /// The From display name, if any.
    pub from_display: Option<String>,
    /// Whether the From host is [`ANONYMOUS_HOST`] rather than our address.
    pub from_host_anonymous: bool,
    /// The number for P-Asserted-Identity; `None`: no PAI header.
    pub pai: Option<String>,
    /// The Privacy header value to send; `None`: no Privacy header.
    pub privacy: Option<&'static str>,
}

impl Outbound {
    /// Applies the outbound trunk's number rules to the From user and the PAI number. An anonymous From is left
    /// as it is (number rules never touch names).
    pub fn rewrite(&mut self, rules: &NumberRules) {
        self.from_user = rules.apply(&self.from_user);
        if let Some(pai) = &mut self.pai {
            *pai = rules.apply(pai);
        }
    }
}

/// The identity to send towards the outbound trunk; see the module documentation for the rules. Numbers are
/// taken as given: apply the inbound trunk's rules to `presented` before, and the outbound trunk's to the result.
pub fn outbound(presented: &Presented, inbound: &IdentityIn, outbound: &IdentityOut) -> Outbound {
    let asserted = match &inbound.verified_number {
        Some(n) => Some(n.clone()),
        None if inbound.trusted => presented.pai.clone(),
        None => None,
    }
    .filter(|n| !n.is_empty());
    let pai = if outbound.trusted { asserted.clone() } else { None };
    if presented.hides_identity() {
        return Outbound {
            from_user: ANONYMOUS_USER.to_owned(),
            from_display: Some(ANONYMOUS_DISPLAY.to_owned()),
            from_host_anonymous: true,
            pai,
            privacy: Some("id"),
        };
    }
    let from_user = match (outbound.cli, asserted) {
        (Cli::Asserted, Some(n)) => n,
        _ => presented.from_user.clone(),
    };
    Outbound { from_user, from_display: presented.from_display.clone(), from_host_anonymous: false, pai, privacy: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::numbers::{DiallingPlan, Rewrite};

    fn pbx_presenting(from_user: &str, pai: Option<&str>) -> Presented {
        Presented {
            from_user: from_user.into(),
            from_display: Some("Reception".into()),
            pai: pai.map(Into::into),
            privacy_id: false,
        }
    }

    const UNTRUSTED_IN: IdentityIn = IdentityIn { trusted: false, verified_number: None };
    const TRUSTED_IN: IdentityIn = IdentityIn { trusted: true, verified_number: None };
    const TRUSTED_OUT: IdentityOut = IdentityOut { trusted: true, cli: Cli::Keep };
    const UNTRUSTED_OUT: IdentityOut = IdentityOut { trusted: false, cli: Cli::Keep };

    fn verified(n: &str) -> IdentityIn {
        IdentityIn { trusted: false, verified_number: Some(n.into()) }
    }

    #[test]
    fn verified_number_becomes_pai_and_from_is_kept_as_presented() {
        let out = outbound(&pbx_presenting("+4930999", Some("+4930666")), &verified("+4940123456"), &TRUSTED_OUT);
        assert_eq!(out.pai.as_deref(), Some("+4940123456"), "the verified number, not the presented PAI");
        assert_eq!(out.from_user, "+4930999");
        assert_eq!(out.from_display.as_deref(), Some("Reception"));
        assert!(!out.from_host_anonymous);
        assert_eq!(out.privacy, None);
    }

    #[test]
    fn pai_from_a_trusted_trunk_is_forwarded_to_a_trusted_carrier() {
        let out = outbound(&pbx_presenting("+4930999", Some("+4930666")), &TRUSTED_IN, &TRUSTED_OUT);
        assert_eq!(out.pai.as_deref(), Some("+4930666"));
        assert_eq!(out.from_user, "+4930999");
    }

    #[test]
    fn pai_from_an_untrusted_trunk_is_ignored() {
        let out = outbound(&pbx_presenting("+4930999", Some("+4930666")), &UNTRUSTED_IN, &TRUSTED_OUT);
        assert_eq!(out.pai, None);
        let asserted = IdentityOut { trusted: true, cli: Cli::Asserted };
        let out = outbound(&pbx_presenting("+4930999", Some("+4930666")), &UNTRUSTED_IN, &asserted);
        assert_eq!(out.from_user, "+4930999", "an untrusted PAI does not replace the From either");
    }

    #[test]
    fn pai_is_removed_towards_an_untrusted_carrier() {
        let out = outbound(&pbx_presenting("+4930999", Some("+4930666")), &TRUSTED_IN, &UNTRUSTED_OUT);
        assert_eq!(out.pai, None);
        let out = outbound(&pbx_presenting("+4930999", None), &verified("+4940123456"), &UNTRUSTED_OUT);
        assert_eq!(out.pai, None);
        assert_eq!(out.from_user, "+4930999");
    }

    #[test]
    fn cli_asserted_replaces_from_user() {
        let asserted = IdentityOut { trusted: false, cli: Cli::Asserted };
        let out = outbound(&pbx_presenting("+4930999", None), &verified("+4940123456"), &asserted);
        assert_eq!(out.from_user, "+4940123456");
        assert_eq!(out.from_display.as_deref(), Some("Reception"));
        assert_eq!(out.pai, None, "an untrusted carrier gets the number in the From only");
    }

    #[test]
    fn cli_asserted_without_an_asserted_number_keeps_the_from_user() {
        let asserted = IdentityOut { trusted: true, cli: Cli::Asserted };
        let out = outbound(&pbx_presenting("+4930999", None), &TRUSTED_IN, &asserted);
        assert_eq!(out.from_user, "+4930999");
        assert_eq!(out.pai, None);
    }

    #[test]
    fn privacy_id_gives_anonymous_from_towards_untrusted() {
        let mut presented = pbx_presenting("+4930999", Some("+4930666"));
        presented.privacy_id = true;
        let out = outbound(&presented, &verified("+4940123456"), &UNTRUSTED_OUT);
        assert_eq!(
            out,
            Outbound {
                from_user: "anonymous".into(),
                from_display: Some("Anonymous".into()),
                from_host_anonymous: true,
                pai: None,
                privacy: Some("id"),
            }
        );
    }

    #[test]
    fn privacy_id_towards_trusted_sends_pai_with_privacy_id_and_anonymous_from() {
        let mut presented = pbx_presenting("+4930999", None);
        presented.privacy_id = true;
        let out = outbound(&presented, &verified("+4940123456"), &IdentityOut { trusted: true, cli: Cli::Asserted });
        assert_eq!(out.pai.as_deref(), Some("+4940123456"));
        assert_eq!(out.privacy, Some("id"));
        assert_eq!((out.from_user.as_str(), out.from_host_anonymous), ("anonymous", true), "even with cli asserted");
        assert_eq!(out.from_display.as_deref(), Some("Anonymous"));
    }

    #[test]
    fn anonymous_from_without_privacy_header_is_treated_as_privacy_id() {
        let out = outbound(&pbx_presenting("Anonymous", None), &verified("+4940123456"), &TRUSTED_OUT);
        assert_eq!(out.privacy, Some("id"), "the verified number must not be shown to the called party");
        assert!(out.from_host_anonymous);
    }

    #[test]
    fn privacy_values_id_user_and_header_are_honoured_none_is_not() {
        for v in ["id", "user", "header", "user;id", "none; ID", "session, header", " critical ; id "] {
            assert!(privacy_requested(v), "{v:?}");
        }
        for v in ["", "none", "session", "critical", "identity"] {
            assert!(!privacy_requested(v), "{v:?}");
        }
    }

    #[test]
    fn number_rules_apply_inbound_before_and_outbound_after() {
        let national_in =
            NumberRules { e164: Some(DiallingPlan::with_defaults("49").expect("valid")), ..NumberRules::default() };
        let national_out =
            NumberRules { rewrite: vec![Rewrite::new(r"^\+49(.*)$", "0$1").expect("valid")], ..NumberRules::default() };
        let mut presented = pbx_presenting("030999", Some("0049306666"));
        presented.rewrite(&national_in);
        assert_eq!((presented.from_user.as_str(), presented.pai.as_deref()), ("+4930999", Some("+49306666")));
        let mut out = outbound(&presented, &TRUSTED_IN, &TRUSTED_OUT);
        out.rewrite(&national_out);
        assert_eq!((out.from_user.as_str(), out.pai.as_deref()), ("030999", Some("0306666")));
    }

    #[test]
    fn number_rules_leave_an_anonymous_from_alone() {
        let add = NumberRules { add: crate::policy::numbers::Affix::new("+").expect("valid"), ..Default::default() };
        let mut presented = pbx_presenting("4930999", None);
        presented.privacy_id = true;
        let mut out = outbound(&presented, &verified("4940123456"), &TRUSTED_OUT);
        out.rewrite(&add);
        assert_eq!(out.from_user, "anonymous");
        assert_eq!(out.pai.as_deref(), Some("+4940123456"));
    }
}
