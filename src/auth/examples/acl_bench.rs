//! What one ACL check costs with 10,000 ACLs: literal and prefixed hits, misses (no ACL names
//! the resource), and DENYs found beside an ALLOW, plus the type-wide check and building the
//! index.
//!
//! cargo run --release -p kora-auth --example acl_bench

use std::hint::black_box;
use std::time::{Duration, Instant};

use kora_auth::acl::WILDCARD;
use kora_auth::{AclBinding, AclOperation as Op, AclPermission, Authorizer, AuthorizerConfig, Decision};
use kora_auth::{PatternType, ResourceType};

const HOST: &str = "10.0.0.7";

fn binding(
    rt: ResourceType,
    name: String,
    pt: PatternType,
    who: String,
    op: Op,
    perm: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name,
        pattern_type: pt,
        principal: who,
        host: WILDCARD.into(),
        operation: op,
        permission: perm,
    }
}

/// 10,000 ACLs: 6,000 literal topic ALLOWs, 2,000 prefixed ones, 500 literal and 500
/// prefixed DENYs (each beside an ALLOW that would otherwise let the caller in), 996 group
/// ACLs and 4 wildcard ones.
fn acls() -> Vec<AclBinding> {
    use AclPermission::{Allow, Deny};
    use PatternType::{Literal, Prefixed};
    use ResourceType::{Group, Topic};
    let mut v = Vec::with_capacity(10_000);
    for i in 0..6_000 {
        v.push(binding(
            Topic,
            format!("orders-{i}"),
            Literal,
            format!("User:svc-{}", i % 200),
            Op::Read,
            Allow,
        ));
    }
    for j in 0..2_000 {
        v.push(binding(Topic, format!("team-{j}-"), Prefixed, format!("User:team-{j}"), Op::Write, Allow));
    }
    for k in 0..500 {
        v.push(binding(Topic, format!("secret-{k}"), Literal, "User:*".into(), Op::Read, Deny));
        v.push(binding(
            Topic,
            format!("team-{k}-private"),
            Prefixed,
            format!("User:team-{k}"),
            Op::All,
            Deny,
        ));
    }
    for g in 0..996 {
        v.push(binding(
            Group,
            format!("group-{g}"),
            Literal,
            format!("User:svc-{}", g % 200),
            Op::Read,
            Allow,
        ));
    }
    v.push(binding(Topic, "*".into(), Literal, "User:monitor".into(), Op::Describe, Allow));
    v.push(binding(Topic, "*".into(), Literal, "User:banned".into(), Op::All, Deny));
    v.push(binding(Group, "*".into(), Literal, "User:monitor".into(), Op::Describe, Allow));
    v.push(binding(Group, "*".into(), Prefixed, "User:monitor".into(), Op::Read, Allow));
    v
}

/// A case: 1,024 distinct (principal, operation, topic) checks, all expected to answer `want`.
struct Case {
    label: &'static str,
    checks: Vec<(String, Op, String)>,
    want: Decision,
}

fn cases() -> Vec<Case> {
    let n = 0..1_024usize;
    let long = "x".repeat(200);
    let case = |label, want, f: &dyn Fn(usize) -> (String, Op, String)| Case {
        label,
        checks: n.clone().map(f).collect(),
        want,
    };
    vec![
        case("literal ALLOW hit", Decision::Allowed, &|i| {
            let t = i * 5 % 6_000;
            (format!("User:svc-{}", t % 200), Op::Read, format!("orders-{t}"))
        }),
        case("literal, implied DESCRIBE", Decision::Allowed, &|i| {
            let t = i * 5 % 6_000;
            (format!("User:svc-{}", t % 200), Op::Describe, format!("orders-{t}"))
        }),
        case("prefixed ALLOW hit", Decision::Allowed, &|i| {
            let j = 500 + i % 1_500;
            (format!("User:team-{j}"), Op::Write, format!("team-{j}-events-{i}"))
        }),
        case("miss (no ACL names it)", Decision::Denied, &|i| {
            ("User:svc-1".into(), Op::Read, format!("unknown-topic-{i}"))
        }),
        case("miss, 200-byte name", Decision::Denied, &|i| {
            ("User:svc-1".into(), Op::Read, format!("{long}-{i}"))
        }),
        case("miss, wrong principal", Decision::Denied, &|i| {
            ("User:stranger".into(), Op::Read, format!("orders-{}", i * 5 % 6_000))
        }),
        case("literal DENY (User:*)", Decision::Denied, &|i| {
            (format!("User:svc-{}", i % 200), Op::Read, format!("secret-{}", i % 500))
        }),
        case("prefixed DENY under ALLOW", Decision::Denied, &|i| {
            let j = i % 500;
            (format!("User:team-{j}"), Op::Write, format!("team-{j}-private-{i}"))
        }),
        case("wildcard DENY", Decision::Denied, &|i| {
            ("User:banned".into(), Op::Read, format!("orders-{}", i % 6_000))
        }),
    ]
}

fn per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn main() {
    let bindings = acls();
    let count = bindings.len();
    let started = Instant::now();
    let a = Authorizer::new(AuthorizerConfig::default(), bindings);
    let built = started.elapsed();
    assert_eq!(a.len(), count);
    println!("{count} ACLs indexed in {:.1} ms\n", built.as_secs_f64() * 1e3);

    const ROUNDS: usize = 1_000;
    println!("{:<28} {:>10}", "authorize(...)", "ns/check");
    for c in cases() {
        for (who, op, name) in &c.checks {
            let got = a.authorize(who, HOST, *op, ResourceType::Topic, name);
            assert_eq!(got, c.want, "{}: {who} {op} {name}", c.label);
        }
        let started = Instant::now();
        for _ in 0..ROUNDS {
            for (who, op, name) in &c.checks {
                black_box(a.authorize(black_box(who), HOST, *op, ResourceType::Topic, black_box(name)));
            }
        }
        println!("{:<28} {:>10.1}", c.label, per_op(started.elapsed(), ROUNDS * c.checks.len()));
    }

    // Kafka's authorizeByResourceType scans the type's ACLs; so does this.
    let rounds = 200;
    let started = Instant::now();
    for i in 0..rounds {
        let who = format!("User:team-{}", 1_000 + i);
        let d = a.authorize_by_resource_type(black_box(&who), HOST, Op::Write, ResourceType::Topic);
        assert_eq!(d, Decision::Allowed);
    }
    let scan = per_op(started.elapsed(), rounds);
    println!("\nauthorize_by_resource_type (scans 9,002 topic ACLs): {:.1} µs/check", scan / 1e3);
}
