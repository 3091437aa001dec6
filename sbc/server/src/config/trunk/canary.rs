//! `[trunk.canary]`: the synthetic call placed to a carrier on a timer ([`CanaryConfig`]).

use super::super::routing::Check;
use sbc_proto::routing::{CanaryConfig, CanaryMedia};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawCanary {
    number: Spanned<String>,
    every: Option<Spanned<String>>,
    hold: Option<Spanned<String>>,
    answer_timeout: Option<Spanned<String>>,
    media: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
}

/// Default time between two canaries of a trunk: often enough to beat customers to a failure, rare enough that
/// a carrier's call records do not fill with them (288 a day).
pub const DEFAULT_EVERY: Duration = Duration::from_secs(300);
/// Default time an answered canary stays up: long enough for 150 RTP packets each way.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(3);
/// Default wait for the answer: an automatic test number answers at once; ten seconds covers a slow carrier.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The canary of trunk `i`, whose address gateways are `gateways` many. `None` after an error (pushed to `c`).
pub(super) fn canary(
    c: &mut Check<'_, '_>,
    i: usize,
    raw: &Spanned<RawCanary>,
    gateways: usize,
) -> Option<CanaryConfig> {
    let r = raw.get_ref();
    let key = |k: &str| format!("trunk[{i}].canary.{k}");
    let before = c.errors.len();
    if gateways == 0 {
        c.error(raw.span(), &format!("trunk[{i}].canary"), "the trunk has no gateway given by address to call");
    }
    let number = r.number.get_ref().clone();
    if let Err(m) = user_part(&number) {
        c.error(r.number.span(), &key("number"), &m);
    }
    let from = r.from.as_ref().map_or_else(|| "canary".to_owned(), |f| f.get_ref().clone());
    if let (Some(f), Err(m)) = (&r.from, user_part(&from)) {
        c.error(f.span(), &key("from"), &m);
    }
    let mut duration = |v: &Option<Spanned<String>>, k: &str, default: Duration| match v {
        Some(s) => c.v.duration(s, &key(k)).map_err(|e| c.errors.push(e)).unwrap_or(default),
        None => default,
    };
    let every = duration(&r.every, "every", DEFAULT_EVERY);
    let hold = duration(&r.hold, "hold", DEFAULT_HOLD);
    let answer_timeout = duration(&r.answer_timeout, "answer_timeout", DEFAULT_ANSWER_TIMEOUT);
    if hold + answer_timeout >= every {
        let span = r.every.as_ref().map_or_else(|| raw.span(), |s| s.span());
        let message = format!(
            "must be longer than hold + answer_timeout ({} ms): one canary ends before the next starts",
            (hold + answer_timeout).as_millis()
        );
        c.error(span, &key("every"), &message);
    }
    let media = match &r.media {
        None => CanaryMedia::None,
        Some(m) => match m.get_ref().as_str() {
            "echo" => CanaryMedia::Echo,
            "none" => CanaryMedia::None,
            other => {
                let message = format!("\"{other}\": expected \"echo\" (the number echoes RTP) or \"none\"");
                c.error(m.span(), &key("media"), &message);
                CanaryMedia::None
            }
        },
    };
    (c.errors.len() == before).then_some(CanaryConfig { number, every, hold, answer_timeout, media, from })
}

/// A user part we put in a URI as is: digits, letters and the few marks numbers and test names use.
fn user_part(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-_.*#".contains(&b)) {
        Ok(())
    } else {
        Err(format!("\"{s}\": use digits, letters and + - _ . * # (it goes into the Request-URI as is)"))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use sbc_proto::routing::{CanaryConfig, CanaryMedia};
    use std::path::Path;
    use std::time::Duration;

    fn canary_of(table: &str) -> Result<Option<CanaryConfig>, String> {
        let text = format!("[[trunk]]\nname = \"carrier-b\"\ngateways = [\"udp:198.18.2.10:5060\"]\n{table}\n");
        Config::parse(&text, Path::new("test.toml")).map(|c| c.plan.trunks[0].canary.clone()).map_err(|e| e.to_string())
    }

    #[test]
    fn canary_keys_build_the_config_with_defaults_for_the_rest() {
        let c = canary_of(r#"canary = { number = "+4930999", every = "1m", media = "echo" }"#).unwrap().unwrap();
        assert_eq!(c.number, "+4930999");
        assert_eq!(c.every, Duration::from_secs(60));
        assert_eq!((c.hold, c.answer_timeout), (super::DEFAULT_HOLD, super::DEFAULT_ANSWER_TIMEOUT));
        assert_eq!((c.media, c.from.as_str()), (CanaryMedia::Echo, "canary"));
        let c =
            canary_of("[trunk.canary]\nnumber = \"echo\"\nhold = \"2s\"\nanswer_timeout = \"5s\"\nfrom = \"probe-1\"")
                .unwrap()
                .unwrap();
        assert_eq!(
            (c.every, c.hold, c.media, c.from.as_str()),
            (super::DEFAULT_EVERY, Duration::from_secs(2), CanaryMedia::None, "probe-1")
        );
        assert_eq!(canary_of("").unwrap(), None, "no canary unless configured");
    }

    #[test]
    fn bad_canary_keys_are_refused_with_key_and_line() {
        let e = canary_of("canary = { number = \"echo\", media = \"loud\" }").unwrap_err();
        assert!(e.contains("test.toml:4") && e.contains("trunk[0].canary.media") && e.contains("\"echo\""), "{e}");
        let e = canary_of("canary = { number = \"sip:x@y\" }").unwrap_err();
        assert!(e.contains("trunk[0].canary.number"), "{e}");
        let e = canary_of("canary = { number = \"echo\", every = \"5s\", hold = \"3s\", answer_timeout = \"2s\" }")
            .unwrap_err();
        assert!(e.contains("trunk[0].canary.every") && e.contains("hold + answer_timeout"), "{e}");
        let e = canary_of("canary = { number = \"echo\", hold = \"0s\" }").unwrap_err();
        assert!(e.contains("trunk[0].canary.hold"), "{e}");
        let e = canary_of("canary = { numbre = \"echo\" }").unwrap_err();
        assert!(e.contains("numbre"), "unknown keys are refused: {e}");
    }

    #[test]
    fn canary_needs_a_gateway_by_address() {
        let text =
            "[[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10\"] }\ncanary = { number = \"echo\" }\n";
        let e = Config::parse(text, Path::new("test.toml")).unwrap_err().to_string();
        assert!(e.contains("trunk[0].canary") && e.contains("no gateway"), "{e}");
    }
}
