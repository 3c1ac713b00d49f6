//! How a tenant's names are scoped: rewritten at the request edge, so nothing below it knows
//! tenants exist.
//!
//! A client of tenant `lkc-4f2a9c` sees and sends plain names (`orders`). The broker's request
//! edge turns each into the internal name `lkc-4f2a9c~orders` before a handler passes it on,
//! and turns internal names back (dropping those of other tenants) before a response leaves.
//! Logs, metadata, groups and the object store hold internal names only, and do not change.
//!
//! Why this is safe:
//! - a tenant id is `lkc-` and 1 to [`TENANT_ID_MAX_SUFFIX`] lowercase letters or digits, so it
//!   never holds [`SEPARATOR`]; splitting an internal name at its first `~` gives back exactly
//!   (tenant, name), whatever the name holds (another `~`, unicode, a tenant-like prefix). The
//!   mapping is injective, so no crafted name of one tenant can equal a name of another;
//! - `~` cannot appear in a topic name (Kafka allows `[a-zA-Z0-9._-]`), is unreserved in URLs
//!   and object keys, and is plain in file names, so internal topic names stay valid log
//!   directories and object keys;
//! - the default namespace (anonymous clients of `kora dev`, and every client until tenants are
//!   configured) keeps names as they are, so existing data directories need no migration; a
//!   default-namespace name that would parse as a tenant's (`lkc-x~y`: possible for group and
//!   transactional ids, which Kafka leaves unrestricted) is refused, and listings of the
//!   default namespace leave tenants' names out;
//! - internal topic names stay within Kafka's 249 bytes (a log directory `<topic>-<partition>`
//!   must fit 255): a tenant's topic names may be up to 249 minus its prefix. Group and
//!   transactional ids have no such limit.

use std::fmt;

/// Separates a tenant's id from a name inside the broker.
pub const SEPARATOR: char = '~';
/// Longest topic name, internal form included (Kafka's limit).
pub const TOPIC_NAME_MAX_BYTES: usize = 249;
/// Longest part of a tenant id after `lkc-`.
pub const TENANT_ID_MAX_SUFFIX: usize = 16;

/// A tenant's id: `lkc-` followed by lowercase letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, NamespaceError> {
        let suffix = s.strip_prefix("lkc-").ok_or_else(|| NamespaceError::BadTenantId(s.to_string()))?;
        let ok = !suffix.is_empty()
            && suffix.len() <= TENANT_ID_MAX_SUFFIX
            && suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(NamespaceError::BadTenantId(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a name cannot be used in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error("'{0}' is not a tenant id (lkc- and 1 to 16 lowercase letters or digits)")]
    BadTenantId(String),
    /// The name, in the form the client gave it.
    #[error("'{0}' is reserved: names of the form lkc-<id>~<name> belong to tenants")]
    Reserved(String),
    #[error("topic name '{name}' is longer than {max} bytes")]
    TooLong { name: String, max: usize },
}

/// Whose names a connection sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Names as they are (no tenants, or the default tenant).
    Default,
    Tenant(TenantId),
}

/// Which tenant, if any, an internal name belongs to (and the name within it).
fn split(internal: &str) -> Option<(TenantId, &str)> {
    let (t, name) = internal.split_once(SEPARATOR)?;
    TenantId::parse(t).ok().map(|t| (t, name))
}

/// The tenant an internal name belongs to, if any.
pub fn owner(internal: &str) -> Option<TenantId> {
    split(internal).map(|(t, _)| t)
}

impl Namespace {
    /// The namespace an internal name lives in.
    pub fn of(internal: &str) -> Namespace {
        owner(internal).map_or(Namespace::Default, Namespace::Tenant)
    }

    /// The internal form of a client's group id, transactional id or other unrestricted name.
    pub fn scope(&self, name: &str) -> Result<String, NamespaceError> {
        match self {
            Namespace::Default if split(name).is_some() => Err(NamespaceError::Reserved(name.to_string())),
            Namespace::Default => Ok(name.to_string()),
            Namespace::Tenant(t) => Ok(format!("{t}{SEPARATOR}{name}")),
        }
    }

    /// The internal form of a client's topic name: [`Namespace::scope`] within Kafka's length
    /// limit. (The topic name's own characters are checked where topics are created.)
    pub fn scope_topic(&self, name: &str) -> Result<String, NamespaceError> {
        let internal = self.scope(name)?;
        if internal.len() > TOPIC_NAME_MAX_BYTES {
            let max = TOPIC_NAME_MAX_BYTES - (internal.len() - name.len());
            return Err(NamespaceError::TooLong { name: name.to_string(), max });
        }
        Ok(internal)
    }

    /// The client's form of an internal name, or None when it belongs to another namespace
    /// (listings drop it; a lookup answers as for a name that does not exist).
    pub fn unscope<'a>(&self, internal: &'a str) -> Option<&'a str> {
        match (self, split(internal)) {
            (Namespace::Default, None) => Some(internal),
            (Namespace::Default, Some(_)) => None,
            (Namespace::Tenant(t), Some((owner, name))) if owner == *t => Some(name),
            (Namespace::Tenant(_), _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> Namespace {
        Namespace::Tenant(TenantId::parse(s).expect("tenant id"))
    }

    /// Names an attacker would try: the separator, tenant-like prefixes, unicode, empty.
    const CRAFTED: &[&str] = &[
        "orders",
        "",
        "~",
        "~~",
        "lkc-b",
        "lkc-b~orders",
        "lkc-b~",
        "~lkc-b~orders",
        "a~b",
        "lkc-B~orders",
        "lkc-~orders",
        "lkc-b ~orders",
        "заказы",
        "🦀~lkc-b",
        "lkc-a~lkc-b~orders",
        "..",
        "a/../../b",
    ];

    #[test]
    fn tenant_ids_are_lkc_and_lowercase_alphanumerics() {
        for ok in ["lkc-a", "lkc-4f2a9c", "lkc-0123456789abcdef"] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["lkc-", "lkc-A", "lkc-a~", "lkc-a-b", "lkc-0123456789abcdefg", "lsrc-a", "", "~"] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenants_names_round_trip_and_no_other_namespace_sees_them() {
        let namespaces = [Namespace::Default, tenant("lkc-a"), tenant("lkc-b"), tenant("lkc-ab")];
        for ns in &namespaces {
            for name in CRAFTED {
                let Ok(internal) = ns.scope(name) else {
                    // Only the default namespace refuses, and only tenant-shaped names.
                    assert_eq!(*ns, Namespace::Default, "{name}");
                    assert!(split(name).is_some(), "{name} refused but not tenant-shaped");
                    continue;
                };
                assert_eq!(ns.unscope(&internal), Some(*name), "{ns:?} {name}");
                for other in namespaces.iter().filter(|o| *o != ns) {
                    assert_eq!(other.unscope(&internal), None, "{other:?} sees {ns:?}'s {name:?}");
                }
            }
        }
    }

    #[test]
    fn no_two_names_of_different_namespaces_collide() {
        let namespaces = [Namespace::Default, tenant("lkc-a"), tenant("lkc-b"), tenant("lkc-ab")];
        let mut seen = std::collections::HashMap::new();
        for ns in &namespaces {
            for name in CRAFTED {
                if let Ok(internal) = ns.scope(name) {
                    if let Some(prev) = seen.insert(internal.clone(), (ns.clone(), *name)) {
                        panic!("{internal:?} is both {prev:?} and ({ns:?}, {name:?})");
                    }
                }
            }
        }
        // Random names, including the separator and multi-byte characters.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "ab~-lkc0🦀é.".chars().collect();
        for _ in 0..20_000 {
            let len = rng.random_range(0..12);
            let name: String = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            let ns = &namespaces[rng.random_range(0..namespaces.len())];
            if let Ok(internal) = ns.scope(&name) {
                assert_eq!(ns.unscope(&internal), Some(name.as_str()));
                if let Some(prev) = seen.insert(internal.clone(), (ns.clone(), "")) {
                    assert_eq!(prev.0, *ns, "{internal:?} reached from two namespaces");
                }
            }
        }
    }

    #[test]
    fn topic_names_stay_within_kafkas_limit_with_the_prefix() {
        let ns = tenant("lkc-4f2a9c");
        let prefix = "lkc-4f2a9c~".len();
        let longest = "t".repeat(TOPIC_NAME_MAX_BYTES - prefix);
        assert_eq!(ns.scope_topic(&longest).expect("fits").len(), TOPIC_NAME_MAX_BYTES);
        let e = ns.scope_topic(&format!("{longest}t")).expect_err("too long");
        assert_eq!(
            e,
            NamespaceError::TooLong { name: format!("{longest}t"), max: TOPIC_NAME_MAX_BYTES - prefix }
        );
        let full = "t".repeat(TOPIC_NAME_MAX_BYTES);
        assert_eq!(Namespace::Default.scope_topic(&full).expect("default keeps 249"), full);
    }
}
