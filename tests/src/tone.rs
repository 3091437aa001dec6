//! Is the received audio the tone that was sent? G.711 payloads of an RTP stream decoded to linear samples, and the
//! dominant frequency checked against the tone's within a relative tolerance (the browser acceptance: within 2%).
//! The WAV writer, the G.711 decoders and the Goertzel scan are in [`crate::baresip`]; the encoder here lets unit
//! tests (and a test that plays a tone as RTP) make PCMU without an outside tool.

use crate::baresip::{alaw_to_linear, dominant_frequency, rms, ulaw_to_linear};
use anyhow::{bail, Result};

/// The G.711 μ-law byte of a linear sample (ITU-T G.711, with the usual bias of 0x84 and clip at 32635).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.abs().min(CLIP) + BIAS;
    let exponent = (7 - (magnitude.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// The linear samples of G.711 RTP payloads of payload type `pt` (0 PCMU, 8 PCMA), in the order given.
pub fn decode_g711(payloads: &[&[u8]], pt: u8) -> Result<Vec<i16>> {
    let decode: fn(u8) -> i16 = match pt {
        0 => ulaw_to_linear,
        8 => alaw_to_linear,
        other => bail!("payload type {other} is not G.711 (0 PCMU, 8 PCMA)"),
    };
    Ok(payloads.iter().flat_map(|p| p.iter().map(|b| decode(*b))).collect())
}

/// What [`check_tone`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneCheck {
    /// The frequency with the most power, Hz.
    pub dominant_hz: f64,
    /// Its distance from the expected tone, relative (0.01 = 1%).
    pub deviation: f64,
    /// Root mean square of the samples (silence is near 0).
    pub rms: f64,
}

/// The dominant frequency of `samples` (at `rate` Hz) against `expected_hz`; `Err` when it is further than
/// `tolerance` (relative) or the samples are silence (RMS under 100), naming what was found.
pub fn check_tone(samples: &[i16], rate: f64, expected_hz: f64, tolerance: f64) -> Result<ToneCheck> {
    if samples.len() < (rate / 10.0) as usize {
        bail!("only {} samples: under 100 ms of audio", samples.len());
    }
    let level = rms(samples);
    if level < 100.0 {
        bail!("{} samples of silence (RMS {level:.1})", samples.len());
    }
    let dominant_hz = dominant_frequency(samples, rate);
    let deviation = (dominant_hz - expected_hz).abs() / expected_hz;
    if deviation > tolerance {
        bail!(
            "dominant frequency {dominant_hz:.1} Hz is {:.1}% from the {expected_hz} Hz tone (allowed {:.1}%)",
            deviation * 100.0,
            tolerance * 100.0
        );
    }
    Ok(ToneCheck { dominant_hz, deviation, rms: level })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, rate: f64, n: usize, amplitude: f64) -> Vec<i16> {
        (0..n).map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin()) as i16).collect()
    }

    #[test]
    fn ulaw_encoding_round_trips_within_the_step_of_its_segment() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        for s in (-32000i16..32000).step_by(97) {
            let back = ulaw_to_linear(linear_to_ulaw(s));
            // A segment's step is 1/16 of its span: the error stays within about 3% of the sample (+ 8 near zero).
            let allowed = i32::from(s).abs() / 32 + 8;
            assert!((i32::from(back) - i32::from(s)).abs() <= allowed, "{s} -> {back}");
        }
    }

    #[test]
    fn a_tone_encoded_to_pcmu_in_rtp_payloads_decodes_to_its_frequency() {
        let tone = sine(1000.0, 8000.0, 8000, 8000.0);
        let payloads: Vec<Vec<u8>> = tone.chunks(160).map(|c| c.iter().map(|s| linear_to_ulaw(*s)).collect()).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let samples = decode_g711(&refs, 0).unwrap();
        assert_eq!(samples.len(), 8000);
        let found = check_tone(&samples, 8000.0, 1000.0, 0.02).unwrap();
        assert!(found.deviation < 0.002, "{found:?}");
        assert!((found.rms - 8000.0 / 2f64.sqrt()).abs() < 200.0, "{found:?}");
        // 440 Hz is not the 1 kHz tone, silence is no tone, PT 9 is not G.711.
        let err = check_tone(&sine(440.0, 8000.0, 8000, 8000.0), 8000.0, 1000.0, 0.02).unwrap_err();
        assert!(err.to_string().contains("440"), "{err}");
        assert!(check_tone(&[0; 8000], 8000.0, 1000.0, 0.02).unwrap_err().to_string().contains("silence"));
        assert!(decode_g711(&refs, 9).is_err());
    }
}
