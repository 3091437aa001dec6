//! baresip (Debian `baresip`) as a real SIP phone inside a test namespace, headless: no sound card, its
//! microphone a WAV file (`aufile`), its loudspeaker a bridge nobody listens to (`aubridge`), and what it decoded
//! from the network recorded by `sndfile` (`*-dec.wav`, one per call) so a test can tell that audio arrived.
//!
//! Each phone gets its own configuration directory (`baresip -f DIR`) with one account and no registration;
//! the caller dials with `-e /dial URI` and hangs up by quitting after `-t SECONDS` (which sends BYE).

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
        std::fs::write(dir.join("accounts"), format!("<sip:{}@{}>;regint=0{answer}\n", self.user, self.ip))?;
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
}
