//! `[ha] accept_plain_peer`, the rolling upgrade from a build without the secured links: a box with the secret
//! speaks to its peer the way the peer speaks ("mirror"): plain heartbeats (beside the sealed ones) and a plain
//! link to a peer heard plain. Sans-IO: the pair's task feeds it what the peer's
//! heartbeats were, the link tasks read what it decided.
//!
//! A sealed heartbeat that verified proves the peer has the secret; from then on plain heartbeats and a plain link
//! from it are refused until this box restarts, so that someone injecting plain datagrams cannot force the pair's
//! links down to plain.

use super::heartbeat_seal::HeartbeatRefusal;

/// How the peer was last heard speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerSpeaks {
    /// Not heard yet: this box speaks sealed (a plain peer's heartbeats tell it otherwise).
    #[default]
    Unknown,
    /// Plain heartbeats (an older build, or a box without a secret).
    Plain,
    /// A sealed heartbeat verified with the pair's key: sticky.
    Sealed,
}

/// The mirror's decisions for one peer.
#[derive(Debug, Clone, Copy)]
pub struct PlainPeer {
    accept_plain: bool,
    speaks: PeerSpeaks,
}

impl PlainPeer {
    /// With `[ha] accept_plain_peer` (for a box with a secret; without one everything is plain anyway).
    pub fn new(accept_plain: bool) -> PlainPeer {
        PlainPeer { accept_plain, speaks: PeerSpeaks::Unknown }
    }

    /// How the peer speaks, as far as this box knows.
    pub fn speaks(&self) -> PeerSpeaks {
        self.speaks
    }

    /// A plain heartbeat arrived: taken (`Ok(true)` when the peer just turned plain, to be logged), or refused.
    pub fn heard_plain(&mut self) -> Result<bool, HeartbeatRefusal> {
        if !self.accept_plain {
            return Err(HeartbeatRefusal::Unsigned);
        }
        match self.speaks {
            PeerSpeaks::Sealed => Err(HeartbeatRefusal::Downgrade),
            PeerSpeaks::Plain => Ok(false),
            PeerSpeaks::Unknown => {
                self.speaks = PeerSpeaks::Plain;
                Ok(true)
            }
        }
    }

    /// A sealed heartbeat verified: the peer has the secret, for good. `true` when that is news.
    pub fn heard_sealed(&mut self) -> bool {
        std::mem::replace(&mut self.speaks, PeerSpeaks::Sealed) != PeerSpeaks::Sealed
    }

    /// Whether this box also sends a plain copy of each heartbeat (a sealed one always goes too). Both while the
    /// peer is plain: a plain peer takes the plain copy (an older build ignores the sealed one), and two boxes with
    /// the setting that heard each other plain still learn that the other has the secret, instead of mirroring
    /// each other plain for ever.
    pub fn send_plain(&self) -> bool {
        self.speaks == PeerSpeaks::Plain
    }
}

/// Whether the active opens the replication link secured, given how the peer speaks: plain only to a peer known
/// to be plain (from its heartbeats) and only with the setting.
pub fn open_secured(accept_plain: bool, speaks: PeerSpeaks) -> bool {
    !(accept_plain && speaks == PeerSpeaks::Plain)
}

/// Whether the standby takes a plain link from the active: with the setting, unless the peer was heard sealed.
pub fn accept_plain_link(accept_plain: bool, speaks: PeerSpeaks) -> bool {
    accept_plain && speaks != PeerSpeaks::Sealed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_peer_is_answered_plain_and_gets_a_plain_link() {
        let mut m = PlainPeer::new(true);
        assert!(!m.send_plain(), "sealed only until the peer is heard");
        assert_eq!(m.heard_plain(), Ok(true), "news the first time (logged)");
        assert_eq!(m.heard_plain(), Ok(false));
        assert!(m.send_plain());
        assert!(!open_secured(true, m.speaks()));
        assert!(accept_plain_link(true, m.speaks()));
    }

    #[test]
    fn a_sealed_peer_is_answered_sealed_and_gets_a_secured_link() {
        let mut m = PlainPeer::new(true);
        assert!(m.heard_sealed());
        assert!(!m.heard_sealed(), "news once");
        assert!(!m.send_plain());
        assert!(open_secured(true, m.speaks()));
        assert!(!accept_plain_link(true, m.speaks()));
    }

    #[test]
    fn a_plain_peer_that_turns_sealed_is_mirrored_sealed() {
        let mut m = PlainPeer::new(true);
        assert_eq!(m.heard_plain(), Ok(true));
        assert!(m.heard_sealed(), "the peer restarted with the secret");
        assert!(!m.send_plain());
        assert!(open_secured(true, m.speaks()));
    }

    #[test]
    fn two_boxes_with_the_setting_that_heard_each_other_plain_go_sealed() {
        let (mut a, mut b) = (PlainPeer::new(true), PlainPeer::new(true));
        assert_eq!((a.heard_plain(), b.heard_plain()), (Ok(true), Ok(true)));
        // Each sends a sealed copy beside the plain one: the first sealed one heard settles it.
        assert!(a.send_plain() && b.send_plain());
        assert!(b.heard_sealed());
        assert_eq!(b.heard_plain(), Err(HeartbeatRefusal::Downgrade), "a's plain copy is refused from now on");
        assert!(!b.send_plain());
        assert!(a.heard_sealed());
        assert!(!a.send_plain());
        assert_eq!((a.speaks(), b.speaks()), (PeerSpeaks::Sealed, PeerSpeaks::Sealed));
    }

    #[test]
    fn a_peer_heard_sealed_is_never_taken_plain_again() {
        let mut m = PlainPeer::new(true);
        m.heard_sealed();
        for _ in 0..3 {
            assert_eq!(m.heard_plain(), Err(HeartbeatRefusal::Downgrade));
        }
        assert!(!m.send_plain(), "injected plain heartbeats do not turn this box plain");
        assert!(!accept_plain_link(true, m.speaks()), "nor the link");
    }

    #[test]
    fn without_the_setting_plain_is_refused_as_before() {
        let mut m = PlainPeer::new(false);
        assert_eq!(m.heard_plain(), Err(HeartbeatRefusal::Unsigned));
        assert!(!m.send_plain());
        assert!(open_secured(false, PeerSpeaks::Plain));
        assert!(!accept_plain_link(false, PeerSpeaks::Unknown));
    }
}
