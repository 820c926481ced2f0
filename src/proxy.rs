//! The client's address behind reverse proxies: `X-Forwarded-For` is believed only when the
//! connection comes from a configured trusted proxy (`[server] trusted_proxies`), and then
//! only up to the first address that is not itself a trusted proxy, so a client cannot name
//! itself whatever address it likes.
//!
//! Invariants:
//! - Without trusted proxies (the default) the address is the TCP peer's, always.
//! - The result is always an address the server saw or a trusted proxy vouched for.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// Most entries in `[server] trusted_proxies`.
pub const MAX_TRUSTED_PROXIES: usize = 256;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses addresses (`10.0.0.1`) and networks (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        if entries.len() > MAX_TRUSTED_PROXIES {
            anyhow::bail!(
                "configuration: [server] trusted_proxies has {} entries (at most {MAX_TRUSTED_PROXIES})",
                entries.len()
            );
        }
        let nets = entries
            .iter()
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "configuration: [server] trusted_proxies: {e:?} is not an address or \
                             a network"
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(TrustedProxies { nets })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address given the TCP peer and the `X-Forwarded-For` values (in header
    /// order): the peer, unless it is a trusted proxy; then the rightmost forwarded address
    /// that is not a trusted proxy (or the leftmost, if all are).
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = forwarded_for
            .flat_map(|h| h.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
    }

    /// The client's address of a request.
    pub fn of(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let headers = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok());
        Some(self.client_address(peer, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let spoofed = ["1.2.3.4"];
        assert_eq!(
            none.client_address(ip("203.0.113.9"), spoofed.into_iter()),
            ip("203.0.113.9")
        );
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        // From a trusted proxy: the rightmost untrusted hop.
        assert_eq!(
            t.client_address(ip("10.1.1.1"), ["198.51.100.7, 10.2.2.2"].into_iter()),
            ip("198.51.100.7")
        );
        // A client prepending its own claim does not move the result.
        assert_eq!(
            t.client_address(
                ip("10.1.1.1"),
                ["6.6.6.6", "198.51.100.7, 10.2.2.2"].into_iter()
            ),
            ip("198.51.100.7")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            t.client_address(ip("127.0.0.1"), std::iter::empty()),
            ip("127.0.0.1")
        );
        assert_eq!(
            t.client_address(ip("127.0.0.1"), ["nonsense"].into_iter()),
            ip("127.0.0.1")
        );
        // From an untrusted peer: the header is ignored.
        assert_eq!(
            t.client_address(ip("192.0.2.1"), ["198.51.100.7"].into_iter()),
            ip("192.0.2.1")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
