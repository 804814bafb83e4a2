//! The sandbox of process replicas, built from Linux primitives: every
//! replica (its watchdog and all it starts) in its own user, mount, PID,
//! IPC, UTS and cgroup namespaces (and network namespace, if it opts out of
//! networking), on a root of its own where the host's runtimes are
//! read-only and the gateway's state is absent, as the function's own uid
//! and gid with no capabilities and `no_new_privs`, behind a seccomp
//! allow-list and Landlock, in a cgroup with the deployment's limits.
//!
//! Two halves: [`cgroup`] is what the provider uses (make a replica's
//! cgroup with its limits, read its CPU time and out-of-memory kills, kill
//! and remove it); the `faas-sandbox` program ([`run::run`]) makes one
//! sandbox as a [`Spec`] describes it and runs a program in it. Start
//! reading at [`run`], then `init`, `mounts`, `privileges`, `seccomp`.
#![cfg(target_os = "linux")]

pub mod cgroup;
mod init;
mod mounts;
mod privileges;
pub mod run;
mod seccomp;
mod spec;

pub use spec::{APP_DIR, Bind, CgroupDir, Identity, Link, PROGRAM, SECRETS_DIR, Spec, TMP_DIR};
