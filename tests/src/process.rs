//! Finding binaries, free ports and waiting for child processes.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Why a harness service could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "`{binary}` was not found on PATH; install it with `{install}` (or run `cargo xtask deps`)"
    )]
    MissingBinary {
        binary: &'static str,
        install: &'static str,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{service} did not start: {reason}\n--- last lines of its log ---\n{log_tail}")]
    StartFailed {
        service: &'static str,
        reason: String,
        log_tail: String,
    },
    #[error("{service}: {message}")]
    Client {
        service: &'static str,
        message: String,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }
}

/// Finds `name` on PATH, then in cargo's bin directory (where `cargo install`
/// puts Garage, which is not always on PATH in a fresh shell).
pub(crate) fn find_binary(
    name: &'static str,
    install: &'static str,
) -> Result<PathBuf, HarnessError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    // Debian puts the server in /usr/sbin, which is not on every user's PATH.
    dirs.push(PathBuf::from("/usr/sbin"));
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(cargo_home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(HarnessError::MissingBinary {
            binary: name,
            install,
        })
}

/// A port on 127.0.0.1 that was free a moment ago. Services started on it may
/// still lose a race with another test; callers retry on a bind failure.
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("binding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(HarnessError::io("reading a free port"))?
        .port();
    Ok(port)
}

pub(crate) fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `ready` until it returns true, the child exits, or `timeout` passes.
pub(crate) fn wait_until(
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("the process exited with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot poll the process: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a child: SIGTERM first so servers flush and exit cleanly, SIGKILL
/// if it is still alive after `grace`.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // std has no SIGTERM; `kill` from procps/coreutils is on every Debian.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A random lowercase alphanumeric string from the thread's CSPRNG.
pub(crate) fn random_token(len: usize, alphabet: &[u8]) -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}
