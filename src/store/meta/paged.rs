//! What the backends that read a range a page at a time (the in-memory
//! twin, PostgreSQL) share: the bounds of `scan` and `scan_rev`, and
//! [`Paged`], the iterator that fetches the next page after the last key.

use std::ops::Bound;

use super::{KeyValue, KvIter, prefix_end};
use crate::store::error::Result;

/// The keys of `MetaStore::scan`: under `prefix`, from `start` (at least
/// `prefix`) on.
pub(super) fn scan_bounds(prefix: &[u8], start: Option<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let from = start.unwrap_or(prefix).max(prefix);
    (Bound::Included(from.to_vec()), prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded))
}

/// The keys of `MetaStore::scan_rev`: under `prefix`, before `before`.
pub(super) fn scan_rev_bounds(prefix: &[u8], before: Option<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let hi = match (before, prefix_end(prefix)) {
        (Some(b), Some(end)) => Bound::Excluded(b.min(&end[..]).to_vec()),
        (Some(b), None) => Bound::Excluded(b.to_vec()),
        (None, end) => end.map_or(Bound::Unbounded, Bound::Excluded),
    };
    (Bound::Included(prefix.to_vec()), hi)
}

/// A scan that pages through a range, resuming after the last key it gave.
/// `fetch(lo, hi, rev)` reads up to `page` pairs within the bounds in the
/// scan's order; a shorter page is the last, and so is an error.
pub(super) struct Paged<F> {
    fetch: F,
    page: usize,
    /// Lower and upper bounds still to visit.
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    rev: bool,
    buf: std::vec::IntoIter<KeyValue>,
    done: bool,
}

impl<'a, F> Paged<F>
where
    F: FnMut(&Bound<Vec<u8>>, &Bound<Vec<u8>>, bool) -> Result<Vec<KeyValue>> + 'a,
{
    /// A scan between `bounds`, in key order or (`rev`) reversed.
    pub(super) fn boxed(
        bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        rev: bool,
        page: usize,
        fetch: F,
    ) -> KvIter<'a> {
        let (lo, hi) = bounds;
        Box::new(Paged { fetch, page, lo, hi, rev, buf: Vec::new().into_iter(), done: false })
    }
}

impl<F> Iterator for Paged<F>
where
    F: FnMut(&Bound<Vec<u8>>, &Bound<Vec<u8>>, bool) -> Result<Vec<KeyValue>>,
{
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(kv) = self.buf.next() {
            return Some(Ok(kv));
        }
        if self.done {
            return None;
        }
        let page = match (self.fetch)(&self.lo, &self.hi, self.rev) {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.done = page.len() < self.page;
        if let Some((last, _)) = page.last() {
            let resume = Bound::Excluded(last.to_vec());
            if self.rev {
                self.hi = resume;
            } else {
                self.lo = resume;
            }
        }
        self.buf = page.into_iter();
        self.buf.next().map(Ok)
    }
}
