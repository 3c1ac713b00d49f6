//! Incremental fetch sessions (KIP-227).
//!
//! A consumer that opens a session (session_id 0, epoch 0) sends its full partition list once;
//! later fetches (epoch 1, 2, ...) name only partitions whose fetch state changed plus the ones
//! to forget, and the response carries only partitions with news: records, a moved high
//! watermark or log start offset, or an error. The cache is bounded; when full, the least
//! recently used session idle for longer than `EVICTION_IDLE_MS` makes room, otherwise the
//! client gets no session (id 0) and keeps doing full fetches, which the protocol allows.

use std::collections::HashMap;

use uuid::Uuid;

/// A session unused for this long may be evicted for a new one (Kafka's
/// min.incremental.fetch.session.eviction.ms default).
pub const EVICTION_IDLE_MS: i64 = 120_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    /// What the last response told the client; -1 before any.
    pub last_high_watermark: i64,
    pub last_log_start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct FetchSession {
    pub id: i32,
    /// Epoch the next incremental request must carry.
    pub next_epoch: i32,
    /// In the client's order.
    pub partitions: Vec<SessionPartition>,
    pub last_used_ms: i64,
}

impl FetchSession {
    pub fn upsert(&mut self, p: SessionPartition) {
        match self.partitions.iter_mut().find(|x| x.topic == p.topic && x.partition == p.partition) {
            Some(x) => {
                x.fetch_offset = p.fetch_offset;
                x.max_bytes = p.max_bytes;
                x.current_leader_epoch = p.current_leader_epoch;
            }
            None => self.partitions.push(p),
        }
    }

    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.retain(|x| !(x.topic == topic && x.partition == partition));
    }
}

#[derive(Debug)]
pub struct FetchSessionCache {
    max_slots: usize,
    sessions: HashMap<i32, FetchSession>,
    next_id: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
}

impl FetchSessionCache {
    pub fn new(max_slots: usize) -> Self {
        Self { max_slots, sessions: HashMap::new(), next_id: 1 }
    }

    /// Creates a session holding `partitions`; None when the cache is full of active sessions.
    pub fn create(&mut self, partitions: Vec<SessionPartition>, now_ms: i64) -> Option<i32> {
        if self.max_slots == 0 {
            return None;
        }
        if self.sessions.len() >= self.max_slots {
            let victim = self
                .sessions
                .values()
                .filter(|s| now_ms - s.last_used_ms >= EVICTION_IDLE_MS)
                .min_by_key(|s| s.last_used_ms)
                .map(|s| s.id)?;
            self.sessions.remove(&victim);
        }
        let mut id = self.next_id;
        while id <= 0 || self.sessions.contains_key(&id) {
            id = id.wrapping_add(1).max(1);
        }
        self.next_id = id.wrapping_add(1).max(1);
        self.sessions.insert(id, FetchSession { id, next_epoch: 1, partitions, last_used_ms: now_ms });
        Some(id)
    }

    /// Takes the session out for an incremental fetch at `epoch`; put it back with [`Self::put`].
    pub fn take(&mut self, id: i32, epoch: i32) -> Result<FetchSession, SessionError> {
        let s = self.sessions.get(&id).ok_or(SessionError::NotFound)?;
        if s.next_epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        self.sessions.remove(&id).ok_or(SessionError::NotFound)
    }

    pub fn put(&mut self, mut s: FetchSession, now_ms: i64) {
        s.next_epoch = if s.next_epoch == i32::MAX { 1 } else { s.next_epoch + 1 };
        s.last_used_ms = now_ms;
        self.sessions.insert(s.id, s);
    }

    pub fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(p: i32) -> SessionPartition {
        SessionPartition {
            topic: "t".into(),
            topic_id: Uuid::nil(),
            partition: p,
            fetch_offset: 0,
            max_bytes: 1,
            current_leader_epoch: -1,
            last_high_watermark: -1,
            last_log_start_offset: -1,
        }
    }

    #[test]
    fn epochs_and_eviction() {
        let mut c = FetchSessionCache::new(1);
        let id = c.create(vec![part(0)], 0).expect("slot");
        assert_eq!(c.take(id, 2).err(), Some(SessionError::InvalidEpoch));
        let s = c.take(id, 1).expect("epoch 1");
        c.put(s, 10);
        assert_eq!(c.take(99, 1).err(), Some(SessionError::NotFound));
        // Full, and the only session is fresh: no new session.
        assert_eq!(c.create(vec![part(1)], 20), None);
        // Idle long enough: evicted.
        let id2 = c.create(vec![part(1)], 10 + EVICTION_IDLE_MS).expect("evicted");
        assert_ne!(id, id2);
        assert_eq!(c.take(id, 2).err(), Some(SessionError::NotFound));
        assert!(FetchSessionCache::new(0).create(vec![], 0).is_none());
    }
}
