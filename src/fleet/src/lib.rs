//! The fleet controller's logic, with no I/O: what the fleet is meant to be (intent) and what
//! its cells report (observations), and the pure functions that turn the difference into
//! actions.
//!
//! Owns:
//! - [`model`]: the inventory (clouds, regions and zones; cells with their capacity and admin
//!   endpoint) and tenants' intent (name, region, size, where they were placed);
//! - [`placement`]: choosing a cell for a new tenant, by power of two choices over cell load,
//!   load being the maximum of broker load, replica-count use and bandwidth use (Kora's rule);
//!   never a cordoned, unhealthy or full cell;
//! - [`state`]: the fleet's state as a deterministic state machine over [`state::FleetRecord`]s
//!   (the records a replicated log carries), with the validation every write goes through and
//!   an event for every change, with its reason;
//! - [`plan`]: reconciliation, intent against what each cell holds, as a list of actions.
//!
//! Invariants: the same records applied in the same order give the same state; a request
//! retried with the same request id creates nothing twice; placement and planning read their
//! randomness and time from the caller (`kora_common::Entropy`, milliseconds passed in).
//!
//! Deliberately not here: HTTP, the Raft log that replicates the records, talking to cells,
//! and the retries that carry actions out (the controller service does those).

pub mod model;
pub mod placement;
pub mod plan;
pub mod state;

pub use model::{
    Capacity, CellId, CellObservation, CellSpec, Region, TenantId, TenantIntent, TenantPhase, TenantSize,
};
pub use placement::{place, CellLoad, PlacementError, PlacementRequest};
pub use plan::{reconcile, Action, CellHolding};
pub use state::{FleetError, FleetEvent, FleetRecord, FleetState};
