//! Writing objects with `O_DIRECT`: from the server's buffer to the disk,
//! without a copy in the page cache.
//!
//! A buffered write copies every byte into page-cache pages the kernel must
//! find first. On the development VM, pages taken from memory that had
//! been free for a while cost over 20 times what recently freed ones do
//! (likely because the VM hands free memory back to its host, which must
//! fault it in again): `dd` of 1 GiB into new files took 6.4–6.7 s of
//! system CPU buffered, 0.29 s buffered into pages a deleted file had just
//! freed, and 0.09–0.12 s with `O_DIRECT` (docs/PERFORMANCE.md, U1,
//! "Writes around the page cache"). A chunk store's new objects are seldom
//! read back soon, so the page cache buys little for them.
//!
//! `O_DIRECT` asks for the buffer's address, the length and the file offset
//! to be multiples of the logical block size: [`write_direct`] gathers the
//! object's parts (header and payload) into a pooled buffer at an [`ALIGN`]
//! aligned address, writes the whole blocks directly, then clears
//! `O_DIRECT` on the descriptor (`fcntl(F_SETFL)`) and writes the tail of
//! under 4 KiB through the page cache. Durability does not change: neither
//! part is on stable storage before the barrier (`syncfs`) or, under
//! `fsync = "always"`, the object's own fsync, which also flush the
//! device's write cache.

use std::fs::File;
use std::io;

/// The alignment of `O_DIRECT` writes: of the buffer's address, the
/// length and the file offset. 4 KiB is a multiple of every common
/// logical block size (512 B and 4 KiB).
pub const ALIGN: usize = 4096;

/// Writes `parts` at the start of `f`, opened with `O_DIRECT`: the bytes
/// are gathered into a pooled buffer at an aligned address, the whole
/// 4 KiB blocks go straight to the device, and the tail (under 4 KiB)
/// through the page cache once `O_DIRECT` is cleared on the descriptor.
/// Durability is unchanged: nothing is on stable storage before the
/// barrier (`syncfs`) or, under `always`, the object's fsync.
///
/// # Errors
/// The writes' errors; `EINVAL` when the filesystem refuses direct I/O.
pub(super) fn write_direct(f: &File, parts: &[&[u8]]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut buf = crate::store::buffer::take_to_overwrite(total + ALIGN);
    let start = buf.as_ptr().align_offset(ALIGN);
    let mut at = start;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    let whole = total / ALIGN * ALIGN;
    if whole > 0 {
        f.write_all_at(&buf[start..start + whole], 0)?;
    }
    if whole < total {
        let flags = rustix::fs::fcntl_getfl(f)?;
        rustix::fs::fcntl_setfl(f, flags - rustix::fs::OFlags::DIRECT)?;
        f.write_all_at(&buf[start + whole..start + total], whole as u64)?;
    }
    Ok(())
}
