//! The canary call of a trunk (`[trunk.canary]`): a synthetic call placed on a timer to a number of the carrier's,
//! to find a trunk that answers OPTIONS yet fails calls or media before customers do. Run by
//! [`endpoint`](crate::endpoint)'s canary module.

use std::time::Duration;

/// What a canary expects of the far end's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryMedia {
    /// The number echoes (or plays) RTP: a canary that gets too little back failed its media check.
    Echo,
    /// No media is expected back: an answer is success.
    None,
}

impl CanaryMedia {
    /// Its name in the configuration.
    pub fn label(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::None => "none",
        }
    }
}

/// The canary call of one trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// The called number (user part of the Request-URI and To), sent as configured: number rules do not apply, so
    /// the number is the one the carrier expects.
    pub number: String,
    /// Time from one canary's start to the next. The first starts one `every` after the SBC starts, so a restart
    /// loop does not flood the carrier.
    pub every: Duration,
    /// How long an answered canary stays up (sending RTP) before we hang up.
    pub hold: Duration,
    /// How long to wait for the answer before giving up (CANCEL after a provisional). Default 10 s.
    pub answer_timeout: Duration,
    /// What is expected back.
    pub media: CanaryMedia,
    /// The calling number (user of From). Default `canary`.
    pub from: String,
}

impl CanaryConfig {
    /// The share of the RTP packets sent that must come back for an `echo` canary to pass: an echo returns nearly
    /// all of them, so half leaves room for loss and for the first packets sent before the far end listened.
    pub const ECHO_MIN_SHARE: f64 = 0.5;

    /// Whether `received` of `sent` packets pass the media check.
    pub fn media_ok(&self, sent: u64, received: u64) -> bool {
        match self.media {
            CanaryMedia::None => true,
            CanaryMedia::Echo => sent > 0 && received as f64 >= sent as f64 * Self::ECHO_MIN_SHARE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(media: CanaryMedia) -> CanaryConfig {
        CanaryConfig {
            number: "echo".into(),
            every: Duration::from_secs(60),
            hold: Duration::from_secs(3),
            answer_timeout: Duration::from_secs(10),
            media,
            from: "canary".into(),
        }
    }

    #[test]
    fn echo_needs_half_of_the_packets_back() {
        let c = cfg(CanaryMedia::Echo);
        assert!(c.media_ok(150, 149));
        assert!(c.media_ok(150, 75));
        assert!(!c.media_ok(150, 74));
        assert!(!c.media_ok(150, 0));
        assert!(!c.media_ok(0, 0), "nothing sent is no proof of media");
    }

    #[test]
    fn no_media_expected_passes_whatever_came_back() {
        assert!(cfg(CanaryMedia::None).media_ok(150, 0));
    }
}
