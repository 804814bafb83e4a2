//! The sandbox's own root: a small tmpfs with the host's runtimes (`/usr`,
//! `/etc`, ...) bound read-only, the function's files and secrets
//! read-only, a private `/tmp`, `/dev` with the harmless devices only, and
//! `/proc` of its own PID namespace. Nothing else of the host is there:
//! not the state folder, not other functions, not the Docker socket.
//!
//! Runs in the sandbox's first process, in its new mount namespace, before
//! it drops its privileges.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::spec::{Spec, TMP_DIR};

/// Devices bound from the host's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Mounts the new root's tmpfs on `spec.root` (owned by the sandbox's uid,
/// which fills it) and enters it. Needs the privileges that reach
/// `spec.root`, so before the uid changes.
pub fn prepare_root(spec: &Spec) -> Result<(), String> {
    // Nothing mounted here reaches the host, and nothing the host mounts
    // later reaches in.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| err("making mounts private", e))?;
    let options = format!("mode=0755,size=1m,uid={},gid={}", spec.identity.uid, spec.identity.gid);
    mount(
        Some("tmpfs"),
        &spec.root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| err(format!("mounting the new root on {}", spec.root.display()), e))?;
    nix::unistd::chdir(&spec.root).map_err(|e| err("entering the new root", e))
}

/// Fills the new root (the working folder, from [`prepare_root`]) and
/// makes it `/`; `sources` are the binds' sources, opened (`O_PATH`) in
/// this mount namespace.
pub fn build_root(spec: &Spec, sources: &[OwnedFd]) -> Result<(), String> {
    let root = Path::new(".");
    for link in &spec.links {
        let at = inside(root, &link.path);
        make_parent(&at)?;
        std::os::unix::fs::symlink(&link.target, &at)
            .map_err(|e| err(format!("linking {}", link.path.display()), e))?;
    }
    for (bind, fd) in spec.binds.iter().zip(sources) {
        let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        bind_read_only(&source, &inside(root, &bind.target))
            .map_err(|e| e.replace(&source.display().to_string(), &bind.source.display().to_string()))?;
    }

    let tmp = inside(root, Path::new(TMP_DIR));
    tmpfs(&tmp, spec.tmp_bytes, 0o1777)?;
    dev(&inside(root, Path::new("/dev")), spec.tmp_bytes)?;
    let proc = inside(root, Path::new("/proc"));
    make_dir(&proc)?;
    mount(
        Some("proc"),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| err("mounting /proc", e))?;

    // The old root goes: stacked under the new one by pivot_root(".", "."),
    // then detached.
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))?;
    // The skeleton itself is read-only too.
    remount_read_only(Path::new("/"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        .map_err(|e| err("making / read-only", e))?;
    remount_read_only(Path::new("/dev"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)
        .map_err(|e| err("making /dev read-only", e))
}

/// Makes the mount at `target` read-only (a flag of that mount alone), with
/// `flags` besides.
fn remount_read_only(target: &Path, flags: MsFlags) -> nix::Result<()> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | flags;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
}

/// `path` (absolute, checked by [`Spec::validate`]) below `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn make_dir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| err(format!("making {}", path.display()), e))
}

fn make_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) => make_dir(parent),
        None => Ok(()),
    }
}

/// Binds `source` at `target` read-only, without set-uid programs or
/// devices, keeping the flags the source's mount has locked (a mount made
/// in a user namespace may not lift them).
fn bind_read_only(source: &Path, target: &Path) -> Result<(), String> {
    let is_dir = fs::metadata(source).map_err(|e| err(source.display(), e))?.is_dir();
    if is_dir {
        make_dir(target)?;
    } else {
        make_parent(target)?;
        if !target.exists() {
            fs::write(target, b"").map_err(|e| err(format!("making {}", target.display()), e))?;
        }
    }
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| err(format!("binding {}", source.display()), e))?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let locked = statvfs(source).map_err(|e| err(format!("statvfs {}", source.display()), e))?.flags();
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if locked.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    remount_read_only(target, flags).map_err(|e| err(format!("making {} read-only", source.display()), e))
}

fn tmpfs(path: &Path, bytes: u64, mode: u32) -> Result<(), String> {
    make_dir(path)?;
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode={mode:o},size={bytes}").as_str()),
    )
    .map_err(|e| err(format!("mounting a tmpfs on {}", path.display()), e))
}

/// `/dev`: a tmpfs with the harmless devices bound from the host's, the
/// usual links, and `/dev/shm`.
fn dev(path: &Path, shm_bytes: u64) -> Result<(), String> {
    make_dir(path)?;
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .map_err(|e| err("mounting /dev", e))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = path.join(name);
        fs::write(&target, b"").map_err(|e| err(format!("making /dev/{name}"), e))?;
        mount(Some(&host), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| err(format!("binding /dev/{name}"), e))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, path.join(link))
            .map_err(|e| err(format!("linking /dev/{link}"), e))?;
    }
    tmpfs(&path.join("shm"), shm_bytes, 0o1777)?;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
    Ok(())
}
