//! The overlay network the functions and the gateway share: made if
//! missing, and whether this process is on it (the gateway routes to task
//! addresses, so it must be).

use super::*;

/// Creates the attachable overlay network `name` unless it exists; an
/// existing network of another kind is an error.
pub async fn ensure_network(docker: &Docker, name: &str) -> io::Result<()> {
    if let Ok(existing) =
        docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await
    {
        return match existing.driver.as_deref() {
            Some("overlay") => Ok(()),
            other => Err(io::Error::other(format!(
                "network {name} exists with driver {}: the Swarm provider needs an overlay network \
                 (remove it, or choose another name)",
                other.unwrap_or("?")
            ))),
        };
    }
    let request = NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("overlay".to_owned()),
        attachable: Some(true),
        labels: Some(HashMap::from([(LABEL_FUNCTION.to_owned(), "network".to_owned())])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(()),
        Err(_)
            if docker
                .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
                .await
                .is_ok() =>
        {
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("creating the overlay network {name}: {e}"))),
    }
}

/// Has this process an address in one of `network`'s subnets?
pub(super) async fn on_network(docker: &Docker, network: &str) -> bool {
    let Ok(inspect) =
        docker.inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>).await
    else {
        return false;
    };
    let subnets: Vec<(std::net::Ipv4Addr, u32)> = inspect
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let (ip, bits) = c.subnet.as_deref()?.split_once('/')?;
            Some((ip.parse().ok()?, bits.parse().ok()?))
        })
        .collect();
    local_ipv4_addresses().iter().any(|addr| {
        subnets.iter().any(|(net, bits)| {
            let mask = if *bits == 0 { 0 } else { u32::MAX << (32 - bits.min(&32)) };
            u32::from(*addr) & mask == u32::from(*net) & mask
        })
    })
}

/// The IPv4 addresses of this process's network interfaces.
pub(super) fn local_ipv4_addresses() -> Vec<std::net::Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read,
    // then free with freeifaddrs exactly once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = addr as *const libc::sockaddr_in;
                out.push(std::net::Ipv4Addr::from(u32::from_be((*sin).sin_addr.s_addr)));
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_loopback_address() {
        assert!(local_ipv4_addresses().contains(&std::net::Ipv4Addr::LOCALHOST));
    }
}
