//! IPv4 and IPv6 subnets in CIDR notation, and whether one lies inside
//! another: the cross-model `pgsql` gate of reference §3(a) ("every CIDR in
//! our own unit's `egress-subnets` must be contained in the server's
//! `allowed-subnets`").
//!
//! Written here rather than taken from a crate (ipnet, cidr): the standard
//! library already parses both address families, and containment is a mask
//! and a comparison on a 128-bit integer. A dependency would save ~30 lines
//! and add a crate to audit.

use std::fmt;
use std::net::IpAddr;

/// A subnet: a network address and a prefix length. A bare address is the
/// single-host subnet (`/32` or `/128`), which is how Juju writes a unit's
/// own egress when it has no wider one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    address: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a CIDR subnet such as 10.0.0.0/24 or 2001:db8::/64")]
pub struct CidrError {
    text: String,
}

impl Cidr {
    /// Parse `10.0.0.0/24`, `2001:db8::/64`, or a bare address. Host bits
    /// beyond the prefix are allowed (`10.0.0.5/24` is the subnet
    /// `10.0.0.0/24`), as Python's `ipaddress.ip_network(strict=False)` and
    /// Juju's own egress-subnets allow.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let error = || CidrError {
            text: text.to_string(),
        };
        let trimmed = text.trim();
        let (address_text, prefix_text) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (trimmed, None),
        };
        let address: IpAddr = address_text.parse().map_err(|_| error())?;
        let max_prefix = Self::max_prefix(address);
        let prefix_len = match prefix_text {
            None => max_prefix,
            // Digits only: `u8::from_str` would also accept a leading `+`.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max_prefix)
                .ok_or_else(error)?,
            Some(_) => return Err(error()),
        };
        Ok(Cidr {
            address,
            prefix_len,
        })
    }

    fn max_prefix(address: IpAddr) -> u8 {
        match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// The address as a 128-bit number, left-aligned so that prefix bits of
    /// either family start at the top bit.
    fn bits(address: IpAddr) -> u128 {
        match address {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn mask(prefix_len: u8) -> u128 {
        if prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix_len))
        }
    }

    /// Whether every address of `inner` is also in `self`. Different
    /// families never contain each other: an IPv4 egress is not granted by
    /// an IPv6 rule (PostgreSQL's pg_hba matches them separately too).
    pub fn contains(&self, inner: &Cidr) -> bool {
        let same_family = matches!(
            (self.address, inner.address),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        );
        if !same_family || inner.prefix_len < self.prefix_len {
            return false;
        }
        let mask = Self::mask(self.prefix_len);
        Self::bits(self.address) & mask == Self::bits(inner.address) & mask
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    #[test]
    fn ipv4_containment() {
        assert!(cidr("10.0.0.0/24").contains(&cidr("10.0.0.5/32")));
        assert!(cidr("10.0.0.0/24").contains(&cidr("10.0.0.128/25")));
        assert!(cidr("10.0.0.0/24").contains(&cidr("10.0.0.0/24")));
        assert!(!cidr("10.0.0.0/24").contains(&cidr("10.0.1.5/32")));
        assert!(
            !cidr("10.0.0.0/25").contains(&cidr("10.0.0.0/24")),
            "wider is not inside narrower"
        );
        assert!(cidr("0.0.0.0/0").contains(&cidr("192.0.2.1")));
        assert!(cidr("10.0.0.7").contains(&cidr("10.0.0.7/32")));
    }

    #[test]
    fn ipv6_containment_and_families_kept_apart() {
        assert!(cidr("2001:db8::/32").contains(&cidr("2001:db8:1::5/128")));
        assert!(!cidr("2001:db8::/32").contains(&cidr("2001:db9::5")));
        assert!(cidr("::/0").contains(&cidr("fd00::1")));
        assert!(!cidr("::/0").contains(&cidr("10.0.0.1/32")));
        assert!(!cidr("0.0.0.0/0").contains(&cidr("::ffff:10.0.0.1")));
    }

    #[test]
    fn host_bits_are_ignored_beyond_the_prefix() {
        assert!(cidr("10.0.0.5/24").contains(&cidr("10.0.0.200")));
    }

    #[test]
    fn malformed_subnets_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/24",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
            "host/24",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(cidr(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
    }
}
