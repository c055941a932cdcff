//! `bench sync --server-cpus LIST`: pin every thread of this process to a set of CPUs
//! (threads started later inherit it), so a measured server shares no core with a load
//! generator pinned elsewhere.

use crate::exit::Failure;

/// `0`, `0,1`, `0-3`, `0-1,3` → the CPU numbers.
pub fn parse_cpus(list: &str, flag: &str) -> Result<Vec<usize>, Failure> {
    let bad = || {
        Failure::usage(format!(
            "{flag} {list:?}: use CPU numbers and ranges, e.g. 0 or 0-1 or 0,2"
        ))
    };
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b || b >= 1024 {
            return Err(bad());
        }
        cpus.extend(a..=b);
    }
    if cpus.is_empty() {
        return Err(bad());
    }
    Ok(cpus)
}

/// `--sandbox-cpus` parsed; refused (before anything starts) without `--sandbox-process`.
pub fn sandbox_cpus(args: &crate::cli::BenchSyncArgs) -> Result<Option<Vec<usize>>, Failure> {
    match (&args.process.sandbox_cpus, args.process.sandbox_process) {
        (None, _) => Ok(None),
        (Some(_), false) => Err(Failure::usage(
            "--sandbox-cpus pins the simulators' own process: add --sandbox-process (or drop --sandbox-cpus; --server-cpus pins this process)",
        )),
        (Some(list), true) => parse_cpus(list, "--sandbox-cpus").map(Some),
    }
}

/// Pin every thread of this process to `cpus`.
pub fn pin_process(cpus: &[usize]) -> Result<(), Failure> {
    pin_threads_of("self", cpus)
}

/// Pin every thread of process `pid` (e.g. a child) to `cpus`; its threads started later
/// inherit it.
pub fn pin_pid(pid: u32, cpus: &[usize]) -> Result<(), Failure> {
    pin_threads_of(&pid.to_string(), cpus)
}

fn pin_threads_of(proc_dir: &str, cpus: &[usize]) -> Result<(), Failure> {
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus {
        set.set(*c);
    }
    let tasks = std::fs::read_dir(format!("/proc/{proc_dir}/task"))
        .map_err(|e| Failure::runtime(format!("cannot list the process's threads: {e}")))?;
    for t in tasks.flatten() {
        let tid = t
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(tid) = tid {
            rustix::thread::sched_setaffinity(Some(tid), &set).map_err(|e| {
                Failure::usage(format!(
                    "cannot pin to CPUs {cpus:?}: {e} (is every CPU online? see nproc)"
                ))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_cpus;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0", "--x").ok(), Some(vec![0]));
        assert_eq!(parse_cpus("0-2,5", "--x").ok(), Some(vec![0, 1, 2, 5]));
        assert!(parse_cpus("2-1", "--x").is_err());
        assert!(parse_cpus("a", "--x").is_err());
        assert!(parse_cpus("", "--x").is_err());
    }
}
