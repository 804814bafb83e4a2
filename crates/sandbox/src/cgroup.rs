//! A cgroup per replica, on cgroup v1, v2, or the hybrid of both (v1
//! controllers beside a v2 hierarchy without them, as on the machines this
//! is built on). The provider creates one before a replica starts, with the
//! deployment's limits, and kills and removes it when the replica stops;
//! `faas-sandbox` joins it first thing, so everything the replica starts is
//! in it.
//!
//! Where: below the gateway's own cgroup on v1 (v1 lets a cgroup hold
//! processes and children at once), and on v2 either below its own cgroup
//! (when no controller is needed from v2) or in `/ferrofaas` at the top of
//! the hierarchy, as container engines do: v2 only hands controllers to
//! children of cgroups without processes. Each gateway keeps its replicas
//! in a folder of its own (`scope`), so several can share a machine.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The controllers replicas use.
const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "cpuacct"];
/// CFS period for CPU limits, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// What a replica may use; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// Thousandths of a CPU.
    pub cpu_millis: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One hierarchy this gateway puts replicas in.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    version: Version,
    /// The controllers it has that replicas use (none: membership only,
    /// for killing everything at once on v2).
    controllers: Vec<String>,
    /// The gateway's folder in it; replicas' cgroups go below.
    base: PathBuf,
}

/// Where this gateway's replicas' cgroups are made.
#[derive(Clone, Debug)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
}

/// A cgroup as `/proc/self/mountinfo` and `/proc/self/cgroup` describe it.
#[derive(Debug, PartialEq, Eq)]
struct Mounted {
    version: Version,
    controllers: Vec<String>,
    mountpoint: PathBuf,
    /// The folder of the hierarchy that is mounted there.
    root: String,
}

impl Cgroups {
    /// Finds the hierarchies and makes this gateway's folders in them
    /// (`scope` names the gateway). Fails, saying why, when replicas could
    /// not be given cgroups here (no permission, no cgroup file system).
    pub fn detect(scope: &str) -> Result<Cgroups, String> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let mounted = parse_mountinfo(&mountinfo);
        if mounted.is_empty() {
            return Err("no cgroup file system is mounted".into());
        }
        let mut hierarchies = Vec::new();
        let v1_has: Vec<String> =
            mounted.iter().filter(|m| m.version == Version::V1).flat_map(|m| m.controllers.clone()).collect();
        for m in &mounted {
            let Some(own_path) = own_path(&own, m) else { continue };
            let own_dir = m.mountpoint.join(relative(&own_path, &m.root));
            let hierarchy = match m.version {
                Version::V1 => Hierarchy {
                    version: Version::V1,
                    controllers: m.controllers.clone(),
                    base: own_dir.join(scope),
                },
                Version::V2 => {
                    let available =
                        fs::read_to_string(m.mountpoint.join("cgroup.controllers")).unwrap_or_default();
                    let wanted: Vec<String> = CONTROLLERS
                        .iter()
                        .filter(|c| !v1_has.iter().any(|v| v == *c))
                        .map(|c| if *c == "cpuacct" { "cpu" } else { c })
                        .filter(|c| available.split_whitespace().any(|a| a == *c))
                        .map(str::to_owned)
                        .fold(Vec::new(), |mut v, c| {
                            if !v.contains(&c) {
                                v.push(c);
                            }
                            v
                        });
                    if wanted.is_empty() {
                        Hierarchy { version: Version::V2, controllers: vec![], base: own_dir.join(scope) }
                    } else {
                        let top = m.mountpoint.join("ferrofaas");
                        enable(&m.mountpoint, &wanted)?;
                        make_dir(&top)?;
                        enable(&top, &wanted)?;
                        Hierarchy { version: Version::V2, controllers: wanted, base: top.join(scope) }
                    }
                }
            };
            make_dir(&hierarchy.base)?;
            if hierarchy.version == Version::V2 {
                // cpu only once a replica has a CPU limit (see `create`).
                let now: Vec<String> =
                    hierarchy.controllers.iter().filter(|c| *c != "cpu").cloned().collect();
                enable(&hierarchy.base, &now)?;
            }

            hierarchies.push(hierarchy);
        }
        let cgroups = Cgroups { hierarchies };
        for needed in ["memory", "pids"] {
            if cgroups.find(needed).is_none() {
                return Err(format!("no {needed} controller can be used"));
            }
        }
        Ok(cgroups)
    }

    fn find(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// Makes the cgroup of replica `name`, with `limits`.
    ///
    /// The CPU controller is used only for a CPU limit: a replica in a
    /// scheduling group of its own competes with the rest of the machine
    /// (the gateway, as one process or several) as one process, whatever
    /// it runs. Measured: a replica forking per request under load got 7%
    /// fewer requests through than unsandboxed; weighted as 64 processes,
    /// as many, but then an http-mode replica took the gateway's time and
    /// got a third fewer. Without a limit, a replica's processes are
    /// scheduled as plain processes are, and its CPU time is read from
    /// `cpuacct` (v1, mounted apart) or `cpu.stat` (v2), which schedule
    /// nothing.
    pub fn create(&self, name: &str, limits: &Limits) -> io::Result<Cgroup> {
        let mut dirs = Vec::new();
        for h in &self.hierarchies {
            let schedules = h.controllers.iter().any(|c| c == "cpu");
            if schedules && h.version == Version::V1 && limits.cpu_millis.is_none() {
                continue;
            }
            if schedules && h.version == Version::V2 && limits.cpu_millis.is_some() {
                enable(&h.base, &["cpu".to_owned()]).map_err(io::Error::other)?;
            }
            let dir = h.base.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
            dirs.push((h.clone(), dir));
        }
        let cgroup = Cgroup { dirs };
        if let Err(e) = cgroup.apply(limits) {
            cgroup.kill_and_remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Removes this gateway's (empty) folders: its replicas have stopped.
    pub fn remove(&self) {
        for h in &self.hierarchies {
            let _ = fs::remove_dir(&h.base);
        }
    }

    /// Kills and removes the cgroups a previous run of this gateway left.
    pub fn clean(&self) {
        for h in &self.hierarchies {
            let Ok(entries) = fs::read_dir(&h.base) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    Cgroup { dirs: vec![(h.clone(), entry.path())] }.kill_and_remove();
                }
            }
        }
    }
}

/// One replica's cgroup, in every hierarchy used.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<(Hierarchy, PathBuf)>,
}

impl Cgroup {
    fn dir(&self, controller: &str) -> Option<(Version, &Path)> {
        self.dirs
            .iter()
            .find(|(h, _)| h.controllers.iter().any(|c| c == controller))
            .map(|(h, d)| (h.version, d.as_path()))
    }

    fn apply(&self, limits: &Limits) -> io::Result<()> {
        let need = |controller: &str| {
            self.dir(controller).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("no {controller} controller for this limit"),
                )
            })
        };
        if let Some(bytes) = limits.memory_bytes {
            match need("memory")? {
                (Version::V1, dir) => {
                    write(dir, "memory.limit_in_bytes", &bytes.to_string())?;
                    // No swap beyond the limit, where swap accounting is on.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(dir, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
                    }
                }
                (Version::V2, dir) => {
                    write(dir, "memory.max", &bytes.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write(dir, "memory.swap.max", "0")?;
                    }
                }
            }
        }
        if let Some(pids) = limits.pids {
            let (_, dir) = need("pids")?;
            write(dir, "pids.max", &pids.to_string())?;
        }
        if let Some(millis) = limits.cpu_millis {
            let quota = (millis * CPU_PERIOD_US / 1000).max(1000);
            match need("cpu")? {
                (Version::V1, dir) => {
                    write(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                    write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
                }
                (Version::V2, dir) => write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?,
            }
        }
        Ok(())
    }

    /// Its folders, for a sandbox to join.
    pub fn dirs(&self) -> Vec<crate::CgroupDir> {
        self.dirs
            .iter()
            .map(|(h, d)| crate::CgroupDir { path: d.clone(), v2: h.version == Version::V2 })
            .collect()
    }

    /// The folder with the replica's memory files, to show it read-only
    /// inside: `(v1 or v2, folder)`.
    pub fn memory_dir(&self) -> Option<(Version, PathBuf)> {
        self.dir("memory").map(|(v, d)| (v, d.to_path_buf()))
    }

    /// CPU time used by everything in the cgroup, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        if let Some((Version::V1, dir)) = self.dir("cpuacct") {
            let ns: f64 = read(dir, "cpuacct.usage")?.trim().parse().ok()?;
            return Some(ns / 1e9);
        }
        let (_, dir) = self.dirs.iter().find(|(h, _)| h.version == Version::V2)?;
        let usec: f64 = keyed(&read(dir, "cpu.stat")?, "usage_usec")? as f64;
        Some(usec / 1e6)
    }

    /// The most memory everything here used since the last call with the
    /// same `peak` (at the first, since the cgroup was made), then starts
    /// the next interval. On cgroup v2 a descriptor of `memory.peak` kept
    /// in `peak` is reset (Linux 6.12 and later; on older kernels, what it
    /// uses now); on v1, `memory.max_usage_in_bytes` is.
    pub fn memory_peak(&self, peak: &mut Option<fs::File>) -> Option<u64> {
        use std::io::{Read, Seek, Write};
        match self.dir("memory")? {
            (Version::V1, dir) => {
                let bytes = read(dir, "memory.max_usage_in_bytes")?.trim().parse().ok()?;
                let _ = write(dir, "memory.max_usage_in_bytes", "0");
                Some(bytes)
            }
            (Version::V2, dir) => {
                if peak.is_none() {
                    *peak = fs::OpenOptions::new().read(true).write(true).open(dir.join("memory.peak")).ok();
                }
                if let Some(file) = peak.as_mut() {
                    let mut text = String::new();
                    let bytes = file
                        .rewind()
                        .and_then(|()| file.read_to_string(&mut text))
                        .ok()
                        .and_then(|_| text.trim().parse().ok());
                    if let Some(bytes) = bytes
                        && file.write_all(b"reset\n").is_ok()
                    {
                        return Some(bytes);
                    }
                    // Not resettable here: what it uses now, from now on.
                    *peak = None;
                }
                read(dir, "memory.current")?.trim().parse().ok()
            }
        }
    }

    /// How many times the kernel killed a process here for going over the
    /// memory limit.
    pub fn oom_kills(&self) -> Option<u64> {
        match self.dir("memory")? {
            (Version::V1, dir) => keyed(&read(dir, "memory.oom_control")?, "oom_kill"),
            (Version::V2, dir) => keyed(&read(dir, "memory.events")?, "oom_kill"),
        }
    }

    /// The memory limit, if one is set.
    pub fn memory_limit(&self) -> Option<u64> {
        let value = match self.dir("memory")? {
            (Version::V1, dir) => read(dir, "memory.limit_in_bytes")?,
            (Version::V2, dir) => read(dir, "memory.max")?,
        };
        value.trim().parse().ok().filter(|&b: &u64| b < (1 << 62))
    }

    /// The processes in it.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|(_, d)| read(d, "cgroup.procs"))
            .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills everything in it and removes it (blocking, up to about two
    /// seconds while the killed processes exit).
    pub fn kill_and_remove(&self) {
        for attempt in 0..100 {
            for (h, dir) in &self.dirs {
                if h.version == Version::V2 && dir.join("cgroup.kill").exists() {
                    let _ = write(dir, "cgroup.kill", "1");
                }
            }
            for pid in self.pids() {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid
                // was read from this cgroup, which only replicas join.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let mut left = false;
            for (_, dir) in &self.dirs {
                match fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => left = true,
                }
            }
            if !left {
                return;
            }
            std::thread::sleep(Duration::from_millis(if attempt < 10 { 2 } else { 20 }));
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(e.kind(), format!("writing {value} to {}: {e}", dir.join(file).display()))
    })
}

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

fn make_dir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))
}

/// Hands `controllers` to the children of the v2 cgroup `dir`.
fn enable(dir: &Path, controllers: &[String]) -> Result<(), String> {
    let current = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !current.split_whitespace().any(|have| have == c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(dir.join("cgroup.subtree_control"), missing.join(" "))
        .map_err(|e| format!("cannot enable {} in {}: {e}", missing.join(" "), dir.display()))
}

/// `key value` lines (cpu.stat, memory.events, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The cgroup mounts in a `/proc/self/mountinfo` text.
fn parse_mountinfo(text: &str) -> Vec<Mounted> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = left.split(' ').collect();
        let rest: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mountpoint), Some(fstype)) = (fields.get(3), fields.get(4), rest.first())
        else {
            continue;
        };
        let version = match *fstype {
            "cgroup" => Version::V1,
            "cgroup2" => Version::V2,
            _ => continue,
        };
        let controllers = match version {
            Version::V1 => rest
                .get(2)
                .map(|opts| opts.split(',').filter(|o| CONTROLLERS.contains(o)).map(str::to_owned).collect())
                .unwrap_or_default(),
            Version::V2 => Vec::new(),
        };
        if version == Version::V1 && controllers.is_empty() {
            // name=systemd, cpuset and the like: nothing replicas use.
            continue;
        }
        let mounted = Mounted {
            version,
            controllers,
            mountpoint: PathBuf::from(unescape(mountpoint)),
            root: unescape(root),
        };
        // A hierarchy mounted twice: the first mount is enough.
        if !out.iter().any(|m: &Mounted| m.version == mounted.version && m.controllers == mounted.controllers)
        {
            out.push(mounted);
        }
    }
    out
}

/// mountinfo writes spaces and the like as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v as char);
            i += 4;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// This process's cgroup in the hierarchy `m` (from `/proc/self/cgroup`).
fn own_path(text: &str, m: &Mounted) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match m.version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => {
                let listed: Vec<&str> = controllers.split(',').filter(|c| CONTROLLERS.contains(c)).collect();
                !listed.is_empty()
                    && listed.len() == m.controllers.len()
                    && listed.iter().all(|c| m.controllers.iter().any(|x| x == c))
            }
        };
        matches.then(|| path.to_owned())
    })
}

/// `path` below the mounted `root`, as a relative path.
fn relative(path: &str, root: &str) -> PathBuf {
    let rest = path.strip_prefix(root).unwrap_or(path);
    PathBuf::from(rest.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/pids rw,relatime shared:14 - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/cpuset rw,relatime shared:15 - cgroup cgroup rw,cpuset
";
    const HYBRID_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/d14c
2:cpu,cpuacct:/
0::/user.slice
";

    #[test]
    fn reads_a_hybrid_layout() {
        let m = parse_mountinfo(HYBRID);
        // cpuset is not a controller replicas use, systemd's has none.
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[0].version, Version::V2);
        assert!(m[0].controllers.is_empty());
        assert_eq!(m[1].controllers, vec!["memory"]);
        assert_eq!(m[2].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[3].controllers, vec!["pids"]);
        assert_eq!(own_path(HYBRID_OWN, &m[1]).as_deref(), Some("/process_api/d14c"));
        assert_eq!(own_path(HYBRID_OWN, &m[2]).as_deref(), Some("/"));
        assert_eq!(own_path(HYBRID_OWN, &m[0]).as_deref(), Some("/user.slice"));
    }

    #[test]
    fn reads_a_v2_layout_and_a_container_root() {
        let text = "29 23 0:26 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = parse_mountinfo(text);
        assert_eq!(
            m,
            vec![Mounted {
                version: Version::V2,
                controllers: vec![],
                mountpoint: "/sys/fs/cgroup".into(),
                root: "/docker/abc".into()
            }]
        );
        assert_eq!(own_path("0::/docker/abc/sub\n", &m[0]).as_deref(), Some("/docker/abc/sub"));
        assert_eq!(relative("/docker/abc/sub", "/docker/abc"), PathBuf::from("sub"));
        assert_eq!(relative("/", "/"), PathBuf::from(""));
    }

    #[test]
    fn reads_counters() {
        assert_eq!(keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"), Some(1500));
        assert_eq!(keyed("low 0\n", "oom_kill"), None);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    /// On this machine's real cgroups, when it lets us: a cgroup with a pids
    /// limit that a forked process joins, counted, killed and removed.
    #[test]
    fn a_real_cgroup() {
        let scope = format!("ferrofaas-test-{}", std::process::id());
        let cgroups = match Cgroups::detect(&scope) {
            Ok(c) => c,
            Err(why) => {
                eprintln!("skipped: cgroups cannot be used here ({why})");
                return;
            }
        };
        let limits = Limits { memory_bytes: Some(64 << 20), cpu_millis: Some(500), pids: Some(16) };
        let cg = cgroups.create("replica", &limits).unwrap();
        assert_eq!(cg.memory_limit(), Some(64 << 20));
        assert_eq!(cg.oom_kills(), Some(0));
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        for dir in cg.dirs() {
            fs::write(dir.path.join("cgroup.procs"), child.id().to_string()).unwrap();
        }
        assert_eq!(cg.pids(), vec![child.id() as i32]);
        assert!(cg.cpu_seconds().is_some());
        // A process that takes 40 MiB, gives it back, and says so: its
        // peak is read once, then the next interval's is much lower.
        let marker = std::env::temp_dir().join(format!("ferrofaas-peak-{}", std::process::id()));
        let script = format!(
            "import time\nb = b'x' * (40 << 20)\ndel b\nopen({:?}, 'w').close()\ntime.sleep(30)\n",
            marker.display().to_string()
        );
        let mut hog = std::process::Command::new("sh")
            .args(["-c", "read go; exec python3 -c \"$0\"", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        for dir in cg.dirs() {
            fs::write(dir.path.join("cgroup.procs"), hog.id().to_string()).unwrap();
        }
        let mut peak = None;
        let before = cg.memory_peak(&mut peak).unwrap();
        std::io::Write::write_all(hog.stdin.as_mut().unwrap(), b"go\n").unwrap();
        let waited = std::time::Instant::now();
        while !marker.exists() {
            assert!(waited.elapsed() < Duration::from_secs(20), "python3 did not run");
            std::thread::sleep(Duration::from_millis(20));
        }
        let high = cg.memory_peak(&mut peak).unwrap();
        let after = cg.memory_peak(&mut peak).unwrap();
        assert!(high >= before + (40 << 20), "peak {high} after {before}");
        assert!(after + (30 << 20) < high, "the interval after the peak: {after}, the peak {high}");
        let _ = fs::remove_file(&marker);
        cg.kill_and_remove();
        let _ = hog.wait();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(cg.dirs().iter().all(|d| !d.path.exists()));
        cgroups.clean();
        cgroups.remove();
        assert!(cgroups.hierarchies.iter().all(|h| !h.base.exists()), "the gateway's folders are gone");
    }
}
