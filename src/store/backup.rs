//! A backup of a running store of one node (RocksDB and the object
//! directory): `<data_dir>/backups/<name>/`, a data dir that opens as the
//! store did at one instant, as after a crash there (README, "Backing up
//! one node"; DESIGN.md, "Operations").
//!
//! What makes it consistent: the metadata is RocksDB's checkpoint, one
//! point in time. Everything else the metadata names is written before the
//! row that names it and deleted only after that row is gone, so a copy
//! taken after the checkpoint holds it, as long as nothing deletes
//! meanwhile: GC (and a put's deletion of a loose object it moved into a
//! pack) waits while a backup runs (the `deletes` hold, `store/holds.rs`).
//! Objects and packs never change once written (a pack takes appends, and a
//! backup seals the packs it links first), so they are hard-linked: a
//! backup costs no space until the store deletes what it holds. Where
//! `backups/` is on another file system (a disk mounted there), they are
//! copied instead. A tus upload's tail file is rewritten in place, so the
//! upload directories are copied, under the `tails` hold, in the same
//! instant as the checkpoint.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLockReadGuard;
use std::time::{Duration, Instant};

use super::engine::Store;
use super::error::{Error, Result};
use super::meta_backend::MetaBackend;
use super::objects::ObjectsKind;

/// How long a backup waits for the puts that hold a sealed pack.
const PINNED_WAIT: Duration = Duration::from_secs(30);

/// What [`Store::backup`] made (the API's `BackupInfo`).
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The backup's directory name under `<data_dir>/backups/`.
    pub name: String,
    /// Its path (absolute where the data dir's can be found).
    pub path: PathBuf,
    /// Chunk objects and pack files hard-linked (or copied) into it.
    pub objects: u64,
    /// Their bytes (shared with the store until it deletes them, those
    /// linked).
    pub object_bytes: u64,
    /// Of `object_bytes`, those copied, not linked: `backups/` is on
    /// another file system than `objects/`. The backup's own bytes.
    pub copied_bytes: u64,
    /// Unfinished uploads whose tail files were copied.
    pub uploads: u64,
    /// Wall time of the backup, in seconds.
    pub seconds: f64,
}

impl Store {
    /// Held while objects, packs or upload directories are deleted: a
    /// backup waits for it, and it for a backup.
    pub(super) fn hold_deletes(&self) -> RwLockReadGuard<'_, ()> {
        self.0.holds.deletes()
    }

    /// As [`Store::hold_deletes`], but `None` at once while a backup runs
    /// (or waits to): for deletions that may be left to the orphan sweep.
    pub(super) fn try_hold_deletes(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.0.holds.try_deletes()
    }

    /// Held, after the session's lock, from an upload record's change until
    /// the tail files it no longer names are removed.
    pub(super) fn hold_tails(&self) -> RwLockReadGuard<'_, ()> {
        self.0.holds.tails()
    }

    /// Makes a backup of this store in `<data_dir>/backups/<name>` (`name`
    /// the UTC time, `2026-12-07T184000.123Z`): a data dir that a server
    /// opens as this store at the backup's instant, recovered as after a
    /// crash (uploads resume from what they had acknowledged). Uploads,
    /// downloads and commits go on meanwhile; GC waits. Copy it elsewhere
    /// (it holds the admin token and the signing keys) and delete it:
    /// until then it keeps every object it links.
    ///
    /// # Errors
    /// [`Error::Conflict`] on PostgreSQL, S3 or a shared store (each
    /// backed up with its own tools, docs/DEPLOY.md);
    /// [`Error::Unavailable`] when a put held a pack for 30 s; I/O and
    /// backend failures (the partial directory is removed; one a crash
    /// left is removed by the next backup).
    pub fn backup(&self) -> Result<BackupReport> {
        let opts = self.options();
        if opts.shared || opts.objects != ObjectsKind::Fs || opts.meta != MetaBackend::RocksDb {
            return Err(Error::Conflict(
                "a store on PostgreSQL or S3 is backed up with those engines' own tools (docs/DEPLOY.md)"
                    .into(),
            ));
        }
        let started = Instant::now();
        // One backup at a time: whatever partial directory is there now
        // was left by a process that stopped midway.
        let _deletes = self.0.holds.exclude_deletes();
        let backups = self.data_dir().join("backups");
        fs::create_dir_all(&backups)?;
        remove_partials(&backups)?;
        let stamp = crate::wire::rfc3339(self.now_ms()).replace(':', "");
        let mut name = stamp.clone();
        let partial = loop {
            let partial = backups.join(format!(".partial-{name}"));
            if !backups.join(&name).exists() {
                match fs::create_dir(&partial) {
                    Ok(()) => break partial,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // Two in one millisecond (or on a clock that stands still).
            let n = name.rsplit_once('-').and_then(|(_, n)| n.parse::<u32>().ok()).unwrap_or(0);
            name = format!("{stamp}-{}", n + 1);
        };
        match self.backup_into(&partial) {
            Ok((linked, uploads)) => {
                let path = backups.join(&name);
                fs::rename(&partial, &path)?;
                fs::File::open(&backups)?.sync_all()?;
                let path = fs::canonicalize(&path).unwrap_or(path);
                Ok(BackupReport {
                    name,
                    path,
                    objects: linked.files,
                    object_bytes: linked.bytes,
                    copied_bytes: linked.copied_bytes,
                    uploads,
                    seconds: started.elapsed().as_secs_f64(),
                })
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&partial);
                Err(e)
            }
        }
    }

    /// The backup's steps, into the new directory `dest`: (objects linked
    /// or copied, uploads copied).
    /// Called with deletions held off (`exclude_deletes`).
    fn backup_into(&self, dest: &Path) -> Result<(Linked, u64)> {
        let uploads = {
            let _tails = self.0.holds.exclude_tails();
            self.meta().checkpoint(&dest.join("meta"))?;
            copy_uploads(&self.data_dir().join("uploads"), &dest.join("uploads"))?
        };
        let objects = self.data_dir().join("objects");
        let sealed = self.objects().packs().map(|p| {
            let below = p.seal();
            (p, below)
        });
        if let Some((packs, below)) = sealed {
            let until = Instant::now() + PINNED_WAIT;
            while packs.pinned_below(below) {
                if Instant::now() > until {
                    return Err(Error::Unavailable(
                        "a write held a pack for 30 s; try the backup again".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let below = sealed.map_or(u32::MAX, |(_, b)| b);
        let mut linked = Linked::default();
        link_objects(&objects, &dest.join("objects"), below, &mut linked)?;
        let token = self.data_dir().join("admin.token");
        if token.is_file() {
            fs::copy(&token, dest.join("admin.token"))?;
        }
        rustix::fs::syncfs(fs::File::open(dest)?).map_err(io::Error::from)?;
        Ok((linked, uploads))
    }
}

/// What [`link_objects`] put into a backup.
#[derive(Debug, Default)]
struct Linked {
    /// Files linked or copied.
    files: u64,
    /// Their bytes.
    bytes: u64,
    /// Of `bytes`, those copied (another file system).
    copied_bytes: u64,
}

/// Removes the `.partial-*` directories under `backups`.
fn remove_partials(backups: &Path) -> io::Result<()> {
    for e in fs::read_dir(backups)? {
        let e = e?;
        if e.file_name().to_str().is_some_and(|n| n.starts_with(".partial-")) {
            fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// Copies the upload directories under `from` (absent: none) into `to`,
/// those with files only (a finished upload's may be left empty): how many.
fn copy_uploads(from: &Path, to: &Path) -> io::Result<u64> {
    fs::create_dir_all(to)?;
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut copied = 0;
    for e in entries {
        let e = e?;
        if !e.file_type()?.is_dir() {
            continue;
        }
        let into = to.join(e.file_name());
        let mut files = 0;
        for f in fs::read_dir(e.path())? {
            let f = f?;
            if f.file_type()?.is_file() {
                if files == 0 {
                    fs::create_dir(&into)?;
                }
                fs::copy(f.path(), into.join(f.file_name()))?;
                files += 1;
            }
        }
        copied += u64::from(files > 0);
    }
    Ok(copied)
}

/// Hard-links the object directory `from` into `to`: loose objects, and
/// the packs numbered below `sealed`; not `tmp/` (writes not yet named)
/// or `quarantine/` (damaged objects moved aside). Adds to `linked` the
/// files and their bytes.
fn link_objects(from: &Path, to: &Path, sealed: u32, linked: &mut Linked) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        let Some(text) = name.to_str() else { continue };
        let ty = e.file_type()?;
        if ty.is_dir() {
            match text {
                "tmp" | "quarantine" => {}
                "packs" => link_packs(&e.path(), &to.join(&name), sealed, linked)?,
                _ => link_objects(&e.path(), &to.join(&name), sealed, linked)?,
            }
        } else if ty.is_file() {
            link(&e.path(), &to.join(&name), linked)?;
        }
    }
    Ok(())
}

fn link_packs(from: &Path, to: &Path, sealed: u32, linked: &mut Linked) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let n = e.file_name().to_str().and_then(super::objects::packs::parse_name);
        if n.is_some_and(|n| n < sealed) {
            link(&e.path(), &to.join(e.file_name()), linked)?;
        }
    }
    Ok(())
}

/// Links one file, or copies it where `to` is on another file system
/// (`EXDEV`; `fs::copy` lets the kernel copy, `copy_file_range`). One gone
/// since its directory was read is skipped: no file a row of the
/// checkpoint names is deleted while a backup runs (the `deletes` hold,
/// `store/holds.rs`). A copy is made durable by the backup's `syncfs` of
/// its own file system.
fn link(from: &Path, to: &Path, linked: &mut Linked) -> io::Result<()> {
    let copied = match fs::hard_link(from, to) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => match fs::copy(from, to) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let bytes = match copied {
        Some(n) => {
            linked.copied_bytes += n;
            n
        }
        None => fs::metadata(to)?.len(),
    };
    linked.files += 1;
    linked.bytes += bytes;
    Ok(())
}
