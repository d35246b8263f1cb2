//! Addresses: IPs and CIDRs from config, loopback detection, the outbound address family.

use serde::Deserialize;

/// Which address family outbound calls use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4 only (the default): Deepvue whitelists IPv4 addresses, and the egress probes must
    /// see the same address family as the authorize call.
    #[default]
    Ipv4,
    /// Whatever the resolver and the host prefer.
    Any,
}

/// Parse an IP or a CIDR.
pub fn parse_ip_or_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Whether a URL points at this machine (emulators and dev servers in tests).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
