//! baresip (Debian `baresip`) as a real SIP phone inside a test namespace, headless: no sound card, its
//! microphone a WAV file (`aufile`), its loudspeaker a bridge nobody listens to (`aubridge`), and what it decoded
//! from the network recorded by `sndfile` (`*-dec.wav`, one per call) so a test can tell that audio arrived.
//!
//! Each phone gets its own configuration directory (`baresip -f DIR`) with one account and no registration;
//! the caller dials with `-e /dial URI` and hangs up by quitting after `-t SECONDS` (which sends BYE). With
//! [`Phone::mediaenc`] its account encrypts media (`srtp.so`: `srtp-mand` is SDES-SRTP, RTP/SAVP, required).

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::netns::{Host, Process, Topology};

/// One baresip instance's settings.
#[derive(Debug, Clone)]
pub struct Phone {
    /// A name for its directory and log files.
    pub name: String,
    /// The address it listens on (SIP on port 5060) and puts into its SDP.
    pub ip: Ipv4Addr,
    /// The user part of its account, `sip:USER@IP`.
    pub user: String,
    /// Answer incoming calls at once (`answermode=auto`).
    pub auto_answer: bool,
    /// Offer and accept RTCP multiplexed on the RTP port (RFC 5761, `rtcp_mux yes`).
    pub rtcp_mux: bool,
    /// The WAV file (8 kHz, 16-bit mono) it sends as its microphone.
    pub source: PathBuf,
    /// The account's media encryption (`mediaenc=`): `srtp-mand` (SDES, RTP/SAVP, mandatory), `srtp` (best
    /// effort, RTP/AVP with keys), `srtp-mandf` (RTP/SAVPF); `None`: plain RTP.
    pub mediaenc: Option<String>,
}

impl Phone {
    /// Writes `config` and `accounts` into `dir` (created), recordings going to `dir/rec`.
    pub fn write_config(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir.join("rec")).with_context(|| format!("creating {}", dir.display()))?;
        let config = format!(
            "poll_method epoll\n\
             sip_listen {ip}:5060\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_source aufile,{source}\n\
             audio_level no\n\
             rtp_ports 10000-10099\n\
             rtcp_mux {mux}\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module aubridge.so\n\
             module sndfile.so\n\
             module srtp.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             snd_path {rec}\n",
            ip = self.ip,
            source = self.source.display(),
            mux = if self.rtcp_mux { "yes" } else { "no" },
            rec = dir.join("rec").display(),
        );
        std::fs::write(dir.join("config"), config)?;
        let answer = if self.auto_answer { ";answermode=auto" } else { "" };
        let mediaenc = self.mediaenc.as_ref().map(|m| format!(";mediaenc={m}")).unwrap_or_default();
        std::fs::write(dir.join("accounts"), format!("<sip:{}@{}>;regint=0{answer}{mediaenc}\n", self.user, self.ip))?;
        Ok(())
    }

    /// Starts it in `host` of `topo` with its configuration under the topology's directory, quitting after
    /// `quit_after` seconds; `dial` is a URI to call at once. Killed on drop (the [`Process`]).
    pub fn spawn(
        &self,
        topo: &Topology,
        host: Host,
        quit_after: u64,
        dial: Option<&str>,
    ) -> Result<(Process, PathBuf)> {
        let baresip = crate::require_tool("baresip", "baresip");
        let dir = topo.dir().join(format!("baresip-{}", self.name));
        self.write_config(&dir)?;
        let mut args = vec!["-f".to_owned(), dir.display().to_string(), "-t".to_owned(), quit_after.to_string()];
        if let Some(uri) = dial {
            args.push("-e".to_owned());
            args.push(format!("/dial {uri}"));
        }
        let p = topo.spawn(host, &format!("baresip-{}", self.name), baresip, &args)?;
        Ok((p, dir))
    }
}

/// The recording of what the phone configured in `dir` decoded from the network in its first call.
pub fn received_audio(dir: &Path) -> Result<PathBuf> {
    let rec = dir.join("rec");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&rec)
        .with_context(|| format!("reading {}", rec.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    found.sort();
    found.into_iter().next().with_context(|| format!("no *-dec.wav recording in {}", rec.display()))
}

/// A WAV file (RIFF, PCM 16-bit mono at `rate` Hz) of a sine tone of `hz` Hz, amplitude `amplitude`, lasting
/// `seconds`.
pub fn write_tone(path: &Path, rate: u32, hz: f64, amplitude: f64, seconds: u32) -> Result<()> {
    let n = rate * seconds;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let v = amplitude * (2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(rate)).sin();
        data.extend_from_slice(&(v as i16).to_le_bytes());
    }
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).with_context(|| format!("writing {}", path.display()))
}

/// The samples of a 16-bit PCM WAV file's `data` chunk (the chunk's size field is ignored: a recording cut short
/// may not have it written; every whole sample after the chunk header counts).
pub fn read_samples(path: &Path) -> Result<Vec<i16>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("{} is not a RIFF/WAVE file", path.display());
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        if &bytes[at..at + 4] == b"data" {
            let data = &bytes[at + 8..];
            return Ok(data.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]])).collect());
        }
        at += 8 + size + size % 2;
    }
    bail!("{} has no data chunk", path.display())
}

/// The linear sample of a G.711 μ-law byte (ITU-T G.711; PCMU, RTP payload type 0).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// The linear sample of a G.711 A-law byte (PCMA, RTP payload type 8).
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0f);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// Power of `samples` at `hz` (Goertzel's algorithm), for a sample rate of `rate` Hz.
pub fn goertzel(samples: &[i16], rate: f64, hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The frequency with the most power in `samples` (sampled at `rate` Hz) between 50 Hz and `rate` / 2: a 5 Hz
/// scan, then 0.25 Hz steps around the best. A small DFT is all a test needs to name a tone.
pub fn dominant_frequency(samples: &[i16], rate: f64) -> f64 {
    let best = |from: f64, to: f64, step: f64| {
        let mut f = from;
        let (mut best, mut power) = (from, f64::MIN);
        while f <= to {
            let p = goertzel(samples, rate, f);
            if p > power {
                (best, power) = (f, p);
            }
            f += step;
        }
        best
    };
    let coarse = best(50.0, rate / 2.0 - 50.0, 5.0);
    best(coarse - 5.0, coarse + 5.0, 0.25)
}

/// Root mean square of `samples` (0 for none).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_round_trips_with_the_rms_of_a_sine() {
        let path = std::env::temp_dir().join(format!("tone-{}.wav", std::process::id()));
        write_tone(&path, 8000, 440.0, 8000.0, 1).unwrap();
        let samples = read_samples(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(samples.len(), 8000);
        let r = rms(&samples);
        assert!((r - 8000.0 / 2f64.sqrt()).abs() < 50.0, "{r}");
        assert_eq!(rms(&[]), 0.0);
    }

    #[test]
    fn g711_decodes_to_the_tone_it_encodes_and_the_tone_is_found() {
        // μ-law: 0xff and 0x7f are the two zeros, 0x00 the largest negative sample; A-law 0xd5 is +8.
        assert_eq!((ulaw_to_linear(0xff), ulaw_to_linear(0x7f), ulaw_to_linear(0x00)), (0, 0, -32124));
        assert_eq!((alaw_to_linear(0xd5), alaw_to_linear(0x55), alaw_to_linear(0xaa)), (8, -8, 32256));
        let tone: Vec<i16> = (0..8000)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 8000.0).sin()) as i16)
            .collect();
        let f = dominant_frequency(&tone, 8000.0);
        assert!((f - 1000.0).abs() < 1.0, "{f}");
        let f = dominant_frequency(&tone[..4000].iter().map(|s| s / 2).collect::<Vec<_>>(), 8000.0);
        assert!((f - 1000.0).abs() < 2.0, "{f}");
    }
}
