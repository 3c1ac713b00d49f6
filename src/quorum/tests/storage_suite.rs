//! openraft's own storage test suite, run against the heed-backed log store and the metadata
//! state machine.

use kora_quorum::log_store::LogStore;
use kora_quorum::state_machine::StateMachine;
use kora_quorum::{NodeId, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct HeedBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for HeedBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tmp");
        let log = LogStore::open(&dir.path().join("raft-log")).expect("log store");
        let sm = StateMachine::open(&dir.path().join("state")).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn heed_store_passes_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(HeedBuilder) {
        panic!("openraft storage suite: {e}");
    }
}
