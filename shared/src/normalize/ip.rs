//! Client addresses in every observed shape.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

/// The fields that may hold the client address, in order of preference.
pub(super) const IP_FIELDS: [&str; 4] =
    ["ClientIP", "ClientIPAddress", "ActorIpAddress", "ActorIP"];

/// See [`super::parse_ip`].
pub(super) fn parse(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() || s.len() > 100 {
        return None;
    }
    // "[IPv6]" or "[IPv6]:port".
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let ip = parse_v6(addr)?;
        let port = after.strip_prefix(':').and_then(parse_port);
        return Some((canonical(IpAddr::V6(ip)), port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((canonical(ip), None));
    }
    // "IPv4:port" (exactly one colon).
    if let Some((a, p)) = s.split_once(':')
        && !p.contains(':')
    {
        let ip: Ipv4Addr = a.parse().ok()?;
        return Some((IpAddr::V4(ip), parse_port(p)));
    }
    // IPv6 with a zone id: "fe80::1%11".
    parse_v6(s).map(|ip| (canonical(IpAddr::V6(ip)), None))
}

fn parse_v6(s: &str) -> Option<Ipv6Addr> {
    let bare = s.split_once('%').map_or(s, |(a, _)| a);
    bare.parse().ok()
}

fn parse_port(p: &str) -> Option<u16> {
    p.trim().parse::<u16>().ok()
}

/// `::ffff:a.b.c.d` → `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The first of [`IP_FIELDS`] that holds a valid address, with the field's name.
pub(super) fn pick(rec: &Map<String, Value>) -> Option<(IpAddr, Option<u16>, &'static str)> {
    IP_FIELDS.iter().find_map(|&k| {
        let s = rec.get(k)?.as_str()?;
        parse(s).map(|(ip, port)| (ip, port, k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn every_observed_form() {
        assert_eq!(parse("203.0.113.24"), Some((v4("203.0.113.24"), None)));
        assert_eq!(
            parse("198.51.100.7:51000"),
            Some((v4("198.51.100.7"), Some(51000)))
        );
        assert_eq!(
            parse("2a09:bac1:820:8::1a:9c"),
            Some((v6("2a09:bac1:820:8::1a:9c"), None))
        );
        assert_eq!(
            parse("[2a09:bac5:114:105::1a:9b]:54809"),
            Some((v6("2a09:bac5:114:105::1a:9b"), Some(54809)))
        );
        assert_eq!(parse("[2001:db8::1]"), Some((v6("2001:db8::1"), None)));
        assert_eq!(parse("::ffff:192.0.2.10"), Some((v4("192.0.2.10"), None)));
        assert_eq!(
            parse("[::ffff:192.0.2.10]:443"),
            Some((v4("192.0.2.10"), Some(443)))
        );
        assert_eq!(parse("fe80::1%11"), Some((v6("fe80::1"), None)));
        assert_eq!(parse(" 203.0.113.5 "), Some((v4("203.0.113.5"), None)));
        // A bad port keeps the address.
        assert_eq!(parse("203.0.113.5:99999"), Some((v4("203.0.113.5"), None)));
    }

    #[test]
    fn junk_is_none() {
        for s in [
            "",
            " ",
            "junk",
            "999.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "[::1",
            "[zz]:80",
            "host:80",
            "<null>",
            "::ffff:",
            "1.2.3.4:5:6",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }
}
