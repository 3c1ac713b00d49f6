//! Kafka's ACLs (KIP-11, KIP-290's prefixed patterns) as its KRaft `StandardAuthorizer` applies
//! them, as pure logic: the enums with their wire codes, a binding and the checks CreateAcls
//! makes of it, the filter DescribeAcls and DeleteAcls match with, and an index that answers
//! "may this principal, from this host, do this to this resource?".
//!
//! The rules (`StandardAuthorizerData`): super users may do anything. Otherwise the ACLs that
//! apply to a resource are the LITERAL ones with its exact name, the LITERAL `*` ones, and the
//! PREFIXED ones whose name begins it; of those, the ones whose principal is the caller's or
//! `User:*`, whose host is the caller's or `*`, and whose operation is the one asked, ALL, or
//! (ALLOW only) one that implies it: READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS
//! implies DESCRIBE_CONFIGS. Any DENY wins; else any ALLOW allows; else, if no ACL at all names
//! the resource (whoever it is for), `allow.everyone.if.no.acl.found` decides; else denied.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A resource name or host that matches every resource or host.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The only name a CLUSTER resource may have.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Kafka's error codes the checks below map to.
pub const INVALID_REQUEST: i16 = 42;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

/// One of Kafka's byte-coded ACL enums: `code`/`from_code` are the wire values, `name` the Java
/// constant (what Kafka's error texts print, and the serialised form).
macro_rules! kafka_enum {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $code:literal, $name:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $ty {
            $($variant,)+
        }

        impl $ty {
            pub const VALUES: &'static [$ty] = &[$($ty::$variant,)+];

            pub fn code(self) -> i8 {
                match self {
                    $($ty::$variant => $code,)+
                }
            }

            /// As Kafka's `fromCode`: a code this version does not know reads as `Unknown`.
            pub fn from_code(code: i8) -> Self {
                match code {
                    $($code => $ty::$variant,)+
                    _ => $ty::Unknown,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum! {
    /// What kind of thing an ACL is about. ANY only appears in filters.
    ResourceType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

kafka_enum! {
    /// How an ACL's resource name matches: LITERAL (exact, or `*` for all) or PREFIXED. ANY and
    /// MATCH only appear in filters.
    PatternType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// What an ACL allows or denies. ALL covers every operation; ANY only appears in filters.
    AclOperation {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

kafka_enum! {
    /// Whether an ACL allows or denies. ANY only appears in filters.
    AclPermission {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

/// Why a CreateAcls binding, or a DescribeAcls / DeleteAcls filter, is refused, and how Kafka
/// answers it: Kafka refuses in three places, and each answers differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// INVALID_REQUEST for this binding alone; the text (Kafka's) goes to the client.
    #[error("{0}")]
    InvalidRequest(String),
    /// Kafka cannot even build the binding (ANY or MATCH where a concrete value belongs): it
    /// throws while reading the request, so every result of the request is
    /// UNKNOWN_SERVER_ERROR, with no text. The text here is for logs.
    #[error("{0}")]
    UnknownServerError(String),
    /// An UNKNOWN (unrecognised) code: Kafka fails to parse the request and closes the
    /// connection.
    #[error("{0}")]
    UnparsableRequest(String),
}

impl AclError {
    pub fn error_code(&self) -> i16 {
        match self {
            AclError::UnknownServerError(_) => UNKNOWN_SERVER_ERROR,
            AclError::InvalidRequest(_) | AclError::UnparsableRequest(_) => INVALID_REQUEST,
        }
    }

    /// What the client is told: Kafka withholds the text of an UNKNOWN_SERVER_ERROR.
    pub fn client_message(&self) -> Option<&str> {
        match self {
            AclError::InvalidRequest(m) | AclError::UnparsableRequest(m) => Some(m),
            AclError::UnknownServerError(_) => None,
        }
    }

    /// Whether the error is the whole request's, not one binding's.
    pub fn fails_request(&self) -> bool {
        !matches!(self, AclError::InvalidRequest(_))
    }
}

/// One ACL, as CreateAcls carries it and the metadata stores it. The principal is Kafka's
/// string form (`User:alice`), the host `*` or an address as [`host_string`] writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclBinding {
    /// Kafka's checks on a CreateAcls binding, in Kafka's order: the request's parse (UNKNOWN
    /// codes), building the binding (no ANY or MATCH), the broker's `AclApis` (cluster name,
    /// empty name), the controller's `validateNewAcl` (a principal needs a colon, KAFKA-18051).
    /// Kafka checks nothing else: a PREFIXED `*` is a prefix like any other, and the host is
    /// not parsed. (CreateAcls v0 also refuses non-LITERAL patterns: the request edge's part.)
    pub fn validate(&self) -> Result<(), AclError> {
        self.check_parse()?;
        self.check_build()?;
        self.check_names()
    }

    fn check_parse(&self) -> Result<(), AclError> {
        if self.pattern_type == PatternType::Unknown
            || self.resource_type == ResourceType::Unknown
            || self.permission == AclPermission::Unknown
            || self.operation == AclOperation::Unknown
        {
            return Err(AclError::UnparsableRequest("CreatableAcls contain unknown elements".into()));
        }
        Ok(())
    }

    fn check_build(&self) -> Result<(), AclError> {
        let fail = |m: String| Err(AclError::UnknownServerError(m));
        if self.resource_type == ResourceType::Any {
            return fail("resourceType must not be ANY".into());
        }
        if matches!(self.pattern_type, PatternType::Match | PatternType::Any) {
            return fail(format!("patternType must not be {}", self.pattern_type));
        }
        if self.operation == AclOperation::Any {
            return fail("operation must not be ANY".into());
        }
        if self.permission == AclPermission::Any {
            return fail("permissionType must not be ANY".into());
        }
        Ok(())
    }

    fn check_names(&self) -> Result<(), AclError> {
        let fail = |m: String| Err(AclError::InvalidRequest(m));
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return fail(format!("The only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
        }
        if self.resource_name.is_empty() {
            return fail("Invalid empty resource name".into());
        }
        if !self.principal.contains(':') {
            return fail(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal \
                 type from the principal name)",
                self.principal
            ));
        }
        Ok(())
    }
}

/// A whole CreateAcls request's checks: `Err` when Kafka fails the request as a whole (any
/// binding's UNKNOWN code first, then the first binding it cannot build), else each binding's
/// own result, in order.
pub fn validate_creations(bindings: &[AclBinding]) -> Result<Vec<Result<(), AclError>>, AclError> {
    for b in bindings {
        b.check_parse()?;
    }
    for b in bindings {
        b.check_build()?;
    }
    Ok(bindings.iter().map(AclBinding::check_names).collect())
}

/// A DescribeAcls / DeleteAcls filter (Kafka's `AclBindingFilter`). `None` for a name,
/// principal or host matches any; ANY matches any value of its field; a MATCH pattern type
/// matches every binding that applies to a resource of that name: LITERAL ones with the name,
/// LITERAL `*` ones, and PREFIXED ones that begin it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclFilter {
    /// Matches every binding.
    pub const ANY: AclFilter = AclFilter {
        resource_type: ResourceType::Any,
        resource_name: None,
        pattern_type: PatternType::Any,
        principal: None,
        host: None,
        operation: AclOperation::Any,
        permission: AclPermission::Any,
    };

    /// Kafka's request parse refuses a filter with an UNKNOWN code (DescribeAcls and
    /// DeleteAcls alike); nothing else about a filter is refused.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.pattern_type == PatternType::Unknown
            || self.resource_type == ResourceType::Unknown
            || self.operation == AclOperation::Unknown
            || self.permission == AclPermission::Unknown
        {
            return Err(AclError::UnparsableRequest("Filters contain UNKNOWN elements".into()));
        }
        Ok(())
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_pattern(b) && self.matches_entry(b)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        let pt = self.pattern_type;
        if !matches!(pt, PatternType::Any | PatternType::Match) && pt != b.pattern_type {
            return false;
        }
        let Some(name) = &self.resource_name else { return true };
        if pt == PatternType::Any || pt == b.pattern_type {
            return *name == b.resource_name;
        }
        // MATCH against a binding of another pattern type.
        match b.pattern_type {
            PatternType::Literal => *name == b.resource_name || b.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&b.resource_name),
            // Kafka throws here; no stored binding has these.
            _ => false,
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == AclOperation::Any || self.operation == b.operation)
            && (self.permission == AclPermission::Any || self.permission == b.permission)
    }
}

/// The host Kafka compares with an ACL's host: Java's `InetAddress.getHostAddress` of the
/// peer, which writes IPv6 in full (`0:0:0:0:0:0:0:1`, not `::1`) and an IPv4-mapped IPv6
/// peer as IPv4. ACLs made by Kafka's tools carry these forms.
pub fn host_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":"),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

/// The broker's authorizer settings (`super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals (`User:admin`) allowed everything, whatever the ACLs say.
    pub super_users: HashSet<String>,
    /// The answer for a resource no ACL names (Kafka's default: false, denied).
    pub allow_everyone_if_no_acl_found: bool,
}

/// A `super.users` entry that is not `Type:name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a string in format principalType:principalName but got {0}")]
pub struct BadPrincipal(pub String);

impl AuthorizerConfig {
    /// `super.users` as Kafka reads it: `;`-separated (a TLS name may hold commas), trimmed,
    /// empty entries skipped, each `Type:name`.
    pub fn parse_super_users(value: &str) -> Result<HashSet<String>, BadPrincipal> {
        let entries = value.split(';').map(str::trim).filter(|v| !v.is_empty());
        entries
            .map(|v| if v.contains(':') { Ok(v.to_owned()) } else { Err(BadPrincipal(v.into())) })
            .collect()
    }
}

/// What an ACL says, its resource aside (the key it is filed under).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    principal: Box<str>,
    host: Box<str>,
    operation: AclOperation,
    permission: AclPermission,
}

impl Entry {
    /// Kafka's `findResult`: None if the ACL is not for this caller and operation.
    fn result(&self, principal: &str, host: &str, op: AclOperation) -> Option<Decision> {
        if &*self.principal != principal && &*self.principal != WILDCARD_PRINCIPAL {
            return None;
        }
        if &*self.host != WILDCARD && &*self.host != host {
            return None;
        }
        let allow = self.permission == AclPermission::Allow;
        if self.operation != AclOperation::All {
            use AclOperation::*;
            let applies = match op {
                Describe if allow => matches!(self.operation, Describe | Read | Write | Delete | Alter),
                DescribeConfigs if allow => matches!(self.operation, DescribeConfigs | AlterConfigs),
                _ => op == self.operation,
            };
            if !applies {
                return None;
            }
        }
        // As Kafka: anything but ALLOW denies.
        Some(if allow { Decision::Allowed } else { Decision::Denied })
    }

    /// The exact-operation match `authorizeByResourceType` uses (no implied operations).
    fn applies_exactly(&self, principal: &str, host: &str, op: AclOperation) -> bool {
        (&*self.host == WILDCARD || &*self.host == host)
            && (&*self.principal == principal || &*self.principal == WILDCARD_PRINCIPAL)
            && (self.operation == op || self.operation == AclOperation::All)
    }
}

/// One resource type's ACLs: LITERAL by exact name (`*` among them), PREFIXED in a radix tree,
/// so that finding the prefixes of a name walks the name once instead of scanning the ACLs.
#[derive(Debug, Clone, Default)]
struct TypeAcls {
    literal: HashMap<Box<str>, Vec<Entry>>,
    prefixed: Prefixes,
}

impl TypeAcls {
    /// Every name with its ACLs.
    fn named(&self) -> Vec<(PatternType, String, &[Entry])> {
        let mut prefixed = Vec::new();
        self.prefixed.all(&mut Vec::new(), &mut prefixed);
        let literal = self.literal.iter().map(|(n, es)| (PatternType::Literal, n.to_string(), es.as_slice()));
        literal.chain(prefixed.into_iter().map(|(n, es)| (PatternType::Prefixed, n, es))).collect()
    }
}

/// A radix tree of PREFIXED names, on bytes: each node holds the ACLs of the name spelled
/// from the root to it. Every node but the root has ACLs or at least two children, so a path
/// is never longer than the name; children are sorted by their label's first byte.
#[derive(Debug, Clone, Default)]
struct Prefixes {
    label: Box<[u8]>,
    entries: Vec<Entry>,
    children: Vec<Prefixes>,
}

impl Prefixes {
    fn child(&self, first: u8) -> Result<usize, usize> {
        self.children.binary_search_by_key(&first, |c| c.label.first().copied().unwrap_or_default())
    }

    /// Calls `f` with the ACLs of every stored name that begins `name` (shortest first) until
    /// it returns true; returns whether it did. O(name length).
    fn visit<'a>(&'a self, name: &str, mut f: impl FnMut(&'a [Entry]) -> bool) -> bool {
        let (mut node, mut rest) = (self, name.as_bytes());
        loop {
            if !node.entries.is_empty() && f(&node.entries) {
                return true;
            }
            let Some(&first) = rest.first() else { return false };
            let Ok(i) = node.child(first) else { return false };
            node = &node.children[i];
            let Some(tail) = rest.strip_prefix(&*node.label) else { return false };
            rest = tail;
        }
    }

    /// The ACLs of `name`, made if absent (splitting the node the name leaves midway).
    fn slot(&mut self, name: &[u8]) -> &mut Vec<Entry> {
        let (mut node, mut rest) = (self, name);
        loop {
            let Some(&first) = rest.first() else { return &mut node.entries };
            let i = match node.child(first) {
                Ok(i) => i,
                Err(i) => {
                    node.children.insert(i, Prefixes { label: rest.into(), ..Default::default() });
                    return &mut node.children[i].entries;
                }
            };
            let child = &mut node.children[i];
            let shared = child.label.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if shared < child.label.len() {
                let tail = Prefixes {
                    label: child.label[shared..].into(),
                    entries: std::mem::take(&mut child.entries),
                    children: std::mem::take(&mut child.children),
                };
                child.label = child.label[..shared].into();
                child.children = vec![tail];
            }
            rest = &rest[shared..];
            node = child;
        }
    }

    /// Removes the first of `name`'s ACLs `hit` picks; false if none. Prunes and re-merges
    /// nodes left without ACLs, so the tree stays as if the ACL had never been added.
    fn remove(&mut self, name: &[u8], hit: &dyn Fn(&Entry) -> bool) -> bool {
        let Some(&first) = name.first() else {
            let Some(i) = self.entries.iter().position(hit) else { return false };
            self.entries.swap_remove(i);
            return true;
        };
        let Ok(i) = self.child(first) else { return false };
        let child = &mut self.children[i];
        let Some(tail) = name.strip_prefix(&*child.label) else { return false };
        if !child.remove(tail, hit) {
            return false;
        }
        if child.entries.is_empty() {
            match child.children.len() {
                0 => {
                    self.children.remove(i);
                }
                1 => {
                    let only = child.children.remove(0);
                    child.label = [&*child.label, &*only.label].concat().into();
                    child.entries = only.entries;
                    child.children = only.children;
                }
                _ => {}
            }
        }
        true
    }

    /// Whether some node has an ACL `allow` picks and none `deny` picks at it or above it.
    fn any_open(&self, allow: &dyn Fn(&Entry) -> bool, deny: &dyn Fn(&Entry) -> bool) -> bool {
        !self.entries.iter().any(deny)
            && (self.entries.iter().any(allow) || self.children.iter().any(|c| c.any_open(allow, deny)))
    }

    /// Every stored name with its ACLs.
    fn all<'a>(&'a self, path: &mut Vec<u8>, out: &mut Vec<(String, &'a [Entry])>) {
        path.extend_from_slice(&self.label);
        if !self.entries.is_empty() {
            // Names are whole `str`s, so the bytes down to a node with ACLs are UTF-8.
            out.push((String::from_utf8_lossy(path).into_owned(), &self.entries));
        }
        for c in &self.children {
            c.all(path, out);
        }
        path.truncate(path.len() - self.label.len());
    }
}

/// Kafka's KRaft authorizer over a set of ACLs, indexed for lookups that stay cheap with
/// tens of thousands of them.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    config: AuthorizerConfig,
    /// By `ResourceType::code`.
    types: [TypeAcls; 8],
    len: usize,
}

/// What one lookup has seen so far (Kafka's `MatchingRuleBuilder`).
#[derive(Default)]
struct Scan {
    any_acl: bool,
    allowed: bool,
}

impl Scan {
    /// True on a DENY: nothing can overturn it.
    fn visit(&mut self, entries: &[Entry], principal: &str, host: &str, op: AclOperation) -> bool {
        self.any_acl |= !entries.is_empty();
        for e in entries {
            match e.result(principal, host, op) {
                Some(Decision::Denied) => return true,
                Some(Decision::Allowed) => self.allowed = true,
                None => {}
            }
        }
        false
    }
}

fn slot(t: ResourceType) -> usize {
    usize::from(t.code().unsigned_abs())
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig, bindings: impl IntoIterator<Item = AclBinding>) -> Self {
        let mut a = Authorizer { config, ..Default::default() };
        for b in bindings {
            a.insert(b);
        }
        a
    }

    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn filed(&mut self, b: &AclBinding) -> Option<&mut Vec<Entry>> {
        let t = &mut self.types[slot(b.resource_type)];
        match b.pattern_type {
            PatternType::Literal => Some(t.literal.entry(b.resource_name.as_str().into()).or_default()),
            PatternType::Prefixed => Some(t.prefixed.slot(b.resource_name.as_bytes())),
            _ => None,
        }
    }

    /// Adds an ACL; false if it is already there (Kafka keeps one of identical ACLs) or is
    /// neither LITERAL nor PREFIXED (which `validate` refuses, and nothing could match).
    pub fn insert(&mut self, b: AclBinding) -> bool {
        let e = Entry {
            principal: b.principal.as_str().into(),
            host: b.host.as_str().into(),
            operation: b.operation,
            permission: b.permission,
        };
        let Some(entries) = self.filed(&b) else { return false };
        if entries.contains(&e) {
            return false;
        }
        entries.push(e);
        self.len += 1;
        true
    }

    /// Removes an ACL; false if it was not there.
    pub fn remove(&mut self, b: &AclBinding) -> bool {
        let t = &mut self.types[slot(b.resource_type)];
        let hit = |e: &Entry| {
            *e.principal == b.principal
                && *e.host == b.host
                && e.operation == b.operation
                && e.permission == b.permission
        };
        let name = b.resource_name.as_str();
        let removed = match b.pattern_type {
            PatternType::Literal => {
                let es = t.literal.get_mut(name);
                let removed = es.and_then(|es| Some(es.swap_remove(es.iter().position(hit)?))).is_some();
                if t.literal.get(name).is_some_and(Vec::is_empty) {
                    t.literal.remove(name);
                }
                removed
            }
            PatternType::Prefixed => t.prefixed.remove(name.as_bytes(), &hit),
            _ => false,
        };
        self.len -= usize::from(removed);
        removed
    }

    /// Every ACL, in no particular order.
    pub fn bindings(&self) -> impl Iterator<Item = AclBinding> + '_ {
        ResourceType::VALUES.iter().flat_map(move |&rt| {
            self.types[slot(rt)].named().into_iter().flat_map(move |(pattern_type, name, entries)| {
                entries.iter().map(move |e| AclBinding {
                    resource_type: rt,
                    resource_name: name.clone(),
                    pattern_type,
                    principal: e.principal.to_string(),
                    host: e.host.to_string(),
                    operation: e.operation,
                    permission: e.permission,
                })
            })
        })
    }

    /// DescribeAcls: the ACLs `filter` matches.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = AclBinding> + 'a {
        self.bindings().filter(move |b| filter.matches(b))
    }

    /// Whether `principal` (`User:alice`) connected from `host` (see [`host_string`]) may apply
    /// `operation` to the named resource.
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Decision {
        if self.config.super_users.contains(principal) {
            return Decision::Allowed;
        }
        let t = &self.types[slot(resource_type)];
        let mut scan = Scan::default();
        let mut visit = |entries: &[Entry]| scan.visit(entries, principal, host, operation);
        let exact = t.literal.get(resource_name);
        let wildcard = if resource_name == WILDCARD { None } else { t.literal.get(WILDCARD) };
        if exact.into_iter().chain(wildcard).any(|es| visit(es))
            || t.prefixed.visit(resource_name, &mut visit)
        {
            return Decision::Denied;
        }
        if scan.allowed || (!scan.any_acl && self.config.allow_everyone_if_no_acl_found) {
            Decision::Allowed
        } else {
            Decision::Denied
        }
    }

    /// Kafka's `authorizeByResourceType` (KIP-679: InitProducerId without a transactional id
    /// needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic): whether some resource of
    /// this type may be the subject of `operation`. Allowed if a resource named `hardcode`
    /// would be (super users, the no-ACL default); else, over this type's ACLs for this caller
    /// and exactly this operation or ALL (no implied operations here): a LITERAL `*` DENY
    /// denies, a LITERAL `*` ALLOW allows, and so does any other ALLOW not dominated by a DENY
    /// of the same literal name or of a prefix of its name. A scan of the type's ACLs, as
    /// Kafka's. ANY and UNKNOWN (which Kafka refuses with an exception) are denied.
    pub fn authorize_by_resource_type(
        &self,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> Decision {
        if matches!(resource_type, ResourceType::Any | ResourceType::Unknown)
            || matches!(operation, AclOperation::Any | AclOperation::Unknown)
        {
            return Decision::Denied;
        }
        if self.authorize(principal, host, operation, resource_type, "hardcode") == Decision::Allowed {
            return Decision::Allowed;
        }
        let t = &self.types[slot(resource_type)];
        let mine = |e: &Entry, p| e.permission == p && e.applies_exactly(principal, host, operation);
        let allow = |e: &Entry| mine(e, AclPermission::Allow);
        let deny = |e: &Entry| mine(e, AclPermission::Deny);
        if let Some(es) = t.literal.get(WILDCARD) {
            if es.iter().any(deny) {
                return Decision::Denied;
            }
            if es.iter().any(allow) {
                return Decision::Allowed;
            }
        }
        // An ALLOW counts unless a DENY of its literal name, or of a prefix of it, dominates it.
        let prefix_denied = |name: &str| t.prefixed.visit(name, |es| es.iter().any(deny));
        let literal_open = t
            .literal
            .iter()
            .any(|(name, es)| es.iter().any(allow) && !es.iter().any(deny) && !prefix_denied(name));
        if literal_open || t.prefixed.any_open(&allow, &deny) {
            Decision::Allowed
        } else {
            Decision::Denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclOperation as Op;
    use Decision::{Allowed, Denied};

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        who: &str,
        op: Op,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: who.into(),
            host: WILDCARD.into(),
            operation: op,
            permission: perm,
        }
    }

    fn allow(name: &str, pt: PatternType, who: &str, op: Op) -> AclBinding {
        acl(ResourceType::Topic, name, pt, who, op, AclPermission::Allow)
    }

    fn deny(name: &str, pt: PatternType, who: &str, op: Op) -> AclBinding {
        acl(ResourceType::Topic, name, pt, who, op, AclPermission::Deny)
    }

    fn authz(bindings: Vec<AclBinding>) -> Authorizer {
        Authorizer::new(AuthorizerConfig::default(), bindings)
    }

    /// A topic check by alice from 10.0.0.1.
    fn topic(a: &Authorizer, op: Op, name: &str) -> Decision {
        a.authorize("User:alice", "10.0.0.1", op, ResourceType::Topic, name)
    }

    const LIT: PatternType = PatternType::Literal;
    const PRE: PatternType = PatternType::Prefixed;
    const ALICE: &str = "User:alice";

    #[test]
    fn codes_names_and_serialised_form_are_kafkas() {
        assert_eq!(ResourceType::User.code(), 7);
        assert_eq!(ResourceType::from_code(5), ResourceType::TransactionalId);
        assert_eq!(ResourceType::from_code(99), ResourceType::Unknown);
        assert_eq!(PatternType::from_code(4), PatternType::Prefixed);
        assert_eq!(AclOperation::from_code(14), AclOperation::DescribeTokens);
        assert_eq!(AclPermission::from_code(3), AclPermission::Allow);
        for (i, op) in AclOperation::VALUES.iter().enumerate() {
            assert_eq!(usize::from(op.code().unsigned_abs()), i);
            assert_eq!(AclOperation::from_code(op.code()), *op);
            assert_eq!(serde_json::to_string(op).expect("json"), format!("\"{}\"", op.name()));
        }
        let b = allow("orders", PRE, ALICE, Op::IdempotentWrite);
        let json = serde_json::to_string(&b).expect("json");
        assert!(json.contains("\"pattern_type\":\"PREFIXED\"") && json.contains("\"IDEMPOTENT_WRITE\""));
        assert_eq!(serde_json::from_str::<AclBinding>(&json).expect("back"), b);
    }

    #[test]
    fn literal_prefixed_and_wildcard_resources() {
        let a = authz(vec![
            allow("orders", LIT, ALICE, Op::Read),
            allow("logs-", PRE, ALICE, Op::Write),
            allow("*", LIT, ALICE, Op::Create),
        ]);
        assert_eq!(topic(&a, Op::Read, "orders"), Allowed);
        assert_eq!(topic(&a, Op::Read, "orders2"), Denied, "a literal is not a prefix");
        assert_eq!(topic(&a, Op::Read, "order"), Denied);
        assert_eq!(topic(&a, Op::Write, "logs-app"), Allowed);
        assert_eq!(topic(&a, Op::Write, "logs-"), Allowed, "a prefix matches itself");
        assert_eq!(topic(&a, Op::Write, "logs"), Denied);
        assert_eq!(topic(&a, Op::Create, "anything"), Allowed);
        assert_eq!(topic(&a, Op::Write, "orders"), Denied);
        // Other resource types see none of the topic ACLs.
        assert_eq!(a.authorize(ALICE, "10.0.0.1", Op::Read, ResourceType::Group, "orders"), Denied);
        // A PREFIXED `*` is a prefix like any other (Kafka refuses nothing about it).
        let a = authz(vec![allow("*", PRE, ALICE, Op::Read)]);
        assert_eq!(topic(&a, Op::Read, "*star"), Allowed);
        assert_eq!(topic(&a, Op::Read, "orders"), Denied);
    }

    #[test]
    fn deny_wins_wherever_it_comes_from() {
        let base = vec![allow("orders", LIT, ALICE, Op::Read), allow("*", LIT, "User:*", Op::All)];
        for d in [
            deny("orders", LIT, ALICE, Op::Read),
            deny("ord", PRE, ALICE, Op::Read),
            deny("*", LIT, ALICE, Op::Read),
            deny("orders", LIT, "User:*", Op::All),
        ] {
            let mut bs = base.clone();
            bs.push(d.clone());
            assert_eq!(topic(&authz(bs), Op::Read, "orders"), Denied, "{d:?}");
        }
        assert_eq!(topic(&authz(base), Op::Read, "orders"), Allowed);
    }

    #[test]
    fn allow_of_read_write_delete_alter_implies_describe() {
        for op in [Op::Read, Op::Write, Op::Delete, Op::Alter, Op::Describe, Op::All] {
            let a = authz(vec![allow("t", LIT, ALICE, op)]);
            assert_eq!(topic(&a, Op::Describe, "t"), Allowed, "{op}");
        }
        for op in [Op::Create, Op::AlterConfigs, Op::DescribeConfigs, Op::ClusterAction, Op::IdempotentWrite]
        {
            let a = authz(vec![allow("t", LIT, ALICE, op)]);
            assert_eq!(topic(&a, Op::Describe, "t"), Denied, "{op}");
        }
        // Implication runs one way only.
        let a = authz(vec![allow("t", LIT, ALICE, Op::Describe)]);
        assert_eq!(topic(&a, Op::Read, "t"), Denied);
    }

    #[test]
    fn allow_of_alter_configs_implies_describe_configs() {
        let a = authz(vec![allow("t", LIT, ALICE, Op::AlterConfigs)]);
        assert_eq!(topic(&a, Op::DescribeConfigs, "t"), Allowed);
        assert_eq!(topic(&a, Op::AlterConfigs, "t"), Allowed);
        assert_eq!(topic(&a, Op::Describe, "t"), Denied);
        let a = authz(vec![allow("t", LIT, ALICE, Op::Alter)]);
        assert_eq!(topic(&a, Op::DescribeConfigs, "t"), Denied, "ALTER does not imply DESCRIBE_CONFIGS");
        let a = authz(vec![allow("t", LIT, ALICE, Op::DescribeConfigs)]);
        assert_eq!(topic(&a, Op::AlterConfigs, "t"), Denied);
    }

    #[test]
    fn deny_implies_nothing_but_deny_all_denies_everything() {
        let a = authz(vec![allow("t", LIT, ALICE, Op::Read), deny("t", LIT, ALICE, Op::Read)]);
        assert_eq!(topic(&a, Op::Read, "t"), Denied);
        assert_eq!(topic(&a, Op::Describe, "t"), Allowed, "DENY READ leaves the implied DESCRIBE");
        let a =
            authz(vec![allow("t", LIT, ALICE, Op::AlterConfigs), deny("t", LIT, ALICE, Op::AlterConfigs)]);
        assert_eq!(topic(&a, Op::DescribeConfigs, "t"), Allowed);
        let a = authz(vec![allow("t", LIT, ALICE, Op::Read), deny("t", LIT, ALICE, Op::All)]);
        assert_eq!(topic(&a, Op::Describe, "t"), Denied);
    }

    #[test]
    fn host_must_be_the_callers_or_the_wildcard() {
        let mut from = allow("t", LIT, ALICE, Op::Read);
        from.host = "10.0.0.1".into();
        let a = authz(vec![from.clone()]);
        assert_eq!(a.authorize(ALICE, "10.0.0.1", Op::Read, ResourceType::Topic, "t"), Allowed);
        assert_eq!(a.authorize(ALICE, "10.0.0.2", Op::Read, ResourceType::Topic, "t"), Denied);
        // A DENY from one host leaves the others alone.
        from.permission = AclPermission::Deny;
        let a = authz(vec![allow("t", LIT, ALICE, Op::Read), from]);
        assert_eq!(a.authorize(ALICE, "10.0.0.1", Op::Read, ResourceType::Topic, "t"), Denied);
        assert_eq!(a.authorize(ALICE, "10.0.0.2", Op::Read, ResourceType::Topic, "t"), Allowed);
    }

    #[test]
    fn host_string_is_javas() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(host_string(ip("10.0.0.1")), "10.0.0.1");
        assert_eq!(host_string(ip("::1")), "0:0:0:0:0:0:0:1");
        assert_eq!(host_string(ip("fe80::a:0bc")), "fe80:0:0:0:0:0:a:bc");
        assert_eq!(host_string(ip("::ffff:10.1.2.3")), "10.1.2.3");
    }

    #[test]
    fn principal_must_be_the_callers_or_the_user_wildcard() {
        let a = authz(vec![allow("t", LIT, "User:*", Op::Read), allow("u", LIT, "User:bob", Op::Read)]);
        assert_eq!(topic(&a, Op::Read, "t"), Allowed);
        assert_eq!(topic(&a, Op::Read, "u"), Denied);
        // `User:*` matches principals of any type, as Kafka's matching set holds it for all.
        assert_eq!(a.authorize("Group:ops", "h", Op::Read, ResourceType::Topic, "t"), Allowed);
        let a = authz(vec![allow("t", LIT, "Group:*", Op::Read)]);
        assert_eq!(topic(&a, Op::Read, "t"), Denied, "only User:* is a wildcard");
    }

    #[test]
    fn super_users_may_do_anything() {
        let config = AuthorizerConfig {
            super_users: AuthorizerConfig::parse_super_users(" User:admin ; ;User:CN=a,O=b").expect("parse"),
            allow_everyone_if_no_acl_found: false,
        };
        assert_eq!(config.super_users.len(), 2);
        assert!(config.super_users.contains("User:CN=a,O=b"));
        assert_eq!(AuthorizerConfig::parse_super_users("admin"), Err(BadPrincipal("admin".into())));
        let a = Authorizer::new(config, [deny("*", LIT, "User:*", Op::All)]);
        assert_eq!(a.authorize("User:admin", "h", Op::Delete, ResourceType::Topic, "t"), Allowed);
        assert_eq!(a.authorize("User:alice", "h", Op::Delete, ResourceType::Topic, "t"), Denied);
    }

    #[test]
    fn no_acl_found_follows_the_setting_but_anyone_elses_acl_counts() {
        let bs = vec![allow("bobs", LIT, "User:bob", Op::Read)];
        let open = AuthorizerConfig { allow_everyone_if_no_acl_found: true, ..Default::default() };
        let (closed, open) = (authz(bs.clone()), Authorizer::new(open, bs));
        assert_eq!(topic(&closed, Op::Read, "free"), Denied);
        assert_eq!(topic(&open, Op::Read, "free"), Allowed);
        // Bob's ACL names the resource: the default no longer applies.
        assert_eq!(topic(&open, Op::Read, "bobs"), Denied);
        assert_eq!(topic(&open, Op::Write, "bobs"), Denied);
    }

    #[test]
    fn insert_is_idempotent_and_remove_undoes_it() {
        let b = allow("t", PRE, ALICE, Op::Read);
        let mut a = authz(vec![b.clone(), b.clone()]);
        assert_eq!(a.len(), 1);
        assert!(!a.insert(b.clone()));
        assert!(!a.insert(allow("t", PatternType::Match, ALICE, Op::Read)));
        assert_eq!(topic(&a, Op::Read, "tx"), Allowed);
        assert!(!a.remove(&allow("t", LIT, ALICE, Op::Read)));
        assert!(a.remove(&b));
        assert!(a.is_empty() && !a.remove(&b));
        assert_eq!(topic(&a, Op::Read, "tx"), Denied);
        assert_eq!(a.bindings().count(), 0);
        // Prefixes that split and share nodes, removed in another order, leave nothing behind.
        let names = ["abc", "ab", "abd", "a", "b", "abcé", "abcè"];
        let bs: Vec<_> = names.iter().map(|n| allow(n, PRE, ALICE, Op::Read)).collect();
        let mut a = authz(bs.clone());
        assert_eq!(topic(&a, Op::Read, "abcè!"), Allowed);
        for b in bs.iter().rev() {
            assert!(a.remove(b), "{b:?}");
            assert!(a.bindings().all(|x| x != *b));
        }
        let tree = &a.types[slot(ResourceType::Topic)].prefixed;
        assert!(a.is_empty() && tree.children.is_empty() && tree.entries.is_empty());
    }

    fn filter(rt: ResourceType, name: Option<&str>, pt: PatternType) -> AclFilter {
        AclFilter {
            resource_type: rt,
            resource_name: name.map(Into::into),
            pattern_type: pt,
            ..AclFilter::ANY
        }
    }

    #[test]
    fn filters_match_as_kafkas() {
        let lit = allow("orders", LIT, ALICE, Op::Read);
        let star = allow("*", LIT, ALICE, Op::Read);
        let pre = allow("ord", PRE, ALICE, Op::Read);
        let other = allow("ordersx", LIT, ALICE, Op::Read);
        let long_pre = allow("ordersx", PRE, ALICE, Op::Read);
        let all = [&lit, &star, &pre, &other, &long_pre];
        let hits = |f: &AclFilter| all.iter().map(|b| f.matches(b)).collect::<Vec<_>>();
        let t = ResourceType::Topic;
        assert_eq!(hits(&AclFilter::ANY), [true; 5]);
        assert_eq!(hits(&filter(t, None, PatternType::Any)), [true; 5]);
        assert_eq!(hits(&filter(ResourceType::Group, None, PatternType::Any)), [false; 5]);
        assert_eq!(hits(&filter(t, None, PRE)), [false, false, true, false, true]);
        // ANY: this exact name, any pattern type.
        assert_eq!(hits(&filter(t, Some("orders"), PatternType::Any)), [true, false, false, false, false]);
        // MATCH: whatever applies to a resource of this name.
        assert_eq!(hits(&filter(t, Some("orders"), PatternType::Match)), [true, true, true, false, false]);
        assert_eq!(hits(&filter(t, None, PatternType::Match)), [true; 5]);
        // A LITERAL `*` filter is the wildcard ACL only; a PREFIXED one is that exact prefix.
        assert_eq!(hits(&filter(t, Some("*"), LIT)), [false, true, false, false, false]);
        assert_eq!(hits(&filter(t, Some("ord"), PRE)), [false, false, true, false, false]);
        // Entry fields: None or ANY match anything, a value matches that value only.
        let mut f = AclFilter { principal: Some("User:bob".into()), ..AclFilter::ANY };
        assert!(!f.matches(&lit));
        f.principal = Some(ALICE.into());
        assert!(f.matches(&lit));
        f.host = Some("10.0.0.1".into());
        assert!(!f.matches(&lit), "a host filter matches that host string only, not `*`");
        f.host = Some("*".into());
        assert!(f.matches(&lit));
        f.operation = Op::Write;
        assert!(!f.matches(&lit), "no implied operations in filters");
        f.operation = Op::Read;
        f.permission = AclPermission::Deny;
        assert!(!f.matches(&lit));
        f.permission = AclPermission::Allow;
        assert!(f.matches(&lit));
        // DescribeAcls over the index, DeleteAcls' filter over bindings: the same matching.
        let a = authz(all.iter().map(|b| (*b).clone()).collect());
        let mut got: Vec<_> = a.matching(&filter(t, Some("orders"), PatternType::Match)).collect();
        got.sort();
        let mut want = vec![lit.clone(), star.clone(), pre.clone()];
        want.sort();
        assert_eq!(got, want);
        let unknown = AclFilter { operation: Op::Unknown, ..AclFilter::ANY };
        assert!(matches!(unknown.validate(), Err(AclError::UnparsableRequest(_))));
        assert_eq!(AclFilter::ANY.validate(), Ok(()));
    }

    #[test]
    fn create_checks_are_kafkas_in_kafkas_order() {
        let good = allow("t", LIT, ALICE, Op::Read);
        assert_eq!(good.validate(), Ok(()));
        let with = |f: &dyn Fn(&mut AclBinding)| {
            let mut b = good.clone();
            f(&mut b);
            b.validate()
        };
        let invalid = |m: &str| Err(AclError::InvalidRequest(m.into()));
        let server = |m: &str| Err(AclError::UnknownServerError(m.into()));
        let cluster = |name: &'static str| {
            move |b: &mut AclBinding| {
                b.resource_type = ResourceType::Cluster;
                b.resource_name = name.into();
            }
        };
        assert_eq!(with(&cluster("kafka-cluster")), Ok(()));
        assert_eq!(
            with(&cluster("other")),
            invalid("The only valid name for the CLUSTER resource is kafka-cluster")
        );
        assert_eq!(
            with(&cluster("")),
            invalid("The only valid name for the CLUSTER resource is kafka-cluster"),
            "the cluster check comes first"
        );
        assert_eq!(with(&|b| b.resource_name.clear()), invalid("Invalid empty resource name"));
        assert_eq!(
            with(&|b| b.principal = "alice".into()),
            invalid(
                "Could not parse principal from `alice` (no colon is present separating the principal \
                 type from the principal name)"
            )
        );
        assert_eq!(with(&|b| b.principal = "User:".into()), Ok(()), "Kafka asks for a colon only");
        assert_eq!(with(&|b| b.host = "not-an-ip".into()), Ok(()), "Kafka does not parse the host");
        assert_eq!(with(&|b| b.pattern_type = PatternType::Match), server("patternType must not be MATCH"));
        assert_eq!(with(&|b| b.pattern_type = PatternType::Any), server("patternType must not be ANY"));
        assert_eq!(with(&|b| b.resource_type = ResourceType::Any), server("resourceType must not be ANY"));
        assert_eq!(with(&|b| b.operation = Op::Any), server("operation must not be ANY"));
        assert_eq!(with(&|b| b.permission = AclPermission::Any), server("permissionType must not be ANY"));
        for f in [
            &(|b: &mut AclBinding| b.operation = Op::Unknown) as &dyn Fn(&mut AclBinding),
            &|b| b.permission = AclPermission::Unknown,
            &|b| b.pattern_type = PatternType::Unknown,
            &|b| b.resource_type = ResourceType::Unknown,
        ] {
            assert!(matches!(with(f), Err(AclError::UnparsableRequest(_))));
        }

        let e = AclError::InvalidRequest("x".into());
        assert_eq!((e.error_code(), e.client_message(), e.fails_request()), (42, Some("x"), false));
        let e = AclError::UnknownServerError("x".into());
        assert_eq!((e.error_code(), e.client_message(), e.fails_request()), (-1, None, true));

        // A request: bindings fail alone, unless one fails the request for all.
        let mut empty = good.clone();
        empty.resource_name.clear();
        let mut matcher = good.clone();
        matcher.pattern_type = PatternType::Match;
        let mut unknown = good.clone();
        unknown.operation = Op::Unknown;
        let each = validate_creations(&[good.clone(), empty.clone()]).expect("per binding");
        assert_eq!(each, [Ok(()), invalid("Invalid empty resource name")]);
        let all = validate_creations(&[empty.clone(), matcher.clone()]).expect_err("whole request");
        assert_eq!(all.error_code(), UNKNOWN_SERVER_ERROR);
        let all = validate_creations(&[matcher, empty, unknown]).expect_err("whole request");
        assert!(matches!(all, AclError::UnparsableRequest(_)), "the parse fails before any binding is built");
    }

    fn by_type(a: &Authorizer, who: &str, op: Op) -> Decision {
        a.authorize_by_resource_type(who, "10.0.0.1", op, ResourceType::Topic)
    }

    #[test]
    fn authorize_by_resource_type_as_kafkas() {
        let w = Op::Write;
        assert_eq!(by_type(&authz(vec![]), ALICE, w), Denied);
        let open = AuthorizerConfig { allow_everyone_if_no_acl_found: true, ..Default::default() };
        assert_eq!(by_type(&Authorizer::new(open, []), ALICE, w), Allowed, "no ACL names `hardcode`");
        assert_eq!(by_type(&authz(vec![allow("t", LIT, ALICE, w)]), ALICE, w), Allowed);
        assert_eq!(by_type(&authz(vec![allow("t", PRE, "User:*", w)]), ALICE, w), Allowed);
        assert_eq!(by_type(&authz(vec![allow("t", LIT, "User:bob", w)]), ALICE, w), Denied);
        assert_eq!(by_type(&authz(vec![allow("t", LIT, ALICE, Op::All)]), ALICE, w), Allowed);
        assert_eq!(
            by_type(&authz(vec![allow("t", LIT, ALICE, Op::Read)]), ALICE, Op::Describe),
            Denied,
            "exact op"
        );
        // Dominated allows: same literal name, or a prefix DENY of the name.
        let dominated =
            |d: AclBinding| authz(vec![allow("team-a", LIT, ALICE, w), allow("team-b", PRE, ALICE, w), d]);
        assert_eq!(by_type(&dominated(deny("team-a", LIT, ALICE, w)), ALICE, w), Allowed, "team-b- is open");
        assert_eq!(by_type(&dominated(deny("team", PRE, ALICE, w)), ALICE, w), Denied);
        assert_eq!(by_type(&dominated(deny("*", LIT, "User:*", Op::All)), ALICE, w), Denied);
        let a = authz(vec![allow("team-b", PRE, ALICE, w), deny("team-b", LIT, ALICE, w)]);
        assert_eq!(by_type(&a, ALICE, w), Allowed, "a literal DENY does not dominate a prefix");
        let a = authz(vec![allow("*", LIT, ALICE, w), deny("x", PRE, ALICE, w)]);
        assert_eq!(by_type(&a, ALICE, w), Allowed);
        assert_eq!(a.authorize_by_resource_type(ALICE, "h", Op::Any, ResourceType::Topic), Denied);
    }

    /// The rules, straight from their statement, over every ACL: the index must agree.
    fn reference(
        bs: &[AclBinding],
        cfg: &AuthorizerConfig,
        who: &str,
        host: &str,
        op: Op,
        name: &str,
    ) -> Decision {
        if cfg.super_users.contains(who) {
            return Allowed;
        }
        let on: Vec<_> = bs
            .iter()
            .filter(|b| match b.pattern_type {
                PatternType::Literal => b.resource_name == name || b.resource_name == "*",
                _ => name.starts_with(&b.resource_name),
            })
            .collect();
        let applies = |b: &&&AclBinding| {
            let implied = match (b.permission, op) {
                (AclPermission::Allow, Op::Describe) => {
                    [Op::Read, Op::Write, Op::Delete, Op::Alter].contains(&b.operation)
                }
                (AclPermission::Allow, Op::DescribeConfigs) => b.operation == Op::AlterConfigs,
                _ => false,
            };
            (b.principal == who || b.principal == "User:*")
                && (b.host == host || b.host == "*")
                && (b.operation == op || b.operation == Op::All || implied)
        };
        let mine: Vec<_> = on.iter().filter(applies).collect();
        if mine.iter().any(|b| b.permission == AclPermission::Deny) {
            Denied
        } else if !mine.is_empty() || (on.is_empty() && cfg.allow_everyone_if_no_acl_found) {
            Allowed
        } else {
            Denied
        }
    }

    /// Kafka's `authorizeByResourceType`, transcribed over every ACL.
    fn reference_by_type(bs: &[AclBinding], who: &str, host: &str, op: Op) -> Decision {
        let mine = bs.iter().filter(|b| {
            (b.host == host || b.host == "*")
                && (b.principal == who || b.principal == "User:*")
                && (b.operation == op || b.operation == Op::All)
        });
        let (mut deny_lit, mut deny_pre, mut allows, mut wild) =
            (HashSet::new(), HashSet::new(), vec![], false);
        for b in mine {
            let (name, lit) = (b.resource_name.as_str(), b.pattern_type == LIT);
            match b.permission {
                AclPermission::Deny if lit && name == "*" => return Denied,
                AclPermission::Deny if lit => drop(deny_lit.insert(name)),
                AclPermission::Deny => drop(deny_pre.insert(name)),
                _ if lit && name == "*" => wild = true,
                _ => allows.push((name, lit)),
            }
        }
        let dominated = |&(name, lit): &(&str, bool)| {
            (lit && deny_lit.contains(name))
                || (1..=name.len()).any(|i| name.is_char_boundary(i) && deny_pre.contains(&name[..i]))
        };
        if wild || allows.iter().any(|a| !dominated(a)) {
            Allowed
        } else {
            Denied
        }
    }

    #[test]
    fn index_agrees_with_a_scan_of_every_acl() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % n as u64).expect("small")
        };
        // Short names over a small alphabet, so prefixes, near misses and shared stems are
        // common; é and è share their first UTF-8 byte, so stems end mid-letter too.
        let letters = ["a", "b", "é", "è", "*"];
        let word = |next: &mut dyn FnMut(usize) -> usize| {
            let len = next(5);
            (0..len).map(|_| letters[next(letters.len())]).collect::<String>()
        };
        let ops =
            [Op::Read, Op::Write, Op::Describe, Op::AlterConfigs, Op::DescribeConfigs, Op::All, Op::Create];
        let who = ["User:alice", "User:bob", "User:*"];
        for round in 0..40 {
            let mut bs = Vec::new();
            for _ in 0..next(60) {
                let mut name = word(&mut next);
                if name.is_empty() {
                    name.push('a');
                }
                bs.push(AclBinding {
                    resource_type: ResourceType::Topic,
                    resource_name: name,
                    pattern_type: [LIT, PRE][next(2)],
                    principal: who[next(3)].into(),
                    host: ["*", "h1"][next(2)].into(),
                    operation: ops[next(ops.len())],
                    permission: [AclPermission::Allow, AclPermission::Deny][next(2)],
                });
            }
            let cfg =
                AuthorizerConfig { allow_everyone_if_no_acl_found: round % 2 == 0, ..Default::default() };
            let mut bs_dedup = bs.clone();
            bs_dedup.sort();
            bs_dedup.dedup();
            let mut a = Authorizer::new(cfg.clone(), bs.clone());
            assert_eq!(a.len(), bs_dedup.len());
            // Then again after removing some, which prunes and re-merges the radix tree.
            for pass in 0..2 {
                let mut listed: Vec<_> = a.bindings().collect();
                listed.sort();
                assert_eq!(listed, bs_dedup);
                for _ in 0..300 {
                    let (name, op) = (word(&mut next), ops[next(ops.len())]);
                    let (p, h) = (["User:alice", "User:carol"][next(2)], ["h1", "h2"][next(2)]);
                    let want = reference(&bs_dedup, &cfg, p, h, op, &name);
                    let got = a.authorize(p, h, op, ResourceType::Topic, &name);
                    assert_eq!(got, want, "pass {pass}: {p} {h} {op} {name:?} {bs_dedup:?}");
                    let want = if a.authorize(p, h, op, ResourceType::Topic, "hardcode") == Allowed {
                        Allowed
                    } else {
                        reference_by_type(&bs_dedup, p, h, op)
                    };
                    assert_eq!(
                        a.authorize_by_resource_type(p, h, op, ResourceType::Topic),
                        want,
                        "{bs_dedup:?}"
                    );
                }
                bs_dedup.retain(|b| next(2) == 0 || !a.remove(b));
                assert_eq!(a.len(), bs_dedup.len());
            }
        }
    }
}
