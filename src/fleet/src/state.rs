//! The fleet's state as a deterministic state machine: every change is a [`FleetRecord`],
//! validated and applied in log order, and leaves a [`FleetEvent`] saying what changed and
//! why (`kora events`). The controller proposes records through its Raft log; voters apply
//! them here, so all of them hold the same state.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::{CellId, CellSpec, Region, TenantId, TenantIntent, TenantPhase};

/// Events kept (the oldest are dropped first).
pub const MAX_EVENTS: usize = 10_000;
/// Longest tenant name.
pub const MAX_NAME_LEN: usize = 64;

/// One change to the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FleetRecord {
    /// Adds a region or replaces its zones (a zone a cell uses cannot go).
    PutRegion { region: Region },
    /// Registers a cell, or updates one (its version, capacity, endpoints); the cordon and
    /// region of a registered cell are kept.
    RegisterCell { cell: CellSpec },
    /// Cordons (no new tenants) or uncordons a cell.
    SetCordon { cell: CellId, cordoned: bool, reason: String },
    /// Removes a cell that holds no tenant.
    DeregisterCell { cell: CellId },
    /// A tenant placed on a cell (placement ran before the record was proposed). The same
    /// request id again is a no-op that names the tenant already created.
    CreateTenant { tenant: TenantIntent },
    /// The tenant's cell holds it now.
    TenantReady { tenant: TenantId },
    /// An operator deleted the tenant: its cell is to drop it.
    DeleteTenant { tenant: TenantId, reason: String },
    /// The deleted tenant's cell no longer holds it: forgotten.
    ForgetTenant { tenant: TenantId },
    /// An action carried out (or failed) on a cell, recorded with its reason.
    Note { kind: String, tenant: Option<TenantId>, cell: Option<CellId>, reason: String },
}

/// What changed, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetEvent {
    /// 1, 2, … in log order.
    pub seq: u64,
    pub at_ms: u64,
    /// `cell_registered`, `tenant_created`, `tenant_ready`, …
    pub kind: String,
    pub tenant: Option<TenantId>,
    pub cell: Option<CellId>,
    pub reason: String,
}

/// Why a record was refused (the state is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FleetError {
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    #[error("unknown region {0}")]
    UnknownRegion(String),
    #[error("unknown cell {0}")]
    UnknownCell(CellId),
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),
    #[error("a tenant named {0} exists")]
    NameTaken(String),
    #[error("tenant id {0} is taken")]
    IdTaken(TenantId),
    #[error("{0}")]
    Conflict(String),
}

fn invalid(what: &str, why: impl Into<String>) -> FleetError {
    FleetError::Invalid { what: what.into(), why: why.into() }
}

/// What applying a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A create whose request id was seen before: the tenant it made.
    Existing(TenantId),
}

/// The fleet as its records have made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub regions: BTreeMap<String, Region>,
    pub cells: BTreeMap<CellId, CellSpec>,
    pub tenants: BTreeMap<TenantId, TenantIntent>,
    /// Create requests' ids, and the tenants they made (kept after a tenant is forgotten, so a
    /// late retry does not create it again).
    pub requests: BTreeMap<String, TenantId>,
    pub events: VecDeque<FleetEvent>,
    pub last_seq: u64,
}

/// Ids, names and zones: 1-64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
fn valid_name(what: &str, name: &str) -> Result<(), FleetError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(what, format!("{name:?} must be 1 to {MAX_NAME_LEN} characters")));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(invalid(what, format!("{name:?} may hold only letters, digits, '.', '_' and '-'")));
    }
    if name.starts_with(['.', '-']) {
        return Err(invalid(what, format!("{name:?} may not start with '.' or '-'")));
    }
    Ok(())
}

impl FleetState {
    /// Applies one record at `at_ms` (the time its log entry carries, so every voter applies
    /// the same); Err leaves the state as it was.
    pub fn apply(&mut self, record: &FleetRecord, at_ms: u64) -> Result<Applied, FleetError> {
        match record {
            FleetRecord::PutRegion { region } => {
                valid_name("region", &region.name)?;
                valid_name("cloud", &region.cloud)?;
                for z in &region.zones {
                    valid_name("zone", z)?;
                }
                if let Some(c) = self
                    .cells
                    .values()
                    .find(|c| c.region == region.name && c.zones.iter().any(|z| !region.zones.contains(z)))
                {
                    return Err(FleetError::Conflict(format!(
                        "cell {} uses a zone the region would no longer have",
                        c.id
                    )));
                }
                self.regions.insert(region.name.clone(), region.clone());
                self.event(at_ms, "region_put", None, None, format!("zones {}", region.zones.join(",")));
            }
            FleetRecord::RegisterCell { cell } => {
                valid_name("cell id", &cell.id)?;
                let region = self
                    .regions
                    .get(&cell.region)
                    .ok_or_else(|| FleetError::UnknownRegion(cell.region.clone()))?;
                if cell.zones.is_empty() {
                    return Err(invalid("cell", "it must span at least one zone"));
                }
                if let Some(z) = cell.zones.iter().find(|z| !region.zones.contains(z)) {
                    return Err(invalid("cell", format!("zone {z} is not one of region {}'s", region.name)));
                }
                if !cell.admin.starts_with("http://") && !cell.admin.starts_with("https://") {
                    return Err(invalid(
                        "cell",
                        format!("admin endpoint {:?} is not an http(s) URL", cell.admin),
                    ));
                }
                if cell.bootstrap.is_empty() {
                    return Err(invalid("cell", "no bootstrap address"));
                }
                let mut spec = cell.clone();
                let kind = match self.cells.get(&cell.id) {
                    Some(old) => {
                        if old.region != cell.region {
                            return Err(FleetError::Conflict(format!(
                                "cell {} is in region {}; a cell does not move",
                                cell.id, old.region
                            )));
                        }
                        spec.cordoned = old.cordoned;
                        "cell_updated"
                    }
                    None => "cell_registered",
                };
                let reason = format!("version {}, zones {}", spec.version, spec.zones.join(","));
                self.cells.insert(spec.id.clone(), spec);
                self.event(at_ms, kind, None, Some(cell.id.clone()), reason);
            }
            FleetRecord::SetCordon { cell, cordoned, reason } => {
                let c = self.cells.get_mut(cell).ok_or_else(|| FleetError::UnknownCell(cell.clone()))?;
                c.cordoned = *cordoned;
                let kind = if *cordoned { "cell_cordoned" } else { "cell_uncordoned" };
                self.event(at_ms, kind, None, Some(cell.clone()), reason.clone());
            }
            FleetRecord::DeregisterCell { cell } => {
                if !self.cells.contains_key(cell) {
                    return Err(FleetError::UnknownCell(cell.clone()));
                }
                let held = self.tenants.values().filter(|t| &t.cell == cell).count();
                if held > 0 {
                    return Err(FleetError::Conflict(format!("cell {cell} still holds {held} tenant(s)")));
                }
                self.cells.remove(cell);
                self.event(at_ms, "cell_deregistered", None, Some(cell.clone()), String::new());
            }
            FleetRecord::CreateTenant { tenant } => {
                if let Some(id) = self.requests.get(&tenant.request_id) {
                    return Ok(Applied::Existing(id.clone()));
                }
                valid_name("tenant name", &tenant.name)?;
                kora_common::TenantId::parse(&tenant.id).map_err(|e| invalid("tenant id", e.to_string()))?;
                valid_name("request id", &tenant.request_id)?;
                if self.tenants.contains_key(&tenant.id) || self.requests.values().any(|id| id == &tenant.id)
                {
                    return Err(FleetError::IdTaken(tenant.id.clone()));
                }
                if self.tenants.values().any(|t| t.name == tenant.name && t.phase != TenantPhase::Deleting) {
                    return Err(FleetError::NameTaken(tenant.name.clone()));
                }
                let cell = self
                    .cells
                    .get(&tenant.cell)
                    .ok_or_else(|| FleetError::UnknownCell(tenant.cell.clone()))?;
                if cell.region != tenant.region {
                    return Err(invalid(
                        "tenant",
                        format!("cell {} is in region {}, not {}", cell.id, cell.region, tenant.region),
                    ));
                }
                if tenant.phase != TenantPhase::Provisioning {
                    return Err(invalid("tenant", "a new tenant starts provisioning"));
                }
                self.requests.insert(tenant.request_id.clone(), tenant.id.clone());
                self.tenants.insert(tenant.id.clone(), tenant.clone());
                self.event(
                    at_ms,
                    "tenant_created",
                    Some(tenant.id.clone()),
                    Some(tenant.cell.clone()),
                    format!("{} placed in region {}", tenant.name, tenant.region),
                );
            }
            FleetRecord::TenantReady { tenant } => {
                let t =
                    self.tenants.get_mut(tenant).ok_or_else(|| FleetError::UnknownTenant(tenant.clone()))?;
                match t.phase {
                    TenantPhase::Provisioning => {
                        t.phase = TenantPhase::Ready;
                        let cell = t.cell.clone();
                        self.event(
                            at_ms,
                            "tenant_ready",
                            Some(tenant.clone()),
                            Some(cell),
                            "its cell holds it".into(),
                        );
                    }
                    TenantPhase::Ready => {}
                    TenantPhase::Deleting => {
                        return Err(FleetError::Conflict(format!("tenant {tenant} is being deleted")));
                    }
                }
            }
            FleetRecord::DeleteTenant { tenant, reason } => {
                let t =
                    self.tenants.get_mut(tenant).ok_or_else(|| FleetError::UnknownTenant(tenant.clone()))?;
                if t.phase != TenantPhase::Deleting {
                    t.phase = TenantPhase::Deleting;
                    let cell = t.cell.clone();
                    self.event(at_ms, "tenant_deleting", Some(tenant.clone()), Some(cell), reason.clone());
                }
            }
            FleetRecord::ForgetTenant { tenant } => {
                let t = self.tenants.get(tenant).ok_or_else(|| FleetError::UnknownTenant(tenant.clone()))?;
                if t.phase != TenantPhase::Deleting {
                    return Err(FleetError::Conflict(format!("tenant {tenant} is not being deleted")));
                }
                let cell = t.cell.clone();
                self.tenants.remove(tenant);
                self.event(
                    at_ms,
                    "tenant_deleted",
                    Some(tenant.clone()),
                    Some(cell),
                    "its cell no longer holds it".into(),
                );
            }
            FleetRecord::Note { kind, tenant, cell, reason } => {
                valid_name("event kind", kind)?;
                self.event(at_ms, kind, tenant.clone(), cell.clone(), reason.clone());
            }
        }
        Ok(Applied::Done)
    }

    fn event(
        &mut self,
        at_ms: u64,
        kind: &str,
        tenant: Option<TenantId>,
        cell: Option<CellId>,
        reason: String,
    ) {
        self.last_seq += 1;
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(FleetEvent {
            seq: self.last_seq,
            at_ms,
            kind: kind.into(),
            tenant,
            cell,
            reason,
        });
    }

    /// The tenant named `name` that is not being deleted.
    pub fn tenant_named(&self, name: &str) -> Option<&TenantIntent> {
        self.tenants.values().find(|t| t.name == name && t.phase != TenantPhase::Deleting)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{Capacity, DEFAULT_TENANT_SIZE};

    fn region() -> Region {
        Region { cloud: "local".into(), name: "r1".into(), zones: vec!["r1a".into(), "r1b".into()] }
    }

    fn cell(id: &str) -> CellSpec {
        CellSpec {
            id: id.into(),
            region: "r1".into(),
            zones: vec!["r1a".into(), "r1b".into()],
            version: "0.1.0".into(),
            capacity: Capacity {
                ingress_bytes_per_second: 1,
                egress_bytes_per_second: 1,
                partitions: 1,
                storage_bytes: 1,
            },
            admin: "http://127.0.0.1:1".into(),
            bootstrap: "127.0.0.1:2".into(),
            cordoned: false,
        }
    }

    fn tenant(id: &str, name: &str, request: &str) -> TenantIntent {
        TenantIntent {
            id: id.into(),
            name: name.into(),
            region: "r1".into(),
            size: DEFAULT_TENANT_SIZE,
            cell: "c1".into(),
            phase: TenantPhase::Provisioning,
            request_id: request.into(),
            created_ms: 5,
        }
    }

    fn fleet() -> FleetState {
        let mut s = FleetState::default();
        s.apply(&FleetRecord::PutRegion { region: region() }, 1).unwrap();
        s.apply(&FleetRecord::RegisterCell { cell: cell("c1") }, 2).unwrap();
        s
    }

    #[test]
    fn a_retried_create_names_the_tenant_it_made() {
        let mut s = fleet();
        let rec = FleetRecord::CreateTenant { tenant: tenant("lkc-aaaaaa", "orders", "req-1") };
        assert_eq!(s.apply(&rec, 3), Ok(Applied::Done));
        // The retry carries a new id (placement and the id ran again): the first one stands.
        let retry = FleetRecord::CreateTenant { tenant: tenant("lkc-bbbbbb", "orders", "req-1") };
        assert_eq!(s.apply(&retry, 4), Ok(Applied::Existing("lkc-aaaaaa".into())));
        assert_eq!(s.tenants.len(), 1);
        // Another request for the same name is refused; a new name is fine.
        let other = FleetRecord::CreateTenant { tenant: tenant("lkc-cccccc", "orders", "req-2") };
        assert_eq!(s.apply(&other, 5), Err(FleetError::NameTaken("orders".into())));
        let other = FleetRecord::CreateTenant { tenant: tenant("lkc-cccccc", "payments", "req-2") };
        assert_eq!(s.apply(&other, 5), Ok(Applied::Done));
        let kinds: Vec<&str> = s.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["region_put", "cell_registered", "tenant_created", "tenant_created"]);
        assert_eq!(s.events.back().map(|e| e.seq), Some(4));
    }

    #[test]
    fn a_tenant_lives_provisioning_ready_deleting_and_is_forgotten_once_gone() {
        let mut s = fleet();
        s.apply(&FleetRecord::CreateTenant { tenant: tenant("lkc-aaaaaa", "orders", "req-1") }, 3).unwrap();
        assert!(matches!(
            s.apply(&FleetRecord::ForgetTenant { tenant: "lkc-aaaaaa".into() }, 4),
            Err(FleetError::Conflict(_))
        ));
        s.apply(&FleetRecord::TenantReady { tenant: "lkc-aaaaaa".into() }, 4).unwrap();
        assert_eq!(s.tenants["lkc-aaaaaa"].phase, TenantPhase::Ready);
        // A cell holding a tenant cannot be deregistered.
        assert!(matches!(
            s.apply(&FleetRecord::DeregisterCell { cell: "c1".into() }, 5),
            Err(FleetError::Conflict(_))
        ));
        s.apply(&FleetRecord::DeleteTenant { tenant: "lkc-aaaaaa".into(), reason: "by alice".into() }, 6)
            .unwrap();
        // The name is free again while the old tenant drains; the id and request are not.
        assert!(s.tenant_named("orders").is_none());
        s.apply(&FleetRecord::ForgetTenant { tenant: "lkc-aaaaaa".into() }, 7).unwrap();
        assert!(s.tenants.is_empty());
        let again = FleetRecord::CreateTenant { tenant: tenant("lkc-aaaaaa", "orders", "req-9") };
        assert_eq!(s.apply(&again, 8), Err(FleetError::IdTaken("lkc-aaaaaa".into())));
        let late_retry = FleetRecord::CreateTenant { tenant: tenant("lkc-dddddd", "orders", "req-1") };
        assert_eq!(s.apply(&late_retry, 8), Ok(Applied::Existing("lkc-aaaaaa".into())));
        s.apply(&FleetRecord::DeregisterCell { cell: "c1".into() }, 9).unwrap();
        assert!(s.cells.is_empty());
    }

    #[test]
    fn bad_records_are_refused_and_change_nothing() {
        let mut s = fleet();
        let before = s.clone();
        let mut c = cell("c2");
        c.zones = vec!["nowhere".into()];
        assert!(matches!(
            s.apply(&FleetRecord::RegisterCell { cell: c }, 3),
            Err(FleetError::Invalid { .. })
        ));
        let mut c = cell("c2");
        c.region = "r9".into();
        assert_eq!(
            s.apply(&FleetRecord::RegisterCell { cell: c }, 3),
            Err(FleetError::UnknownRegion("r9".into()))
        );
        let mut c = cell("c2");
        c.admin = "127.0.0.1:1".into();
        assert!(matches!(
            s.apply(&FleetRecord::RegisterCell { cell: c }, 3),
            Err(FleetError::Invalid { .. })
        ));
        assert!(matches!(
            s.apply(&FleetRecord::RegisterCell { cell: cell("../c") }, 3),
            Err(FleetError::Invalid { .. })
        ));
        let bad_id = tenant("LKC-1", "ok", "req-1");
        assert!(matches!(
            s.apply(&FleetRecord::CreateTenant { tenant: bad_id }, 3),
            Err(FleetError::Invalid { .. })
        ));
        let mut t = tenant("lkc-aaaaaa", "bad name", "req-1");
        assert!(matches!(
            s.apply(&FleetRecord::CreateTenant { tenant: t.clone() }, 3),
            Err(FleetError::Invalid { .. })
        ));
        t.name = "ok".into();
        t.cell = "c9".into();
        assert_eq!(
            s.apply(&FleetRecord::CreateTenant { tenant: t }, 3),
            Err(FleetError::UnknownCell("c9".into()))
        );
        // A region cannot drop a zone a cell uses.
        let mut r = region();
        r.zones = vec!["r1a".into()];
        assert!(matches!(s.apply(&FleetRecord::PutRegion { region: r }, 3), Err(FleetError::Conflict(_))));
        assert_eq!(s, before);
    }

    #[test]
    fn new_ids_are_what_cells_accept() {
        let e = kora_common::SeededEntropy::new(3);
        for _ in 0..100 {
            let id = crate::model::new_tenant_id(&e);
            assert!(kora_common::TenantId::parse(&id).is_ok(), "{id}");
            assert_eq!(id.len(), 4 + crate::model::TENANT_ID_CHARS);
        }
    }

    #[test]
    fn re_registering_a_cell_keeps_its_cordon_and_the_state_round_trips() {
        let mut s = fleet();
        s.apply(&FleetRecord::SetCordon { cell: "c1".into(), cordoned: true, reason: "disk".into() }, 3)
            .unwrap();
        let mut c = cell("c1");
        c.version = "0.2.0".into();
        s.apply(&FleetRecord::RegisterCell { cell: c }, 4).unwrap();
        assert!(s.cells["c1"].cordoned);
        assert_eq!(s.cells["c1"].version, "0.2.0");
        let json = serde_json::to_string(&s).unwrap();
        let back: FleetState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        for _ in 0..MAX_EVENTS + 5 {
            s.apply(
                &FleetRecord::Note { kind: "probe".into(), tenant: None, cell: None, reason: String::new() },
                5,
            )
            .unwrap();
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events.back().map(|e| e.seq), Some(s.last_seq));
    }
}
