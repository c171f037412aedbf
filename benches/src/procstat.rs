//! CPU time and resident memory of a process (the SFU under test, or the
//! generator itself), and a description of the machine, read from `/proc`
//! without libc.
//!
//! A process's `/proc/<pid>/stat` sums the CPU time of all its threads, so a
//! multi-threaded SFU is covered by sampling its one pid.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context};

use crate::results::Machine;

/// Clock ticks per second assumed when the kernel does not say
/// (`USER_HZ`, 100 on every mainstream Linux architecture).
const DEFAULT_CLOCK_TICKS: u64 = 100;
/// Page size assumed when the kernel does not say.
const DEFAULT_PAGE_SIZE: u64 = 4096;
/// Auxiliary vector keys (`<elf.h>`).
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

/// One reading of a process's CPU time and memory.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// User plus system CPU time of all the process's threads, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// When the sample was taken.
    pub at: Instant,
}

impl ProcessSample {
    /// CPU used between `earlier` and this sample, as a percentage of one
    /// core (200 means two cores busy). Zero when no time passed.
    pub fn cpu_percent_since(&self, earlier: &ProcessSample) -> f64 {
        let wall = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        (self.cpu_seconds - earlier.cpu_seconds).max(0.0) / wall * 100.0
    }

    /// Resident set size in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// Samples process `pid` from `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample(pid: u32) -> anyhow::Result<ProcessSample> {
    sample_dir(&Path::new("/proc").join(pid.to_string()))
}

/// Samples the calling process (`/proc/self`).
pub fn sample_self() -> anyhow::Result<ProcessSample> {
    sample_dir(Path::new("/proc/self"))
}

/// Samples the process whose `/proc` directory is `dir`.
fn sample_dir(dir: &Path) -> anyhow::Result<ProcessSample> {
    let at = Instant::now();
    let stat_path = dir.join("stat");
    let stat = fs::read_to_string(&stat_path)
        .with_context(|| format!("reading {}", stat_path.display()))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing {}", stat_path.display()))?;
    Ok(ProcessSample {
        cpu_seconds: ticks as f64 / clock_ticks_per_second() as f64,
        rss_bytes: rss_bytes(dir)?,
        at,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in
/// clock ticks.
///
/// Field 2 (`comm`, in parentheses) may itself contain spaces and
/// parentheses, so fields are counted from after the *last* `)`, where
/// field 3 (the state) starts.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let close = stat
        .rfind(')')
        .ok_or_else(|| anyhow!("no `)` after the command name"))?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3, so field n is fields[n - 3].
    let field = |n: usize| -> anyhow::Result<u64> {
        let text = fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("field {n} missing"))?;
        text.parse()
            .with_context(|| format!("field {n} is not a number: {text:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Resident set size of the process in `dir`: `VmRSS` from `status`, or
/// failing that the second number of `statm` times the page size.
fn rss_bytes(dir: &Path) -> anyhow::Result<u64> {
    if let Some(kib) = fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|status| kib_field(&status, "VmRSS:"))
    {
        return Ok(kib * 1024);
    }
    let statm_path = dir.join("statm");
    let statm = fs::read_to_string(&statm_path)
        .with_context(|| format!("reading {}", statm_path.display()))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .with_context(|| format!("no resident page count in {}", statm_path.display()))?;
    Ok(pages * page_size())
}

/// The number of a `Key:   1234 kB` line (as in `status` and `meminfo`).
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), read from the
/// `AT_CLKTCK` entry of our own auxiliary vector (`/proc/self/auxv`, the
/// value libc itself returns) so no FFI is needed; 100 if that fails.
pub fn clock_ticks_per_second() -> u64 {
    auxv_value(AT_CLKTCK)
        .filter(|&ticks| ticks > 0)
        .unwrap_or(DEFAULT_CLOCK_TICKS)
}

/// Memory page size, from `AT_PAGESZ` in `/proc/self/auxv`; 4096 if that
/// fails.
fn page_size() -> u64 {
    auxv_value(AT_PAGESZ)
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE)
}

/// The value of `key` in our auxiliary vector: pairs of native-endian
/// machine words (key, value), ending with key 0.
fn auxv_value(key: u64) -> Option<u64> {
    let auxv = fs::read("/proc/self/auxv").ok()?;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| -> u64 {
        let mut buffer = [0u8; WORD];
        buffer.copy_from_slice(bytes);
        usize::from_ne_bytes(buffer) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .map(|pair| (word(&pair[..WORD]), word(&pair[WORD..])))
        .take_while(|&(k, _)| k != 0)
        .find(|&(k, _)| k == key)
        .map(|(_, value)| value)
}

/// The machine we run on: CPU model and count, memory and kernel release.
/// Fields that cannot be read are left empty (or fall back to what the
/// standard library knows).
pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (cpu_model, cpus) = parse_cpuinfo(&cpuinfo);
    let cpus = if cpus > 0 {
        cpus
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    Machine {
        cpu_model,
        cpus,
        memory_gib: kib_field(&meminfo, "MemTotal:").unwrap_or(0) as f64 / (1024.0 * 1024.0),
        kernel: kernel.trim().to_string(),
    }
}

/// The CPU model (first `model name`, or on some ARM kernels `Hardware` /
/// `Processor`) and the number of `processor` entries of `/proc/cpuinfo`.
fn parse_cpuinfo(cpuinfo: &str) -> (String, usize) {
    let value = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key && !value.trim().is_empty()).then(|| value.trim().to_string())
        })
    };
    let model = value("model name")
        .or_else(|| value("Hardware"))
        .or_else(|| value("Processor"))
        .unwrap_or_else(|| "unknown".to_string());
    let cpus = cpuinfo
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(name, _)| name.trim() == "processor")
        })
        .count();
    (model, cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        // comm = "a) (b c" — spaces and parentheses inside.
        let stat = "42 (a) (b c) S 1 42 42 0 -1 4194304 10 0 0 0 250 75 0 0 20 0 3 0 99 1000 50";
        assert_eq!(cpu_ticks(stat).unwrap(), 325);
        assert!(cpu_ticks("42 (x) S 1").is_err());
        assert!(cpu_ticks("no parenthesis").is_err());
    }

    #[test]
    fn reads_kib_fields() {
        let status = "Name:\tx\nVmHWM:\t  9000 kB\nVmRSS:\t  2192 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(2192));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn parses_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Some CPU @ 3.0GHz\n\n\
                       processor\t: 1\nmodel name\t: Some CPU @ 3.0GHz\n";
        assert_eq!(parse_cpuinfo(cpuinfo), ("Some CPU @ 3.0GHz".to_string(), 2));
        assert_eq!(parse_cpuinfo(""), ("unknown".to_string(), 0));
    }

    #[test]
    fn self_sample_sees_cpu_burnt_and_memory() {
        let before = sample_self().unwrap();
        assert!(before.rss_bytes > 0);
        // Burn CPU until the tick counter moves (a tick is 10 ms at 100 Hz).
        let start = Instant::now();
        let mut x = 1u64;
        let mut after = before;
        while after.cpu_seconds <= before.cpu_seconds && start.elapsed() < Duration::from_secs(10) {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            after = sample_self().unwrap();
        }
        assert!(
            after.cpu_seconds > before.cpu_seconds,
            "no CPU time seen ({x})"
        );
        assert!(after.cpu_percent_since(&before) > 0.0);
        assert!(after.rss_mib() > 0.0);
    }

    #[test]
    fn samples_own_pid_and_rejects_missing_one() {
        let sample = sample(std::process::id()).unwrap();
        assert!(sample.rss_bytes > 0);
        // pid_max is at most 2^22, so this pid cannot exist.
        assert!(super::sample(u32::MAX).is_err());
    }

    #[test]
    fn clock_ticks_are_plausible() {
        let ticks = clock_ticks_per_second();
        assert!((1..=10_000).contains(&ticks));
        assert!(page_size() >= 4096);
    }

    #[test]
    fn describes_machine() {
        let machine = machine();
        assert!(machine.cpus >= 1);
        assert!(machine.memory_gib > 0.0);
        assert!(!machine.kernel.is_empty());
        assert!(!machine.cpu_model.is_empty());
    }
}
