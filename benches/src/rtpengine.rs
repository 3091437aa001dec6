//! The `rtpengine` path of `sbc-bench media`: rtpengine 10.5 (Debian's `rtpengine-daemon`, user space,
//! `--table=-1`) in the SBC namespace, pinned to the relay's core, with the same streams and traffic as the `relay`
//! path, so that its packets per CPU-second and its latency are the baseline of ours in the same run.
//!
//! Per step, one call over NG ([`tests::rtpengine::RtpEngine::call`]): an offer naming the senders in A (leg A on
//! interface `a`, 198.18.1.1), an answer naming the sinks in B (interface `b`, 198.18.2.1), `trust-address`; the
//! senders send to the ports of the answer's SDP. Nothing needs priming: rtpengine forwards A's packets to the
//! address the answer named from the first one (checked: 500 of 500 packets arrive without a packet from B), as
//! our relay forwards to its peer. The call is deleted after the step (`--delete-delay=0` frees its ports).
//! CPU: rtpengine's utime + stime over the step, all its threads (they all run on the pinned core).

use crate::media::{
    check_stop, finish_step, measure, progress, sink_core, sock, Ladder, Options, Step, Target, GEN_PORT, RELAY_CORE,
};
use anyhow::{bail, Context, Result};
use tests::netns::{Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::rtpengine::{RtpEngine, StreamPeers};

/// Climbs the ladder with a fresh rtpengine (or, `ours`, a fresh `media-relay --ng` in user space: the `ng` path),
/// then measures latency at half its ceiling.
pub fn ladder(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder, ours: bool) -> Result<()> {
    let core = pin.then_some(RELAY_CORE);
    let mut engine = if ours {
        let name = format!("media-relay-ng-run{}", ladder.run);
        RtpEngine::start_media_relay(
            topo,
            Host::Sbc,
            &name,
            [SBC_A.into(), SBC_B.into()],
            "off",
            core,
            &opts.relay_binary,
        )
        .context("starting media-relay --ng")?
    } else {
        let name = format!("rtpengine-run{}", ladder.run);
        RtpEngine::start(topo, Host::Sbc, &name, SBC_A.into(), SBC_B.into(), core).context("starting rtpengine")?
    };
    for (i, &rate) in opts.rates.iter().enumerate() {
        check_stop()?;
        let step = step(topo, opts, pin, &mut engine, &format!("run{}-step{i}", ladder.run), rate, ours);
        eprintln!("{}", progress(opts.runs, ladder, &step));
        ladder.steps.push(step);
        if engine.process.try_wait()?.is_some() {
            bail!("the NG relay exited during run {} at {rate} pps:\n{}", ladder.run, engine.process.output_tail());
        }
        if ladder.should_stop() {
            break;
        }
    }
    if let Some(rate) = ladder.half_ceiling_rate() {
        check_stop()?;
        let step = step(topo, opts, pin, &mut engine, &format!("run{}-latency", ladder.run), rate, ours);
        eprintln!("{} (latency at half the ceiling)", progress(opts.runs, ladder, &step));
        ladder.latency_step = Some(step);
    }
    engine.stop()
}

/// One step: a call with one stream per `--streams`, the traffic, the delete.
fn step(
    topo: &Topology,
    opts: &Options,
    pin: bool,
    engine: &mut RtpEngine,
    call_id: &str,
    rate: u32,
    ours: bool,
) -> Step {
    let mut step = Step { rate, ..Step::default() };
    let result = (|| -> Result<()> {
        let peers: Vec<StreamPeers> = (0..opts.streams)
            .map(|i| StreamPeers { a: sock(CALLER, GEN_PORT + i), b: sock(CARRIER_B, GEN_PORT + i) })
            .collect();
        let ports = engine.call(call_id, &peers).context("offer/answer over NG")?;
        let targets: Vec<_> = ports.iter().map(|p| p.a_side).collect();
        let pid = Some(engine.process.id());
        let sinks = sink_core(if ours { Target::Ng } else { Target::Rtpengine });
        let measured = measure(topo, opts, pin, &targets, pid, true, sinks, false, None, &mut step);
        // Delete whatever happened; its totals say what rtpengine itself received.
        let deleted = engine.delete(call_id).context("delete over NG")?;
        step.relay_received = deleted
            .body
            .get("totals")
            .and_then(|t| t.get("RTP"))
            .and_then(|r| r.get("packets"))
            .and_then(|p| p.as_int())
            .and_then(|p| u64::try_from(p).ok());
        measured
    })();
    finish_step(&mut step, result);
    step
}
