//! Downloads that hold a delete across nodes. In one process the readers
//! map of [`super::read`] is the whole story; when several nodes share the
//! store ([`StoreOptions::shared`](super::StoreOptions)), a node reading a
//! file also keeps a *reader row* for it in the metadata,
//! `readers/` ‖ file id ‖ node id → the row's end (ms, little-endian), renewed
//! while the download runs. A delete on any node hides the file at once
//! and finishes (drops the file's references) only when no other node has
//! a live row for it: the node whose download ends leaves its row to run
//! out, and whichever node's GC pass comes next finishes the delete. A
//! thread renews the rows of every download in progress (a stalled client
//! keeps its hold), so a row runs out only after its download ended or its
//! node stopped.
//!
//! Order, so that no download slips between a delete and its check: a
//! reader writes its row *before* it reads the file's record (which it
//! does on every open when shared, never from the open-files cache); a
//! delete writes the deleting record *before* it looks for rows. Either
//! the delete sees the row, or the reader sees the deleting record.
//!
//! Clocks: a row's end is written on the store's clock, which on
//! PostgreSQL is the database's (`super::clock::DbClock`), so every node
//! reads it on the same clock.

use super::meta::{Batch, Cf};
use super::{FileId, Result, Store, lock};

const PREFIX: &[u8] = b"readers/";

fn row_key(file: &FileId, node: &[u8; 16]) -> Vec<u8> {
    [PREFIX, file.as_bytes().as_slice(), node].concat()
}

fn decode_end(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

impl Store {
    /// [`StoreOptions::reader_ttl`](super::StoreOptions): how long a row
    /// holds a delete without being renewed. A download renews its row when
    /// less than half of it is left, as it reads chunks.
    fn ttl_ms(&self) -> u64 {
        self.0.opts.reader_ttl.as_millis() as u64
    }

    /// On a shared store: makes sure this node's reader row for `id` lives
    /// at least half of its time to live more (a write only when it would
    /// not). A no-op on a store of its own.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn hold_across_nodes(&self, id: &FileId) -> Result<()> {
        if !self.0.opts.shared {
            return Ok(());
        }
        let now = self.now_ms();
        if lock(&self.0.reader_rows).get(id).is_some_and(|&end| end > now + self.ttl_ms() / 2) {
            return Ok(());
        }
        let end = now + self.ttl_ms();
        let mut b = Batch::default();
        b.put(Cf::Meta, &row_key(id, &self.0.node), &end.to_le_bytes());
        self.meta().write(b, false)?;
        let mut rows = lock(&self.0.reader_rows);
        rows.retain(|_, e| *e > now);
        rows.insert(*id, end);
        Ok(())
    }

    /// Renews this node's reader rows for every file a download reads now
    /// (a slow client's too, which reads no chunk for a while). A thread of
    /// a shared store calls it every third of the rows' time to live.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn renew_reader_rows(&self) -> Result<()> {
        let open: Vec<FileId> =
            lock(&self.0.readers).iter().filter(|(_, r)| r.n > 0).map(|(id, _)| *id).collect();
        if open.is_empty() {
            return Ok(());
        }
        let end = self.now_ms() + self.ttl_ms();
        let mut b = Batch::default();
        for id in &open {
            b.put(Cf::Meta, &row_key(id, &self.0.node), &end.to_le_bytes());
        }
        self.meta().write(b, false)?;
        let mut rows = lock(&self.0.reader_rows);
        for id in open {
            rows.insert(id, end);
        }
        Ok(())
    }

    /// Starts the thread that renews a shared store's reader rows; it ends
    /// soon after the last clone of the store is dropped.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(super) fn start_renewing_readers(&self) -> Result<()> {
        let store = std::sync::Arc::downgrade(&self.0);
        let every = (self.0.opts.reader_ttl / 3).max(std::time::Duration::from_millis(100));
        std::thread::Builder::new().name("depot-readers".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(inner) = store.upgrade() else { return };
                if let Err(e) = Store(inner).renew_reader_rows() {
                    tracing::warn!(error = %e, "renewing reader rows failed; retrying");
                }
            }
        })?;
        Ok(())
    }

    /// Whether another node has a live reader row for `id` (always `false`
    /// on a store of its own: [`Store::is_being_read`] is the whole story).
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn read_elsewhere(&self, id: &FileId) -> Result<bool> {
        if !self.0.opts.shared {
            return Ok(false);
        }
        let now = self.now_ms();
        let prefix = [PREFIX, id.as_bytes().as_slice()].concat();
        for kv in self.meta().scan(Cf::Meta, &prefix, None) {
            let (k, v) = kv?;
            if k.get(prefix.len()..) != Some(self.0.node.as_slice()) && decode_end(&v) > now {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Drops reader rows (any node's) that ran out at least a
    /// time to live ago. Returns how many went.
    ///
    /// # Errors
    /// Metadata backend errors.
    pub(super) fn sweep_reader_rows(&self) -> Result<u64> {
        if !self.0.opts.shared {
            return Ok(0);
        }
        let cutoff = self.now_ms().saturating_sub(self.ttl_ms());
        let mut b = Batch::default();
        for kv in self.meta().scan(Cf::Meta, PREFIX, None) {
            let (k, v) = kv?;
            if k.len() == PREFIX.len() + 32 && decode_end(&v) < cutoff {
                b.delete(Cf::Meta, &k);
            }
        }
        let n = b.len() as u64;
        if n > 0 {
            self.meta().write(b, false)?;
        }
        Ok(n)
    }
}
