//! Server-side assignors of the KIP-848 protocol. Pure functions of the members'
//! subscriptions, the topics' partition counts and the current target assignment.
//!
//! - `uniform` (the default): every subscribed partition to exactly one subscribed member,
//!   balanced to within one partition for members with equal subscriptions, and sticky: a member
//!   keeps what it already has up to its fair share, so a join or a leave moves only the
//!   partitions that must move.
//! - `range`: for each topic, its partitions split into contiguous ranges over the members
//!   subscribed to it, sorted by member id; co-partitioned topics line up.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::codec::Partitions;

/// One member as the assignor sees it.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub member_id: String,
    pub topics: BTreeSet<Uuid>,
    /// The member's current target (for stickiness).
    pub current: Partitions,
}

pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Runs the named assignor (unknown names fall back to `uniform`; callers validate names).
pub fn assign(
    name: &str,
    members: &[MemberSpec],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    let out = match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    };
    debug_assert!(every_partition_once(members, partitions, &out));
    out
}

fn every_partition_once(
    members: &[MemberSpec],
    partitions: &BTreeMap<Uuid, i32>,
    out: &BTreeMap<String, Partitions>,
) -> bool {
    let mut seen = BTreeSet::new();
    for p in out.values() {
        for (t, ps) in p {
            for &x in ps {
                if !seen.insert((*t, x)) {
                    return false;
                }
            }
        }
    }
    let wanted: usize = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
        .map(|(_, &n)| n.max(0) as usize)
        .sum();
    seen.len() == wanted
}

fn uniform(members: &[MemberSpec], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> =
        members.iter().map(|m| (m.member_id.clone(), Partitions::new())).collect();
    if members.is_empty() {
        return out;
    }
    let all: Vec<(Uuid, i32)> = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
        .flat_map(|(t, &n)| (0..n.max(0)).map(move |p| (*t, p)))
        .collect();
    let total = all.len();
    let n = members.len();
    let floor = total / n;
    let mut ceil_slots = total % n;
    let mut count: BTreeMap<&str, usize> = members.iter().map(|m| (m.member_id.as_str(), 0)).collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    // Stickiness: keep current partitions that are still valid, up to the fair share.
    for m in members {
        let mut kept = 0usize;
        for (t, ps) in &m.current {
            if !m.topics.contains(t) {
                continue;
            }
            let limit = partitions.get(t).copied().unwrap_or(0);
            for &p in ps {
                if p >= limit || taken.contains(&(*t, p)) {
                    continue;
                }
                let share = if kept < floor {
                    true
                } else if kept == floor && ceil_slots > 0 {
                    ceil_slots -= 1;
                    true
                } else {
                    false
                };
                if !share {
                    continue;
                }
                taken.insert((*t, p));
                out.entry(m.member_id.clone()).or_default().entry(*t).or_default().insert(p);
                kept += 1;
            }
        }
        count.insert(m.member_id.as_str(), kept);
    }
    // The rest, each to the least-loaded subscribed member (ties by member id).
    for (t, p) in all {
        if taken.contains(&(t, p)) {
            continue;
        }
        let Some(m) = members
            .iter()
            .filter(|m| m.topics.contains(&t))
            .min_by_key(|m| (count.get(m.member_id.as_str()).copied().unwrap_or(0), m.member_id.as_str()))
        else {
            continue;
        };
        *count.entry(m.member_id.as_str()).or_default() += 1;
        out.entry(m.member_id.clone()).or_default().entry(t).or_default().insert(p);
    }
    out
}

fn range(members: &[MemberSpec], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> =
        members.iter().map(|m| (m.member_id.clone(), Partitions::new())).collect();
    for (t, &n) in partitions {
        let mut subs: Vec<&MemberSpec> = members.iter().filter(|m| m.topics.contains(t)).collect();
        if subs.is_empty() || n <= 0 {
            continue;
        }
        subs.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let k = subs.len() as i32;
        let (per, extra) = (n / k, n % k);
        let mut start = 0;
        for (i, m) in subs.iter().enumerate() {
            let len = per + i32::from((i as i32) < extra);
            if len > 0 {
                out.entry(m.member_id.clone()).or_default().insert(*t, (start..start + len).collect());
            }
            start += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[Uuid], current: Partitions) -> MemberSpec {
        MemberSpec { member_id: id.into(), topics: topics.iter().copied().collect(), current }
    }

    fn sizes(out: &BTreeMap<String, Partitions>) -> Vec<usize> {
        out.values().map(|p| p.values().map(BTreeSet::len).sum()).collect()
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let t = Uuid::from_u128(1);
        let parts: BTreeMap<Uuid, i32> = [(t, 12)].into();
        let ms: Vec<MemberSpec> =
            ["a", "b", "c"].iter().map(|id| member(id, &[t], Partitions::new())).collect();
        let first = assign("uniform", &ms, &parts);
        assert_eq!(sizes(&first), vec![4, 4, 4]);
        // "d" joins: each old member keeps 3 of its 4, d gets the 3 released.
        let mut ms2: Vec<MemberSpec> =
            ms.iter().map(|m| member(&m.member_id, &[t], first[&m.member_id].clone())).collect();
        ms2.push(member("d", &[t], Partitions::new()));
        let second = assign("uniform", &ms2, &parts);
        assert_eq!(sizes(&second), vec![3, 3, 3, 3]);
        for id in ["a", "b", "c"] {
            let kept = second[id][&t].intersection(&first[id][&t]).count();
            assert_eq!(kept, 3, "{id} kept {kept}");
        }
    }

    #[test]
    fn uniform_heterogeneous_subscriptions_cover_everything_once() {
        let (t1, t2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let parts: BTreeMap<Uuid, i32> = [(t1, 5), (t2, 3)].into();
        let ms = vec![member("a", &[t1], Partitions::new()), member("b", &[t1, t2], Partitions::new())];
        let out = assign("uniform", &ms, &parts);
        assert!(!out["a"].contains_key(&t2));
        assert_eq!(sizes(&out).iter().sum::<usize>(), 8);
    }

    #[test]
    fn range_splits_contiguously() {
        let t = Uuid::from_u128(1);
        let parts: BTreeMap<Uuid, i32> = [(t, 7)].into();
        let ms: Vec<MemberSpec> =
            ["b", "a", "c"].iter().map(|id| member(id, &[t], Partitions::new())).collect();
        let out = assign("range", &ms, &parts);
        assert_eq!(out["a"][&t], (0..3).collect());
        assert_eq!(out["b"][&t], (3..5).collect());
        assert_eq!(out["c"][&t], (5..7).collect());
    }
}
