//! tus concatenation in store terms: a final upload made of complete
//! partial ones, end to end, without copying bytes. The partials' chunk
//! lists are laid end to end and re-cut (through a [`ChunkSink`]) only near
//! each seam, until the cut points fall back in step with the whole
//! content's.

use super::append::AppendOutcome;
use super::ingest::ChunkSink;
use super::name::{Tenant, View};
use super::session::{Concat, StreamState};
use super::{Entry, Error, FileName, Result, Store, UploadId};

impl Store {
    /// Creates a final upload from complete partial ones, end to end, without
    /// copying bytes: the result is the partials' chunk lists, re-cut only
    /// near each seam until the cut points fall back in step, so that the
    /// final file's chunks are exactly those of the whole content.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`] for a part that is unknown or `tenant`'s
    /// not; [`Error::InvalidInput`] when a part is not partial or not
    /// complete; [`Error::TypeRejected`]; I/O.
    pub fn concat_streams(
        &self,
        tenant: &Tenant,
        parts: &[UploadId],
        name: &FileName,
        declared_type: Option<&str>,
        metadata: &str,
    ) -> Result<AppendOutcome> {
        if parts.is_empty() {
            return Err(Error::InvalidInput("a final upload needs at least one partial upload".into()));
        }
        let mut lists = Vec::with_capacity(parts.len());
        for p in parts {
            // Another tenant's part is answered as an unknown one.
            let rec = self.stream_upload_in(&View::Tenant(tenant.clone()), p).map_err(|e| match e {
                Error::UploadNotFound(_) => e,
                e => Error::InvalidInput(format!("part {p}: {e}")),
            })?;
            let st = rec
                .stream
                .as_ref()
                .ok_or_else(|| Error::InvalidInput(format!("part {p} is not a stream")))?;
            if st.concat != Concat::Partial {
                return Err(Error::InvalidInput(format!("upload {p} is not a partial upload")));
            }
            if !st.complete {
                return Err(Error::InvalidInput(format!("partial upload {p} is not complete")));
            }
            lists.push(self.stream_chunks(p)?);
        }
        // Re-cutting the seams keeps the bytes: check the size before storing.
        let length: u64 = lists.iter().flatten().map(|e| u64::from(e.len)).sum();
        if length > self.options().max_file_size {
            return Err(Error::TooLarge { what: "upload", limit: self.options().max_file_size, got: length });
        }
        let lease = self.default_lease();
        let chunks = self.concat_manifests(&lists, lease)?;
        let id = UploadId::random();
        let mut state = StreamState::new(
            Some(length),
            length,
            chunks.len() as u32,
            metadata.to_string(),
            Concat::Final { parts: parts.to_vec() },
            lease,
        );
        state.complete = true;
        let mut rec =
            self.stream_record(tenant.clone(), id, name.clone(), declared_type.map(str::to_string), state);
        let mut held = self.session_lock(&id)?;
        self.complete_into_file(&mut held, &mut rec, chunks, 0)
    }

    /// The chunk list of partial uploads laid end to end, as the server's
    /// chunker would cut the whole content. Inside a part, a chunk is reused
    /// as is when the part's own chunker decided its end with a full window
    /// (at least `max` bytes ahead) and the whole-content chunker starts a
    /// chunk where it starts; elsewhere (near the seams) bytes are re-read
    /// and re-cut until a cut lands on one of the part's chunk boundaries.
    fn concat_manifests(&self, parts: &[Vec<Entry>], lease: u64) -> Result<Vec<Entry>> {
        let max = u64::from(self.chunker().params().max);
        let mut sink = ChunkSink::new(self);
        for part in parts {
            let len: u64 = part.iter().map(|e| u64::from(e.len)).sum();
            let starts: Vec<u64> = part
                .iter()
                .scan(0u64, |at, e| {
                    let s = *at;
                    *at += u64::from(e.len);
                    Some(s)
                })
                .collect();
            let mut i = 0;
            // Re-cut from the seam until the cuts fall back in step.
            while !sink.tail().is_empty() && i < part.len() {
                let data = self.read_chunk(&part[i].id, part[i].len)?;
                let cut_any = sink.push(&data, lease)? > 0;
                i += 1;
                let end = starts.get(i).copied().unwrap_or(len);
                let buffered = sink.tail().len() as u64;
                if cut_any && buffered <= end {
                    if let Ok(k) = starts[..i].binary_search(&(end - buffered)) {
                        // In step at chunk k: what is buffered is chunks k..i.
                        sink.clear_tail();
                        i = k;
                    }
                }
            }
            if sink.tail().is_empty() {
                while i < part.len() && starts[i] + max <= len {
                    sink.push_known(part[i], lease)?;
                    i += 1;
                }
            }
            for e in &part[i..] {
                let data = self.read_chunk(&e.id, e.len)?;
                sink.push(&data, lease)?;
            }
        }
        sink.finish(lease)?;
        Ok(sink.take_entries())
    }
}
