//! What `/proc` tells of processes: the CPU time of a process tree (a
//! replica's meter for `cpu` autoscaling, read by the process provider and
//! by the watchdog for its `/metrics`).

/// CPU seconds of process `pid` and its live descendants; with
/// `with_reaped`, also of the children it has reaped (the kernel adds
/// theirs to its `cutime` and `cstime`). `None` if there is no such process.
pub fn tree_cpu_seconds(pid: u32, with_reaped: bool) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces: state is
    // field 3, utime 14, stime 15, cutime 16, cstime 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let mut total = field(14) + field(15);
    if with_reaped {
        total += field(16) + field(17);
    }
    let mut seconds = total / ticks;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            seconds += tree_cpu_seconds(child, false).unwrap_or(0.0);
        }
    }
    Some(seconds)
}

/// Resident memory of process `pid` and its live descendants, in bytes.
/// `None` if there is no such process.
pub fn tree_rss_bytes(pid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    // statm: size resident shared ... (in pages).
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut bytes = statm.split(' ').nth(1)?.parse::<u64>().ok()? * page;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            bytes += tree_rss_bytes(child).unwrap_or(0);
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cpu_of_a_process_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 5"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let own = tree_cpu_seconds(std::process::id(), true).unwrap();
        let child_cpu = tree_cpu_seconds(child.id(), true).unwrap();
        assert!(child_cpu > 0.0, "the busy loop used CPU");
        assert!(own >= child_cpu, "a parent counts its live children");
        assert!(tree_cpu_seconds(u32::MAX, true).is_none());
        let (own, child_rss) =
            (tree_rss_bytes(std::process::id()).unwrap(), tree_rss_bytes(child.id()).unwrap());
        assert!(child_rss > 0 && own > child_rss, "{own} {child_rss}");
        assert!(tree_rss_bytes(u32::MAX).is_none());
        let _ = child.kill();
        let _ = child.wait();
    }
}
