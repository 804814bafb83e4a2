//! `faas-sandbox run SPEC`: the process the provider starts for a replica.
//! It stays outside the sandbox, as its parent: it joins the replica's
//! cgroups, makes the sandbox's first process in new namespaces (user,
//! mount, PID, IPC, UTS, cgroup, and network if asked), maps its user and
//! group, lets it go on, then passes signals to it and exits as it does.
//!
//! ```text
//! provider --spawn--> faas-sandbox run     (host; cgroups joined)
//!                       '--clone--> init   (PID 1 inside: builds the root,
//!                                           drops everything, reaps)
//!                                     '--fork+exec--> faas-watchdog
//!                                                      '--> the function
//! ```

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::init;
use crate::spec::Spec;

use crate::init::FORWARDED;
pub use crate::init::SETUP_FAILED;

/// Runs the sandbox `spec` describes until its program exits; its exit
/// code (128 + the signal's number if a signal ended it).
pub fn run(spec: &Spec) -> Result<i32, String> {
    spec.validate()?;
    let root = nix::unistd::geteuid().is_root();
    if !root && !spec.identity.user_namespace {
        return Err("without a user namespace the sandbox must be started by root".into());
    }
    if !root && spec.identity.uid != nix::unistd::geteuid().as_raw() {
        return Err(format!("an unprivileged sandbox runs as its own uid, not {}", spec.identity.uid));
    }
    // Only stdin, stdout, stderr and the replica's socket (fd 3) go in.
    // SAFETY: close_range(2) only closes descriptors; none above 3 is used
    // by this program yet.
    unsafe {
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
    }
    if root && spec.identity.user_namespace {
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    }
    // v1: this process (one thread, so far) joins; v2: its first child is
    // made there (see `CgroupDir`).
    let mut v2_cgroup = None;
    for cgroup in &spec.cgroups {
        if cgroup.v2 {
            let dir = nix::fcntl::open(
                &cgroup.path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("opening the cgroup {}: {e}", cgroup.path.display()))?;
            v2_cgroup = Some(dir);
        } else {
            std::fs::write(cgroup.path.join("tasks"), "0")
                .map_err(|e| format!("joining the cgroup {}: {e}", cgroup.path.display()))?;
        }
    }

    let mut signals = SigSet::empty();
    for s in FORWARDED.iter().chain(&[Signal::SIGCHLD]) {
        signals.add(*s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).map_err(|e| format!("sigprocmask: {e}"))?;
    let signal_fd = SignalFd::new(&signals).map_err(|e| format!("signalfd: {e}"))?;

    let (go_read, go_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    if spec.identity.user_namespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if !spec.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let child = match clone3(flags, v2_cgroup.as_ref())
        .map_err(|e| format!("making the namespaces (clone3): {e}"))?
    {
        // The child: a copy of this single-threaded program, as after fork.
        None => {
            let code =
                init::main(spec, go_read.as_fd(), &[go_write.as_raw_fd(), signal_fd.as_fd().as_raw_fd()]);
            std::process::exit(code);
        }
        Some(pid) => pid,
    };
    drop(go_read);

    if spec.identity.user_namespace
        && let Err(e) = map_ids(child, spec)
    {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(e);
    }
    let mut go = std::fs::File::from(go_write);
    if go.write_all(b"g").is_err() {
        // It died already; its status says how.
    }
    drop(go);

    loop {
        let Some(info) = signal_fd.read_signal().map_err(|e| format!("reading signals: {e}"))? else {
            continue;
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else { continue };
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the sandbox: {e}")),
        }
    }
}

/// `clone3(2)`: a child in new namespaces (`flags`), made straight in the
/// cgroup v2 folder `cgroup` if given; `None` in the child, as fork.
fn clone3(flags: CloneFlags, cgroup: Option<&OwnedFd>) -> Result<Option<Pid>, Errno> {
    /// `struct clone_args` of `linux/sched.h` (up to `cgroup`, Linux 5.7).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args =
        CloneArgs { flags: flags.bits() as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size given; with no stack
    // given the child runs on a copy of this stack, as after fork, which is
    // sound here because this program is single-threaded.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// Maps the sandbox's uid and gid to themselves, and nothing else: no root
/// inside, and no `setgroups` (which could drop a group that denies).
fn map_ids(child: Pid, spec: &Spec) -> Result<(), String> {
    let Spec { identity, .. } = spec;
    let proc = format!("/proc/{child}");
    let write = |file: &str, text: String| {
        std::fs::write(format!("{proc}/{file}"), text)
            .map_err(|e| format!("writing {file} of the sandbox: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{0} {0} 1\n", identity.uid))?;
    write("gid_map", format!("{0} {0} 1\n", identity.gid))
}
