//! Reconciliation: intent (the fleet's tenants, where they were placed, their phase) against
//! what each cell reports it holds, as a list of actions for the controller to carry out and
//! retry until the two agree. Run again after every change and on a timer; an action already
//! done shows up as agreement the next time, so carrying one out twice is harmless.
//!
//! A cell's holding lists only the tenants the fleet manages there (a tenant an operator made
//! on the cell directly is not the fleet's to delete). A cell that did not answer has no
//! holding and gets no action: nothing is provisioned or deleted on a guess.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{CellId, TenantId, TenantPhase};
use crate::state::FleetState;

/// The fleet-managed tenants a cell reported holding.
pub type CellHolding = BTreeSet<TenantId>;

/// One step towards the intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the tenant (with its quotas and first API key) on its cell.
    Provision { tenant: TenantId, cell: CellId, reason: String },
    /// The cell holds the tenant: record it ready.
    MarkReady { tenant: TenantId, cell: CellId },
    /// Remove the tenant from a cell.
    Deprovision { tenant: TenantId, cell: CellId, reason: String },
    /// A deleted tenant no cell holds: forget it.
    Forget { tenant: TenantId },
}

/// The actions that bring the cells in line with `state`; `holdings`: what each cell that
/// answered holds.
pub fn reconcile(state: &FleetState, holdings: &BTreeMap<CellId, CellHolding>) -> Vec<Action> {
    let mut actions = Vec::new();
    for t in state.tenants.values() {
        let Some(held) = holdings.get(&t.cell).map(|h| h.contains(&t.id)) else {
            continue;
        };
        match (t.phase, held) {
            (TenantPhase::Provisioning, false) => actions.push(Action::Provision {
                tenant: t.id.clone(),
                cell: t.cell.clone(),
                reason: "placed here, not yet provisioned".into(),
            }),
            (TenantPhase::Provisioning, true) => {
                actions.push(Action::MarkReady { tenant: t.id.clone(), cell: t.cell.clone() })
            }
            (TenantPhase::Ready, false) => actions.push(Action::Provision {
                tenant: t.id.clone(),
                cell: t.cell.clone(),
                reason: "the cell lost it".into(),
            }),
            (TenantPhase::Ready, true) => {}
            (TenantPhase::Deleting, true) => actions.push(Action::Deprovision {
                tenant: t.id.clone(),
                cell: t.cell.clone(),
                reason: "deleted".into(),
            }),
            (TenantPhase::Deleting, false) => actions.push(Action::Forget { tenant: t.id.clone() }),
        }
    }
    // Orphans: held where the fleet does not mean them to be.
    for (cell, held) in holdings {
        for id in held {
            let reason = match state.tenants.get(id) {
                Some(t) if &t.cell == cell => continue,
                Some(t) => format!("placed on cell {}, not here", t.cell),
                None => "not a tenant of the fleet any more".into(),
            };
            actions.push(Action::Deprovision { tenant: id.clone(), cell: cell.clone(), reason });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{Capacity, CellSpec, Region, TenantIntent, DEFAULT_TENANT_SIZE};
    use crate::state::FleetRecord;

    fn state() -> FleetState {
        let mut s = FleetState::default();
        let region = Region { cloud: "local".into(), name: "r".into(), zones: vec!["ra".into()] };
        s.apply(&FleetRecord::PutRegion { region }, 0).unwrap();
        for c in ["c1", "c2"] {
            let cell = CellSpec {
                id: c.into(),
                region: "r".into(),
                zones: vec!["ra".into()],
                version: "0".into(),
                capacity: Capacity::default(),
                admin: "http://x".into(),
                bootstrap: "x:1".into(),
                cordoned: false,
            };
            s.apply(&FleetRecord::RegisterCell { cell }, 0).unwrap();
        }
        for (id, cell) in [("lkc-new", "c1"), ("lkc-ready", "c1"), ("lkc-gone", "c2"), ("lkc-drop", "c2")] {
            let tenant = TenantIntent {
                id: id.into(),
                name: id.into(),
                region: "r".into(),
                size: DEFAULT_TENANT_SIZE,
                cell: cell.into(),
                phase: TenantPhase::Provisioning,
                request_id: id.into(),
                created_ms: 0,
            };
            s.apply(&FleetRecord::CreateTenant { tenant }, 0).unwrap();
        }
        for id in ["lkc-ready", "lkc-gone", "lkc-drop"] {
            s.apply(&FleetRecord::TenantReady { tenant: id.into() }, 0).unwrap();
        }
        for id in ["lkc-gone", "lkc-drop"] {
            s.apply(&FleetRecord::DeleteTenant { tenant: id.into(), reason: "test".into() }, 0).unwrap();
        }
        s
    }

    fn holding(ids: &[&str]) -> CellHolding {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_difference_becomes_an_action() {
        let s = state();
        let holdings = BTreeMap::from([
            // c1 lost lkc-ready and holds a tenant placed on c2 and one the fleet forgot.
            ("c1".to_string(), holding(&["lkc-drop", "lkc-old"])),
            // c2 still holds the deleted lkc-drop; lkc-gone is gone.
            ("c2".to_string(), holding(&["lkc-drop"])),
        ]);
        let actions = reconcile(&s, &holdings);
        let t = |id: &str| id.to_string();
        assert_eq!(
            actions,
            vec![
                Action::Deprovision { tenant: t("lkc-drop"), cell: t("c2"), reason: "deleted".into() },
                Action::Forget { tenant: t("lkc-gone") },
                Action::Provision {
                    tenant: t("lkc-new"),
                    cell: t("c1"),
                    reason: "placed here, not yet provisioned".into()
                },
                Action::Provision {
                    tenant: t("lkc-ready"),
                    cell: t("c1"),
                    reason: "the cell lost it".into()
                },
                Action::Deprovision {
                    tenant: t("lkc-drop"),
                    cell: t("c1"),
                    reason: "placed on cell c2, not here".into()
                },
                Action::Deprovision {
                    tenant: t("lkc-old"),
                    cell: t("c1"),
                    reason: "not a tenant of the fleet any more".into()
                },
            ]
        );
    }

    #[test]
    fn agreement_needs_nothing_and_a_silent_cell_gets_no_guess() {
        let s = state();
        let holdings = BTreeMap::from([("c1".to_string(), holding(&["lkc-new", "lkc-ready"]))]);
        // lkc-new is held: ready; c2 did not answer, so its deleted tenants wait.
        assert_eq!(
            reconcile(&s, &holdings),
            vec![Action::MarkReady { tenant: "lkc-new".into(), cell: "c1".into() }]
        );
        assert!(reconcile(&s, &BTreeMap::new()).is_empty());
    }
}
