//! The pair's keys, derived from its shared secret (`[ha] secret_env` / `secret_file`) with HKDF-SHA256 and one
//! label each, so that the link's key and the heartbeats' key are unrelated to each other and to the digest nonces.

use hkdf::Hkdf;
use sha2::Sha256;

/// Keys of one pair. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PairKeys {
    link_psk: [u8; 32],
    heartbeat: [u8; 32],
}

impl std::fmt::Debug for PairKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKeys(***)")
    }
}

impl PairKeys {
    /// Derives the keys from the secret's bytes.
    pub fn derive(secret: &[u8]) -> PairKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"sbc ha pair"), secret);
        let mut keys = PairKeys { link_psk: [0; 32], heartbeat: [0; 32] };
        hk.expand(b"replication link psk v1", &mut keys.link_psk).expect("32 bytes is a valid HKDF length");
        hk.expand(b"heartbeat mac v1", &mut keys.heartbeat).expect("32 bytes is a valid HKDF length");
        keys
    }

    /// The Noise pre-shared key of the replication link.
    pub fn link_psk(&self) -> &[u8; 32] {
        &self.link_psk
    }

    /// The heartbeats' HMAC key.
    pub fn heartbeat(&self) -> &[u8; 32] {
        &self.heartbeat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_and_heartbeat_keys_differ_and_depend_on_the_secret() {
        let a = PairKeys::derive(b"one secret");
        assert_ne!(a.link_psk(), a.heartbeat());
        assert_eq!(a, PairKeys::derive(b"one secret"));
        assert_ne!(a.link_psk(), PairKeys::derive(b"another").link_psk());
        assert_eq!(format!("{a:?}"), "PairKeys(***)");
    }
}
