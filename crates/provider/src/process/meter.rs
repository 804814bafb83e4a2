//! Meters of process replicas, for `cpu` autoscaling and usage: the
//! replica's cgroup when it has one (everything it started, exactly, and
//! its memory's peak), else its process tree in `/proc` (and the memory it
//! holds when read).

use std::sync::{Arc, Mutex};

use ferrofaas_sandbox::cgroup::Cgroup;

use crate::routes::{Reading, ReplicaMeter, ReplicaReading};

/// Everything in the replica's cgroup.
pub(super) struct CgroupMeter {
    pub cgroup: Arc<Cgroup>,
    /// The descriptor its memory peak is read and reset through.
    pub peak: Mutex<Option<std::fs::File>>,
}

impl ReplicaMeter for CgroupMeter {
    fn cpu_seconds(&self) -> Reading<'_, f64> {
        Box::pin(async move { self.cgroup.cpu_seconds() })
    }

    fn read(&self) -> Reading<'_, ReplicaReading> {
        Box::pin(async move {
            let memory_bytes =
                self.cgroup.memory_peak(&mut self.peak.lock().unwrap_or_else(|e| e.into_inner()));
            Some(ReplicaReading { cpu_seconds: self.cgroup.cpu_seconds()?, memory_bytes })
        })
    }
}

/// CPU time of a replica's process tree, from `/proc`: the watchdog with
/// the children it has reaped (the forked function processes), and its live
/// descendants.
pub(super) struct ProcMeter {
    pub pid: u32,
}

impl ReplicaMeter for ProcMeter {
    fn cpu_seconds(&self) -> Reading<'_, f64> {
        Box::pin(async move { ferrofaas_types::procfs::tree_cpu_seconds(self.pid, true) })
    }

    fn read(&self) -> Reading<'_, ReplicaReading> {
        Box::pin(async move {
            Some(ReplicaReading {
                cpu_seconds: ferrofaas_types::procfs::tree_cpu_seconds(self.pid, true)?,
                memory_bytes: ferrofaas_types::procfs::tree_rss_bytes(self.pid),
            })
        })
    }
}
