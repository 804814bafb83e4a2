//! The sandbox's first process, PID 1 of its own PID namespace: it builds
//! the root, gives up every privilege, starts the program, and then is its
//! init: it reaps every orphan, passes on the signals that come from
//! outside (a process inside cannot stop it), and exits with the program's
//! status, which makes the kernel kill whatever is left inside.

use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::spec::Spec;
use crate::{mounts, privileges, seccomp};

/// Signals passed on to the sandbox (and `SIGCHLD`, to see it end), by its
/// parent outside and by init inside.
pub(crate) const FORWARDED: [Signal; 6] =
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// The exit code when the sandbox could not be made (as container runtimes do).
pub const SETUP_FAILED: i32 = 125;

/// Runs in the clone made by [`crate::run::run`]; returns its exit code.
/// `inherited` are the parent's descriptors that must not stay open here.
pub fn main(spec: &Spec, go: BorrowedFd<'_>, inherited: &[RawFd]) -> i32 {
    for fd in inherited {
        let _ = nix::unistd::close(*fd);
    }
    // If the parent dies, so does the sandbox (and with PID 1, all of it).
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        return SETUP_FAILED;
    }
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(go, &mut byte), Ok(1)) {
        // The parent could not map the ids, or died.
        return SETUP_FAILED;
    }
    let exec = match Exec::new(spec) {
        Ok(exec) => exec,
        Err(e) => return fail(&e),
    };
    if let Err(e) = setup(spec) {
        return fail(&e);
    }
    let mut signals = SigSet::empty();
    for s in FORWARDED.iter().chain(&[Signal::SIGCHLD]) {
        signals.add(*s);
    }
    let mut signal_fd = match SignalFd::new(&signals) {
        Ok(fd) => fd,
        Err(e) => return fail(&format!("signalfd: {e}")),
    };
    // SAFETY: single-threaded; the child only resets its signal mask and
    // calls execve (or _exit).
    let program = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            exec.exec()
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return fail(&format!("fork: {e}")),
    };
    reap(program, &mut signal_fd)
}

fn fail(message: &str) -> i32 {
    eprintln!("faas-sandbox: {message}");
    SETUP_FAILED
}

/// Everything between a privileged clone and an unprivileged program.
fn setup(spec: &Spec) -> Result<(), String> {
    // The binds' sources are opened first, with this process's access to
    // the host's files (the sandbox's uid may not reach them), and bound
    // from these descriptors later.
    let sources = spec
        .binds
        .iter()
        .map(|b| {
            nix::fcntl::open(&b.source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| format!("{}: {e}", b.source.display()))
        })
        .collect::<Result<Vec<OwnedFd>, _>>()?;
    mounts::prepare_root(spec)?;
    if spec.identity.user_namespace {
        // The uid this process has (the host's root, or the provider's own)
        // is not mapped here, and files cannot be made by an unmapped uid:
        // switch now. In a user namespace without a root mapped, the
        // capabilities stay until they are cleared below.
        privileges::switch_ids(spec.identity)?;
    }
    mounts::build_root(spec, &sources)?;
    drop(sources);
    nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    if !spec.network {
        privileges::loopback_up()?;
    }
    if let Some(n) = spec.nproc {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, n, n)
            .map_err(|e| format!("RLIMIT_NPROC: {e}"))?;
    }
    privileges::drop_to(spec.identity)?;
    privileges::landlock(&spec.bind_ports)?;
    seccomp::install()?;
    nix::unistd::chdir(&spec.workdir).map_err(|e| format!("chdir {}: {e}", spec.workdir.display()))?;
    Ok(())
}

/// The program's `execve` arguments, made before anything is given up.
struct Exec {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Exec {
    fn new(spec: &Spec) -> Result<Exec, String> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| "a NUL byte in the program's arguments".to_owned())
        };
        let program = c(spec.program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for arg in &spec.args {
            argv.push(c(arg.as_bytes())?);
        }
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env.push(c(&kv)?);
        }
        Ok(Exec { program, argv, env })
    }

    fn exec(&self) -> ! {
        let e = nix::unistd::execve(&self.program, &self.argv, &self.env).err();
        eprintln!("faas-sandbox: cannot run {}: {e:?}", self.program.to_string_lossy());
        // SAFETY: _exit(2) is always safe; nothing of this copy needs flushing.
        unsafe { libc::_exit(127) }
    }
}

/// Init's loop: reaps every child; signals from outside (the parent: a
/// sender outside the namespace shows as pid 0) go to the program; exits
/// once the program has.
fn reap(program: Pid, signal_fd: &mut SignalFd) -> i32 {
    loop {
        let info = match signal_fd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(_) => return SETUP_FAILED,
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else { continue };
        if signal != Signal::SIGCHLD {
            if info.ssi_pid == 0 {
                let _ = kill(program, signal);
            }
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == program => return code,
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == program => return 128 + signal as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
