//! Placement: which cell a new tenant lives in.
//!
//! Power of two choices (Kora's rule): of the cells that could take the tenant, two are drawn
//! at random and the less loaded one wins, which spreads tenants almost as evenly as always
//! taking the least loaded cell while never herding every concurrent create onto the same
//! one. A cell's load is the largest of its busiest broker's load, its partitions' use and its
//! bandwidth's use (in or out), counting the new tenant. Each use is the larger of what the
//! cell's tenants are sized for (reserved) and what they use now (observed). Never chosen: a
//! cordoned cell, one whose last report is missing, unhealthy or stale, one in another region
//! or with fewer zones than asked, and a full one (the tenant's size would not fit beside what
//! is reserved or used, in any of bandwidth, partitions and storage).

use kora_common::Entropy;
use serde::{Deserialize, Serialize};

use crate::model::{Capacity, CellId, CellObservation, CellSpec, TenantSize};

/// What a tenant asks of its cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    pub region: String,
    pub size: TenantSize,
    /// The fewest zones the cell must span (1: any).
    pub min_zones: usize,
    /// Now, ms on the controller's clock.
    pub now_ms: u64,
    /// A report older than this counts as none (the cell is taken as unhealthy).
    pub report_max_age_ms: u64,
}

/// A candidate cell: its registration, its last report, and what its tenants are sized for.
#[derive(Debug, Clone, Copy)]
pub struct CellLoad<'a> {
    pub spec: &'a CellSpec,
    pub observed: Option<&'a CellObservation>,
    pub reserved: Capacity,
}

/// Why no cell was chosen, with how many cells each reason ruled out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, thiserror::Error)]
#[error(
    "no cell in region {region} can take the tenant: {cells} cell(s) there, {cordoned} cordoned, {unhealthy} unhealthy or not reporting, {too_few_zones} with fewer zones than asked, {full} without room for its size"
)]
pub struct PlacementError {
    pub region: String,
    pub cells: usize,
    pub cordoned: usize,
    pub unhealthy: usize,
    pub too_few_zones: usize,
    pub full: usize,
}

/// Why a cell cannot take the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    OtherRegion,
    Cordoned,
    Unhealthy,
    TooFewZones,
    Full,
}

fn ratio(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        if used == 0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        used as f64 / capacity as f64
    }
}

impl CellLoad<'_> {
    /// The cell's load with the requested tenant added, 0.0 upwards; None: it cannot take it.
    pub fn load_after(&self, req: &PlacementRequest) -> Option<f64> {
        self.load_with(req).ok()
    }

    fn load_with(&self, req: &PlacementRequest) -> Result<f64, Refusal> {
        let spec = self.spec;
        if spec.region != req.region {
            return Err(Refusal::OtherRegion);
        }
        if spec.cordoned {
            return Err(Refusal::Cordoned);
        }
        let observed = match self.observed {
            Some(o) if o.healthy && req.now_ms.saturating_sub(o.at_ms) <= req.report_max_age_ms => o,
            _ => return Err(Refusal::Unhealthy),
        };
        if spec.zones.len() < req.min_zones {
            return Err(Refusal::TooFewZones);
        }
        let after = self.reserved.max(&observed.used).plus(&req.size);
        if !after.within(&spec.capacity) || observed.broker_load >= 1.0 {
            return Err(Refusal::Full);
        }
        let cap = &spec.capacity;
        let replicas = ratio(after.partitions, cap.partitions);
        let bandwidth = ratio(after.ingress_bytes_per_second, cap.ingress_bytes_per_second)
            .max(ratio(after.egress_bytes_per_second, cap.egress_bytes_per_second));
        Ok(observed.broker_load.max(0.0).max(replicas).max(bandwidth))
    }
}

/// A uniform draw below `n` (n > 0) from `entropy`.
fn below(entropy: &dyn Entropy, n: usize) -> usize {
    assert!(n > 0, "a draw from an empty range");
    let n = n as u64;
    // Rejection sampling: every value equally likely.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let mut b = [0u8; 8];
        entropy.fill(&mut b);
        let x = u64::from_le_bytes(b);
        if x < zone {
            return (x % n) as usize;
        }
    }
}

/// Chooses the cell for a tenant (see the module's rule); ties go to the smaller cell id, so
/// the same draws give the same choice.
pub fn place(
    req: &PlacementRequest,
    cells: &[CellLoad<'_>],
    entropy: &dyn Entropy,
) -> Result<CellId, PlacementError> {
    let mut eligible: Vec<(f64, &CellId)> = Vec::new();
    let mut err = PlacementError { region: req.region.clone(), ..PlacementError::default() };
    for c in cells {
        match c.load_with(req) {
            Ok(load) => eligible.push((load, &c.spec.id)),
            Err(Refusal::OtherRegion) => continue,
            Err(Refusal::Cordoned) => err.cordoned += 1,
            Err(Refusal::Unhealthy) => err.unhealthy += 1,
            Err(Refusal::TooFewZones) => err.too_few_zones += 1,
            Err(Refusal::Full) => err.full += 1,
        }
        err.cells += 1;
    }
    let chosen = match eligible.len() {
        0 => return Err(err),
        1 => eligible[0],
        n => {
            let i = below(entropy, n);
            let mut j = below(entropy, n - 1);
            if j >= i {
                j += 1;
            }
            let (a, b) = (eligible[i], eligible[j]);
            if (a.0, a.1) <= (b.0, b.1) {
                a
            } else {
                b
            }
        }
    };
    Ok(chosen.1.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kora_common::SeededEntropy;

    const GB: u64 = 1_000_000_000;

    fn cell(id: &str, region: &str, zones: usize) -> CellSpec {
        CellSpec {
            id: id.into(),
            region: region.into(),
            zones: (0..zones).map(|z| format!("{region}{}", (b'a' + z as u8) as char)).collect(),
            version: "0.1.0".into(),
            capacity: Capacity {
                ingress_bytes_per_second: 100_000_000,
                egress_bytes_per_second: 300_000_000,
                partitions: 1000,
                storage_bytes: 10_000 * GB,
            },
            admin: format!("http://{id}"),
            bootstrap: format!("{id}:9092"),
            cordoned: false,
        }
    }

    fn healthy(at_ms: u64, broker_load: f64) -> CellObservation {
        CellObservation { at_ms, healthy: true, broker_load, used: Capacity::default() }
    }

    fn size(ingress_mb: u64, partitions: u64) -> TenantSize {
        Capacity {
            ingress_bytes_per_second: ingress_mb * 1_000_000,
            egress_bytes_per_second: 3 * ingress_mb * 1_000_000,
            partitions,
            storage_bytes: GB,
        }
    }

    fn req(region: &str, s: TenantSize) -> PlacementRequest {
        PlacementRequest {
            region: region.into(),
            size: s,
            min_zones: 1,
            now_ms: 10_000,
            report_max_age_ms: 5_000,
        }
    }

    #[test]
    fn the_less_loaded_of_two_wins_and_ties_go_to_the_smaller_id() {
        let (a, b) = (cell("a", "r", 3), cell("b", "r", 3));
        let (oa, ob) = (healthy(9_000, 0.7), healthy(9_000, 0.2));
        let cells = [
            CellLoad { spec: &a, observed: Some(&oa), reserved: Capacity::default() },
            CellLoad { spec: &b, observed: Some(&ob), reserved: Capacity::default() },
        ];
        // With two eligible cells both are drawn: the less loaded one, whatever the seed.
        for seed in 0..20 {
            assert_eq!(place(&req("r", size(1, 1)), &cells, &SeededEntropy::new(seed)).unwrap(), "b");
        }
        let even = healthy(9_000, 0.2);
        let tied = [CellLoad { observed: Some(&even), ..cells[0] }, cells[1]];
        for seed in 0..20 {
            assert_eq!(place(&req("r", size(1, 1)), &tied, &SeededEntropy::new(seed)).unwrap(), "a");
        }
    }

    #[test]
    fn load_is_the_largest_of_broker_load_partitions_and_bandwidth_with_the_tenant() {
        let c = cell("c", "r", 3);
        let o = healthy(9_000, 0.1);
        // 600 of 1000 partitions reserved: 0.6 + the tenant's 100 = 0.7, over the broker's 0.1.
        let reserved = Capacity { partitions: 600, ..Capacity::default() };
        let l = CellLoad { spec: &c, observed: Some(&o), reserved };
        assert!((l.load_with(&req("r", size(1, 100))).unwrap() - 0.7).abs() < 1e-9);
        // Observed use above the reservation counts: 80 of 100 MB/s in, with 10 more: 0.9.
        let busy = CellObservation {
            used: Capacity { ingress_bytes_per_second: 80_000_000, ..Capacity::default() },
            ..o
        };
        let l = CellLoad { spec: &c, observed: Some(&busy), reserved };
        assert!((l.load_with(&req("r", size(10, 1))).unwrap() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn cordoned_unhealthy_stale_full_and_narrow_cells_are_never_chosen() {
        let mut cordoned = cell("a-cordoned", "r", 3);
        cordoned.cordoned = true;
        let sick = cell("b-sick", "r", 3);
        let stale = cell("c-stale", "r", 3);
        let silent = cell("d-silent", "r", 3);
        let full = cell("e-full", "r", 3);
        let narrow = cell("f-narrow", "r", 1);
        let elsewhere = cell("g-elsewhere", "other", 3);
        let fine = cell("z-fine", "r", 3);
        let ok = healthy(9_000, 0.0);
        let down = CellObservation { healthy: false, ..ok };
        let old = healthy(1_000, 0.0);
        let no_room = Capacity { partitions: 950, ..Capacity::default() };
        let cells = [
            CellLoad { spec: &cordoned, observed: Some(&ok), reserved: Capacity::default() },
            CellLoad { spec: &sick, observed: Some(&down), reserved: Capacity::default() },
            CellLoad { spec: &stale, observed: Some(&old), reserved: Capacity::default() },
            CellLoad { spec: &silent, observed: None, reserved: Capacity::default() },
            CellLoad { spec: &full, observed: Some(&ok), reserved: no_room },
            CellLoad { spec: &narrow, observed: Some(&ok), reserved: Capacity::default() },
            CellLoad { spec: &elsewhere, observed: Some(&ok), reserved: Capacity::default() },
            CellLoad { spec: &fine, observed: Some(&ok), reserved: Capacity::default() },
        ];
        let mut r = req("r", size(1, 100));
        r.min_zones = 3;
        for seed in 0..50 {
            assert_eq!(place(&r, &cells, &SeededEntropy::new(seed)).unwrap(), "z-fine");
        }
        let err = place(&r, &cells[..7], &SeededEntropy::new(1)).unwrap_err();
        assert_eq!(
            err,
            PlacementError {
                region: "r".into(),
                cells: 6,
                cordoned: 1,
                unhealthy: 3,
                too_few_zones: 1,
                full: 1
            }
        );
        assert!(err.to_string().contains("1 without room for its size"), "{err}");
        // A broker at its limits is full too, whatever the reservations say.
        let saturated = healthy(9_000, 1.0);
        let one = [CellLoad { spec: &fine, observed: Some(&saturated), reserved: Capacity::default() }];
        assert_eq!(place(&r, &one, &SeededEntropy::new(1)).unwrap_err().full, 1);
        // A tenant bigger than any cell fits nowhere.
        let huge = req("r", size(1_000, 1));
        assert!(place(&huge, &cells[7..], &SeededEntropy::new(1)).is_err());
    }

    #[test]
    fn draws_are_uniform_and_the_two_are_distinct() {
        let e = SeededEntropy::new(7);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[below(&e, 5)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        // Three cells with loads 0.1, 0.5, 0.9: the busiest is never chosen (it loses to
        // either other), the idlest wins whenever drawn (two of three pairs).
        let specs = [cell("a", "r", 1), cell("b", "r", 1), cell("c", "r", 1)];
        let obs = [healthy(9_000, 0.1), healthy(9_000, 0.5), healthy(9_000, 0.9)];
        let cells: Vec<CellLoad> = specs
            .iter()
            .zip(&obs)
            .map(|(s, o)| CellLoad { spec: s, observed: Some(o), reserved: Capacity::default() })
            .collect();
        let mut won = std::collections::BTreeMap::new();
        for _ in 0..3_000 {
            *won.entry(place(&req("r", size(1, 1)), &cells, &e).unwrap()).or_insert(0) += 1;
        }
        assert_eq!(won.get("c"), None, "{won:?}");
        let a = won["a"];
        assert!((1_800..2_200).contains(&a), "{won:?}");
    }
}
