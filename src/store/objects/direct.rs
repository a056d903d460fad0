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
//! under 4 KiB through the page cache. A part whose bytes already sit at
//! aligned addresses where they fall on block boundaries of the file is
//! written from where it is instead: a raw chunk placed [`PAYLOAD_PHASE`]
//! bytes past an aligned address (as `POST /api/chunks` places the parts
//! it reads) costs a copy of its first block and its tail, not of all of
//! it. Durability does not change: neither
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

/// Where a raw chunk's first byte should sit in memory, modulo [`ALIGN`],
/// for [`write_direct`] to write all its whole blocks but the first from
/// there: just after the object's header, which comes first in the file.
pub const PAYLOAD_PHASE: usize = crate::store::object::HEADER_LEN % ALIGN;

/// Pads `buf` so that the chunk appended next starts at [`PAYLOAD_PHASE`]
/// and is written from there ([`crate::store::buffer::Buffer::pad_to`]:
/// only from the room beyond `reserved` bytes of content).
pub fn start_chunk(buf: &mut crate::store::buffer::Buffer, reserved: usize) {
    buf.pad_to(PAYLOAD_PHASE, ALIGN, reserved);
}

/// Writes `parts` at the start of `f`, opened with `O_DIRECT` and no other
/// status flag: [`write_direct_at`] at byte 0. Durability is unchanged:
/// nothing is on stable storage before the barrier (`syncfs`) or, under
/// `always`, the object's fsync. Returns how many bytes were copied.
///
/// # Errors
/// The writes' errors; `EINVAL` when the filesystem refuses direct I/O.
pub(super) fn write_direct(f: &File, parts: &[&[u8]]) -> io::Result<usize> {
    write_direct_at(f, parts, 0)
}

/// The most pieces one write hands the kernel: under `IOV_MAX` (1,024 on
/// Linux), with room for the two a piece written in place adds.
const MAX_PIECES: usize = 1000;

/// Writes `parts` at byte `base` (a multiple of [`ALIGN`]) of `f`, opened
/// with `O_DIRECT` and no other status flag, in as few `pwritev` calls as
/// it can. The bytes that must be copied to be aligned (an object's header
/// with its payload's first block, the payload's last block with a pack
/// record's padding, a part not placed as [`PAYLOAD_PHASE`] asks) fill
/// successive aligned stretches of one pooled buffer; the whole blocks a
/// part holds at aligned addresses (where they fall on the file's block
/// boundaries) are written from where they are; one call takes them all in
/// file order, up to [`WINDOW`] bytes copied or [`MAX_PIECES`] pieces. The
/// device gets one request of many blocks, which it serves side by side,
/// where a write per object or part would wait for each in turn. When the
/// total is not whole blocks (a loose object), the tail of under 4 KiB goes
/// through the page cache once `O_DIRECT` is cleared on the descriptor;
/// else (a batch of pack records) `O_DIRECT` stays set. Returns how many
/// bytes were copied.
///
/// # Errors
/// The writes' errors (`EINVAL` when the filesystem refuses direct I/O);
/// `InvalidInput` when `base` is not on a block boundary.
pub(super) fn write_direct_at(f: &File, parts: &[&[u8]], base: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    if base % ALIGN as u64 != 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let cap = total.min(WINDOW).next_multiple_of(ALIGN);
    let mut buf = crate::store::buffer::take_to_overwrite(cap + ALIGN);
    let start = buf.as_ptr().align_offset(ALIGN);
    let (mut part, mut off, mut at, mut copied) = (0, 0, base, 0);
    while part < parts.len() {
        // One write: `free` is what the buffer has left (whole blocks), its
        // first `open` bytes the stretch being filled (closed on a block
        // boundary, so there is always room for the bytes up to the next).
        let mut free: &mut [u8] = &mut buf[start..start + cap];
        let mut open = 0;
        let mut pieces: Vec<io::IoSlice<'_>> = Vec::new();
        while part < parts.len() {
            if open % ALIGN == 0 && pieces.len() >= MAX_PIECES {
                break;
            }
            let rest = &parts[part][off..];
            if rest.is_empty() {
                (part, off) = (part + 1, 0);
                continue;
            }
            let lead = (ALIGN - open % ALIGN) % ALIGN;
            if rest.len() >= lead + ALIGN && rest[lead..].as_ptr().addr() % ALIGN == 0 {
                // The bytes up to the file's next block boundary close the
                // stretch; the whole blocks after them go from where they are.
                free[open..open + lead].copy_from_slice(&rest[..lead]);
                open += lead;
                copied += lead;
                if open > 0 {
                    let (done, left) = std::mem::take(&mut free).split_at_mut(open);
                    pieces.push(io::IoSlice::new(done));
                    (free, open) = (left, 0);
                }
                let whole = (rest.len() - lead) / ALIGN * ALIGN;
                pieces.push(io::IoSlice::new(&rest[lead..lead + whole]));
                off += lead + whole;
                continue;
            }
            let room = free.len() - open;
            if room == 0 {
                break; // the buffer is full: `open` is whole blocks
            }
            let n = rest.len().min(room);
            free[open..open + n].copy_from_slice(&rest[..n]);
            (open, off, copied) = (open + n, off + n, copied + n);
        }
        // Only the last stretch of the last write can end inside a block.
        let whole = open / ALIGN * ALIGN;
        let (blocks, tail) = free[..open].split_at(whole);
        if !blocks.is_empty() {
            pieces.push(io::IoSlice::new(blocks));
        }
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        pwritev_all(f, &mut pieces, at)?;
        at += len as u64;
        if !tail.is_empty() {
            rustix::fs::fcntl_setfl(f, rustix::fs::OFlags::empty())?;
            f.write_all_at(tail, at)?;
        }
    }
    Ok(copied)
}

/// Writes every byte of `slices` at `at` by positioned vectored writes.
///
/// # Errors
/// The writes' errors; `WriteZero` when the kernel takes nothing.
pub(super) fn pwritev_all(file: &File, mut slices: &mut [io::IoSlice<'_>], mut at: u64) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match rustix::io::pwritev(file, slices, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                at += n as u64;
                io::IoSlice::advance_slices(&mut slices, n);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::fs::OpenOptionsExt;

    use super::super::tests::takes_direct;
    use super::*;
    use crate::store::object::HEADER_LEN;

    /// A new file in `dir` opened with `O_DIRECT` (which the caller has
    /// checked the filesystem takes).
    fn direct_file(dir: &std::path::Path, name: &str) -> File {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(dir.join(name))
            .unwrap()
    }

    /// Where in `mem` each part of `(length, placed, shift)` goes: placed,
    /// at the phase of its place in the file (its whole blocks then written
    /// in place), else `shift` bytes past an aligned address (copied); and
    /// how many bytes are written in place.
    fn laid_out(parts: &[(usize, bool, usize)], mem: &[u8]) -> (Vec<std::ops::Range<usize>>, usize) {
        let addr = mem.as_ptr().addr();
        let (mut starts, mut at, mut file, mut in_place) = (Vec::new(), 0usize, 0usize, 0usize);
        for &(len, placed, shift) in parts {
            let phase = if placed { file % ALIGN } else { shift };
            let start = at + (phase + ALIGN - (addr + at) % ALIGN) % ALIGN;
            let lead = (ALIGN - file % ALIGN) % ALIGN;
            if (addr + start) % ALIGN == file % ALIGN && len >= lead + ALIGN {
                in_place += (len - lead) / ALIGN * ALIGN;
            }
            starts.push(start..start + len);
            (at, file) = (start + len, file + len);
        }
        (starts, in_place)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// [`write_direct_at`] (and [`write_direct`], at byte 0): parts of
        /// any lengths, each placed in memory at the phase of its place in
        /// the file (whole blocks written in place) or anywhere (copied),
        /// written at any block of the file, leave exactly their bytes
        /// there, copying only what is not placed for the file's blocks;
        /// with `pad`, made whole blocks by a last part of zeros (a batch of
        /// pack records), else ending inside a block (a loose object, its
        /// tail through the page cache).
        #[test]
        fn parts_in_or_out_of_place_make_the_same_file(
            parts in proptest::collection::vec((0usize..3 * ALIGN + 100, proptest::prelude::any::<bool>(), 0usize..ALIGN), 1..12),
            block in 0u64..4,
            pad in proptest::prelude::any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            if !takes_direct(dir.path()) {
                return Ok(());
            }
            let total: usize = parts.iter().map(|p| p.0).sum();
            let mut mem = vec![0u8; total + (parts.len() + 1) * 2 * ALIGN];
            for (i, x) in mem.iter_mut().enumerate() {
                *x = (i * 31 % 253) as u8;
            }
            let (starts, in_place) = laid_out(&parts, &mem);
            let zeros = vec![0u8; if pad { (ALIGN - total % ALIGN) % ALIGN } else { 0 }];
            let mut slices: Vec<&[u8]> = starts.iter().map(|r| &mem[r.clone()]).collect();
            slices.push(&zeros);
            let f = direct_file(dir.path(), "object");
            let base = block * ALIGN as u64;
            let copied = if base == 0 { write_direct(&f, &slices) } else { write_direct_at(&f, &slices, base) };
            proptest::prop_assert_eq!(copied.unwrap(), total + zeros.len() - in_place, "bytes copied");
            let on_disk = std::fs::read(dir.path().join("object")).unwrap();
            proptest::prop_assert_eq!(&on_disk[base as usize..], &slices.concat()[..]);
        }
    }

    /// [`write_direct_at`] of more pieces than one call takes and more
    /// bytes to copy than its buffer holds: 1,500 records (a header, a
    /// payload half of them placed after it, zeros to the next block) land
    /// in order, and a last part that ends inside a block is written too
    /// (its tail through the page cache). A start off a block boundary is
    /// refused.
    #[test]
    fn gathered_writes_of_many_records_land_in_order() {
        let dir = tempfile::tempdir().unwrap();
        if !takes_direct(dir.path()) {
            eprintln!("skipped: this filesystem does not take O_DIRECT");
            return;
        }
        let header = [0x5Au8; HEADER_LEN];
        let zeros = [0u8; ALIGN];
        let mut mem = vec![0u8; 32 << 20];
        for (i, x) in mem.iter_mut().enumerate() {
            *x = (i * 13 % 241) as u8;
        }
        let first = mem.as_ptr().align_offset(ALIGN) + PAYLOAD_PHASE;
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut at = first;
        for i in 0..1_500usize {
            let len = 100 + i * 7919 % 12_000;
            let start = if i % 2 == 0 { at } else { at + 1 };
            parts.push(&header);
            parts.push(&mem[start..start + len]);
            parts.push(&zeros[..(ALIGN - (HEADER_LEN + len) % ALIGN) % ALIGN]);
            at += (len + 2 * ALIGN) / ALIGN * ALIGN;
        }
        let f = direct_file(dir.path(), "pack");
        write_direct_at(&f, &parts, 0).unwrap();
        assert!(std::fs::read(dir.path().join("pack")).unwrap() == parts.concat(), "the records in order");
        let err = write_direct_at(&f, &[&header], 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        parts.push(&mem[first..first + 5_000]);
        let f = direct_file(dir.path(), "object");
        write_direct_at(&f, &parts, 0).unwrap();
        assert!(std::fs::read(dir.path().join("object")).unwrap() == parts.concat(), "and the tail");
    }

    /// A payload [`PAYLOAD_PHASE`] bytes past an aligned address, after
    /// its header, is copied only up to the file's first block boundary and
    /// for its tail; placed anywhere else it is copied whole. The file holds
    /// the header and the payload either way, at every length around the
    /// block and window sizes.
    #[test]
    fn a_payload_placed_after_its_header_is_written_from_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        if !takes_direct(dir.path()) {
            eprintln!("skipped: this filesystem does not take O_DIRECT");
            return;
        }
        let header = [0xA5u8; HEADER_LEN];
        let lead = ALIGN - PAYLOAD_PHASE;
        let mut mem = vec![0u8; (3 << 20) + 4 * ALIGN];
        let base = mem.as_ptr().align_offset(ALIGN) + PAYLOAD_PHASE;
        for (i, x) in mem.iter_mut().enumerate() {
            *x = (i * 7 % 251) as u8;
        }
        let lens = [0, 100, lead, lead + 1, lead + ALIGN, lead + ALIGN + 1, (1 << 20) + 33, (3 << 20) + 4100];
        for len in lens {
            for shift in [0, 1, 8, ALIGN - 1] {
                let payload = &mem[base + shift..base + shift + len];
                let f = direct_file(dir.path(), &format!("{len}-{shift}"));
                let copied = write_direct(&f, &[&header, payload]).unwrap();
                let in_place = shift == 0 && len >= lead + ALIGN;
                let expected =
                    if in_place { HEADER_LEN + lead + (len - lead) % ALIGN } else { HEADER_LEN + len };
                assert_eq!(copied, expected, "{len} bytes shifted by {shift}");
                let on_disk = std::fs::read(dir.path().join(format!("{len}-{shift}"))).unwrap();
                assert_eq!(on_disk.len(), HEADER_LEN + len, "{len} bytes shifted by {shift}");
                assert!(
                    on_disk[..HEADER_LEN] == header && on_disk[HEADER_LEN..] == *payload,
                    "{len}+{shift}"
                );
            }
        }
    }
}
