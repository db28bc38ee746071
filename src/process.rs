//! Which process holds a trial. Several `sweep run` processes may share one database; each
//! running trial names its holder so that the others leave it alone while that process lives
//! and take it over once it has died (`kill -9`, power loss).

/// This process as a holder of trials: `host/pid/start-ticks`. The start time tells a live
/// process from a later one that reuses the pid.
pub fn this_process() -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}",
        hostname(),
        start_ticks(pid).map_or_else(|| "?".into(), |t| t.to_string())
    )
}

/// Whether the holder named by `owner` is still running: `Some` when it ran on this host (so
/// `/proc` can tell), `None` when it cannot be told, and only its heartbeat can.
pub fn is_alive(owner: &str) -> Option<bool> {
    let mut parts = owner.rsplitn(3, '/');
    let (ticks, pid, host) = (parts.next()?, parts.next()?, parts.next()?);
    if host != hostname() || !std::path::Path::new("/proc/self/stat").exists() {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    Some(match start_ticks(pid) {
        None => false,
        Some(now) => ticks
            .parse::<u64>()
            .map_or(true, |recorded| recorded == now),
    })
}

/// This machine's name as holders record it; `SWEEP_HOST` overrides it (tests stand in for
/// separate machines with it, so that only heartbeats tell whether a holder lives).
pub fn hostname() -> String {
    if let Ok(host) = std::env::var("SWEEP_HOST")
        && !host.is_empty()
        && !host.contains('/')
    {
        return host;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .unwrap_or_else(|| "unknown-host".into())
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = this_process();
        assert_eq!(is_alive(&me), Some(true));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let them = format!("{}/{pid}/{}", hostname(), start_ticks(pid).unwrap_or(1));
        child.wait().unwrap();
        assert_eq!(is_alive(&them), Some(false));
        assert_eq!(is_alive("elsewhere.example/1/1"), None);
        // Same pid, different start time: the pid was reused by another process.
        let reused = format!("{}/{}/1", hostname(), std::process::id());
        assert_eq!(is_alive(&reused), Some(false));
    }
}
