//! Who a request counts against: the client address behind trusted
//! proxies ([`ClientIp`], the rate limits' key) and the budget of failed
//! authentications per address ([`AuthFailures`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Request;
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

use crate::config::RateLimitConfig;

/// The client address a rate-limit bucket is keyed by. The peer address,
/// unless the peer is a configured trusted proxy: then the right-most
/// address of its forwarding chain (`X-Forwarded-For`, else `Forwarded`'s
/// `for=`) that is not itself a trusted proxy, since only the hops our own
/// proxies appended are believable. IPv4-mapped IPv6 addresses count as
/// IPv4; other IPv6 addresses by their /64 (one host usually holds the whole
/// prefix).
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: std::sync::Arc<[ipnet::IpNet]>,
}

impl ClientIp {
    /// From the configuration (already validated: invalid entries are left out).
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self { trusted: cfg.proxies().unwrap_or_default().into() }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The bucket of a request.
    pub fn of<T>(&self, req: &Request<T>) -> IpAddr {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        self.of_parts(peer, req.headers())
    }

    /// The bucket for a peer address and request headers.
    pub fn of_parts(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> IpAddr {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut client = peer;
        if self.is_trusted(peer) {
            // Right to left: past our own proxies to the first hop they
            // did not vouch for. An unreadable hop ends the walk there.
            for hop in forwarded_chain(headers).into_iter().rev() {
                match hop {
                    Some(ip) if self.is_trusted(ip) => client = ip,
                    Some(ip) => {
                        client = ip;
                        break;
                    }
                    None => break,
                }
            }
        }
        bucket(client)
    }
}

/// The forwarding chain, left (the original client) to right (the hop
/// nearest us): every `X-Forwarded-For` value in order, or when there is
/// none the `for=` elements of `Forwarded` (RFC 7239). `None` for a hop
/// that is not an address (`unknown`, an obfuscated name).
fn forwarded_chain(h: &axum::http::HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<Option<IpAddr>> = h
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    h.get_all("forwarded")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| node_ip(v.trim()))
            })
        })
        .collect()
}

/// The address of a `Forwarded` node: `192.0.2.1`, `"192.0.2.1:4711"`,
/// `"[2001:db8::1]:4711"`.
fn node_ip(v: &str) -> Option<IpAddr> {
    let v = v.trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse().ok().or_else(|| v.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

/// The address a bucket is keyed by: IPv4 as is (also when mapped into
/// IPv6), IPv6 cut to its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(self.of(req))
    }
}

/// Failed authentications per client address
/// (`rate_limit.auth_failures_per_minute`, with that burst). Each failure
/// draws from the address's budget; once it is spent, every request with
/// credentials from that address gets 429 until the budget refills, valid
/// credentials included, so that guessing stops there. (Users behind one
/// NAT share the budget; only failures spend it.)
pub struct AuthFailures {
    limiter: governor::RateLimiter<
        IpAddr,
        governor::state::keyed::HashMapStateStore<IpAddr>,
        governor::clock::DefaultClock,
    >,
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
    client: ClientIp,
}

impl AuthFailures {
    /// `None` when rate limiting is off.
    pub fn new(cfg: &RateLimitConfig) -> Option<Self> {
        let per_minute = std::num::NonZeroU32::new(cfg.auth_failures_per_minute)?;
        cfg.enabled.then(|| Self {
            limiter: governor::RateLimiter::hashmap(governor::Quota::per_minute(per_minute)),
            blocked: Default::default(),
            client: ClientIp::new(cfg),
        })
    }

    /// The address `req` counts against.
    pub fn client(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> IpAddr {
        self.client.of_parts(peer, headers)
    }

    /// Seconds until `ip` may try again, if its budget is spent.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let blocked = self.blocked.lock().unwrap();
        let left = blocked.get(&ip)?.checked_duration_since(std::time::Instant::now())?;
        Some(left.as_secs().max(1))
    }

    /// Records a failure; the seconds to wait when it spent the budget.
    pub fn failed(&self, ip: IpAddr) -> Option<u64> {
        use governor::clock::Clock;
        let not_until = self.limiter.check_key(&ip).err()?;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let now = std::time::Instant::now();
        let mut blocked = self.blocked.lock().unwrap();
        if blocked.len() >= 65_536 {
            blocked.retain(|_, until| *until > now);
            self.limiter.retain_recent();
        }
        blocked.insert(ip, now + wait);
        Some(wait.as_secs().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn client(trusted: &[&str]) -> ClientIp {
        let cfg = RateLimitConfig {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            ..RateLimitConfig::default()
        };
        ClientIp::new(&cfg)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        // No proxies configured, or a peer that is not one: the peer.
        assert_eq!(client(&[]).of_parts(Some(ip("203.0.113.9")), &spoofed), ip("203.0.113.9"));
        assert_eq!(client(&["10.0.0.0/8"]).of_parts(Some(ip("203.0.113.9")), &spoofed), ip("203.0.113.9"));
        // From our proxy: the hop it appended, not what the client wrote
        // before it (right-most untrusted).
        let c = client(&["10.0.0.0/8", "127.0.0.1"]);
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7"), ("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(c.of_parts(Some(ip("127.0.0.1")), &chain), ip("198.51.100.7"));
        // Every hop trusted: the left-most.
        let inner = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(c.of_parts(Some(ip("127.0.0.1")), &inner), ip("10.9.9.9"));
        // An unreadable hop ends the walk at the last trusted one.
        let unknown = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.1.1.1")]);
        assert_eq!(c.of_parts(Some(ip("127.0.0.1")), &unknown), ip("10.1.1.1"));
        // RFC 7239 when there is no X-Forwarded-For.
        let fwd = headers(&[("forwarded", r#"for=1.2.3.4, for="[2001:db8::1]:4711";proto=https"#)]);
        assert_eq!(c.of_parts(Some(ip("127.0.0.1")), &fwd), ip("2001:db8::"));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let c = client(&[]);
        let none = HeaderMap::new();
        assert_eq!(c.of_parts(Some(ip("2001:db8:1:2:aaaa::1")), &none), ip("2001:db8:1:2::"));
        assert_eq!(c.of_parts(Some(ip("2001:db8:1:2:bbbb::9")), &none), ip("2001:db8:1:2::"));
        assert_ne!(c.of_parts(Some(ip("2001:db8:1:3::1")), &none), ip("2001:db8:1:2::"));
        assert_eq!(c.of_parts(Some(ip("::ffff:192.0.2.5")), &none), ip("192.0.2.5"));
        assert_eq!(c.of_parts(None, &none), ip("0.0.0.0"));
    }
}
