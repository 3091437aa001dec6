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
