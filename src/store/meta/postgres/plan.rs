//! What [`PgMeta`](super::PgMeta) writes: a [`Batch`] reduced to each key's
//! last write ([`Plan`]), and its commit in one transaction ([`commit`]).

use std::collections::BTreeMap;

use super::driver::{db, retryable};
use crate::store::error::Result;
use crate::store::meta::{Batch, Cf, Op, decode_counter};

/// Rows each counter's additions are spread over.
pub const SHARDS: i16 = 16;
/// Attempts at a batch the server aborted as a deadlock victim.
const WRITE_TRIES: u32 = 3;

/// What a [`Cf::Meta`] key ends up as after a batch.
#[derive(Debug, Clone, PartialEq)]
enum MetaWrite {
    /// A put (`Some`) or delete (`None`): replaces the value, drops shards.
    Set(Option<Vec<u8>>),
    /// Only additions: a delta for one shard.
    Add(i64),
}

/// A batch reduced to each key's last write: what [`PgMeta`](super::PgMeta) applies.
#[derive(Debug, Default, Clone)]
pub(super) struct Plan {
    /// Per family (but [`Cf::Meta`]): key → value, or `None` to delete.
    kv: BTreeMap<usize, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    meta: BTreeMap<Vec<u8>, MetaWrite>,
}

impl Plan {
    pub(super) fn of(batch: Batch) -> Self {
        let mut p = Plan::default();
        for op in batch.into_ops() {
            match op {
                Op::Put { cf: Cf::Meta, key, value } => p.set_meta(key.into(), Some(value.into())),
                Op::Delete { cf: Cf::Meta, key } => p.set_meta(key.into(), None),
                Op::Put { cf, key, value } => {
                    p.kv.entry(cf.index()).or_default().insert(key.into(), Some(value.into()));
                }
                Op::Delete { cf, key } => {
                    p.kv.entry(cf.index()).or_default().insert(key.into(), None);
                }
                Op::SetCounter { counter, value } => {
                    p.set_meta(counter.key().to_vec(), Some(value.to_le_bytes().to_vec()))
                }
                Op::Add { key, delta } => {
                    let w = p.meta.entry(key.into()).or_insert(MetaWrite::Add(0));
                    *w = match w {
                        MetaWrite::Add(d) => MetaWrite::Add(d.wrapping_add(delta)),
                        // After a put or delete, the sum is known: fold it in.
                        MetaWrite::Set(base) => {
                            let v = base.as_deref().map_or(0, decode_counter).wrapping_add(delta);
                            MetaWrite::Set(Some(v.to_le_bytes().to_vec()))
                        }
                    };
                }
            }
        }
        p
    }

    fn set_meta(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.meta.insert(key, MetaWrite::Set(value));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.meta.is_empty()
    }

    /// Applies the plan inside the transaction `tx`.
    async fn apply(self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
        let mut meta_kv = BTreeMap::new();
        let (mut reset, mut names, mut shards, mut deltas) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, w) in self.meta {
            match w {
                MetaWrite::Set(v) => {
                    reset.push(k.clone());
                    meta_kv.insert(k, v);
                }
                MetaWrite::Add(d) => {
                    names.push(k);
                    shards.push(rand::random_range(0..SHARDS));
                    deltas.push(d);
                }
            }
        }
        if !reset.is_empty() {
            tx.execute("DELETE FROM counters WHERE name = ANY($1::bytea[])", &[&reset]).await?;
        }
        if !names.is_empty() {
            tx.execute(
                "INSERT INTO counters (name, shard, v) \
                 SELECT * FROM unnest($1::bytea[], $2::int2[], $3::int8[]) \
                 ON CONFLICT (name, shard) DO UPDATE SET v = counters.v + EXCLUDED.v",
                &[&names, &shards, &deltas],
            )
            .await?;
        }
        let families = self.kv.into_iter().map(|(i, t)| (Cf::ALL[i], t));
        for (cf, writes) in families.chain(std::iter::once((Cf::Meta, meta_kv))) {
            let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
            for (k, v) in writes {
                match v {
                    Some(v) => {
                        keys.push(k);
                        values.push(v);
                    }
                    None => gone.push(k),
                }
            }
            let t = cf.name();
            if !gone.is_empty() {
                let sql = format!("DELETE FROM {t} WHERE k = ANY($1::bytea[])");
                tx.execute(&sql, &[&gone]).await?;
            }
            if !keys.is_empty() {
                let sql = format!(
                    "INSERT INTO {t} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                );
                tx.execute(&sql, &[&keys, &values]).await?;
            }
        }
        Ok(())
    }
}

/// Commits `plan` in one transaction on `client`: tried again whole when
/// the server aborts it as a deadlock victim or serialization failure.
pub(super) async fn commit(client: &mut deadpool_postgres::Object, plan: Plan, durable: bool) -> Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = async {
            let tx = client.transaction().await?;
            if !durable {
                tx.batch_execute("SET LOCAL synchronous_commit = off").await?;
            }
            plan.clone().apply(&tx).await?;
            tx.commit().await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            // Keys are written in sorted order, so writers rarely
            // deadlock; when the server says one did (or that a
            // serialization failed), the whole batch is tried again.
            Err(e) if tries < WRITE_TRIES && retryable(&e) => continue,
            Err(e) => return Err(db(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_keeps_each_keys_last_write_and_folds_adds() {
        let mut b = Batch::default();
        b.put(Cf::Files, b"a", b"1");
        b.delete(Cf::Files, b"a");
        b.put(Cf::Files, b"b", b"1");
        b.put(Cf::Files, b"b", b"2");
        b.add_at(b"t", 2);
        b.add_at(b"t", 3);
        b.put(Cf::Meta, b"s", &7i64.to_le_bytes());
        b.add_at(b"s", 1);
        b.delete(Cf::Meta, b"d");
        b.add_at(b"d", -4);
        b.add_at(b"z", 5);
        b.add_at(b"z", -5);
        let p = Plan::of(b);
        let files = &p.kv[&Cf::Files.index()];
        assert_eq!(files[&b"a"[..]], None);
        assert_eq!(files[&b"b"[..]], Some(b"2".to_vec()));
        assert_eq!(p.meta[&b"t"[..]], MetaWrite::Add(5));
        assert_eq!(p.meta[&b"s"[..]], MetaWrite::Set(Some(8i64.to_le_bytes().to_vec())));
        assert_eq!(p.meta[&b"d"[..]], MetaWrite::Set(Some((-4i64).to_le_bytes().to_vec())));
        // A zero sum is still written: RocksDB's merge leaves an 8-byte 0.
        assert_eq!(p.meta[&b"z"[..]], MetaWrite::Add(0));
    }
}
