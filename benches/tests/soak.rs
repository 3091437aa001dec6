//! `sbc-bench soak` as a canary runs it: a short soak against our own `sbc` in the netns topology (root), scraped
//! while it runs; and the guard that refuses a target outside loopback before anything runs.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sbc-bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A plain HTTP/1.0 GET of /metrics on `port`; the body.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// Kills the soak if the test fails half way.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn logs(dir: &Path) -> String {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    format!("--- stdout ---\n{}\n--- stderr ---\n{}", read("stdout.log"), read("stderr.log"))
}

#[test]
fn twelve_second_soak_against_local_sbc_passes_and_exports_metrics() {
    // Root for the namespaces: without it this fails (as every netns test does), it never passes unmeasured.
    tests::netns::require_netns();
    let dir = scratch("soak");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (prom, out) = (dir.join("soak.prom"), dir.join("soak.json"));
    let mut soak = Killed(
        Command::new(env!("CARGO_BIN_EXE_sbc-bench"))
            .args(["soak", "--target", "local", "--rate", "5", "--hold-secs", "1", "--duration", "12s"])
            .args(["--interval", "4s", "--metrics-listen", &format!("127.0.0.1:{port}")])
            .arg("--metrics-file")
            .arg(&prom)
            .arg("--out")
            .arg(&out)
            .current_dir(tests::repo_root())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("sbc-bench runs"),
    );
    // The first run may build `sbc` in release mode before the soak starts.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut scraped = None;
    let status = loop {
        if let Some(status) = soak.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "soak still running after 10 minutes\n{}", logs(&dir));
        if scraped.is_none() {
            scraped = scrape(port).filter(|b| b.contains("sbc_bench_soak_calls_total"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "soak exited with {status}\n{}", logs(&dir));
    let scraped = scraped.unwrap_or_else(|| panic!("never scraped the endpoint while it ran\n{}", logs(&dir)));
    assert!(scraped.contains("sbc_bench_soak_up{target=\"local\"} 1"), "{scraped}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let intervals = json["intervals"].as_array().unwrap();
    // 12 s in intervals of 4 s: 3, the last one including the calls' final second of hold.
    assert!((2..=4).contains(&intervals.len()), "{} intervals\n{json:#}", intervals.len());
    assert!(intervals.iter().all(|i| i["pass"] == true), "{json:#}");
    let s = &json["summary"];
    // 5 calls/s for 12 s: exactly 60 placed (SIPp -m), all answered, none failed.
    assert_eq!((s["attempted"].as_u64(), s["answered"].as_u64(), s["failed"].as_u64()), (Some(60), Some(60), Some(0)));
    assert_eq!(s["pdd_samples"].as_u64(), Some(60), "{json:#}");
    assert!(s["pdd_p99_ms"].as_f64().unwrap() <= 200.0, "{json:#}");
    assert_eq!((json["passed"].as_bool(), json["end"]["reason"].as_str()), (Some(true), Some("completed")));

    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("sbc_bench_soak_calls_total{target=\"local\",result=\"answered\"} 60"), "{text}");
    assert!(text.contains("sbc_bench_soak_up{target=\"local\"} 0"), "{text}");
    assert!(out.with_extension("svg").is_file(), "no plot\n{}", logs(&dir));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn soak_refuses_a_target_outside_loopback_before_anything_runs() {
    let dir = scratch("soak-guard");
    let out = dir.join("soak.json");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_sbc-bench"))
        .args(["soak", "--target", "192.0.2.1:5060", "--duration", "10s", "--out"])
        .arg(&out)
        .output()
        .expect("sbc-bench runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted: {stderr}");
    assert!(stderr.contains("--allow-remote") && stderr.contains("192.0.2.1"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(!out.exists(), "a refused soak wrote results");
    // One target only.
    let o = Command::new(env!("CARGO_BIN_EXE_sbc-bench"))
        .args(["soak", "--target", "127.0.0.1:5060", "--compare", "direct", "--duration", "10s"])
        .output()
        .expect("sbc-bench runs");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`soak` measures one target"));
    let _ = std::fs::remove_dir_all(dir);
}
