//! What an agent measures of its machine for the head node's heat map: CPU use between two
//! heartbeats (from `/proc/stat`) and memory in use (from `/proc/meminfo`). Elsewhere than on
//! Linux nothing is measured and heartbeats carry no metrics.

use thunderhead_proto::Metrics;

/// CPU time counters: busy and total jiffies since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Reads the machine's metrics; CPU use is measured over the time since the previous reading
/// (the first, since the sampler was made).
#[derive(Debug)]
pub struct Sampler {
    last: Option<CpuTimes>,
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler { last: read_cpu_times() }
    }
}

/// How long one reading serves every light agent that asks for one.
const SHARED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// This machine's metrics for the light agents of this process, which all run on it: one
/// reading serves all of them for [`SHARED_FOR`], so a thousand light agents read `/proc` once
/// a second, not a thousand times per heartbeat period.
pub fn shared_sample() -> Option<Metrics> {
    type Shared = Option<(Sampler, std::time::Instant, Option<Metrics>)>;
    static SHARED: std::sync::Mutex<Shared> = std::sync::Mutex::new(None);
    let mut shared = SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (sampler, at, metrics) = shared.get_or_insert_with(|| {
        let mut sampler = Sampler::default();
        let first = sampler.sample();
        (sampler, std::time::Instant::now(), first)
    });
    if at.elapsed() >= SHARED_FOR {
        *metrics = sampler.sample();
        *at = std::time::Instant::now();
    }
    *metrics
}

fn read_cpu_times() -> Option<CpuTimes> {
    cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

impl Sampler {
    pub fn sample(&mut self) -> Option<Metrics> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let now = read_cpu_times()?;
        let (used, total) = memory_mb(&meminfo)?;
        let before = self.last.replace(now).unwrap_or(now);
        Some(Metrics { cpu_percent: cpu_percent(before, now), memory_used_mb: used, memory_total_mb: total })
    }
}

/// The first line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`.
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().sum();
    Some(CpuTimes { busy: total - idle, total })
}

fn cpu_percent(before: CpuTimes, now: CpuTimes) -> u8 {
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return 0;
    }
    let busy = now.busy.saturating_sub(before.busy);
    ((busy * 100 + total / 2) / total).min(100) as u8
}

/// Memory in use and in all, in MiB: `MemTotal - MemAvailable` and `MemTotal`.
fn memory_mb(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let total_kb = field("MemTotal:")?;
    let available_kb = field("MemAvailable:")?;
    Some((total_kb.saturating_sub(available_kb) / 1024, total_kb / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_use_is_the_busy_share_of_the_time_between_readings() {
        let a = cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, CpuTimes { busy: 200, total: 1000 });
        let b = cpu_times("cpu  400 0 100 800 100 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_percent(a, b), 75);
        assert_eq!(cpu_percent(b, b), 0);
        assert_eq!(cpu_times("intr 1 2 3"), None);
    }

    #[test]
    fn memory_in_use_is_what_is_not_available() {
        let info = "MemTotal:       2048000 kB\nMemFree:    100 kB\nMemAvailable:   1024000 kB\n";
        assert_eq!(memory_mb(info), Some((1000, 2000)));
        assert_eq!(memory_mb("MemTotal: 5 kB\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_machine_can_be_measured() {
        let mut s = Sampler::default();
        let m = s.sample().expect("Linux has /proc/stat and /proc/meminfo");
        assert!(m.memory_total_mb > 0 && m.memory_used_mb <= m.memory_total_mb);
        assert!(m.cpu_percent <= 100);
    }
}
