//! Store emulators as child processes (Azurite, fake-gcs-server): finding
//! their programs, starting one on a free port of 127.0.0.1 with a temporary
//! data folder, waiting until it answers, and killing it when the test ends.
//! A missing program skips the test with a plain message, unless
//! `SEGMENTS_REQUIRE_EMULATORS=1` (as `.ci/run` sets it) fails it instead.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a test must be skipped because its emulator is not installed:
/// `program` is Ok(path) when it is; otherwise prints `SKIPPED test: why`
/// and returns true, or panics under `SEGMENTS_REQUIRE_EMULATORS=1`.
pub fn missing(test: &str, program: &Result<PathBuf, String>) -> bool {
    let Err(why) = program else {
        return false;
    };
    if std::env::var("SEGMENTS_REQUIRE_EMULATORS").as_deref() == Ok("1") {
        panic!(
            "{test} needs an emulator and SEGMENTS_REQUIRE_EMULATORS=1 forbids skipping it: {why}"
        );
    }
    eprintln!("SKIPPED {test}: {why}");
    true
}

/// A free TCP port on 127.0.0.1 (free when asked: the emulator binds it
/// right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An emulator process with its data folder, killed on drop.
pub struct Emulator {
    pub port: u16,
    pub data: tempfile::TempDir,
    child: Child,
    log: PathBuf,
}

impl Emulator {
    /// Start `command` (which must listen on `port` of 127.0.0.1) and wait
    /// up to 30 s for the port to accept connections.
    pub fn start(what: &str, mut command: Command, port: u16, data: tempfile::TempDir) -> Self {
        let log = data.path().join("emulator.log");
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(data.path().join("emulator.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let mut emulator = Emulator {
            port,
            data,
            child,
            log,
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = emulator.child.try_wait().unwrap() {
                panic!(
                    "{what} exited with {status} before listening on {address}:\n{}",
                    emulator.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on {address} within 30 s:\n{}",
                emulator.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        emulator
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the emulator printed so far (for failure messages).
    fn output(&self) -> String {
        let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "{}{}",
            read(self.log.clone()),
            read(self.data.path().join("emulator.err"))
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (for the set-up calls that
/// object_store has no API for, e.g. creating an Azure container); returns
/// the status code and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
