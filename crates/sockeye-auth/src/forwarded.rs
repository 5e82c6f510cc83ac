//! The client IP behind trusted proxies: `X-Forwarded-For` or `Forwarded`
//! (RFC 7239), whichever one header the operator names, walked from the
//! right and stopped at the first hop that is not a trusted proxy or does
//! not parse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderMap;
use http::header::HeaderName;

/// The header the trusted proxies in front of a [`SocketLimitLayer`](crate::SocketLimitLayer) set
/// to name the client ([`SocketLimitLayer::forwarded_header`](crate::SocketLimitLayer::forwarded_header)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`, one address per hop: what
    /// nginx (`$proxy_add_x_forwarded_for`), HAProxy (`option forwardfor`)
    /// and most load balancers append. The default.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239), one element per hop.
    Forwarded,
}

/// The client IP: the peer, or what the trusted proxies say in `header`
/// (see [`SocketLimitLayer`](crate::SocketLimitLayer)'s "The client IP").
pub(crate) fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpAddr],
    header: ForwardedHeader,
) -> IpAddr {
    let is_trusted = |ip: IpAddr| {
        let ip = ip.to_canonical();
        trusted.iter().any(|t| t.to_canonical() == ip)
    };
    if !is_trusted(peer) {
        return peer;
    }
    let walk = |hops: &mut dyn Iterator<Item = Option<IpAddr>>| {
        let mut client = peer;
        for hop in hops {
            match hop {
                Some(ip) if is_trusted(ip) => client = ip,
                Some(ip) => return ip,
                // Left of this hop the client wrote: stop at what is known.
                None => return client,
            }
        }
        client
    };
    match header {
        ForwardedHeader::XForwardedFor => walk(
            &mut headers
                .get_all(HeaderName::from_static("x-forwarded-for"))
                .iter()
                .rev()
                .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|hop| !hop.is_empty())
                .map(|hop| parse_addr(std::str::from_utf8(hop).ok()?, false)),
        ),
        ForwardedHeader::Forwarded => walk(
            &mut headers
                .get_all(http::header::FORWARDED)
                .iter()
                .rev()
                .flat_map(|line| elements_rev(line.as_bytes()))
                .filter(|element| !element.trim_ascii().is_empty())
                .map(element_for),
        ),
    }
}

/// The elements of one `Forwarded` line, right to left: split at the
/// commas outside quoted strings, found from the right end. A trusted
/// proxy appends well-formed elements at the right, so whatever the client
/// wrote on their left (an unclosed quote, say) cannot change where those
/// begin.
fn elements_rev(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = Some(line.len());
    std::iter::from_fn(move || {
        let stop = end?;
        let mut quoted = false;
        for i in (0..stop).rev() {
            match line[i] {
                b'"' => {
                    // Inside a quoted string, `\"` is a quote character.
                    let escapes = line[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                    if !quoted || escapes % 2 == 0 {
                        quoted = !quoted;
                    }
                }
                b',' if !quoted => {
                    end = Some(i);
                    return Some(&line[i + 1..stop]);
                }
                _ => {}
            }
        }
        end = None;
        Some(&line[..stop])
    })
}

/// The address in one `Forwarded` element's `for=` (RFC 7239 §4:
/// `token=value` pairs separated by `;`, a value a token or a quoted
/// string). `None` if the element does not parse, has no `for` or two, or
/// its node is not an IP address (`unknown`, an obfuscated `_name`).
fn element_for(element: &[u8]) -> Option<IpAddr> {
    let is_ows = |b: u8| b == b' ' || b == b'\t';
    let skip_ows = |pos: &mut usize| {
        while element.get(*pos).copied().is_some_and(is_ows) {
            *pos += 1;
        }
    };
    let mut pos = 0;
    let mut found: Option<Vec<u8>> = None;
    loop {
        skip_ows(&mut pos);
        match element.get(pos) {
            None => break,
            Some(b';') => {
                pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let start = pos;
        while element.get(pos).copied().is_some_and(is_tchar) {
            pos += 1;
        }
        let name = &element[start..pos];
        if name.is_empty() {
            return None;
        }
        skip_ows(&mut pos);
        if element.get(pos) != Some(&b'=') {
            return None;
        }
        pos += 1;
        skip_ows(&mut pos);
        let mut value = Vec::new();
        if element.get(pos) == Some(&b'"') {
            pos += 1;
            loop {
                match *element.get(pos)? {
                    b'"' => break,
                    b'\\' => {
                        value.push(*element.get(pos + 1)?);
                        pos += 2;
                    }
                    b => {
                        value.push(b);
                        pos += 1;
                    }
                }
            }
            pos += 1;
        } else {
            // A token; `:` and brackets too, for proxies that leave a
            // node with a port or an IPv6 address unquoted.
            let start = pos;
            while element
                .get(pos)
                .copied()
                .is_some_and(|b| is_tchar(b) || b"[]:".contains(&b))
            {
                pos += 1;
            }
            if start == pos {
                return None;
            }
            value.extend_from_slice(&element[start..pos]);
        }
        skip_ows(&mut pos);
        if !matches!(element.get(pos), None | Some(b';')) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    parse_addr(std::str::from_utf8(&found?).ok()?, true)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A hop's address: `192.0.2.43`, `2001:db8::1`, `[2001:db8::1]`, each
/// with an optional `:port` (IPv6 then in brackets); `Forwarded` also
/// allows obfuscated ports (`:_x`).
fn parse_addr(s: &str, obfuscated_port: bool) -> Option<IpAddr> {
    let valid_port = |p: &str| {
        // Digits only: `u16::from_str` would also take a `+`.
        let digits = p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
        let obfuscated = obfuscated_port
            && p.len() > 1
            && p.strip_prefix('_').is_some_and(|rest| {
                rest.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        digits || obfuscated
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !after.is_empty() && !valid_port(after.strip_prefix(':')?) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (v4, port) = s.split_once(':')?;
    if !valid_port(port) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let xff = ForwardedHeader::XForwardedFor;
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted, xff),
            ip("203.0.113.7")
        );
        // An untrusted peer's headers are ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted, xff),
            ip("198.51.100.1")
        );
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\""
                .parse()
                .unwrap(),
        );
        let fwd = ForwardedHeader::Forwarded;
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted, fwd),
            ip("2001:db8::1")
        );
        // A proxy that says nothing: the peer itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted, xff),
            ip("10.0.0.1")
        );
        // A dual-stack listener sees a trusted IPv4 proxy as IPv4-mapped.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted, fwd),
            ip("2001:db8::1")
        );
    }

    const PROXY: &str = "10.0.0.1";

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    /// The client IP through trusted proxy 10.0.0.1 (and 10.0.0.2 behind
    /// it) when they set X-Forwarded-For.
    fn via_xff(lines: &[(&str, &str)]) -> IpAddr {
        let trusted = [ip(PROXY), ip("10.0.0.2")];
        client_ip(
            ip(PROXY),
            &headers(lines),
            &trusted,
            ForwardedHeader::default(),
        )
    }

    /// The same when they set Forwarded.
    fn via_forwarded(lines: &[(&str, &str)]) -> IpAddr {
        let trusted = [ip(PROXY), ip("10.0.0.2")];
        client_ip(
            ip(PROXY),
            &headers(lines),
            &trusted,
            ForwardedHeader::Forwarded,
        )
    }

    /// nginx appends X-Forwarded-For and passes a client's `Forwarded`
    /// through: that header must not pick the client's IP.
    #[test]
    fn only_the_header_the_proxies_set_counts() {
        let both = [
            ("forwarded", "for=192.0.2.66"),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        assert_eq!(via_xff(&both), ip("203.0.113.7"));
        let spoofed = [("forwarded", "for=192.0.2.66")];
        assert_eq!(via_xff(&spoofed), ip(PROXY));
        // Chosen the other way round, X-Forwarded-For is the ignored one.
        let spoofed = [("x-forwarded-for", "192.0.2.66")];
        assert_eq!(via_forwarded(&spoofed), ip(PROXY));
        assert_eq!(via_forwarded(&both), ip("192.0.2.66"));
    }

    /// Right to left, the walk stops at the first hop that does not parse:
    /// the client is then the last address known (the nearest trusted
    /// proxy), never a hop further left, which the client wrote.
    #[test]
    fn an_unparsable_hop_ends_the_walk() {
        for bad in [
            "unknown",
            "_hidden",
            "garbage",
            "1.2.3.4.5",
            "1.2.3.4:x",
            "[::1",
        ] {
            let xff = format!("192.0.2.66, {bad}");
            assert_eq!(via_xff(&[("x-forwarded-for", &xff)]), ip(PROXY), "{xff}");
            let chain = format!("192.0.2.66, {bad}, 10.0.0.2");
            assert_eq!(
                via_xff(&[("x-forwarded-for", &chain)]),
                ip("10.0.0.2"),
                "{chain}"
            );
        }
        for bad in [
            "for=unknown",
            "for=_hidden",
            "for=garbage",
            "proto=https",
            "for=\"[::1\"",
        ] {
            let fwd = format!("for=192.0.2.66, {bad}");
            assert_eq!(via_forwarded(&[("forwarded", &fwd)]), ip(PROXY), "{fwd}");
            let lines = [("forwarded", "for=192.0.2.66"), ("forwarded", bad)];
            assert_eq!(via_forwarded(&lines), ip(PROXY), "{bad} on its own line");
        }
        // A value that a proxy quoted correctly hides no hop.
        let host = [("forwarded", "for=203.0.113.7;host=\"x,for=192.0.2.66\"")];
        assert_eq!(via_forwarded(&host), ip("203.0.113.7"));
        let escaped = [(
            "forwarded",
            r#"for=203.0.113.7;host="a\"b, for=192.0.2.66""#,
        )];
        assert_eq!(via_forwarded(&escaped), ip("203.0.113.7"));
        // Whatever the client wrote left of its proxy's hop stays there.
        let unclosed = [("forwarded", "for=\"192.0.2.66, for=203.0.113.7")];
        assert_eq!(via_forwarded(&unclosed), ip("203.0.113.7"));
    }

    #[test]
    fn addresses_ports_brackets_lines_and_lists() {
        for (xff, want) in [
            ("203.0.113.7", "203.0.113.7"),
            ("203.0.113.7:5678", "203.0.113.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("192.0.2.66,203.0.113.7", "203.0.113.7"),
            ("192.0.2.66 , 203.0.113.7 ,", "203.0.113.7"),
            ("203.0.113.7, 10.0.0.2", "203.0.113.7"),
        ] {
            assert_eq!(via_xff(&[("x-forwarded-for", xff)]), ip(want), "{xff}");
        }
        for (fwd, want) in [
            ("for=203.0.113.7", "203.0.113.7"),
            ("For=203.0.113.7;proto=https;by=10.0.0.1", "203.0.113.7"),
            ("proto=https; for=\"203.0.113.7:80\"", "203.0.113.7"),
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]:_port\"", "2001:db8::1"),
            ("for=192.0.2.66, for=203.0.113.7", "203.0.113.7"),
            ("for=203.0.113.7, for=\"10.0.0.2\"", "203.0.113.7"),
        ] {
            assert_eq!(via_forwarded(&[("forwarded", fwd)]), ip(want), "{fwd}");
        }
        let lines = [
            ("x-forwarded-for", "192.0.2.66"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
        ];
        assert_eq!(via_xff(&lines), ip("203.0.113.7"));
        let lines = [
            ("forwarded", "for=192.0.2.66"),
            ("forwarded", "for=203.0.113.7"),
        ];
        assert_eq!(via_forwarded(&lines), ip("203.0.113.7"));
        // Every hop a trusted proxy: the left-most is the client.
        assert_eq!(via_xff(&[("x-forwarded-for", "10.0.0.2")]), ip("10.0.0.2"));
    }
}
