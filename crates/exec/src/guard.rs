//! The SSRF guard: which addresses outgoing HTTP requests (HTTP events, webhooks) may reach.
//!
//! A request made on a user's behalf must not become a way into the
//! server's own network: loopback, private and link-local ranges, cloud
//! metadata endpoints and the like are refused unless the operator allows
//! them (`--http-allow CIDR|HOST`). The rules live in one pure function
//! ([`refusal`]) so that the save-time check ([`Guard::check_url`]) and the
//! connect-time check ([`Guard::resolve`], which the HTTP executor's
//! resolver calls for every hop) can never disagree. Checking at connect
//! time, on the very addresses the connection then uses, is what closes the
//! DNS-rebinding window; the save-time check only gives early feedback.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use ureq::http::Uri;

/// One thing the operator allows outgoing requests to reach although the
/// guard would refuse it: a network or one address, or a host name as
/// written in URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Every address in `addr/prefix` (`addr` has no bits set past the prefix).
    Net { addr: IpAddr, prefix: u8 },
    /// A host name (lower case, no trailing dot), matched against the URL's
    /// host, whatever it resolves to.
    Host(String),
}

impl Allow {
    /// Reads `10.0.0.0/8`, `127.0.0.1` (a /32), `::1/128`, `[::1]` or
    /// `hooks.internal`.
    pub fn parse(text: &str) -> Result<Allow, String> {
        let bad = |why: &str| Err(format!("--http-allow {text:?}: {why}"));
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return bad("empty; expected an address, a network like 10.0.0.0/8, or a host name");
        }
        if trimmed.contains("://") {
            return bad(
                "expected an address, a network like 10.0.0.0/8, or a host name, not a URL",
            );
        }
        if let Some((addr, prefix)) = trimmed.split_once('/') {
            let Ok(addr) = unbracket(addr).parse::<IpAddr>() else {
                return bad("the part before '/' is not an IP address");
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return bad(&format!(
                        "the prefix length must be a number from 0 to {max}"
                    ));
                }
            };
            let network = mask(addr, prefix);
            if network != addr {
                return bad(&format!(
                    "{addr} has bits set past the /{prefix} prefix; did you mean {network}/{prefix}?"
                ));
            }
            return Ok(Allow::Net { addr, prefix });
        }
        if let Ok(addr) = unbracket(trimmed).parse::<IpAddr>() {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(Allow::Net { addr, prefix });
        }
        let name = normalize_host(trimmed);
        if name.contains('*') {
            return bad("wildcards are not supported; name each host, or allow its network");
        }
        if !is_host_name(&name) {
            return bad("not an IP address, a network like 10.0.0.0/8, or a host name");
        }
        Ok(Allow::Host(name))
    }

    fn allows(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            Allow::Net { addr, prefix } => {
                // An address that carries an IPv4 one (::ffff:10.0.0.1, NAT64)
                // reaches that IPv4 address, so an allowed IPv4 net covers it.
                let candidates = [Some(ip), embedded_v4(ip).map(IpAddr::V4)];
                candidates
                    .into_iter()
                    .flatten()
                    .any(|c| same_family(c, *addr) && mask(c, *prefix) == *addr)
            }
            Allow::Host(name) => normalize_host(host) == *name,
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allow::Net { addr, prefix } => write!(f, "{addr}/{prefix}"),
            Allow::Host(name) => f.write_str(name),
        }
    }
}

/// Why a request may not go where it would: the message is for people
/// (job errors, API responses), naming the address, the host it came from
/// and how an operator would allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// What outgoing requests may reach: every public address, plus what the
/// operator allowed. `Guard::default()` allows nothing extra.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    allow: Vec<Allow>,
}

impl Guard {
    pub fn new(allow: Vec<Allow>) -> Guard {
        Guard { allow }
    }

    /// What the operator allowed, in order.
    pub fn allowed(&self) -> &[Allow] {
        &self.allow
    }

    /// Whether a request to `host` (as written in the URL) may go to `ip`:
    /// refused when `ip` is in a range a request made on a user's behalf
    /// must not reach (see [`refusal`]), unless an allowed net holds it or
    /// `host` is an allowed host name.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let Some(why) = refusal(ip) else {
            return Ok(());
        };
        if self.allow.iter().any(|a| a.allows(host, ip)) {
            return Ok(());
        }
        let host = unbracket(host);
        let from = if host.parse::<IpAddr>().ok() == Some(ip) || host.is_empty() {
            String::new()
        } else {
            format!(" (from {host})")
        };
        Err(Refused(format!(
            "{ip}{from} is {why}: outgoing requests there are refused unless the server allows it (--http-allow)"
        )))
    }

    /// Resolves `host:port` and checks every address: one refused address
    /// refuses the whole name, since DNS answers can mix public and
    /// internal addresses and the connection may try any of them. An IP
    /// literal (`127.0.0.1`, `[::1]`) is checked without DNS.
    pub fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        self.lookup(host, port).map_err(|e| match e {
            Lookup::Refused(refused) => refused,
            Lookup::Unresolved(why) => Refused(why),
        })
    }

    /// [`Guard::resolve`], telling a name that does not resolve apart from
    /// a refusal, so that the executor does not call a DNS failure a refusal.
    pub(crate) fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Lookup> {
        let bare = unbracket(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check(host, ip).map_err(Lookup::Refused)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if bare.is_empty() {
            return Err(Lookup::Unresolved("the URL has no host".into()));
        }
        let addrs: Vec<SocketAddr> = (bare, port)
            .to_socket_addrs()
            .map_err(|e| Lookup::Unresolved(format!("could not resolve {bare}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Lookup::Unresolved(format!("{bare} has no addresses")));
        }
        for addr in &addrs {
            self.check(bare, addr.ip()).map_err(Lookup::Refused)?;
        }
        Ok(addrs)
    }

    /// The save-time check of a URL: `http` or `https`, a host, no user
    /// info; a literal address or a name resolving to a refused address is
    /// refused. A name that does not resolve now is accepted (DNS may
    /// change before it runs; every run checks again at connect time).
    pub fn check_url(&self, url: &str) -> Result<(), Refused> {
        let target = Target::parse(url)?;
        let bare = unbracket(&target.host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check(&target.host, ip);
        }
        match (bare, target.port).to_socket_addrs() {
            Ok(addrs) => {
                for addr in addrs {
                    self.check(bare, addr.ip())?;
                }
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }
}

/// Why [`Guard::lookup`] gave no addresses.
#[derive(Debug)]
pub(crate) enum Lookup {
    Refused(Refused),
    /// DNS gave no answer (or none at all): not a refusal.
    Unresolved(String),
}

/// The parts of an outgoing URL the guard and the executor need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) uri: Uri,
    /// `http` or `https`, lower case.
    pub(crate) scheme: String,
    /// As written, lower case; IPv6 literals keep their brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, Refused> {
        // Named before parsing, since `Uri` cannot even read some of them
        // (`file:///…`).
        if let Some((scheme, _)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(Refused(format!(
                    "{url:?}: only http and https URLs are allowed, not {scheme}"
                )));
            }
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| Refused(format!("{url:?} is not a valid URL: {e}")))?;
        Target::from_uri(uri, url)
    }

    pub(crate) fn from_uri(uri: Uri, url: &str) -> Result<Target, Refused> {
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase) {
            Some(s) if s == "http" || s == "https" => s,
            Some(s) => {
                return Err(Refused(format!(
                    "{url:?}: only http and https URLs are allowed, not {s}"
                )));
            }
            None => return Err(Refused(format!("{url:?} is not an absolute http(s) URL"))),
        };
        let Some(authority) = uri.authority() else {
            return Err(Refused(format!("{url:?} has no host")));
        };
        // Credentials in the URL would end up in logs and job records; they
        // belong in a (secret) Authorization header.
        if authority.as_str().contains('@') {
            return Err(Refused(format!(
                "{url:?}: user names and passwords in URLs are not allowed; use a secret Authorization header"
            )));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(Refused(format!("{url:?} has no host")));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Target {
            uri,
            scheme,
            host,
            port,
        })
    }

    /// Scheme, host and port: what "the same origin" compares.
    pub(crate) fn origin(&self) -> (&str, &str, u16) {
        (&self.scheme, normalize_trailing_dot(&self.host), self.port)
    }
}

/// Why `ip` must not be reached by default, as "is …" completes it, or
/// `None` for a public address. IPv6 addresses that carry an IPv4 one
/// (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by that IPv4
/// address, since that is where the packets end up.
pub fn refusal(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4).map(str::to_string),
        IpAddr::V6(v6) => {
            if let Some(why) = v6_refusal(v6) {
                return Some(why.to_string());
            }
            let (v4, kind) = embedded(v6)?;
            v4_refusal(v4).map(|why| format!("{why} ({kind} {v4})"))
        }
    }
}

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    // Most specific first: metadata endpoints sit inside link-local and
    // CGNAT ranges, and the broadcast address inside 240/4.
    Some(match (a, b, c, d) {
        (169, 254, 169, 254) | (100, 100, 100, 200) | (169, 254, 170, 2) => {
            "a cloud metadata address"
        }
        (255, 255, 255, 255) => "the broadcast address",
        (0, 0, 0, 0) => "the unspecified address",
        (0, ..) => "a \"this network\" address (0.0.0.0/8)",
        (127, ..) => "a loopback address",
        (10, ..) => "a private address (10.0.0.0/8)",
        (172, 16..=31, ..) => "a private address (172.16.0.0/12)",
        (192, 168, ..) => "a private address (192.168.0.0/16)",
        (169, 254, ..) => "a link-local address",
        (100, 64..=127, ..) => "a shared (carrier-grade NAT) address",
        (192, 0, 0, _) => "a reserved address (IETF protocol assignments)",
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => "a documentation address",
        (198, 18..=19, ..) => "a reserved address (benchmarking)",
        (192, 88, 99, _) => "a reserved address (6to4 relay anycast)",
        (224..=239, ..) => "a multicast address",
        (240..=255, ..) => "a reserved address (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "the unspecified address",
        [0, 0, 0, 0, 0, 0, 0, 1] => "a loopback address",
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254] => "a cloud metadata address",
        _ if s[0] & 0xfe00 == 0xfc00 => "a private (unique local) address",
        _ if s[0] & 0xffc0 == 0xfe80 => "a link-local address",
        _ if s[0] & 0xffc0 == 0xfec0 => "a site-local address",
        _ if s[0] & 0xff00 == 0xff00 => "a multicast address",
        [0x2001, 0x0db8, ..] => "a documentation address",
        [0x3fff, 0x0000..=0x0fff, ..] => "a documentation address",
        [0x0100, 0, 0, 0, ..] => "a reserved address (discard-only)",
        // Teredo, ORCHID and the other IETF protocol assignments: nothing a
        // job should need, and Teredo hides an IPv4 address.
        [0x2001, 0x0000..=0x01ff, ..] => "a reserved address (IETF protocol assignments)",
        [0x0064, 0xff9b, 0x0001, ..] => "a reserved address (local-use NAT64)",
        // ::/8 outside the IPv4-compatible and -mapped forms.
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => return None,
        [0, ..] if s[0] < 0x0100 => "a reserved address (::/8)",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one carries, and how it carries it.
fn embedded(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some((tail, "IPv4-mapped")),
        [0, 0, 0, 0, 0, 0, ..] => Some((tail, "IPv4-compatible")),
        [0x0064, 0xff9b, 0, 0, 0, 0, ..] => Some((tail, "NAT64")),
        [0x2002, ..] => Some((Ipv4Addr::new(o[2], o[3], o[4], o[5]), "6to4")),
        _ => None,
    }
}

fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => embedded(v6).map(|(v4, _)| v4),
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// `addr` with every bit past `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(bits & keep))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

/// `[::1]` → `::1`; anything else unchanged.
pub(crate) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn normalize_trailing_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// Lower case, without the trailing dot of a fully qualified name, so that
/// `Hooks.Internal.` and `hooks.internal` are one host.
fn normalize_host(host: &str) -> String {
    normalize_trailing_dot(host.trim()).to_ascii_lowercase()
}

/// A DNS host name: labels of 1–63 letters, digits and hyphens (not at
/// either end), at most 253 bytes, and not all-numeric at the end (that
/// would be a mistyped IPv4 address such as 300.1.1.1).
fn is_host_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    labels.iter().all(label_ok)
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_allowed() {
        // (address, Some(what the refusal says) or None for allowed)
        let table: &[(&str, Option<&str>)] = &[
            ("10.0.0.1", Some("a private address (10.0.0.0/8)")),
            ("172.16.5.4", Some("a private address (172.16.0.0/12)")),
            ("172.31.255.255", Some("a private address (172.16.0.0/12)")),
            ("192.168.1.1", Some("a private address (192.168.0.0/16)")),
            ("127.0.0.1", Some("a loopback address")),
            ("127.255.0.9", Some("a loopback address")),
            ("169.254.169.254", Some("a cloud metadata address")),
            ("169.254.170.2", Some("a cloud metadata address")),
            ("169.254.1.1", Some("a link-local address")),
            ("100.100.100.200", Some("a cloud metadata address")),
            ("100.64.0.1", Some("a shared (carrier-grade NAT) address")),
            (
                "100.127.255.254",
                Some("a shared (carrier-grade NAT) address"),
            ),
            ("0.0.0.0", Some("the unspecified address")),
            ("0.1.2.3", Some("a \"this network\" address (0.0.0.0/8)")),
            ("255.255.255.255", Some("the broadcast address")),
            ("224.0.0.1", Some("a multicast address")),
            ("239.255.255.250", Some("a multicast address")),
            ("240.0.0.1", Some("a reserved address (240.0.0.0/4)")),
            ("192.0.2.10", Some("a documentation address")),
            ("198.51.100.1", Some("a documentation address")),
            ("203.0.113.7", Some("a documentation address")),
            ("198.18.0.1", Some("a reserved address (benchmarking)")),
            (
                "192.0.0.8",
                Some("a reserved address (IETF protocol assignments)"),
            ),
            ("::", Some("the unspecified address")),
            ("::1", Some("a loopback address")),
            ("fe80::1", Some("a link-local address")),
            ("febf::1", Some("a link-local address")),
            ("fec0::1", Some("a site-local address")),
            ("fc00::1", Some("a private (unique local) address")),
            ("fdab::1", Some("a private (unique local) address")),
            ("fd00:ec2::254", Some("a cloud metadata address")),
            ("ff02::1", Some("a multicast address")),
            ("2001:db8::1", Some("a documentation address")),
            ("3fff::1", Some("a documentation address")),
            ("100::1", Some("a reserved address (discard-only)")),
            (
                "2001::1",
                Some("a reserved address (IETF protocol assignments)"),
            ),
            ("64:ff9b:1::1", Some("a reserved address (local-use NAT64)")),
            (
                "::ffff:127.0.0.1",
                Some("a loopback address (IPv4-mapped 127.0.0.1)"),
            ),
            (
                "::ffff:10.0.0.1",
                Some("a private address (10.0.0.0/8) (IPv4-mapped 10.0.0.1)"),
            ),
            (
                "::ffff:169.254.169.254",
                Some("a cloud metadata address (IPv4-mapped 169.254.169.254)"),
            ),
            (
                "::127.0.0.1",
                Some("a loopback address (IPv4-compatible 127.0.0.1)"),
            ),
            (
                "::10.1.2.3",
                Some("a private address (10.0.0.0/8) (IPv4-compatible 10.1.2.3)"),
            ),
            (
                "64:ff9b::a00:1",
                Some("a private address (10.0.0.0/8) (NAT64 10.0.0.1)"),
            ),
            (
                "64:ff9b::7f00:1",
                Some("a loopback address (NAT64 127.0.0.1)"),
            ),
            (
                "2002:7f00:1::1",
                Some("a loopback address (6to4 127.0.0.1)"),
            ),
            (
                "2002:a9fe:a9fe::",
                Some("a cloud metadata address (6to4 169.254.169.254)"),
            ),
            // Public addresses, including the same forms around a public IPv4.
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("169.255.0.1", None),
            ("2606:4700::1", None),
            ("2a00:1450:4001::200e", None),
            ("::ffff:93.184.216.34", None),
            ("64:ff9b::5db8:d822", None),
            ("2002:5db8:d822::1", None),
        ];
        for (addr, expected) in table {
            assert_eq!(refusal(ip(addr)).as_deref(), *expected, "{addr}");
            let checked = Guard::default().check(addr, ip(addr));
            assert_eq!(checked.is_err(), expected.is_some(), "{addr}: {checked:?}");
        }
    }

    #[test]
    fn refusal_message_names_address_host_and_the_way_out() {
        let guard = Guard::default();
        assert_eq!(
            guard
                .check("localhost", ip("127.0.0.1"))
                .unwrap_err()
                .to_string(),
            "127.0.0.1 (from localhost) is a loopback address: outgoing requests there are \
             refused unless the server allows it (--http-allow)"
        );
        // A literal address is not repeated as its own source.
        assert_eq!(
            guard.check("[::1]", ip("::1")).unwrap_err().to_string(),
            "::1 is a loopback address: outgoing requests there are refused unless the server \
             allows it (--http-allow)"
        );
        assert_eq!(
            guard.check("10.0.0.1", ip("10.0.0.1")).unwrap_err().0,
            "10.0.0.1 is a private address (10.0.0.0/8): outgoing requests there are refused \
             unless the server allows it (--http-allow)"
        );
    }

    #[test]
    fn allow_parse_reads_addresses_networks_and_host_names() {
        let net = |addr: &str, prefix| Allow::Net {
            addr: ip(addr),
            prefix,
        };
        let table: &[(&str, Allow, &str)] = &[
            ("10.0.0.0/8", net("10.0.0.0", 8), "10.0.0.0/8"),
            ("127.0.0.1", net("127.0.0.1", 32), "127.0.0.1/32"),
            ("127.0.0.1/32", net("127.0.0.1", 32), "127.0.0.1/32"),
            ("0.0.0.0/0", net("0.0.0.0", 0), "0.0.0.0/0"),
            ("::1/128", net("::1", 128), "::1/128"),
            ("::1", net("::1", 128), "::1/128"),
            ("[::1]", net("::1", 128), "::1/128"),
            ("fd00::/8", net("fd00::", 8), "fd00::/8"),
            ("[fd00::]/8", net("fd00::", 8), "fd00::/8"),
            (" 192.168.0.0/16 ", net("192.168.0.0", 16), "192.168.0.0/16"),
            (
                "hooks.internal",
                Allow::Host("hooks.internal".into()),
                "hooks.internal",
            ),
            (
                "Hooks.Internal.",
                Allow::Host("hooks.internal".into()),
                "hooks.internal",
            ),
            ("localhost", Allow::Host("localhost".into()), "localhost"),
            (
                "my_host-1.lan",
                Allow::Host("my_host-1.lan".into()),
                "my_host-1.lan",
            ),
        ];
        for (text, allow, shown) in table {
            let parsed = Allow::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&parsed, allow, "{text}");
            assert_eq!(parsed.to_string(), *shown, "{text}");
            // What Display writes reads back as the same thing.
            assert_eq!(Allow::parse(&parsed.to_string()).unwrap(), parsed, "{text}");
        }
    }

    #[test]
    fn allow_parse_refuses_bad_input_naming_it() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("::/129", "from 0 to 128"),
            ("10.0.0.0/x", "from 0 to 32"),
            ("10.0.0.0/", "from 0 to 32"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
            ("fd00::1/8", "did you mean fd00::/8?"),
            ("banana/8", "not an IP address"),
            ("300.1.1.1", "not an IP address"),
            ("1.2.3", "not an IP address"),
            ("http://hooks.internal", "not a URL"),
            ("hooks.internal:8080", "not an IP address"),
            ("*.internal", "wildcards"),
            ("a b", "not an IP address"),
            ("-bad.example", "not an IP address"),
            ("a..b", "not an IP address"),
        ];
        for (text, why) in table {
            let err = Allow::parse(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn allowed_nets_and_hosts_override_the_refusal() {
        let guard = Guard::new(
            ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8", "hooks.internal"]
                .iter()
                .map(|t| Allow::parse(t).unwrap())
                .collect(),
        );
        // (host as written, address, allowed)
        let table: &[(&str, &str, bool)] = &[
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.2", "127.0.0.2", false),
            ("x", "10.200.3.4", true),
            ("x", "11.0.0.1", true), // public anyway
            ("x", "192.168.1.1", false),
            ("x", "fd12::1", true),
            ("x", "fc00::1", false),
            ("x", "::1", false),
            // An IPv4 net covers the IPv6 forms that reach it.
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", true),
            ("x", "64:ff9b::a00:1", true),
            // A host name is matched as written, whatever it resolves to,
            // case-insensitively and with or without the trailing dot.
            ("hooks.internal", "192.168.7.7", true),
            ("HOOKS.Internal.", "169.254.169.254", true),
            ("other.internal", "192.168.7.7", false),
            ("sub.hooks.internal", "192.168.7.7", false),
        ];
        for (host, addr, allowed) in table {
            let result = guard.check(host, ip(addr));
            assert_eq!(result.is_ok(), *allowed, "{host} → {addr}: {result:?}");
        }
        // The default guard allows none of them.
        assert!(
            Guard::default()
                .check("hooks.internal", ip("192.168.7.7"))
                .is_err()
        );
    }

    #[test]
    fn resolve_checks_literals_without_dns_and_every_resolved_address() {
        let guard = Guard::default();
        let err = guard.resolve("[::1]", 80).unwrap_err();
        assert!(err.0.starts_with("::1 is a loopback address"), "{err}");
        assert!(guard.resolve("127.0.0.1", 80).is_err());
        // localhost resolves to loopback addresses only (from /etc/hosts).
        let err = guard.resolve("localhost", 8080).unwrap_err();
        assert!(
            err.0.contains("(from localhost) is a loopback address"),
            "{err}"
        );
        let allowed = Guard::new(vec![Allow::parse("localhost").unwrap()]);
        let addrs = allowed.resolve("localhost", 8080).unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
        assert_eq!(
            Guard::default().resolve("93.184.216.34", 443).unwrap(),
            vec!["93.184.216.34:443".parse().unwrap()]
        );
    }

    #[test]
    fn check_url_refuses_bad_urls_and_internal_literals() {
        let guard = Guard::default();
        // (url, Some(part of the refusal) or None for accepted)
        let table: &[(&str, Option<&str>)] = &[
            ("https://93.184.216.34/hook", None),
            ("http://[2606:4700::1]:8080/x?y=1", None),
            ("HTTPS://93.184.216.34/", None),
            // Does not resolve now: accepted, the run checks again.
            ("https://no-such-host.invalid/", None),
            ("ftp://93.184.216.34/", Some("only http and https")),
            ("file:///etc/passwd", Some("only http and https")),
            ("/relative/path", Some("not an absolute http(s) URL")),
            ("not a url", Some("not a valid URL")),
            (
                "https://user:pw@93.184.216.34/",
                Some("user names and passwords"),
            ),
            (
                "http://127.0.0.1:9/",
                Some("127.0.0.1 is a loopback address"),
            ),
            ("http://[::1]/", Some("::1 is a loopback address")),
            ("http://[::ffff:127.0.0.1]/", Some("IPv4-mapped 127.0.0.1")),
            ("http://10.0.0.1/", Some("a private address")),
            (
                "http://169.254.169.254/latest/meta-data/",
                Some("a cloud metadata address"),
            ),
            ("http://[fd00:ec2::254]/", Some("a cloud metadata address")),
            (
                "http://localhost:8080/",
                Some("(from localhost) is a loopback address"),
            ),
        ];
        for (url, expected) in table {
            let result = guard.check_url(url);
            match expected {
                None => assert_eq!(result, Ok(()), "{url}"),
                Some(why) => {
                    let err = result.expect_err(url);
                    assert!(err.0.contains(why), "{url}: {err}");
                }
            }
        }
    }

    #[test]
    fn target_reads_scheme_host_and_default_ports() {
        let t = Target::parse("https://Example.COM/a").unwrap();
        assert_eq!(t.origin(), ("https", "example.com", 443));
        let t = Target::parse("http://[::1]:8080/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 8080));
        let t = Target::parse("http://example.com./").unwrap();
        assert_eq!(t.origin(), ("http", "example.com", 80));
    }
}
