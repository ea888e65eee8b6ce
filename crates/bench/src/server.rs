//! The processes under test: the real `portal serve` on a free loopback port against the
//! loaded database, and the ceiling (this binary's `ceiling` mode). Both are separate
//! processes, so the generator's work and the server's are measured as they would be on one
//! machine, and the server's peak memory is its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    child: Child,
    pub base: String,
    pub pid: u32,
}

/// The `portal` binary: `explicit`, or the one beside this binary (same target folder and
/// profile), built with cargo if it is not there yet.
pub async fn portal_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "--portal {}: no such file", path.display());
        return Ok(path);
    }
    let me = std::env::current_exe()?;
    let dir = me.parent().context("this binary has no folder")?;
    let portal = dir.join(format!("portal{}", std::env::consts::EXE_SUFFIX));
    if portal.is_file() {
        return Ok(portal);
    }
    let release = dir.file_name().is_some_and(|n| n == "release");
    eprintln!(
        "building the portal ({})",
        if release { "release" } else { "debug" }
    );
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "--bin", "portal", "-p", "portal"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().await.context("run cargo build")?;
    anyhow::ensure!(status.success(), "cargo build of the portal failed");
    anyhow::ensure!(
        portal.is_file(),
        "cargo built the portal somewhere other than {}; give --portal",
        portal.display()
    );
    Ok(portal)
}

impl Server {
    /// `portal serve` on 127.0.0.1 with a free port, no demo data, plain-HTTP cookies, and one
    /// trusted proxy (the harness's clients claim their own addresses, see `http`).
    pub async fn portal(binary: &Path, database_url: &str, log: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env_remove("DATABASE_READ_URL")
            .env("PORTAL_BIND", "127.0.0.1:0")
            .env("PORTAL_DEMO", "false")
            .env("PORTAL_SECURE_COOKIES", "false")
            .env("PORTAL_TRUST_PROXY", "1")
            // The transparency log's signing key, beside the server's log (PostgreSQL has no
            // default place for it).
            .env("PORTAL_LOG_KEY_FILE", log.with_extension("log-key"))
            .env(
                "PORTAL_LOG",
                std::env::var("PORTAL_LOG").unwrap_or_else(|_| "warn".into()),
            );
        Self::start(command, "Portal listening on ", log).await
    }

    /// The ceiling: this binary serving a fixed 2 KB page.
    pub async fn ceiling(log: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["ceiling", "--bind", "127.0.0.1:0"]);
        Self::start(command, crate::ceiling::LISTENING, log).await
    }

    async fn start(mut command: Command, announcement: &str, log: &Path) -> anyhow::Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("server log {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("start the server")?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("server output")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix(announcement) {
                    return Ok(rest.trim().to_string());
                }
            }
            anyhow::bail!(
                "the server stopped before listening (see {})",
                log.display()
            )
        })
        .await
        .with_context(|| {
            format!(
                "the server did not start in 2 minutes (see {})",
                log.display()
            )
        })??;
        // Keep reading, so that the server never blocks on a full pipe, and keep what it says
        // (the portal logs to stdout) beside its standard error.
        let mut kept = tokio::fs::OpenOptions::new().append(true).open(log).await?;
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let written = kept.write_all(line.as_bytes()).await;
                if written.and(kept.write_all(b"\n").await).is_err() {
                    break;
                }
            }
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        Ok(Self { child, base, pid })
    }

    /// Start a new peak: the kernel resets VmHWM to the current RSS (Linux 4.0+). `false` if
    /// it cannot, and peaks then run from the start of the process.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    /// The highest resident set size since the last `reset_peak`, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        vm_hwm(&status)
    }

    /// Still running? A server that died mid-run makes every later figure meaningless.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stop with SIGINT (the portal's graceful shutdown), SIGKILL after 10 seconds.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_peak_from_proc_status() {
        let status =
            "Name:\tportal\nVmPeak:\t  900000 kB\nVmHWM:\t   45312 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(super::vm_hwm(status), Some(45_312 * 1024));
        assert_eq!(super::vm_hwm("Name: x\n"), None);
    }
}
