//! LMDB persistence of the applied metadata state, through heed.
//!
//! Databases: `topics` (name -> TopicImage as JSON), `remote` ("<topic id>/<partition>" ->
//! the partition's remote manifest as JSON) and `meta` (applied_index, cluster_id,
//! next_producer_id, brokers) and `security` (tenants and credentials). Every applied record is written in one write transaction together with
//! the new applied index, so the stored state is always the image after some prefix of the log.
//! LMDB commits are durable (fsync) before `commit` returns.

use std::path::Path;

use heed::types::{SerdeJson, Str};
use heed::{Database, Env, EnvOpenOptions};

use crate::image::{MetadataImage, TopicImage};
use crate::record::{MetadataRecord, RemoteSegment};
use crate::MetaError;

/// Virtual size of the LMDB map (sparse on Linux); bounds the metadata to 1 GiB.
const MAP_SIZE_BYTES: usize = 1 << 30;

fn store_err(e: impl std::fmt::Display) -> MetaError {
    MetaError::Store(e.to_string())
}

#[derive(Debug)]
pub struct MetaStore {
    env: Env,
    topics: Database<Str, SerdeJson<TopicImage>>,
    remote: Database<Str, SerdeJson<Vec<RemoteSegment>>>,
    meta: Database<Str, SerdeJson<serde_json::Value>>,
    /// Tenants (`tenant/<id>`) and credentials (`cred/<login>`).
    security: Database<Str, SerdeJson<serde_json::Value>>,
}

const TENANT_KEY: &str = "tenant/";
const CREDENTIAL_KEY: &str = "cred/";
const ACL_KEY: &str = "acl/";

fn remote_key(topic_id: &uuid::Uuid, partition: i32) -> String {
    format!("{topic_id}/{partition}")
}

impl MetaStore {
    /// Opens (or creates) the store in `dir` and loads the image it holds.
    pub fn open(dir: &Path) -> Result<(Self, MetadataImage), MetaError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| MetaError::Store(format!("create {}: {e}", dir.display())))?;
        // SAFETY: heed requires that the same LMDB file is not opened twice in one process
        // (and not truncated underneath us). Kora opens each metadata directory exactly once,
        // at start-up, and the data dir is locked by the broker (see kora-broker's DataDirLock).
        #[allow(unsafe_code)]
        let env = unsafe { EnvOpenOptions::new().map_size(MAP_SIZE_BYTES).max_dbs(8).open(dir) }
            .map_err(|e| MetaError::Store(format!("open LMDB at {}: {e}", dir.display())))?;
        let mut wtxn = env.write_txn().map_err(store_err)?;
        let topics = env.create_database(&mut wtxn, Some("topics")).map_err(store_err)?;
        let meta = env.create_database(&mut wtxn, Some("meta")).map_err(store_err)?;
        let remote = env.create_database(&mut wtxn, Some("remote")).map_err(store_err)?;
        let security = env.create_database(&mut wtxn, Some("security")).map_err(store_err)?;
        wtxn.commit().map_err(store_err)?;
        let store = MetaStore { env, topics, remote, meta, security };
        let image = store.load()?;
        Ok((store, image))
    }

    fn load(&self) -> Result<MetadataImage, MetaError> {
        let rtxn = self.env.read_txn().map_err(store_err)?;
        let mut image = MetadataImage::default();
        let get = |k: &str| self.meta.get(&rtxn, k).map_err(store_err);
        image.applied_index = get("applied_index")?.and_then(|v| v.as_u64()).unwrap_or(0);
        image.cluster_id = get("cluster_id")?.and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        image.next_producer_id = get("next_producer_id")?.and_then(|v| v.as_i64()).unwrap_or(0);
        if let Some(v) = get("brokers")? {
            let brokers: Vec<crate::image::BrokerImage> = serde_json::from_value(v).map_err(store_err)?;
            image.brokers = brokers.into_iter().map(|b| (b.registration.broker_id, b)).collect();
        }
        for item in self.topics.iter(&rtxn).map_err(store_err)? {
            let (name, t) = item.map_err(store_err)?;
            image.topic_ids.insert(t.topic_id, name.to_string());
            image.topics.insert(name.to_string(), std::sync::Arc::new(t));
        }
        for item in self.security.iter(&rtxn).map_err(store_err)? {
            let (key, v) = item.map_err(store_err)?;
            if key.starts_with(TENANT_KEY) {
                let t: crate::security::TenantImage = serde_json::from_value(v).map_err(store_err)?;
                image.tenants.insert(t.id.clone(), std::sync::Arc::new(t));
            } else if let Some(ns) = key.strip_prefix(ACL_KEY) {
                let v: Vec<kora_auth::AclBinding> = serde_json::from_value(v).map_err(store_err)?;
                image.acls.insert(ns.to_string(), std::sync::Arc::new(v));
            } else if key.starts_with(CREDENTIAL_KEY) {
                let c: crate::security::Credential = serde_json::from_value(v).map_err(store_err)?;
                image.credentials.insert(c.login.clone(), std::sync::Arc::new(c));
            } else {
                return Err(MetaError::Store(format!("unknown security key '{key}'")));
            }
        }
        for item in self.remote.iter(&rtxn).map_err(store_err)? {
            let (key, segments) = item.map_err(store_err)?;
            let parsed = key.split_once('/').and_then(|(id, p)| Some((id.parse().ok()?, p.parse().ok()?)));
            let Some((id, p)) = parsed else {
                return Err(MetaError::Store(format!("bad remote manifest key '{key}'")));
            };
            if image.topic_ids.contains_key(&id) {
                image.remote.insert((id, p), std::sync::Arc::new(segments));
            }
        }
        Ok(image)
    }

    /// Persists the effect of `record` (already applied to `image`) at `image.applied_index`.
    pub fn commit(&self, record: &MetadataRecord, image: &MetadataImage) -> Result<(), MetaError> {
        self.commit_batch(&[record], image, &[])
    }

    /// Persists the effect of `records` (all already applied to `image`, in order) and the
    /// `extras` (keys of the `meta` database, e.g. Raft's applied log id) in one transaction.
    /// Every touched key is written with its value in `image`, the state after the last record.
    pub fn commit_batch(
        &self,
        records: &[&MetadataRecord],
        image: &MetadataImage,
        extras: &[(&str, serde_json::Value)],
    ) -> Result<(), MetaError> {
        let mut wtxn = self.env.write_txn().map_err(store_err)?;
        for record in records {
            self.write_record(&mut wtxn, record, image)?;
        }
        for (k, v) in extras {
            self.meta.put(&mut wtxn, k, v).map_err(store_err)?;
        }
        self.meta
            .put(&mut wtxn, "applied_index", &serde_json::Value::from(image.applied_index))
            .map_err(store_err)?;
        wtxn.commit().map_err(store_err)
    }

    fn write_record(
        &self,
        wtxn: &mut heed::RwTxn<'_>,
        record: &MetadataRecord,
        image: &MetadataImage,
    ) -> Result<(), MetaError> {
        match record {
            MetadataRecord::InitCluster { .. } => {
                self.meta
                    .put(wtxn, "cluster_id", &serde_json::Value::from(image.cluster_id.clone()))
                    .map_err(store_err)?;
            }
            MetadataRecord::DeleteTopic { name } => {
                self.topics.delete(wtxn, name).map_err(store_err)?;
                // Manifests of topics that no longer exist are dropped at load; removing them
                // here needs the topic id, which the image no longer has.
            }
            MetadataRecord::AddRemoteSegment { topic_id, partition, .. }
            | MetadataRecord::RemoveRemoteSegments { topic_id, partition, .. } => {
                let key = remote_key(topic_id, *partition);
                let segments = image.remote_segments(topic_id, *partition);
                self.remote.put(wtxn, &key, &segments.to_vec()).map_err(store_err)?;
            }
            MetadataRecord::CreateTopic { name, .. }
            | MetadataRecord::CreatePartitions { name, .. }
            | MetadataRecord::SetTopicConfigs { name, .. }
            | MetadataRecord::AlterPartition { topic: name, .. }
            | MetadataRecord::ElectLeader { topic: name, .. }
            | MetadataRecord::ReassignPartition { topic: name, .. }
            | MetadataRecord::CompleteReassignment { topic: name, .. } => match image.topic(name) {
                Some(t) => self.topics.put(wtxn, name, t).map_err(store_err)?,
                None => {
                    self.topics.delete(wtxn, name).map_err(store_err)?;
                }
            },
            MetadataRecord::CreateTenant { tenant } => self.put_tenant(wtxn, image, &tenant.id)?,
            MetadataRecord::SetTenantLimits { id, .. } => self.put_tenant(wtxn, image, id)?,
            MetadataRecord::CreateAcls { tenant, .. } | MetadataRecord::DeleteAcls { tenant, .. } => {
                self.put_acls(wtxn, image, &crate::image::acl_key(tenant.as_deref()))?;
            }
            MetadataRecord::DeleteTenant { id } => {
                self.put_tenant(wtxn, image, id)?;
                self.put_acls(wtxn, image, id)?;
                // Its credentials went with it.
                let gone: Vec<String> = {
                    let mut gone = Vec::new();
                    for item in self.security.prefix_iter(wtxn, CREDENTIAL_KEY).map_err(store_err)? {
                        let (key, _) = item.map_err(store_err)?;
                        let login = &key[CREDENTIAL_KEY.len()..];
                        if !image.credentials.contains_key(login) {
                            gone.push(key.to_string());
                        }
                    }
                    gone
                };
                for key in gone {
                    self.security.delete(wtxn, &key).map_err(store_err)?;
                }
            }
            MetadataRecord::PutCredential { credential: crate::security::Credential { login, .. } }
            | MetadataRecord::DeleteCredential { login } => {
                let key = format!("{CREDENTIAL_KEY}{login}");
                match image.credentials.get(login) {
                    Some(c) => {
                        let v = serde_json::to_value(c.as_ref()).map_err(store_err)?;
                        self.security.put(wtxn, &key, &v).map_err(store_err)?
                    }
                    None => {
                        self.security.delete(wtxn, &key).map_err(store_err)?;
                    }
                }
            }
            MetadataRecord::AllocateProducerIds { .. } => {
                self.meta
                    .put(wtxn, "next_producer_id", &serde_json::Value::from(image.next_producer_id))
                    .map_err(store_err)?;
            }
            MetadataRecord::RegisterBroker { .. }
            | MetadataRecord::FenceBroker { .. }
            | MetadataRecord::UnfenceBroker { .. } => {
                self.put_brokers(wtxn, image)?;
                // Leaders and ISRs of any partition may have moved with the broker.
                for (name, t) in image.topics.iter().filter(|(_, t)| !t.assignments.is_empty()) {
                    self.topics.put(wtxn, name, t).map_err(store_err)?;
                }
            }
        }
        Ok(())
    }

    /// Writes a tenant as the image holds it (or removes it).
    fn put_tenant(
        &self,
        wtxn: &mut heed::RwTxn<'_>,
        image: &MetadataImage,
        id: &str,
    ) -> Result<(), MetaError> {
        let key = format!("{TENANT_KEY}{id}");
        match image.tenants.get(id) {
            Some(t) => {
                let v = serde_json::to_value(t.as_ref()).map_err(store_err)?;
                self.security.put(wtxn, &key, &v).map_err(store_err)
            }
            None => self.security.delete(wtxn, &key).map(|_| ()).map_err(store_err),
        }
    }

    /// Writes a namespace's ACLs as the image holds them (or removes them).
    fn put_acls(&self, wtxn: &mut heed::RwTxn<'_>, image: &MetadataImage, ns: &str) -> Result<(), MetaError> {
        let key = format!("{ACL_KEY}{ns}");
        match image.acls.get(ns) {
            Some(set) => {
                let v = serde_json::to_value(set.as_ref()).map_err(store_err)?;
                self.security.put(wtxn, &key, &v).map_err(store_err)
            }
            None => self.security.delete(wtxn, &key).map(|_| ()).map_err(store_err),
        }
    }

    fn put_brokers(&self, wtxn: &mut heed::RwTxn<'_>, image: &MetadataImage) -> Result<(), MetaError> {
        let brokers: Vec<&crate::image::BrokerImage> = image.brokers.values().collect();
        let v = serde_json::to_value(brokers).map_err(store_err)?;
        self.meta.put(wtxn, "brokers", &v).map_err(store_err)
    }

    /// Replaces the whole stored state with `image` and `extras` (a Raft snapshot install).
    pub fn replace_all(
        &self,
        image: &MetadataImage,
        extras: &[(&str, serde_json::Value)],
    ) -> Result<(), MetaError> {
        let mut wtxn = self.env.write_txn().map_err(store_err)?;
        self.topics.clear(&mut wtxn).map_err(store_err)?;
        self.remote.clear(&mut wtxn).map_err(store_err)?;
        self.meta.clear(&mut wtxn).map_err(store_err)?;
        self.security.clear(&mut wtxn).map_err(store_err)?;
        for id in image.tenants.keys() {
            self.put_tenant(&mut wtxn, image, id)?;
        }
        for ns in image.acls.keys() {
            self.put_acls(&mut wtxn, image, ns)?;
        }
        for (login, c) in &image.credentials {
            let v = serde_json::to_value(c.as_ref()).map_err(store_err)?;
            self.security.put(&mut wtxn, &format!("{CREDENTIAL_KEY}{login}"), &v).map_err(store_err)?;
        }
        for (name, t) in &image.topics {
            self.topics.put(&mut wtxn, name, t).map_err(store_err)?;
        }
        for ((id, p), segments) in &image.remote {
            self.remote.put(&mut wtxn, &remote_key(id, *p), segments.as_ref()).map_err(store_err)?;
        }
        let put = |wtxn: &mut heed::RwTxn<'_>, k: &str, v: serde_json::Value| self.meta.put(wtxn, k, &v);
        put(&mut wtxn, "cluster_id", image.cluster_id.clone().into()).map_err(store_err)?;
        put(&mut wtxn, "next_producer_id", image.next_producer_id.into()).map_err(store_err)?;
        put(&mut wtxn, "applied_index", image.applied_index.into()).map_err(store_err)?;
        self.put_brokers(&mut wtxn, image)?;
        for (k, v) in extras {
            self.meta.put(&mut wtxn, k, v).map_err(store_err)?;
        }
        wtxn.commit().map_err(store_err)
    }

    /// A key of the `meta` database written through `extras`.
    pub fn extra(&self, key: &str) -> Result<Option<serde_json::Value>, MetaError> {
        let rtxn = self.env.read_txn().map_err(store_err)?;
        self.meta.get(&rtxn, key).map_err(store_err)
    }
}
