//! Out-of-memory kills, as the kernel counts them for the replica's own
//! cgroup, so that a caller hears "out of memory" rather than "killed". The
//! counters are read where a sandbox or a container engine shows the
//! replica's cgroup (`/sys/fs/cgroup`, v2, or `/sys/fs/cgroup/memory`, v1),
//! and only when what is mounted there is this process's own cgroup (on a
//! host, it would be the whole machine's). Read at start-up and when a
//! function process dies of `SIGKILL`: nothing on the request path.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Counter {
    /// `memory.events` (v2) or `memory.oom_control` (v1).
    events: PathBuf,
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1).
    limit: PathBuf,
    at_start: u64,
}

static COUNTER: OnceLock<Option<Counter>> = OnceLock::new();

/// Finds the counters and remembers how many kills there were already.
pub fn init() {
    COUNTER.get_or_init(find);
}

fn find() -> Option<Counter> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let candidates = [
        ("/sys/fs/cgroup", "cgroup2", "memory.events", "memory.max"),
        ("/sys/fs/cgroup/memory", "cgroup", "memory.oom_control", "memory.limit_in_bytes"),
    ];
    for (dir, fstype, events, limit) in candidates {
        let Some(root) = mounted_root(&mountinfo, dir, fstype) else { continue };
        let mine = own.lines().any(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) =
                (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let matches = if fstype == "cgroup2" {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == "memory")
            };
            matches && path == root
        });
        let events = Path::new(dir).join(events);
        if mine && let Some(at_start) = kills(&events) {
            return Some(Counter { events, limit: Path::new(dir).join(limit), at_start });
        }
    }
    None
}

/// The folder of the cgroup hierarchy mounted at `dir`, if one is.
fn mounted_root(mountinfo: &str, dir: &str, fstype: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        (fields.get(4) == Some(&dir) && right.split(' ').next() == Some(fstype)).then(|| fields[3].to_owned())
    })
}

fn kills(events: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(events).ok()?;
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Why a function process was killed, if the kernel killed one here for
/// memory since the watchdog started: "out of memory (over the replica's
/// memory limit of 64 MiB)".
pub fn cause() -> Option<String> {
    let counter = COUNTER.get_or_init(find).as_ref()?;
    if kills(&counter.events)? <= counter.at_start {
        return None;
    }
    let limit = std::fs::read_to_string(&counter.limit).ok().and_then(|l| l.trim().parse::<u64>().ok());
    Some(match limit.filter(|&b| b < 1 << 62) {
        Some(bytes) => format!("out of memory (over the replica's memory limit of {} MiB)", bytes >> 20),
        None => "out of memory".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mounted_hierarchy() {
        let info = "30 23 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n\
                    33 30 0:29 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(mounted_root(info, "/sys/fs/cgroup/memory", "cgroup").as_deref(), Some("/docker/abc"));
        assert_eq!(mounted_root(info, "/sys/fs/cgroup", "cgroup2"), None);
    }
}
