//! Giving up everything: the capabilities (all five sets, the bounding set
//! first), root for the function's own uid and gid, and for good
//! (`no_new_privs`: no set-uid program or file capability gives any back);
//! then Landlock, which refuses TCP binds but to the replica's own port and
//! signals and abstract sockets beyond the sandbox.

use caps::CapSet;
use landlock::{
    AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};
use nix::unistd::{Gid, Uid, setresgid, setresuid};

use crate::spec::Identity;

/// Drops to `identity`, with no capabilities left in any set.
pub fn drop_to(identity: Identity) -> Result<(), String> {
    // Needs CAP_SETPCAP, so before the uid changes.
    caps::clear(None, CapSet::Bounding).map_err(|e| format!("clearing the bounding set: {e}"))?;
    if !identity.user_namespace {
        // Root on the host: the supplementary groups go too (in a user
        // namespace they were dropped before it was made).
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    }
    switch_ids(identity)?;
    for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|e| format!("clearing capabilities ({set:?}): {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    Ok(())
}

/// Sets the real, effective and saved uid and gid to `identity`'s.
pub fn switch_ids(identity: Identity) -> Result<(), String> {
    let (uid, gid) = (Uid::from_raw(identity.uid), Gid::from_raw(identity.gid));
    setresgid(gid, gid, gid).map_err(|e| format!("setresgid {gid}: {e}"))?;
    setresuid(uid, uid, uid).map_err(|e| format!("setresuid {uid}: {e}"))
}

/// Only `ports` may be bound over TCP; no signal or abstract UNIX socket
/// reaches outside the sandbox. Best effort: an older kernel enforces what
/// it knows (the rest of the sandbox does not depend on it).
pub fn landlock(ports: &[u16]) -> Result<(), String> {
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessNet::BindTcp)
        .and_then(|r| r.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(ports.iter().map(|&p| Ok(NetPort::new(p, AccessNet::BindTcp)))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    Ok(())
}

/// Brings up `lo` in a new network namespace (it starts down).
pub fn loopback_up() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain data; the name is NUL-terminated within its
    // array, and both ioctls only read and write that struct.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(format!("reading lo's flags: {}", std::io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(format!("bringing lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
