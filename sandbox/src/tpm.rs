//! A software TPM 2.0 (swtpm) for the TPM credentials backend's tests.
//!
//! swtpm serves the TPM command protocol on a TCP port `P` and its control channel on `P + 1`,
//! both on 127.0.0.1, and keeps the TPM's state (seeds, NV) in a folder. Nothing stands
//! between it and its client (no resource manager): a client must flush what it loads.
//! [`Swtpm::restart`] keeps that state (a reboot), [`Swtpm::clear`] throws it away (the TPM was
//! cleared or the board replaced: every key made before is gone), [`Swtpm::pause`] makes it
//! stop answering without closing its sockets (a wedged TPM).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SWTPM: &str = "swtpm";
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);
/// Free-port races with other tests are resolved by picking other ports this many times.
const PORT_ATTEMPTS: u32 = 5;
/// swtpm's stdout and stderr, next to (not in) the state folder so `clear` keeps them.
const LOG_SUFFIX: &str = "swtpm.log";
const LOG_TAIL_BYTES: u64 = 2048;

/// A running swtpm; dropping it kills and reaps the process.
#[derive(Debug)]
pub struct Swtpm {
    state_dir: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Swtpm {
    /// Starts swtpm on two free loopback ports with its state in `state_dir` (created if
    /// needed; existing state is used). Ready to take commands when this returns.
    pub fn start(state_dir: &Path) -> io::Result<Swtpm> {
        fs::create_dir_all(state_dir)?;
        let log = log_path(state_dir);
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut swtpm = Swtpm {
                state_dir: state_dir.to_owned(),
                log: log.clone(),
                port: free_port_pair()?,
                child: None,
            };
            match swtpm.spawn() {
                Ok(()) => return Ok(swtpm),
                // Another process took a port between our probe and swtpm's bind.
                Err(err) if err.kind() == io::ErrorKind::AddrInUse => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port pair")))
    }

    /// The TCTI configuration string that reaches this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Kills swtpm and starts it again on the same ports with the same state: transient
    /// objects are gone, keys and sealed blobs made before still load.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Kills swtpm, wipes its state and starts a fresh TPM on the same ports: new seeds, so
    /// nothing made by the old one loads any more.
    pub fn clear(&mut self) -> io::Result<()> {
        self.stop();
        fs::remove_dir_all(&self.state_dir)?;
        fs::create_dir_all(&self.state_dir)?;
        self.spawn()
    }

    /// Kills swtpm: connections to its port are refused until [`Swtpm::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes swtpm (SIGSTOP): the kernel still accepts connections, nothing answers.
    pub fn pause(&self) -> io::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Lets a paused swtpm run again (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&self, signal: Signal) -> io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("swtpm is not running"))?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let output = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(SWTPM)
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port + 1))
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state_dir.display()))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .map_err(|err| {
                if err.kind() == io::ErrorKind::NotFound {
                    io::Error::new(
                        err.kind(),
                        "swtpm is not installed: install Debian's `swtpm` package (scripts/install-deps)",
                    )
                } else {
                    err
                }
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the command port accepts a connection (the probe's connection is closed
    /// at once, so the port is free again for the client: swtpm serves one at a time).
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    let tail = tail(&self.log);
                    let kind = if tail.contains("Address already in use") {
                        io::ErrorKind::AddrInUse
                    } else {
                        io::ErrorKind::Other
                    };
                    return Err(io::Error::new(
                        kind,
                        format!(
                            "swtpm exited ({status}) while starting; its output ends with:\n{tail}"
                        ),
                    ));
                }
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "swtpm did not listen on port {} within {READY_TIMEOUT:?}; its output ends with:\n{}",
                        self.port,
                        tail(&self.log)
                    ),
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // SIGKILL also ends a paused process.
        self.stop();
    }
}

/// `<state_dir>.swtpm.log`: outside the state folder, which `clear` wipes.
fn log_path(state_dir: &Path) -> PathBuf {
    let mut name = state_dir.as_os_str().to_owned();
    name.push(".");
    name.push(LOG_SUFFIX);
    PathBuf::from(name)
}

/// A port `P` such that `P` and `P + 1` are free right now.
fn free_port_pair() -> io::Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, next)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no two adjacent free loopback ports",
    ))
}

fn tail(path: &Path) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_restarts_and_clears_on_the_same_port() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("tpm");
        let mut swtpm = Swtpm::start(&state).unwrap();
        let tcti = swtpm.tcti();

        swtpm.restart().unwrap();
        assert_eq!(swtpm.tcti(), tcti);
        swtpm.clear().unwrap();
        assert_eq!(swtpm.tcti(), tcti);

        swtpm.stop();
        let port = tcti.rsplit('=').next().unwrap().parse::<u16>().unwrap();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }
}
