//! The soak's Prometheus metrics: the series and their descriptions, the HTTP endpoint (`--metrics-listen`) and
//! the textfile for node_exporter (`--metrics-file`) rewritten whole after every interval.

use super::interval::Interval;
use super::Options;
use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Metric names (every one labelled `target`).
mod names {
    pub const UP: &str = "sbc_bench_soak_up";
    pub const CALLS: &str = "sbc_bench_soak_calls_total";
    pub const ATTEMPTED: &str = "sbc_bench_soak_calls_attempted_total";
    pub const PDD: &str = "sbc_bench_soak_pdd_ms";
    pub const SETUP: &str = "sbc_bench_soak_setup_ms";
    pub const FAILED_RATIO: &str = "sbc_bench_soak_interval_failed_ratio";
    pub const PASSED: &str = "sbc_bench_soak_interval_passed";
    pub const INTERVALS: &str = "sbc_bench_soak_intervals_total";
    pub const CPU: &str = "sbc_bench_soak_target_cpu_percent";
    pub const RSS: &str = "sbc_bench_soak_target_resident_bytes";
    pub const LAST: &str = "sbc_bench_soak_last_interval_timestamp_seconds";
    pub const INTERVAL_SECS: &str = "sbc_bench_soak_interval_seconds";
}

/// The soak's Prometheus metrics: a recorder of its own (not the global one), served on `--metrics-listen` by the
/// exporter's HTTP listener and rendered to `--metrics-file` after every interval.
pub(super) struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    target: String,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("target", &self.target).field("file", &self.file).finish_non_exhaustive()
    }
}

impl Exporter {
    /// Builds the recorder and, with `listen`, binds the HTTP endpoint (every path but `/health` serves the metrics)
    /// and serves it from a thread of its own until the process exits. Fails at once when the address cannot be
    /// bound.
    pub(super) fn start(target: &str, listen: Option<SocketAddr>, file: Option<PathBuf>) -> Result<Self> {
        let recorder = match listen {
            None => PrometheusBuilder::new().build_recorder(),
            Some(addr) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the metrics endpoint's runtime")?;
                // `build` spawns the recorder's upkeep task and binds the listener: inside the runtime.
                let (recorder, serve) = {
                    let _inside = rt.enter();
                    PrometheusBuilder::new()
                        .with_http_listener(addr)
                        .build()
                        .with_context(|| format!("--metrics-listen {addr}"))?
                };
                std::thread::Builder::new().name("soak-metrics".into()).spawn(move || {
                    if let Err(e) = rt.block_on(serve) {
                        eprintln!("soak: the metrics endpoint on {addr} stopped: {e:?}");
                    }
                })?;
                recorder
            }
        };
        if let Some(dir) = file.as_deref().and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let handle = recorder.handle();
        let exporter = Self { recorder, handle, target: target.to_owned(), file };
        exporter.describe();
        Ok(exporter)
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    fn describe(&self) {
        use metrics::{describe_counter, describe_gauge};
        self.with(|| {
            describe_gauge!(names::UP, "1 while the soak runs, 0 once it ended");
            describe_counter!(
                names::CALLS,
                "soak calls that ended: answered (completed: held, hung up cleanly) or failed"
            );
            describe_counter!(names::ATTEMPTED, "soak calls placed");
            describe_gauge!(
                names::PDD,
                "post-dial delay (INVITE to first 180/183/200) percentiles of the last interval's calls, ms"
            );
            describe_gauge!(names::SETUP, "setup time (INVITE to 200) percentiles of the last interval's calls, ms");
            describe_gauge!(names::FAILED_RATIO, "failed / ended calls in the last interval");
            describe_gauge!(names::PASSED, "1 when the last interval passed (failed <= 0.1 %, pdd p99 <= 200 ms)");
            describe_counter!(names::INTERVALS, "soak intervals measured, by result");
            describe_gauge!(names::CPU, "the local target's CPU over the last interval, percent of one core");
            describe_gauge!(names::RSS, "the local target's resident memory at the end of the last interval, bytes");
            describe_gauge!(names::LAST, "Unix time the last interval ended");
            describe_gauge!(names::INTERVAL_SECS, "the soak's reporting interval, seconds");
        });
    }

    /// Every series from the start (counters at 0, percentiles NaN), `up` 1; writes the file.
    pub(super) fn started(&self, opts: &Options) -> Result<()> {
        let t = self.target.clone();
        self.with(|| {
            metrics::gauge!(names::UP, "target" => t.clone()).set(1.0);
            metrics::gauge!(names::INTERVAL_SECS, "target" => t.clone()).set(opts.interval_secs as f64);
            for result in ["answered", "failed"] {
                metrics::counter!(names::CALLS, "target" => t.clone(), "result" => result).absolute(0);
            }
            metrics::counter!(names::ATTEMPTED, "target" => t.clone()).absolute(0);
            for result in ["passed", "failed"] {
                metrics::counter!(names::INTERVALS, "target" => t.clone(), "result" => result).absolute(0);
            }
            for q in ["0.5", "0.95", "0.99"] {
                metrics::gauge!(names::PDD, "target" => t.clone(), "quantile" => q).set(f64::NAN);
            }
            metrics::gauge!(names::SETUP, "target" => t.clone(), "quantile" => "0.99").set(f64::NAN);
        });
        self.write_file()
    }

    /// Publishes an interval; writes the file.
    pub(super) fn interval(&self, iv: &Interval) -> Result<()> {
        let t = self.target.clone();
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.with(|| {
            metrics::counter!(names::CALLS, "target" => t.clone(), "result" => "answered").increment(iv.answered);
            metrics::counter!(names::CALLS, "target" => t.clone(), "result" => "failed").increment(iv.failed);
            metrics::counter!(names::ATTEMPTED, "target" => t.clone()).increment(iv.attempted);
            for (q, v) in [("0.5", iv.pdd_p50_ms), ("0.95", iv.pdd_p95_ms), ("0.99", iv.pdd_p99_ms)] {
                metrics::gauge!(names::PDD, "target" => t.clone(), "quantile" => q).set(nan(v));
            }
            metrics::gauge!(names::SETUP, "target" => t.clone(), "quantile" => "0.99").set(nan(iv.setup_p99_ms));
            metrics::gauge!(names::FAILED_RATIO, "target" => t.clone()).set(iv.failed_ratio);
            metrics::gauge!(names::PASSED, "target" => t.clone()).set(if iv.pass { 1.0 } else { 0.0 });
            let result = if iv.pass { "passed" } else { "failed" };
            metrics::counter!(names::INTERVALS, "target" => t.clone(), "result" => result).increment(1);
            if let Some(cpu) = iv.sbc_cpu_pct {
                metrics::gauge!(names::CPU, "target" => t.clone()).set(cpu);
            }
            if let Some(rss) = iv.sbc_rss_mib {
                metrics::gauge!(names::RSS, "target" => t.clone()).set(rss * 1024.0 * 1024.0);
            }
            metrics::gauge!(names::LAST, "target" => t.clone()).set(iv.end_unix);
        });
        self.write_file()
    }

    /// `up` 0; writes the file.
    pub(super) fn finished(&self) -> Result<()> {
        let t = self.target.clone();
        self.with(|| metrics::gauge!(names::UP, "target" => t).set(0.0));
        self.write_file()
    }

    /// The metrics in Prometheus text format.
    fn render(&self) -> String {
        self.handle.render()
    }

    fn write_file(&self) -> Result<()> {
        match &self.file {
            Some(path) => ::tests::write_atomically(path, &self.render()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::ResponseTimes;
    use crate::soak::tests::{counts, opts};

    #[test]
    fn prometheus_text_has_every_series() {
        let o = opts(2, "1h", "60s").unwrap();
        let exporter = Exporter::start("local", None, None).unwrap();
        exporter.started(&o).unwrap();
        let before = exporter.render();
        assert!(before.contains("sbc_bench_soak_up{target=\"local\"} 1"), "{before}");
        assert!(before.contains("sbc_bench_soak_calls_total{target=\"local\",result=\"answered\"} 0"), "{before}");
        assert!(before.contains("sbc_bench_soak_pdd_ms{target=\"local\",quantile=\"0.99\"} NaN"), "{before}");
        let times = ResponseTimes { pdd: vec![1.0, 2.0, 4.0], setup: vec![5.0] };
        let mut iv = Interval::measured(1, (0.0, 60.0), 1_700_000_060.0, &counts(120, 118, 2, 20), 0, false, &times);
        iv.sbc_cpu_pct = Some(3.5);
        exporter.interval(&iv).unwrap();
        exporter.interval(&iv).unwrap();
        exporter.finished().unwrap();
        let text = exporter.render();
        for line in [
            "# TYPE sbc_bench_soak_calls_total counter",
            "sbc_bench_soak_calls_total{target=\"local\",result=\"answered\"} 236",
            "sbc_bench_soak_calls_total{target=\"local\",result=\"failed\"} 4",
            "sbc_bench_soak_calls_attempted_total{target=\"local\"} 240",
            "sbc_bench_soak_pdd_ms{target=\"local\",quantile=\"0.5\"} 2",
            "sbc_bench_soak_pdd_ms{target=\"local\",quantile=\"0.99\"} 4",
            "sbc_bench_soak_interval_passed{target=\"local\"} 0",
            "sbc_bench_soak_intervals_total{target=\"local\",result=\"failed\"} 2",
            "sbc_bench_soak_target_cpu_percent{target=\"local\"} 3.5",
            "sbc_bench_soak_last_interval_timestamp_seconds{target=\"local\"} 1700000060",
            "sbc_bench_soak_up{target=\"local\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert!(text.contains("sbc_bench_soak_interval_failed_ratio{target=\"local\"} 0.01666"), "{text}");
    }

    #[test]
    fn metrics_file_is_rewritten_whole() {
        let dir = std::env::temp_dir().join(format!("soak-unit-{}", std::process::id()));
        let file = dir.join("textfile").join("soak.prom");
        let exporter = Exporter::start("direct", None, Some(file.clone())).unwrap();
        exporter.started(&opts(2, "1h", "60s").unwrap()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("sbc_bench_soak_up{target=\"direct\"} 1"), "{text}");
        exporter.finished().unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().contains("sbc_bench_soak_up{target=\"direct\"} 0"));
        assert!(!file.with_extension("tmp").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
