//! Starting function processes: one per request in the fork modes, one for the
//! life of the watchdog in `http` mode.
//!
//! Every function process leads its own process group, so that a timeout kills
//! whatever it started too, and never leaves a zombie: the exit status is
//! always collected.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll, ready};

use bytes::BytesMut;

use http::request::Parts;
use tokio::io::AsyncRead;
use tokio::process::{ChildStdin, Command};

use crate::logs::{self, Stream};

/// Kills a function's process group, until its leader has been reaped (after
/// that, the group id could be reused by an unrelated process).
pub struct ProcessGroup {
    pgid: i32,
    armed: bool,
}

impl ProcessGroup {
    fn new(pid: u32) -> ProcessGroup {
        let pgid = i32::try_from(pid).unwrap_or(0);
        ProcessGroup { pgid, armed: pgid > 0 }
    }

    pub fn id(&self) -> i32 {
        self.pgid
    }

    /// Sends SIGKILL to every process in the group.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    pub fn signal(&mut self, signal: i32) {
        if self.armed {
            // SAFETY: killpg has no memory-safety preconditions; the group id
            // belongs to our unreaped child, so it cannot name another group.
            unsafe {
                libc::killpg(self.pgid, signal);
            }
        }
    }

    /// The leader's exit status has been collected: stop signalling the group.
    pub fn reaped(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the STDERR of per-request processes goes.
pub enum StderrSink {
    /// Straight to the watchdog's own STDERR.
    Inherit,
    /// Into one pipe shared by all requests, read by one task that prefixes
    /// each line. Writes of up to 4 KiB to a pipe are atomic, so lines of
    /// concurrent requests do not interleave.
    Prefixed(std::io::PipeWriter),
}

impl StderrSink {
    /// Must be called inside the Tokio runtime (it starts the reading task).
    pub fn new(prefix_logs: bool) -> io::Result<StderrSink> {
        if !prefix_logs {
            return Ok(StderrSink::Inherit);
        }
        let (reader, writer) = std::io::pipe()?;
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?;
        tokio::spawn(logs::forward_lines(reader, Stream::Stderr, true));
        Ok(StderrSink::Prefixed(writer))
    }

    fn stdio(&self) -> io::Result<Stdio> {
        Ok(match self {
            StderrSink::Inherit => Stdio::inherit(),
            StderrSink::Prefixed(writer) => Stdio::from(writer.try_clone()?),
        })
    }
}

/// The output of a running function: STDOUT (maybe merged with STDERR).
pub type Output = Pin<Box<dyn AsyncRead + Send>>;

/// Resolves with the exit status once the function process has ended.
type ExitFuture = Pin<Box<dyn Future<Output = io::Result<ExitStatus>> + Send>>;

/// A per-request function process, with its pipes.
///
/// Whatever happens to the request, the process is reaped: dropped before it
/// has been waited for, it is killed (with its group) and a task collects its
/// exit status, so no zombie is left behind.
pub struct Running {
    pub stdin: Option<ChildStdin>,
    /// `None` once the output has ended (see [`Running::poll_read_output`]).
    pub output: Option<Output>,
    exit: Option<ExitFuture>,
    /// The exit status, once seen while reading the output.
    exited: Option<io::Result<ExitStatus>>,
    /// What may still be read after the exit (a pipe holds 64 KiB).
    after_exit: usize,
    group: ProcessGroup,
}

/// The most output a process can have left in its pipe when it exits.
const PIPE_CAPACITY: usize = 64 * 1024;

impl Running {
    pub fn pid(&self) -> i32 {
        self.group.id()
    }

    /// Polls for the exit status (once; later calls fail).
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        let Some(exit) = self.exit.as_mut() else {
            return Poll::Ready(Err(io::Error::other("the function process was already waited for")));
        };
        let status = ready!(exit.as_mut().poll(cx));
        self.exit = None;
        self.group.reaped();
        Poll::Ready(status)
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        std::future::poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// Reads the next piece of output into `buf`: `Some(n)`, or `None` once
    /// it has ended: at end of file, or when the process has exited and what
    /// it wrote before is read. A process it left behind may hold the pipe
    /// open, but what that writes is not the function's answer, and waiting
    /// for it would hold the response until `exec_timeout`.
    pub fn poll_read_output(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<Option<io::Result<usize>>> {
        loop {
            if let Some(output) = self.output.as_mut() {
                match tokio_util::io::poll_read_buf(output.as_mut(), cx, buf) {
                    Poll::Ready(Ok(0)) => self.output = None,
                    Poll::Ready(Ok(n)) => {
                        if self.exited.is_some() {
                            self.after_exit = self.after_exit.saturating_sub(n);
                            if self.after_exit == 0 {
                                self.output = None;
                            }
                        }
                        return Poll::Ready(Some(Ok(n)));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    // Exited, and nothing more in the pipe: the answer is whole.
                    Poll::Pending if self.exited.is_some() => self.output = None,
                    Poll::Pending => {}
                }
            }
            if self.exited.is_none() && self.exit.is_some() {
                let status = ready!(self.poll_wait(cx));
                self.exited = Some(status);
                self.after_exit = PIPE_CAPACITY;
                if self.output.is_some() {
                    continue;
                }
            }
            return Poll::Ready(None);
        }
    }

    /// Reads all the output (as [`Running::poll_read_output`] ends it) and
    /// the exit status.
    pub async fn read_all(&mut self) -> (io::Result<Vec<u8>>, io::Result<ExitStatus>) {
        let mut buf = BytesMut::new();
        loop {
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            match std::future::poll_fn(|cx| self.poll_read_output(cx, &mut buf)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return (Err(e), self.exit_status().await),
                None => break,
            }
        }
        (Ok(buf.to_vec()), self.exit_status().await)
    }

    /// The exit status, once the output has ended.
    pub fn poll_exit_status(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        match self.exited.take() {
            Some(status) => Poll::Ready(status),
            None => self.poll_wait(cx),
        }
    }

    pub async fn exit_status(&mut self) -> io::Result<ExitStatus> {
        std::future::poll_fn(|cx| self.poll_exit_status(cx)).await
    }

    /// SIGKILL to the process group; the exit status is still to be collected.
    pub fn kill(&mut self) {
        self.group.kill();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(exit) = self.exit.take() {
            self.group.kill();
            self.group.reaped();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = exit.await;
                });
            }
        }
    }
}

/// Starts `argv` for one request, with CGI-style `Http_*` variables.
///
/// With `combine_output`, STDERR is written into the same pipe as STDOUT.
pub fn spawn_for_request(
    argv: &[String],
    parts: &Parts,
    stderr: &StderrSink,
    combine_output: bool,
) -> io::Result<Running> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::piped()).process_group(0).kill_on_drop(true);
    remove_socket_activation(&mut cmd);
    add_cgi_env(&mut cmd, parts);

    let combined = if combine_output {
        let (reader, writer) = std::io::pipe()?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        Some(reader)
    } else {
        cmd.stdout(Stdio::piped()).stderr(stderr.stdio()?);
        None
    };
    let mut child = cmd.spawn()?;
    // The command holds our copies of the pipes' write ends: close them now,
    // or the output would never reach end of file.
    drop(cmd);

    let group = ProcessGroup::new(child.id().unwrap_or(0));
    let stdin = child.stdin.take();
    let output: Output = match combined {
        Some(reader) => Box::pin(tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?),
        None => Box::pin(
            child.stdout.take().ok_or_else(|| io::Error::other("the function's stdout was not captured"))?,
        ),
    };
    let exit: ExitFuture = Box::pin(async move { child.wait().await });
    Ok(Running { stdin, output: Some(output), exit: Some(exit), exited: None, after_exit: 0, group })
}

/// The request as environment variables, as the OpenFaaS watchdogs set them:
/// `Http_Method`, `Http_Path`, `Http_Query`, `Http_ContentLength` and one
/// `Http_<Header_Name>` per header. The request line wins over any header of
/// the same name.
fn add_cgi_env(cmd: &mut Command, parts: &Parts) {
    let mut name = String::with_capacity(64);
    for key in parts.headers.keys() {
        name.clear();
        name.push_str("Http_");
        push_canonical_header(&mut name, key.as_str());
        let mut values = parts.headers.get_all(key).iter();
        let Some(first) = values.next() else { continue };
        match values.next() {
            None => cmd.env(&name, OsStr::from_bytes(first.as_bytes())),
            Some(second) => {
                let mut joined = first.as_bytes().to_vec();
                for v in std::iter::once(second).chain(values) {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(v.as_bytes());
                }
                cmd.env(&name, OsStr::from_bytes(&joined))
            }
        };
    }
    cmd.env("Http_Method", parts.method.as_str());
    cmd.env("Http_Path", parts.uri.path());
    match parts.uri.query() {
        Some(query) => cmd.env("Http_Query", query),
        None => cmd.env_remove("Http_Query"),
    };
    if let Some(len) = parts.headers.get(http::header::CONTENT_LENGTH) {
        cmd.env("Http_ContentLength", OsStr::from_bytes(len.as_bytes()));
    }
}

/// The socket handed to the watchdog (`LISTEN_FDS`) is not the function's.
fn remove_socket_activation(cmd: &mut Command) {
    cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID").env_remove("LISTEN_FDNAMES");
}

/// `x-call-id` -> `X_Call_Id`: Go's canonical header form, dashes as underscores.
fn push_canonical_header(out: &mut String, header: &str) {
    let mut upper = true;
    for c in header.chars() {
        if c == '-' {
            out.push('_');
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
}

/// The long-lived function process of `http` mode.
pub struct Upstream {
    pub child: tokio::process::Child,
    pub group: ProcessGroup,
}

/// Starts the `http` mode function process. Its output goes to the watchdog's
/// own STDOUT/STDERR, line by line with a prefix if `prefix_logs` is set.
///
/// Call this from the thread that lives as long as the watchdog: the process
/// is asked to die with that thread (`PR_SET_PDEATHSIG`), so that a watchdog
/// killed with SIGKILL leaves no orphan behind.
pub fn spawn_upstream(argv: &[String], prefix_logs: bool) -> io::Result<Upstream> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    remove_socket_activation(&mut cmd);
    if prefix_logs {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(logs::forward_lines(out, Stream::Stdout, true));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(logs::forward_lines(err, Stream::Stderr, true));
    }
    let group = ProcessGroup::new(child.id().unwrap_or(0));
    Ok(Upstream { child, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_header_names() {
        for (raw, want) in [
            ("x-call-id", "X_Call_Id"),
            ("content-type", "Content_Type"),
            ("HOST", "Host"),
            ("x--odd", "X__Odd"),
        ] {
            let mut out = String::new();
            push_canonical_header(&mut out, raw);
            assert_eq!(out, want);
        }
    }
}
