//! CPU meters of process replicas, for `cpu` autoscaling: the replica's
//! cgroup when it has one (everything it started, exactly), else its
//! process tree in `/proc`.

use std::sync::Arc;

use ferrofaas_sandbox::cgroup::Cgroup;

use crate::routes::CpuMeter;

type Reading<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<f64>> + Send + 'a>>;

/// Everything in the replica's cgroup.
pub(super) struct CgroupMeter {
    pub cgroup: Arc<Cgroup>,
}

impl CpuMeter for CgroupMeter {
    fn cpu_seconds(&self) -> Reading<'_> {
        Box::pin(async move { self.cgroup.cpu_seconds() })
    }
}

/// CPU time of a replica's process tree, from `/proc`: the watchdog with
/// the children it has reaped (the forked function processes), and its live
/// descendants.
pub(super) struct ProcMeter {
    pub pid: u32,
}

impl CpuMeter for ProcMeter {
    fn cpu_seconds(&self) -> Reading<'_> {
        Box::pin(async move { ferrofaas_types::procfs::tree_cpu_seconds(self.pid, true) })
    }
}
