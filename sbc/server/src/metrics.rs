//! Metric names, descriptions, and the small helpers the driver uses to record them.
//!
//! Label values are bounded: methods outside the known set are `other`, reasons are static strings.

use crate::transport::stream::{CloseReason, Refusal, SourceClass};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// SIP messages received: `kind` = request|response, `method`, `status` (responses only).
pub const MESSAGES_IN: &str = "sbc_sip_messages_in_total";
/// SIP messages sent, same labels.
pub const MESSAGES_OUT: &str = "sbc_sip_messages_out_total";
/// Messages that failed to parse, by `transport` and `reason`.
pub const PARSE_ERRORS: &str = "sbc_sip_parse_errors_total";
/// Transactions created, by `kind` (ict, nict, ist, nist).
pub const TRANSACTIONS: &str = "sbc_sip_transactions_total";
/// Transactions alive now, by `kind`.
pub const TRANSACTIONS_ACTIVE: &str = "sbc_sip_transactions_active";
/// Retransmissions sent (`out`) and absorbed (`in`).
pub const RETRANSMISSIONS: &str = "sbc_sip_retransmissions_total";
/// Open TCP connections.
pub const TCP_CONNECTIONS_ACTIVE: &str = "sbc_tcp_connections_active";
/// TCP connections refused at accept, by `reason` (`per_source`, `trunk_reserve`, `max_connections`).
pub const TCP_CONNECTIONS_REJECTED: &str = "sbc_tcp_connections_rejected_total";
/// TCP connections closed, by `reason` (`closed_by_peer`, `first_message_timeout`, `message_timeout`, `idle`, ...).
pub const TCP_CONNECTIONS_CLOSED: &str = "sbc_tcp_connections_closed_total";
/// Sources (IPv4 addresses, IPv6 /64s) with at least one open TCP connection.
pub const TCP_SOURCES_ACTIVE: &str = "sbc_tcp_sources_active";
/// The most TCP connections one source held open at once since the start, by `class` (`trunk`, `other`): shows
/// that the per-source limits held.
pub const TCP_SOURCE_PEAK: &str = "sbc_tcp_source_connections_peak";
/// Messages dropped on purpose, by `reason`.
pub const DROPPED: &str = "sbc_messages_dropped_total";

/// Installs the Prometheus recorder and describes every metric. Call once, before anything records.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe_counter!(MESSAGES_IN, "SIP messages received, retransmissions included");
    describe_counter!(MESSAGES_OUT, "SIP messages sent, retransmissions included");
    describe_counter!(PARSE_ERRORS, "SIP messages that failed to parse");
    describe_counter!(TRANSACTIONS, "SIP transactions created");
    describe_gauge!(TRANSACTIONS_ACTIVE, "SIP transactions alive");
    describe_counter!(RETRANSMISSIONS, "SIP retransmissions sent (out) or absorbed (in)");
    describe_gauge!(TCP_CONNECTIONS_ACTIVE, "open SIP TCP connections");
    describe_counter!(TCP_CONNECTIONS_REJECTED, "SIP TCP connections refused at accept, by reason");
    describe_counter!(TCP_CONNECTIONS_CLOSED, "SIP TCP connections closed, by reason");
    describe_gauge!(TCP_SOURCES_ACTIVE, "sources with an open SIP TCP connection");
    describe_gauge!(TCP_SOURCE_PEAK, "most SIP TCP connections one source held at once, by class");
    describe_counter!(DROPPED, "SIP messages dropped on purpose");
    // Zero-valued series from the start, so dashboards and alerts see them before the first event.
    counter!(DROPPED, "reason" => "udp_too_large").absolute(0);
    gauge!(TCP_CONNECTIONS_ACTIVE).set(0.0);
    gauge!(TCP_SOURCES_ACTIVE).set(0.0);
    for r in Refusal::ALL {
        counter!(TCP_CONNECTIONS_REJECTED, "reason" => r.label()).absolute(0);
    }
    for r in CloseReason::ALL {
        counter!(TCP_CONNECTIONS_CLOSED, "reason" => r.label()).absolute(0);
    }
    for class in [SourceClass::Trunk, SourceClass::Other] {
        gauge!(TCP_SOURCE_PEAK, "class" => class.label()).set(0.0);
    }
    describe_tls();
    describe_ws();
    Ok(handle)
}

/// The WebSocket series (RFC 7118 listeners), zero-valued from the start.
fn describe_ws() {
    use crate::transport::stream::UpgradeRefusal;
    use crate::transport::ws::{CLOSES, CRLF_PONGS, TOO_LARGE, UPGRADES, UPGRADES_REFUSED};
    describe_counter!(UPGRADES, "WebSocket upgrades that became SIP connections, by transport");
    describe_counter!(CRLF_PONGS, "Double-CRLF keep-alives in WebSocket messages answered with a CRLF, by transport");
    describe_counter!(CLOSES, "WebSocket closing handshakes, by transport and whether they completed in time");
    describe_counter!(UPGRADES_REFUSED, "WebSocket upgrades refused, by reason");
    describe_counter!(TOO_LARGE, "WebSocket messages over sip.max_message_size (connection closed), by transport");
    for r in UpgradeRefusal::ALL {
        counter!(UPGRADES_REFUSED, "reason" => r.label()).absolute(0);
    }
    for t in ["ws", "wss"] {
        counter!(UPGRADES, "transport" => t).absolute(0);
        counter!(TOO_LARGE, "transport" => t).absolute(0);
        counter!(CRLF_PONGS, "transport" => t).absolute(0);
        for clean in ["yes", "no"] {
            counter!(CLOSES, "transport" => t, "clean" => clean).absolute(0);
        }
    }
}

/// The TLS and outbound-connection series, zero-valued from the start.
fn describe_tls() {
    use crate::tls::failure::REASONS;
    use crate::tls::reload::RELOADS;
    use crate::transport::dial::CONNECT_FAILURES;
    use crate::transport::tls::{HANDSHAKES, HANDSHAKE_FAILURES};
    describe_counter!(HANDSHAKES, "TLS handshakes completed, by direction (in: clients, out: gateways)");
    describe_counter!(HANDSHAKE_FAILURES, "TLS handshakes failed, by direction and reason");
    describe_counter!(CONNECT_FAILURES, "connections to tcp: and tls: gateways that could not be opened, by reason");
    describe_counter!(RELOADS, "TLS configurations rebuilt after their files changed, by result (ok, error)");
    for direction in ["in", "out"] {
        counter!(HANDSHAKES, "direction" => direction).absolute(0);
    }
    for reason in ["certificate_name", "certificate_untrusted", "no_client_certificate", "timeout"] {
        for direction in ["in", "out"] {
            counter!(HANDSHAKE_FAILURES, "direction" => direction, "reason" => reason).absolute(0);
        }
    }
    for transport in ["tcp", "tls"] {
        for reason in REASONS.into_iter().take(4) {
            counter!(CONNECT_FAILURES, "transport" => transport, "reason" => reason).absolute(0);
        }
    }
    for result in ["ok", "error"] {
        counter!(RELOADS, "result" => result).absolute(0);
    }
}

/// A message received.
pub fn message_in(method: &'static str, status: Option<u16>) {
    message(MESSAGES_IN, method, status);
}

/// A message sent.
pub fn message_out(method: &'static str, status: Option<u16>) {
    message(MESSAGES_OUT, method, status);
}

fn message(name: &'static str, method: &'static str, status: Option<u16>) {
    match status {
        None => counter!(name, "kind" => "request", "method" => method).increment(1),
        Some(s) => counter!(name, "kind" => "response", "method" => method, "status" => s.to_string()).increment(1),
    }
}

/// A parse error.
pub fn parse_error(transport: &'static str, reason: &'static str) {
    counter!(PARSE_ERRORS, "transport" => transport, "reason" => reason).increment(1);
}

/// A transaction created.
pub fn transaction_started(kind: &'static str) {
    counter!(TRANSACTIONS, "kind" => kind).increment(1);
    gauge!(TRANSACTIONS_ACTIVE, "kind" => kind).increment(1.0);
}

/// A transaction ended.
pub fn transaction_ended(kind: &'static str) {
    gauge!(TRANSACTIONS_ACTIVE, "kind" => kind).decrement(1.0);
}

/// A retransmission.
pub fn retransmission(direction: &'static str) {
    counter!(RETRANSMISSIONS, "direction" => direction).increment(1);
}

/// A message dropped on purpose.
pub fn dropped(reason: &'static str) {
    counter!(DROPPED, "reason" => reason).increment(1);
}

/// Calls in progress per trunk (inbound and outbound legs).
pub const CALLS_ACTIVE: &str = "sbc_calls_active";
/// Calls received per inbound trunk.
pub const CALLS_IN: &str = "sbc_calls_in_total";
/// Call attempts per carrier trunk (each failover is one more).
pub const CALL_ATTEMPTS: &str = "sbc_call_attempts_total";
/// Calls answered per carrier trunk. ASR = answered / attempts.
pub const CALLS_ANSWERED: &str = "sbc_calls_answered_total";
/// Attempts failed per carrier trunk, by final `status` (408 timeout, 503 transport error). NER counts the
/// statuses that are the network's fault (408, 5xx) against attempts.
pub const CALLS_FAILED: &str = "sbc_calls_failed_total";
/// Final failures sent to callers, by `status`.
pub const CALLS_REJECTED: &str = "sbc_calls_rejected_total";
/// INVITEs from sources that are no trunk.
pub const UNKNOWN_SOURCE: &str = "sbc_unknown_source_total";
/// Calls refused at a trunk's limit, by `which` (calls, cps).
pub const TRUNK_LIMIT: &str = "sbc_trunk_limit_total";
/// Trunks a route left out, by `reason`.
pub const TRUNK_SKIPPED: &str = "sbc_trunk_skipped_total";

/// 1 while a trunk has a gateway answering its OPTIONS probes (or is not probed), else 0.
pub const TRUNK_UP: &str = "sbc_trunk_up";

/// INVITEs challenged (407) for missing, wrong or stale credentials, per trunk with `inbound_auth`.
pub const AUTH_CHALLENGES: &str = "sbc_auth_challenges_total";

/// Calls a standby took over from its failed or demoted peer, by `state`: `answered` (adopted) or `setup` (still
/// being set up, resumed where the peer left it).
pub const HA_CALLS_TAKEN_OVER: &str = "sbc_ha_calls_taken_over_total";

/// Admin API requests answered with an error, by HTTP `status` (401: no or a wrong bearer token).
pub const API_ERRORS: &str = "sbc_api_errors_total";

/// 1 while the admin API has taken a trunk out of routing (`POST /trunks/{name}/disable`), else 0.
pub const TRUNK_ADMIN_DISABLED: &str = "sbc_trunk_admin_disabled";

/// Describes the call metrics and creates their zero series for every trunk.
pub fn describe_calls(trunks: &[String]) {
    describe_gauge!(CALLS_ACTIVE, "calls in progress per trunk");
    describe_counter!(HA_CALLS_TAKEN_OVER, "calls a standby took over from its peer, by state (answered, setup)");
    describe_counter!(CALLS_IN, "calls received per inbound trunk");
    describe_counter!(CALL_ATTEMPTS, "call attempts per carrier trunk");
    describe_counter!(CALLS_ANSWERED, "calls answered per carrier trunk");
    describe_counter!(CALLS_FAILED, "call attempts failed per carrier trunk, by final status");
    describe_counter!(CALLS_REJECTED, "final failures sent to callers, by status");
    describe_counter!(UNKNOWN_SOURCE, "INVITEs from sources that are no trunk");
    describe_counter!(TRUNK_LIMIT, "calls refused at a trunk limit");
    describe_counter!(TRUNK_SKIPPED, "trunks left out of a route");
    counter!(UNKNOWN_SOURCE).absolute(0);
    describe_gauge!(TRUNK_UP, "1 while a trunk answers its probes");
    describe_counter!(AUTH_CHALLENGES, "INVITEs challenged for credentials");
    describe_counter!(API_ERRORS, "admin API requests answered with an error, by status");
    describe_gauge!(TRUNK_ADMIN_DISABLED, "1 while the admin API has taken the trunk out of routing");
    for t in trunks {
        trunk_series(t);
    }
}

/// Creates the zero series of trunk `t` (at start, and for a trunk a reload adds).
pub fn trunk_series(t: &str) {
    gauge!(TRUNK_ADMIN_DISABLED, "trunk" => t.to_owned()).set(0.0);
    gauge!(TRUNK_UP, "trunk" => t.to_owned()).set(1.0);
    gauge!(CALLS_ACTIVE, "trunk" => t.to_owned()).set(0.0);
    counter!(CALL_ATTEMPTS, "trunk" => t.to_owned()).absolute(0);
    counter!(CALLS_ANSWERED, "trunk" => t.to_owned()).absolute(0);
}

/// 1 while a trunk's registration with its carrier is held, else 0 (the trunk is down), per registering trunk.
pub const REGISTRATION_STATE: &str = "sbc_registration_state";
/// REGISTERs ended, per trunk and `result` (`ok`, `challenged`, `forbidden`, `auth_failed`, `client_error`,
/// `server_error`, `rejected`, `timeout`, `expired`, `no_route`, `unregistered`).
pub const REGISTRATIONS: &str = "sbc_registrations_total";

/// Describes the registration metrics and creates their series for every registering trunk: not registered yet.
pub fn describe_registrations(trunks: &[String]) {
    describe_gauge!(REGISTRATION_STATE, "1 while the trunk is registered with its carrier");
    describe_counter!(REGISTRATIONS, "REGISTERs ended, by trunk and result");
    for t in trunks {
        gauge!(REGISTRATION_STATE, "trunk" => t.clone()).set(0.0);
        for result in ["ok", "forbidden", "timeout"] {
            counter!(REGISTRATIONS, "trunk" => t.clone(), "result" => result).absolute(0);
        }
    }
}

/// Bindings our registrar holds now (`[registrar]`), over all users.
pub const REGISTRAR_BINDINGS: &str = "sbc_registrar_bindings";
/// REGISTERs to our registrar, by `result` (`ok`, `challenged`, `stale`, `forbidden`, `wrong_domain`,
/// `interval_too_brief`, `bad_request`, `out_of_order`).
pub const REGISTRAR_REGISTERS: &str = "sbc_registrar_registers_total";

/// Describes the registrar's metrics and creates their series at zero (with `[registrar]` only).
pub fn describe_registrar() {
    describe_gauge!(REGISTRAR_BINDINGS, "bindings of registered users held by our registrar");
    describe_counter!(REGISTRAR_REGISTERS, "REGISTERs to our registrar, by result");
    gauge!(REGISTRAR_BINDINGS).set(0.0);
    for result in ["ok", "challenged", "stale", "forbidden"] {
        counter!(REGISTRAR_REGISTERS, "result" => result).absolute(0);
    }
}

/// Duration of each answered call that ended, per carrier trunk: a summary (quantiles, `_sum`, `_count`); ACD =
/// `_sum` / `_count` over a window.
pub const CALL_DURATION: &str = "sbc_call_duration_seconds";
/// RTP packets expected from a leg's peer (RFC 3550 A.3) in calls that ended, per `trunk` of that leg.
pub const MEDIA_EXPECTED: &str = "sbc_media_expected_packets_total";
/// RTP packets lost from a leg's peer (expected minus received, RFC 3550 A.3) in calls that ended, per `trunk`.
/// Loss share = this / [`MEDIA_EXPECTED`].
pub const MEDIA_LOST: &str = "sbc_media_lost_packets_total";
/// Interarrival jitter (RFC 3550 A.8) of each leg's peer at the end of its call, per `trunk` of that leg: a
/// summary (quantiles, `_sum`, `_count`).
pub const MEDIA_JITTER: &str = "sbc_media_jitter_seconds";

/// Describes the call-end series (ACD, loss, jitter) and creates their zero series for every trunk.
pub fn describe_call_ends(trunks: &[String]) {
    describe_histogram!(CALL_DURATION, "duration of answered calls that ended, per carrier trunk");
    describe_counter!(MEDIA_EXPECTED, "RTP packets expected from the trunk's peers in calls that ended");
    describe_counter!(MEDIA_LOST, "RTP packets lost from the trunk's peers in calls that ended");
    describe_histogram!(MEDIA_JITTER, "RTP interarrival jitter of the trunk's peers at the end of their calls");
    for t in trunks {
        for name in [MEDIA_EXPECTED, MEDIA_LOST] {
            counter!(name, "trunk" => t.clone()).absolute(0);
        }
    }
}

/// The figures of a call that ended, from its CDR: its duration for ACD, and per leg the RTP loss and jitter the
/// relay measured (the only place they exist: the relay summarises a flow when its session ends).
pub fn call_ended(cdr: &sbc_proto::cdr::Cdr) {
    if let (Some(seconds), Some(trunk)) = (cdr.duration(), &cdr.trunk_out) {
        histogram!(CALL_DURATION, "trunk" => trunk.clone()).record(seconds);
    }
    let Some(media) = &cdr.media else { return };
    for (leg, trunk) in media.legs.iter().zip([Some(&cdr.trunk_in), cdr.trunk_out.as_ref()]) {
        let (Some(trunk), received) = (trunk, &leg.received) else { continue };
        if received.expected == 0 {
            continue;
        }
        counter!(MEDIA_EXPECTED, "trunk" => trunk.clone()).increment(received.expected);
        counter!(MEDIA_LOST, "trunk" => trunk.clone()).increment(received.lost.max(0) as u64);
        histogram!(MEDIA_JITTER, "trunk" => trunk.clone()).record(received.jitter_ms / 1000.0);
    }
}

/// Canary calls ended, per trunk and `result` (`success`, `no_answer`, `failed`, `media_failed`). Canary calls
/// count nowhere else: not in the call counters above (ASR stays the customers'), not in CDRs.
pub const CANARY_RESULTS: &str = "sbc_canary_result_total";
/// 1 when the trunk's last canary call succeeded, 0 when it did not; absent before its first canary ends.
pub const CANARY_UP: &str = "sbc_canary_up";
/// Post-dial delay of the trunk's last canary call that got a ringing or an answer: INVITE to the first 18x, or to
/// the 2xx when none came before it.
pub const CANARY_POST_DIAL_DELAY: &str = "sbc_canary_post_dial_delay_seconds";
/// RTP packets of the trunk's last canary call, by `direction` (`sent`, `received`).
pub const CANARY_MEDIA_PACKETS: &str = "sbc_canary_media_packets";

/// Describes the canary metrics and creates the zero result series of every trunk with a canary.
pub fn describe_canaries(trunks: &[String]) {
    describe_counter!(CANARY_RESULTS, "canary calls ended per trunk, by result");
    describe_gauge!(CANARY_UP, "1 when the trunk's last canary call succeeded");
    describe_gauge!(CANARY_POST_DIAL_DELAY, "post-dial delay of the trunk's last canary call, seconds");
    describe_gauge!(CANARY_MEDIA_PACKETS, "RTP packets of the trunk's last canary call, by direction");
    for t in trunks {
        for r in sbc_proto::endpoint::CanaryResult::ALL {
            counter!(CANARY_RESULTS, "trunk" => t.clone(), "result" => r.label()).absolute(0);
        }
    }
}
