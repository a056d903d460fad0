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
//! "Writes around the page cache"). depot assumes a chunk store's new
//! objects are seldom read back soon, so the page cache buys little for
//! them; `storage.direct_writes = false` where they are.
//!
//! `O_DIRECT` asks for the buffer's address, the length and the file offset
//! to be multiples of the logical block size: [`write_direct`] copies the
//! object's parts (header and payload), 1 MiB at a time, into a pooled
//! buffer at an [`ALIGN`]-aligned address, writes the whole blocks
//! directly, then clears
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

/// The most bytes [`write_direct`] copies before a write: a multiple of
/// [`ALIGN`], and with its alignment slack within the buffer pool's chunk
/// class, so every object, however long (a seed piece may be 64 MiB),
/// goes through one reused buffer.
const WINDOW: usize = 1 << 20;

/// Writes `parts` at the start of `f`, opened with `O_DIRECT` and no other
/// status flag: the bytes are copied, [`WINDOW`] at a time, into a pooled
/// buffer at an aligned address, whole 4 KiB blocks go straight to the
/// device, and the tail (under 4 KiB) through the page cache once
/// `O_DIRECT` is cleared on the descriptor. Durability is unchanged:
/// nothing is on stable storage before the barrier (`syncfs`) or, under
/// `always`, the object's fsync.
///
/// # Errors
/// The writes' errors; `EINVAL` when the filesystem refuses direct I/O.
pub(super) fn write_direct(f: &File, parts: &[&[u8]]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let cap = total.min(WINDOW);
    let mut buf = crate::store::buffer::take_to_overwrite(cap + ALIGN);
    let start = buf.as_ptr().align_offset(ALIGN);
    let window = &mut buf[start..start + cap];
    let (mut filled, mut at) = (0, 0u64);
    for &part in parts {
        let mut rest = part;
        while !rest.is_empty() {
            let n = rest.len().min(cap - filled);
            window[filled..filled + n].copy_from_slice(&rest[..n]);
            (filled, rest) = (filled + n, &rest[n..]);
            if filled == WINDOW {
                f.write_all_at(window, at)?;
                (filled, at) = (0, at + WINDOW as u64);
            }
        }
    }
    let whole = filled / ALIGN * ALIGN;
    if whole > 0 {
        f.write_all_at(&window[..whole], at)?;
    }
    if whole < filled {
        rustix::fs::fcntl_setfl(f, rustix::fs::OFlags::empty())?;
        f.write_all_at(&window[whole..filled], at + whole as u64)?;
    }
    Ok(())
}
