//! What a daemon's CPU costs, read from `/proc/<pid>/stat`: utime + stime
//! over a window. (Its memory, `status`'s VmRSS and VmHWM, is read by
//! [`crate::daemon::memory`], and shown in MB by [`crate::report::mb`].)

use anyhow::{Context, Result, ensure};
use std::process::Command;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; the
/// kernel's USER_HZ, 100 on every common architecture).
pub fn clock_ticks() -> Result<u64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("run getconf CLK_TCK")?;
    ensure!(
        out.status.success(),
        "getconf CLK_TCK failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let ticks: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK said {text:?}"))?;
    ensure!(ticks > 0, "getconf CLK_TCK said 0");
    Ok(ticks)
}

/// utime + stime, in clock ticks, of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses, so
/// fields are counted after the last `)`: state is field 3, utime 14, stime 15.
pub fn cpu_ticks(stat: &str) -> Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let v = fields
            .get(n - 3)
            .with_context(|| format!("/proc/<pid>/stat has no field {n}"))?;
        v.parse()
            .with_context(|| format!("/proc/<pid>/stat field {n} {v:?} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// CPU used by a process over a window of wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// User + system time.
    pub cpu: Duration,
    /// The window.
    pub wall: Duration,
}

impl CpuUse {
    /// CPU time as a percentage of one core over the window.
    pub fn percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Measures the CPU time a process uses from [`CpuMeter::start`] to
/// [`CpuMeter::stop`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    ticks_per_s: u64,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring process `pid`.
    pub fn start(pid: u32, ticks_per_s: u64) -> Result<Self> {
        Ok(CpuMeter {
            pid,
            ticks_per_s,
            ticks: read_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// The CPU time used since the start, over the wall time since.
    pub fn stop(&self) -> Result<CpuUse> {
        let ticks = read_ticks(self.pid)?;
        let wall = self.at.elapsed();
        let used = ticks.saturating_sub(self.ticks);
        Ok(CpuUse {
            cpu: Duration::from_secs_f64(used as f64 / self.ticks_per_s as f64),
            wall,
        })
    }
}

fn read_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    cpu_ticks(&stat).with_context(|| format!("parse {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_fields_after_the_command_name() {
        // A command name with a space and a parenthesis in it.
        let stat = "4242 (trellis (x) y) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    350 125 0 0 20 0 9 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(cpu_ticks(stat).unwrap(), 475);
        assert!(cpu_ticks("4242 (short) S 1 2").is_err());
        assert!(cpu_ticks("no parenthesis").is_err());
    }

    #[test]
    fn percent_of_one_core() {
        let u = CpuUse {
            cpu: Duration::from_millis(250),
            wall: Duration::from_secs(10),
        };
        assert!((u.percent() - 2.5).abs() < 1e-9);
    }
}
