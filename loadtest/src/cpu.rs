//! A process's CPU time, from /proc, for "deliveries per server CPU-second".

/// User + system CPU seconds of `pid` so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&stat, ticks_per_second())
}

/// Resident memory of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds of every process in `pids` together; None if there are none
/// or one cannot be read.
pub fn total_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// Resident memory of every process in `pids` together.
pub fn total_rss_bytes(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss_bytes(pid)).sum()
}

/// Samples the resident memory of `pids` every 100 ms until stopped; the
/// peak is what a run reports for servers that buffer (slow consumers).
pub struct PeakRss {
    task: tokio::task::JoinHandle<()>,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl PeakRss {
    pub fn start(pids: &[u32]) -> PeakRss {
        let pids = pids.to_vec();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                every.tick().await;
                if let Some(rss) = total_rss_bytes(&pids) {
                    seen.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        PeakRss { task, peak }
    }

    /// Stops sampling; the highest RSS seen, if any was read.
    pub fn stop(self) -> Option<u64> {
        self.task.abort();
        Some(self.peak.load(std::sync::atomic::Ordering::Relaxed)).filter(|&p| p > 0)
    }
}

fn ticks_per_second() -> f64 {
    // CLK_TCK is 100 on Linux everywhere this runs.
    100.0
}

/// Fields 14 and 15 (utime, stime) of /proc/PID/stat, after the `(comm)`
/// that may itself hold spaces.
fn parse(stat: &str, ticks: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_stat_with_a_spaced_name() {
        let stat = "4242 (my server) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(super::parse(stat, 100.0), Some(3.0));
    }

    #[test]
    fn reads_this_process() {
        assert!(super::cpu_seconds(std::process::id()).is_some());
        assert!(super::rss_bytes(std::process::id()).unwrap() > 0);
    }
}
