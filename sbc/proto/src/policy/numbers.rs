//! Number rules of one trunk in one direction: E.164 normalisation, prefix strip and add, regex rewrites.
//!
//! [`NumberRules::apply`] runs the steps in this order, each on the output of the one before:
//! 1. E.164 normalisation ([`DiallingPlan`]), if configured: `0301234` → `+49301234`, `0049301234` → `+49301234`;
//! 2. `strip`: a prefix removed when the number starts with it;
//! 3. `add`: a prefix prepended;
//! 4. `rewrite`: the first regex that matches rewrites the number; the others are not tried.
//!
//! Rules apply to telephone numbers only: an optional `+` and one or more of `0-9`, `*`, `#` (the user part of a
//! `sip:` or `tel:` URI once visual separators are removed, RFC 3966 §5.1.1). Anything else (`""`, `anonymous`,
//! `alice`) passes unchanged, so that a prefix is never added to a name.

use regex::Regex;
use std::fmt;

/// What is wrong with a number rule; each variant names the setting to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NumberRuleError {
    /// The country code is not 1 to 3 digits without a leading 0 (ITU-T E.164 §6.2.1).
    #[error("\"{0}\": a country code is 1 to 3 digits, not starting with 0 (\"49\" for Germany, \"1\" for NANP)")]
    CountryCode(String),
    /// The national (trunk) prefix is not digits.
    #[error("\"{0}\": the national prefix is digits only (\"0\" in most of Europe, \"\" for none)")]
    NationalPrefix(String),
    /// The international prefix is empty or not digits.
    #[error("\"{0}\": the international prefix is one or more digits (\"00\" in most of Europe, \"011\" in NANP)")]
    InternationalPrefix(String),
    /// National and international prefix are equal, so a number cannot say which it is.
    #[error("the national and international prefix are both \"{0}\"; they must differ")]
    SamePrefixes(String),
    /// A `strip` or `add` prefix holds something other than an optional leading `+` and `0-9`, `*`, `#`.
    #[error("\"{0}\": a number prefix is an optional leading '+' and digits, '*' or '#'")]
    Affix(String),
    /// The pattern of a rewrite is not a regular expression (`regex` crate syntax).
    #[error("invalid regular expression: {0}")]
    Regex(regex::Error),
    /// The replacement of a rewrite names a capture group the pattern does not have; the `regex` crate would
    /// silently put nothing there.
    #[error("\"{replace}\" refers to group ${{{group}}}, which the pattern does not have (when letters or digits follow a group, write ${{1}}x, not $1x)")]
    MissingGroup {
        /// The replacement.
        replace: String,
        /// The group it names.
        group: String,
    },
}

/// Rules for the numbers of one trunk in one direction. The default changes nothing.
#[derive(Debug, Clone, Default)]
pub struct NumberRules {
    /// E.164 normalisation from the national and international dialling formats. Default `None`: numbers are
    /// not normalised.
    pub e164: Option<DiallingPlan>,
    /// A prefix removed when the number starts with it (`"+"`, `"0049"`). Default empty: nothing removed.
    pub strip: Affix,
    /// A prefix prepended to every number. Default empty: nothing added.
    pub add: Affix,
    /// Regex rewrites, tried in order; the first whose pattern matches rewrites the number. Default none.
    pub rewrite: Vec<Rewrite>,
}

impl NumberRules {
    /// Whether these rules change nothing (the default).
    pub fn is_identity(&self) -> bool {
        self.e164.is_none() && self.strip.is_empty() && self.add.is_empty() && self.rewrite.is_empty()
    }

    /// `number` after the rules, in the order of the module documentation. Non-numbers are returned unchanged.
    pub fn apply(&self, number: &str) -> String {
        if !is_number(number) {
            return number.to_owned();
        }
        let mut n = match &self.e164 {
            Some(plan) => plan.normalise(number),
            None => number.to_owned(),
        };
        if !self.strip.is_empty() {
            if let Some(rest) = n.strip_prefix(self.strip.as_str()) {
                n = rest.to_owned();
            }
        }
        if !self.add.is_empty() {
            n.insert_str(0, self.add.as_str());
        }
        match self.rewrite.iter().find(|r| r.pattern.is_match(&n)) {
            Some(r) => r.pattern.replace(&n, r.replace.as_str()).into_owned(),
            None => n,
        }
    }
}

/// Whether `s` is a telephone number as the rules see it: an optional `+`, then one or more of `0-9`, `*`, `#`.
pub fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

/// A prefix for `strip` or `add`: an optional leading `+`, then `0-9`, `*`, `#`; possibly empty (no prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affix(String);

impl Affix {
    /// Checks `s`: empty, `+`, or an optional `+` and digits, `*`, `#`.
    pub fn new(s: &str) -> Result<Self, NumberRuleError> {
        if s.is_empty() || s == "+" || is_number(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NumberRuleError::Affix(s.to_owned()))
        }
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether there is no prefix.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A country's dialling formats, to turn national and international numbers into E.164 (`+` and country code).
///
/// Only numbers of digits alone are normalised: one starting with `+` is already E.164, and service codes with `*`
/// or `#` are left alone. One starting with the international prefix has it replaced by `+`; else one starting
/// with the national prefix has it replaced by `+` and the country code. The international prefix is tried first,
/// since in most countries the national prefix begins it (`0` and `00`). A number that is nothing but a prefix,
/// or that starts with neither, is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiallingPlan {
    country_code: String,
    national_prefix: String,
    international_prefix: String,
}

impl DiallingPlan {
    /// National prefix when none is configured: `0`, as in most of Europe.
    pub const DEFAULT_NATIONAL_PREFIX: &'static str = "0";
    /// International prefix when none is configured: `00`, the ITU-T recommendation (E.164 Annex A).
    pub const DEFAULT_INTERNATIONAL_PREFIX: &'static str = "00";

    /// A plan for `country_code` (`"49"`), with the default national (`0`) and international (`00`) prefixes.
    pub fn with_defaults(country_code: &str) -> Result<Self, NumberRuleError> {
        Self::new(country_code, Self::DEFAULT_NATIONAL_PREFIX, Self::DEFAULT_INTERNATIONAL_PREFIX)
    }

    /// A plan: `country_code` is 1 to 3 digits not starting with 0; `national_prefix` is digits, possibly none
    /// (then every number that is not international is national); `international_prefix` is one or more
    /// digits, different from the national prefix.
    pub fn new(country_code: &str, national_prefix: &str, international_prefix: &str) -> Result<Self, NumberRuleError> {
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !(1..=3).contains(&country_code.len()) || !digits(country_code) || country_code.starts_with('0') {
            return Err(NumberRuleError::CountryCode(country_code.to_owned()));
        }
        if !digits(national_prefix) {
            return Err(NumberRuleError::NationalPrefix(national_prefix.to_owned()));
        }
        if international_prefix.is_empty() || !digits(international_prefix) {
            return Err(NumberRuleError::InternationalPrefix(international_prefix.to_owned()));
        }
        if national_prefix == international_prefix {
            return Err(NumberRuleError::SamePrefixes(national_prefix.to_owned()));
        }
        Ok(Self {
            country_code: country_code.to_owned(),
            national_prefix: national_prefix.to_owned(),
            international_prefix: international_prefix.to_owned(),
        })
    }

    /// `number` in E.164, or unchanged when it is neither national nor international.
    pub fn normalise(&self, number: &str) -> String {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return number.to_owned();
        }
        if let Some(rest) = number.strip_prefix(self.international_prefix.as_str()) {
            return if rest.is_empty() { number.to_owned() } else { format!("+{rest}") };
        }
        match number.strip_prefix(self.national_prefix.as_str()) {
            Some(rest) if !rest.is_empty() => format!("+{}{rest}", self.country_code),
            _ => number.to_owned(),
        }
    }
}

/// One regex rewrite: where `pattern` matches, the first match is replaced by `replace`, in which `$1`, `${1}` or
/// `${name}` stand for capture groups and `$$` for a `$` (`regex` crate syntax). Anchor the pattern (`^…$`) to
/// rewrite the whole number.
#[derive(Clone)]
pub struct Rewrite {
    pattern: Regex,
    replace: String,
}

impl Rewrite {
    /// Compiles `pattern` and checks that `replace` names only groups the pattern has.
    pub fn new(pattern: &str, replace: &str) -> Result<Self, NumberRuleError> {
        let pattern = Regex::new(pattern).map_err(NumberRuleError::Regex)?;
        for group in group_refs(replace) {
            let known = match group.parse::<usize>() {
                Ok(i) => i < pattern.captures_len(),
                Err(_) => pattern.capture_names().flatten().any(|n| n == group),
            };
            if !known {
                return Err(NumberRuleError::MissingGroup { replace: replace.to_owned(), group: group.to_owned() });
            }
        }
        Ok(Self { pattern, replace: replace.to_owned() })
    }
}

impl fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewrite").field("match", &self.pattern.as_str()).field("replace", &self.replace).finish()
    }
}

/// The group names in a replacement, as the `regex` crate reads them: `$$` is a `$`; `${name}` runs to the brace;
/// `$name` takes the longest run of letters, digits and `_` (so `$1a` names group `1a`).
fn group_refs(replace: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = replace;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if end > 0 => {
                    out.push(&braced[..end]);
                    rest = &braced[end + 1..];
                }
                // No closing brace or an empty name: the regex crate writes it literally.
                _ => {}
            }
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end > 0 {
                out.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn germany() -> NumberRules {
        NumberRules { e164: Some(DiallingPlan::with_defaults("49").expect("valid")), ..NumberRules::default() }
    }

    #[test]
    fn default_rules_change_nothing() {
        let rules = NumberRules::default();
        assert!(rules.is_identity());
        for n in ["0301234", "+49301234", "anonymous", ""] {
            assert_eq!(rules.apply(n), n);
        }
    }

    #[test]
    fn national_number_becomes_e164_with_the_country_code() {
        assert_eq!(germany().apply("0301234"), "+49301234");
    }

    #[test]
    fn international_number_becomes_e164_before_the_national_prefix_is_tried() {
        assert_eq!(germany().apply("0049301234"), "+49301234");
        assert_eq!(germany().apply("0033123456"), "+33123456");
    }

    #[test]
    fn e164_and_other_numbers_are_left_as_they_are() {
        let rules = germany();
        assert_eq!(rules.apply("+49301234"), "+49301234");
        assert_eq!(rules.apply("301234"), "301234");
        assert_eq!(rules.apply("0"), "0", "a bare national prefix has no digits to normalise");
        assert_eq!(rules.apply("00"), "00");
        assert_eq!(rules.apply("anonymous"), "anonymous");
        assert_eq!(rules.apply("0*31#"), "0*31#", "service codes are not normalised");
    }

    #[test]
    fn nanp_plan_with_its_own_prefixes() {
        let plan = DiallingPlan::new("1", "1", "011").expect("valid");
        assert_eq!(plan.normalise("0114930123"), "+4930123");
        assert_eq!(plan.normalise("12125550100"), "+12125550100");
    }

    #[test]
    fn empty_national_prefix_makes_every_non_international_number_national() {
        let plan = DiallingPlan::new("39", "", "00").expect("valid");
        assert_eq!(plan.normalise("0612345678"), "+390612345678");
        assert_eq!(plan.normalise("0049301234"), "+49301234");
    }

    #[test]
    fn bad_dialling_plans_name_the_setting() {
        assert_eq!(DiallingPlan::with_defaults("049"), Err(NumberRuleError::CountryCode("049".into())));
        assert_eq!(DiallingPlan::with_defaults("4949"), Err(NumberRuleError::CountryCode("4949".into())));
        assert_eq!(DiallingPlan::with_defaults(""), Err(NumberRuleError::CountryCode("".into())));
        assert_eq!(DiallingPlan::new("49", "o", "00"), Err(NumberRuleError::NationalPrefix("o".into())));
        assert_eq!(DiallingPlan::new("49", "0", ""), Err(NumberRuleError::InternationalPrefix("".into())));
        assert_eq!(DiallingPlan::new("49", "00", "00"), Err(NumberRuleError::SamePrefixes("00".into())));
    }

    #[test]
    fn strip_removes_a_prefix_only_when_present() {
        let rules = NumberRules { strip: Affix::new("+").expect("valid"), ..NumberRules::default() };
        assert_eq!(rules.apply("+49301234"), "49301234");
        assert_eq!(rules.apply("0301234"), "0301234");
    }

    #[test]
    fn add_prepends_a_prefix_after_strip() {
        let rules = NumberRules {
            strip: Affix::new("0049").expect("valid"),
            add: Affix::new("0").expect("valid"),
            ..NumberRules::default()
        };
        assert_eq!(rules.apply("0049301234"), "0301234");
        assert_eq!(rules.apply("0301234"), "00301234");
    }

    #[test]
    fn steps_run_in_order_normalise_strip_add_rewrite() {
        let rules = NumberRules {
            strip: Affix::new("+49").expect("valid"),
            add: Affix::new("*31#").expect("valid"),
            rewrite: vec![Rewrite::new(r"^\*31#(30.*)$", "*31#0${1}").expect("valid")],
            ..germany()
        };
        // 0301234 → +49301234 → 301234 → *31#301234 → *31#0301234
        assert_eq!(rules.apply("0301234"), "*31#0301234");
    }

    #[test]
    fn rewrite_e164_back_to_national_format() {
        let rules =
            NumberRules { rewrite: vec![Rewrite::new(r"^\+49(.*)$", "0$1").expect("valid")], ..NumberRules::default() };
        assert_eq!(rules.apply("+49301234"), "0301234");
        assert_eq!(rules.apply("+33123456"), "+33123456");
    }

    #[test]
    fn only_the_first_matching_rewrite_applies() {
        let rules = NumberRules {
            rewrite: vec![
                Rewrite::new(r"^\+4930(.*)$", "030$1").expect("valid"),
                Rewrite::new(r"^\+49(.*)$", "0$1").expect("valid"),
                Rewrite::new(r"^0(.*)$", "X$1").expect("valid"),
            ],
            ..NumberRules::default()
        };
        assert_eq!(rules.apply("+4930123"), "030123");
        assert_eq!(rules.apply("+4940123"), "040123");
    }

    #[test]
    fn names_are_never_rewritten() {
        let rules = NumberRules { add: Affix::new("+").expect("valid"), ..germany() };
        assert_eq!(rules.apply("alice"), "alice");
        assert_eq!(rules.apply("anonymous"), "anonymous");
        assert_eq!(rules.apply(""), "");
        assert_eq!(rules.apply("49301234"), "+49301234");
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(matches!(Rewrite::new("^(+49", "0"), Err(NumberRuleError::Regex(_))));
    }

    #[test]
    fn replacement_naming_a_missing_group_is_an_error() {
        let e = Rewrite::new(r"^\+49(.*)$", "0$2").expect_err("one group only");
        assert_eq!(e, NumberRuleError::MissingGroup { replace: "0$2".into(), group: "2".into() });
        let e = Rewrite::new(r"^\+49(.*)$", "$1x").expect_err("$1x names group 1x");
        assert!(e.to_string().contains("${1}x"), "{e}");
        assert!(Rewrite::new(r"^\+49(?P<rest>.*)$", "0${rest}").is_ok());
        assert!(Rewrite::new(r"^\+49(.*)$", "$$0$0${1}").is_ok());
        assert!(Rewrite::new(r"^\+49(?P<rest>.*)$", "0$other").is_err());
    }

    #[test]
    fn affixes_are_number_prefixes() {
        for ok in ["", "+", "0", "+49", "*31#"] {
            assert!(Affix::new(ok).is_ok(), "{ok:?}");
        }
        for bad in ["a", "0+", "++", " 0"] {
            assert_eq!(Affix::new(bad), Err(NumberRuleError::Affix(bad.into())), "{bad:?}");
        }
    }
}
