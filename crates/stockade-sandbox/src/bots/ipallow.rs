//! IP allowlist entries as the platforms accept them: an exact IPv4/IPv6 address, a CIDR
//! range (`1.1.1.0/24`, `2001:db8::/32`) or Feishu's wildcard form (`123.12.1.*`).

use std::net::IpAddr;

/// IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn wildcard(ip: IpAddr, pattern: &str) -> bool {
    let IpAddr::V4(v4) = canonical(ip) else {
        return false;
    };
    let parts: Vec<&str> = pattern.split('.').collect();
    if parts.len() != 4 {
        return false;
    }
    parts
        .iter()
        .zip(v4.octets())
        .all(|(p, o)| *p == "*" || p.parse::<u8>().is_ok_and(|n| n == o))
}

/// Whether one allowlist entry admits `ip` (malformed entries admit nothing).
pub(crate) fn entry_matches(entry: &str, ip: IpAddr) -> bool {
    let entry = entry.trim();
    if let Some((net, bits)) = entry.split_once('/') {
        return match (net.parse::<IpAddr>(), bits.parse::<u32>()) {
            (Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if entry.contains('*') {
        return wildcard(ip, entry);
    }
    entry
        .parse::<IpAddr>()
        .is_ok_and(|e| canonical(e) == canonical(ip))
}

/// Whether `ip` passes the allowlist (an empty list admits everyone; an unknown peer
/// passes only an empty list).
pub(crate) fn allowed(list: &[String], ip: Option<IpAddr>) -> bool {
    if list.is_empty() {
        return true;
    }
    ip.is_some_and(|ip| list.iter().any(|e| entry_matches(e, ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn entries() {
        assert!(entry_matches("127.0.0.1", ip("127.0.0.1")));
        assert!(!entry_matches("127.0.0.2", ip("127.0.0.1")));
        assert!(entry_matches("127.0.0.0/8", ip("127.1.2.3")));
        assert!(!entry_matches("10.0.0.0/8", ip("127.0.0.1")));
        assert!(entry_matches("0.0.0.0/0", ip("8.8.8.8")));
        assert!(entry_matches("1.1.1.1/32", ip("1.1.1.1")));
        assert!(!entry_matches("1.1.1.1/33", ip("1.1.1.1")));
        assert!(entry_matches("123.12.1.*", ip("123.12.1.200")));
        assert!(!entry_matches("123.12.1.*", ip("123.12.2.200")));
        assert!(entry_matches("127.0.0.1", ip("::ffff:127.0.0.1")));
        assert!(entry_matches("::1", ip("::1")));
        assert!(entry_matches("2001:db8::/32", ip("2001:db8:1::5")));
        assert!(!entry_matches("2001:db8::/32", ip("2001:db9::5")));
        assert!(!entry_matches("garbage", ip("127.0.0.1")));
        assert!(allowed(&[], None));
        assert!(!allowed(&["127.0.0.1".into()], None));
    }
}
