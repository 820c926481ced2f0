//! CPU time and resident memory of processes on this machine, from /proc: the load generator
//! itself, and the server when it runs locally (found by the port it listens on).

use std::time::Duration;

use procfs::process::Process;

/// CPU time used so far and resident set size of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set size in bytes.
    pub rss: u64,
}

/// Reads the usage of process `pid`, if it exists.
pub fn usage(pid: i32) -> Option<Usage> {
    let p = Process::new(pid).ok()?;
    let stat = p.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let cpu = Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks);
    let rss = stat.rss * procfs::page_size();
    Some(Usage { cpu, rss })
}

/// This process's id.
pub fn own_pid() -> i32 {
    std::process::id() as i32
}

/// The process listening on TCP `port` on this machine, if it can be seen.
pub fn listener_pid(port: u16) -> Option<i32> {
    const LISTEN: procfs::net::TcpState = procfs::net::TcpState::Listen;
    let mut inodes: Vec<u64> = Vec::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
    {
        inodes.extend(
            table
                .iter()
                .filter(|e| e.state == LISTEN && e.local_address.port() == port)
                .map(|e| e.inode),
        );
    }
    if inodes.is_empty() {
        return None;
    }
    for p in procfs::process::all_processes().ok()?.flatten() {
        let Ok(fds) = p.fd() else { continue };
        for fd in fds.flatten() {
            if let procfs::process::FDTarget::Socket(inode) = fd.target {
                if inodes.contains(&inode) {
                    return Some(p.pid);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_and_listener() {
        let me = usage(own_pid()).expect("own usage");
        assert!(me.rss > 0);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_pid(port), Some(own_pid()));
    }
}
