//! Who is on the other end of a request: the client's address and whether it came over HTTPS, believing `X-Forwarded-*` and `Forwarded` only from a trusted proxy.
//!
//! [`identify`] runs first on every request (API and UI alike) and puts a
//! [`Client`] in its extensions; everything that needs the client's address
//! (the sign-in limit, logs, the audit log) or its scheme (the `Secure`
//! cookie, `Strict-Transport-Security`) reads it from there, so there is one
//! answer per request. Forwarded headers are anyone's to send: they count
//! only when the TCP peer is one of the `--trusted-proxy` networks, and then
//! the client is the right-most address of `X-Forwarded-For` that is not a
//! trusted proxy (the left part is whatever the client itself sent).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;

use crate::state::AppState;

/// What every answer over HTTPS carries: browsers then refuse plain HTTP to
/// this host for a year.
pub const HSTS: &str = "max-age=31536000";

/// One TCP connection's far end, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Whether the connection is TLS this server terminated itself.
    pub tls: bool,
}

impl Connected<IncomingStream<'_, crate::PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::PlainListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            tls: false,
        }
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            tls: true,
        }
    }
}

/// An address or a network (`10.0.0.0/8`, `127.0.0.1`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let bad = |why: String| Err(format!("{text:?}: {why}"));
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let Ok(addr) = addr.parse::<IpAddr>() else {
            return bad("expected an IP address or a network like 10.0.0.0/8".into());
        };
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return bad(format!("the prefix length must be 0 to {max}")),
            },
        };
        let network = Network { addr, prefix };
        if mask(addr, prefix) != addr {
            let base = mask(addr, prefix);
            return bad(format!(
                "{addr} has bits set past /{prefix}; did you mean {base}/{prefix}?"
            ));
        }
        Ok(network)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

/// The proxies whose forwarded headers are believed (none by default).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<Network>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// Who sent a request, as far as this server can tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client {
    /// `None` when the server runs without connection info (some tests).
    pub addr: Option<IpAddr>,
    /// TLS here, or a trusted proxy said the client used https.
    pub https: bool,
}

impl Client {
    /// The address for logs and the audit log.
    pub fn address(&self) -> String {
        self.addr
            .map_or_else(|| "unknown".to_string(), |a| a.to_string())
    }
}

/// The client of a request from `peer` with `headers`; see the module documentation.
pub fn resolve(peer: Option<Peer>, headers: &HeaderMap, trusted: &TrustedProxies) -> Client {
    let Some(peer) = peer else {
        return Client::default();
    };
    let ip = peer.addr.ip().to_canonical();
    if !trusted.trusts(ip) {
        return Client {
            addr: Some(ip),
            https: peer.tls,
        };
    }
    let (hops, proto) = forwarded(headers);
    // From the right: each hop was added by the proxy before it, so the
    // first untrusted one is the client the outermost trusted proxy saw;
    // anything left of it the client wrote itself. A hop that is no address
    // ends the walk: what is left of it cannot be checked either.
    let mut client = ip;
    for hop in hops.iter().rev() {
        let Some(hop) = hop else { break };
        client = *hop;
        if !trusted.trusts(*hop) {
            break;
        }
    }
    Client {
        addr: Some(client),
        https: peer.tls || proto.is_some_and(|p| p.eq_ignore_ascii_case("https")),
    }
}

/// The hops (left to right; `None` for one that is no address) and the
/// protocol a request's forwarding headers state: `X-Forwarded-For` and
/// `X-Forwarded-Proto`, else `Forwarded`'s `for=` and `proto=`.
fn forwarded(headers: &HeaderMap) -> (Vec<Option<IpAddr>>, Option<String>) {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let xff = values("x-forwarded-for");
    let xfp = values("x-forwarded-proto");
    // Several proxies may each append a scheme: the first is the one the
    // client used.
    let mut proto = xfp.into_iter().next();
    let mut hops: Vec<Option<IpAddr>> = xff.iter().map(|h| hop_address(h)).collect();
    if xff.is_empty() {
        for element in values(header::FORWARDED.as_str()) {
            for pair in element.split(';') {
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => hops.push(hop_address(value)),
                    "proto" if proto.is_none() => proto = Some(value.to_string()),
                    _ => {}
                }
            }
        }
    }
    (hops, proto)
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn hop_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The first layer of every request: finds its [`Client`], and marks an
/// answer to an HTTPS request with `Strict-Transport-Security`.
pub async fn identify(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| *peer);
    let client = resolve(peer, req.headers(), &state.trusted_proxies);
    let mut req = req;
    req.extensions_mut().insert(client);
    let mut response = next.run(req).await;
    if client.https {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Client, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Client>()
            .copied()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|t| Network::parse(t).unwrap()).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn peer(addr: &str) -> Option<Peer> {
        Some(Peer {
            addr: SocketAddr::new(addr.parse().unwrap(), 40000),
            tls: false,
        })
    }

    #[test]
    fn networks_parse_and_match() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Network::parse("[::1]")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            Network::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in [
            "",
            "proxy.internal",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/x",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_peer() {
        let proxies = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let spoofed = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = resolve(peer("198.51.100.1"), &spoofed, &proxies);
        assert_eq!(c.addr, Some("198.51.100.1".parse().unwrap()));
        assert!(!c.https);
        let c = resolve(peer("127.0.0.1"), &spoofed, &proxies);
        assert_eq!(c.addr, Some("203.0.113.9".parse().unwrap()));
        assert!(c.https);
        // No proxies configured: nothing is believed.
        let c = resolve(peer("127.0.0.1"), &spoofed, &TrustedProxies::default());
        assert_eq!(c.addr, Some("127.0.0.1".parse().unwrap()));
        assert!(!c.https);
        assert_eq!(
            resolve(None, &spoofed, &proxies).addr,
            None,
            "no connection info"
        );
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let proxies = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let at = |pairs: &[(&str, &str)]| {
            resolve(peer("127.0.0.1"), &headers(pairs), &proxies)
                .addr
                .unwrap()
                .to_string()
        };
        // What the client put on the left is not believed.
        assert_eq!(
            at(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]),
            "203.0.113.9"
        );
        // Trusted hops on the right are skipped, over several headers too.
        assert_eq!(
            at(&[
                ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
                ("x-forwarded-for", "10.0.0.5")
            ]),
            "203.0.113.9"
        );
        // Every hop trusted: the left-most.
        assert_eq!(at(&[("x-forwarded-for", "10.0.0.7, 10.0.0.5")]), "10.0.0.7");
        // A hop that is no address stops the walk.
        assert_eq!(
            at(&[("x-forwarded-for", "203.0.113.9, garbage, 10.0.0.5")]),
            "10.0.0.5"
        );
        assert_eq!(
            at(&[("x-forwarded-for", "[2001:db8::1]:443")]),
            "2001:db8::1"
        );
        assert_eq!(
            at(&[("x-forwarded-for", "203.0.113.9:5000")]),
            "203.0.113.9"
        );
        assert_eq!(at(&[]), "127.0.0.1");
        // Forwarded (RFC 7239) when there is no X-Forwarded-For.
        assert_eq!(
            at(&[(
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8::7]:4711";proto=https, for=10.0.0.5"#
            )]),
            "2001:db8::7"
        );
        let c = resolve(
            peer("127.0.0.1"),
            &headers(&[("forwarded", "for=203.0.113.9;proto=https")]),
            &proxies,
        );
        assert!(c.https);
        let c = resolve(
            peer("127.0.0.1"),
            &headers(&[("x-forwarded-proto", "http")]),
            &proxies,
        );
        assert!(!c.https);
    }
}
