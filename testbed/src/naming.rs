//! Names of everything a testbed creates.
//!
//! Every network namespace and every veth a testbed creates carries the
//! testbed's [`Prefix`], so parallel testbeds never collide and the leftovers of
//! a crashed run can be found and removed by prefix (see [`crate::stale`]).
//! Linux limits interface names to 15 bytes, which is why prefixes are five
//! characters and node names at most seven.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Longest Linux interface name (`IFNAMSIZ` minus the terminating NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Marks the names of testbed resources; a prefix is this tag plus
/// [`Prefix::RANDOM_LEN`] characters from `[0-9a-z]`.
const TAG: &str = "ir";

/// The short unique tag of one testbed, e.g. `ir7kq`.
///
/// A new prefix is random; it is reserved by creating its state directory (see
/// [`crate::state::StateDir`]), so two live testbeds never share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(String);

impl Prefix {
    /// Random characters after the tag: 36^3 = 46656 prefixes, plenty for the
    /// testbeds that coexist on one host, and short enough to leave room for
    /// node names in interface names.
    pub const RANDOM_LEN: usize = 3;
    /// Length of every prefix.
    pub const LEN: usize = TAG.len() + Self::RANDOM_LEN;

    /// A fresh random prefix (not yet reserved).
    pub(crate) fn random() -> Self {
        // RandomState is seeded from the OS once per process; the counter makes
        // successive draws in one process differ.
        static DRAWS: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        let mut bits = hasher.finish();
        let mut s = String::from(TAG);
        for _ in 0..Self::RANDOM_LEN {
            let digit = (bits % 36) as u32;
            bits /= 36;
            s.push(char::from_digit(digit, 36).unwrap_or('0'));
        }
        // `irisn-…` is the broker's L1 node namespaces' (crate::stale).
        if s == "irisn" {
            return Self::random();
        }
        Self(s)
    }

    /// Reads a prefix back, e.g. from a state directory's name or the start of
    /// a namespace name. `None` when `s` is not exactly a prefix.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(TAG)?;
        (rest.len() == Self::RANDOM_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
        .then(|| Self(s.to_owned()))
    }

    /// The prefix a testbed namespace name starts with (`ir7kq-pm1` → `ir7kq`).
    pub fn of_netns(name: &str) -> Option<Self> {
        let (head, node) = name.split_at_checked(Self::LEN)?;
        node.strip_prefix('-')
            .filter(|node| !node.is_empty())
            .and_then(|_| Self::parse(head))
    }

    /// The prefix a testbed interface name starts with (`ir7kqpm1u` → `ir7kq`).
    pub fn of_link(name: &str) -> Option<Self> {
        let (head, rest) = name.split_at_checked(Self::LEN)?;
        (!rest.is_empty()).then_some(())?;
        Self::parse(head)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace of node `node`: `<prefix>-<node>`.
    pub fn netns(&self, node: &NodeName) -> String {
        format!("{}-{}", self.0, node.0)
    }

    /// The interface `role` of node `node`: `<prefix><node><role>`, e.g. the
    /// underlay end of PM `pm1` is `ir7kqpm1u`.
    pub fn link(&self, node: &NodeName, role: &str) -> Result<String> {
        let name = format!("{}{}{}", self.0, node.0, role);
        if name.len() > MAX_IFNAME_LEN {
            return Err(Error::Usage(format!(
                "interface name {name:?} is longer than {MAX_IFNAME_LEN} bytes; use a shorter node name"
            )));
        }
        Ok(name)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a node (PM, VM, underlay) inside one testbed: 1 to
/// [`NodeName::MAX_LEN`] characters from `[a-z0-9]`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// Longest node name: [`MAX_IFNAME_LEN`] minus the prefix and the longest
    /// interface role suffix (3, e.g. `e12`).
    pub const MAX_LEN: usize = MAX_IFNAME_LEN - Prefix::LEN - 3;

    pub fn new(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::Usage(format!(
                "node name {name:?} must be 1 to {} characters of [a-z0-9] starting with a letter \
                 (it becomes part of 15-byte interface names)",
                Self::MAX_LEN
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_prefixes_parse_back_and_differ() {
        let a = Prefix::random();
        let b = Prefix::random();
        assert_eq!(a.as_str().len(), Prefix::LEN);
        assert_eq!(Prefix::parse(a.as_str()), Some(a.clone()));
        // Two draws may collide with probability 1/46656; five draws all
        // equal would mean the counter is not mixed in.
        let draws: Vec<_> = (0..5).map(|_| Prefix::random()).collect();
        assert!(draws.iter().any(|p| *p != a) || b != a);
    }

    #[test]
    fn prefixes_are_recognised_only_in_testbed_names() {
        assert!(Prefix::parse("ir7kq").is_some());
        assert!(Prefix::parse("ir7kqx").is_none());
        assert!(Prefix::parse("ir7K q").is_none());
        assert!(Prefix::parse("xx7kq").is_none());
        assert_eq!(Prefix::of_netns("ir7kq-pm1").unwrap().as_str(), "ir7kq");
        assert!(Prefix::of_netns("ir7kq-").is_none());
        assert!(Prefix::of_netns("ir7kqpm1").is_none());
        assert!(Prefix::of_netns("ir7").is_none());
        assert_eq!(Prefix::of_link("ir7kqpm1u").unwrap().as_str(), "ir7kq");
        assert!(Prefix::of_link("ir7kq").is_none());
        assert!(Prefix::of_link("eth0").is_none());
    }

    #[test]
    fn names_fit_in_interface_names() {
        let p = Prefix::parse("ir7kq").unwrap();
        let node = NodeName::new("vm12345").unwrap();
        assert_eq!(p.netns(&node), "ir7kq-vm12345");
        assert_eq!(p.link(&node, "e12").unwrap(), "ir7kqvm12345e12");
        assert!(p.link(&node, "e123").is_err());
        assert!(NodeName::new("vm123456").is_err());
        assert!(NodeName::new("1vm").is_err());
        assert!(NodeName::new("vm-1").is_err());
        assert!(NodeName::new("").is_err());
    }
}
