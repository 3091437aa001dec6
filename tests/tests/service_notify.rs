//! `Type=notify` in ops/systemd/: `sbc` and `media-relay` tell the service manager READY=1 once they listen and
//! STOPPING=1 when a stop begins, over the datagram socket systemd names in `$NOTIFY_SOCKET`. The test plays
//! systemd's part with a socket of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A notify socket in a fresh directory, removed on drop.
struct NotifySocket {
    socket: UnixDatagram,
    dir: PathBuf,
}

impl NotifySocket {
    fn bind(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("notify directory");
        let socket = UnixDatagram::bind(dir.join("notify")).expect("binding the notify socket");
        Self { socket, dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("notify")
    }

    /// The next notification, or `None` after `limit`.
    fn next(&self, limit: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(limit)).expect("timeout");
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn terminate_and_wait(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the admin API listens once READY=1 is sent");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: sbc\r\n\r\n").as_bytes()).expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

#[test]
fn sbc_notifies_ready_once_listening_and_stopping_on_sigterm() {
    let notify = NotifySocket::bind("sbc");
    let (sip, api) = (tests::free_port(), tests::free_port());
    let config = notify.dir.join("sbc.toml");
    std::fs::write(
        &config,
        format!("[sip]\nlisten = [\"udp:127.0.0.1:{sip}\", \"tcp:127.0.0.1:{sip}\"]\n\n[api]\nlisten = \"127.0.0.1:{api}\"\n"),
    )
    .expect("config");
    let mut sbc = Killed(
        Command::new(tests::sbc_binary().expect("sbc builds"))
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", notify.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning sbc"),
    );
    let first = notify.next(Duration::from_secs(20)).expect("a notification within 20 s of the start");
    assert_eq!(first.trim(), "READY=1");
    // Ready means listening: the API answers at once, without a retry.
    let health = http_get(api, "/health");
    assert!(health.starts_with("HTTP/1.0 200") && health.trim_end().ends_with("ok"), "{health}");

    let status = terminate_and_wait(&mut sbc.0);
    let stopping = notify.next(Duration::from_secs(1)).expect("a notification on SIGTERM");
    assert_eq!(stopping.trim(), "STOPPING=1");
    assert!(status.success(), "sbc exited with {status}");
}

#[test]
fn media_relay_notifies_ready_once_its_control_port_listens_and_stopping_on_sigterm() {
    let notify = NotifySocket::bind("relay");
    let control = tests::free_port();
    let mut relay = Killed(
        Command::new(tests::media_relay_binary().expect("media-relay builds"))
            .args(["--control", &format!("127.0.0.1:{control}"), "--xdp", "off", "--threads", "1"])
            .env("NOTIFY_SOCKET", notify.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning media-relay"),
    );
    let first = notify.next(Duration::from_secs(20)).expect("a notification within 20 s of the start");
    assert_eq!(first.trim(), "READY=1");
    TcpStream::connect(("127.0.0.1", control)).expect("the control port listens once READY=1 is sent");

    let status = terminate_and_wait(&mut relay.0);
    let stopping = notify.next(Duration::from_secs(1)).expect("a notification on SIGTERM");
    assert_eq!(stopping.trim(), "STOPPING=1");
    assert!(status.success(), "media-relay exited with {status}");
}
