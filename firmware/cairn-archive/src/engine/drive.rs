//! An open drive of either kind, carrying what differs between tape and optical: reading and
//! writing the label, where the next bundle goes, writing and verifying a bundle, reading a
//! volume's bundles for a scan, restoring from one bundle, ejecting. The engine above never
//! asks which kind of medium it has.

use super::unpack::{restore_from_dir, restore_from_tar};
use crate::bundle::{Member, ReadBack, SmallFiles, StoreObjects};
use crate::label::Label;
use crate::optical::{self, DiscLabel, OpticalWriteError};
use crate::tape::{self, TapeLabel};
use crate::{ArchiveError, ErrorKind, MediumKind, RECORD_SIZE};
use cairn_hal::optical::OpticalDrive;
use cairn_hal::tape::TapeDrive;
use cairn_store::{DataDir, Store};
use std::collections::HashSet;

/// An open drive of either kind.
pub enum Drive {
    /// A tape drive.
    Tape(Box<dyn TapeDrive>),
    /// An optical drive.
    Optical(Box<dyn OpticalDrive>),
}

/// Opens a target's drive (again after a failure).
pub type Opener = Box<dyn FnMut() -> Result<Drive, ArchiveError> + Send>;

/// What the drive holds, as its label read says.
pub(super) enum Seen {
    /// Nothing.
    None,
    /// A blank medium (write-protected or not).
    Blank { protected: bool },
    /// A cairn volume: its label, capacity (optical) and whether it is write-protected.
    Cairn(Label, Option<u64>, bool),
    /// Data not written by cairn.
    Foreign,
    /// A tape whose first read at its beginning failed (the error).
    Unreadable(String),
}

/// What a scan read from the medium in a drive.
pub(super) enum Scanned {
    /// Nothing to scan; the words say why.
    Nothing(&'static str),
    /// A cairn volume: its label, capacity (optical), and every bundle read back with its
    /// file number and bytes.
    Volume {
        label: Label,
        capacity: Option<u64>,
        bundles: Vec<(i64, ReadBack, u64)>,
    },
}

impl Drive {
    /// The kind of medium this drive takes.
    pub fn kind(&self) -> MediumKind {
        match self {
            Drive::Tape(_) => MediumKind::Tape,
            Drive::Optical(_) => MediumKind::Optical,
        }
    }

    /// Read the label of what is in the drive.
    pub(super) fn look(&mut self, data: &DataDir) -> Result<Seen, ArchiveError> {
        Ok(match self {
            Drive::Tape(d) => match tape::read_label(d.as_mut())? {
                TapeLabel::NoMedium => Seen::None,
                TapeLabel::Blank => Seen::Blank {
                    protected: d.status()?.write_protected,
                },
                TapeLabel::Cairn(l) => {
                    let wp = d.status()?.write_protected;
                    Seen::Cairn(l, None, wp)
                }
                TapeLabel::Foreign => Seen::Foreign,
                TapeLabel::Unreadable(e) => Seen::Unreadable(e),
            },
            Drive::Optical(d) => {
                let cap = d.status().ok().map(|s| s.capacity);
                match optical::read_label(d.as_mut(), data)? {
                    DiscLabel::NoMedium => Seen::None,
                    DiscLabel::Blank => Seen::Blank { protected: false },
                    DiscLabel::Cairn(l) => Seen::Cairn(l, cap, false),
                    DiscLabel::Foreign => Seen::Foreign,
                }
            }
        })
    }

    /// The name printed on the medium, when the drive can read it (a changer, the emulator).
    pub(super) fn printed_name(&mut self) -> Option<String> {
        match self {
            Drive::Tape(d) => d.cartridge_name(),
            Drive::Optical(d) => d.disc_name(),
        }
    }

    /// Whether the medium is write-protected (a disc never says so).
    pub(super) fn write_protected(&mut self) -> Result<bool, ArchiveError> {
        match self {
            Drive::Tape(d) => Ok(d.status()?.write_protected),
            Drive::Optical(_) => Ok(false),
        }
    }

    /// Write `label` on the medium. Returns the medium's capacity when the drive tells it.
    pub(super) fn write_label(
        &mut self,
        data: &DataDir,
        label: &Label,
    ) -> Result<Option<u64>, ArchiveError> {
        match self {
            Drive::Tape(d) => {
                tape::write_label(d.as_mut(), label)?;
                Ok(None)
            }
            Drive::Optical(d) => {
                optical::write_label(d.as_mut(), data, label)?;
                Ok(d.status().ok().map(|s| s.capacity))
            }
        }
    }

    /// Write `label` on the medium and read it back: `None` when it reads back as written,
    /// else what was read instead.
    pub(super) fn write_label_checked(
        &mut self,
        data: &DataDir,
        label: &Label,
    ) -> Result<Option<String>, ArchiveError> {
        match self {
            Drive::Tape(d) => {
                tape::write_label(d.as_mut(), label)?;
                match tape::read_label(d.as_mut())? {
                    TapeLabel::Cairn(l) if l == *label => Ok(None),
                    other => Ok(Some(format!("{other:?}"))),
                }
            }
            Drive::Optical(d) => {
                optical::write_label(d.as_mut(), data, label)?;
                match optical::read_label(d.as_mut(), data)? {
                    DiscLabel::Cairn(l) if l == *label => Ok(None),
                    other => Ok(Some(format!("{other:?}"))),
                }
            }
        }
    }

    /// The tape file or disc session number the next bundle gets.
    pub(super) fn append_position(&mut self) -> Result<i64, ArchiveError> {
        match self {
            Drive::Tape(d) => Ok(tape::append_position(d.as_mut())? as i64),
            Drive::Optical(d) => Ok(d.status()?.sessions as i64 + 1),
        }
    }

    /// Write one bundle at the append position. Returns the bytes written, or the failure with
    /// what kind it is (a full disc counts as the tape's early warning).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_bundle(
        &mut self,
        data: &DataDir,
        bundle_id: &str,
        file_number: i64,
        small: &SmallFiles,
        members: &[Member],
        mtime: u64,
    ) -> Result<u64, (ErrorKind, ArchiveError)> {
        match self {
            Drive::Tape(d) => {
                let src = StoreObjects { data: data.clone() };
                tape::write_bundle(d.as_mut(), small, members, &src, mtime)
                    .map(|w| w.tar_bytes)
                    .map_err(|e| (e.kind(), e))
            }
            Drive::Optical(d) => {
                let session_label = format!("CAIRN_{file_number}");
                match optical::write_bundle(
                    d.as_mut(),
                    data,
                    bundle_id,
                    &session_label,
                    small,
                    members,
                ) {
                    Ok((_, bytes)) => Ok(bytes),
                    Err(OpticalWriteError::Full(m)) => {
                        Err((ErrorKind::EarlyWarning, ArchiveError::Optical(m)))
                    }
                    Err(OpticalWriteError::Other(e)) => Err((e.kind(), e)),
                }
            }
        }
    }

    /// Read back the bundle just written and hash every object.
    pub(super) fn verify(
        &mut self,
        data: &DataDir,
        bundle_id: &str,
    ) -> Result<ReadBack, ArchiveError> {
        match self {
            Drive::Tape(d) => tape::verify_last(d.as_mut()),
            Drive::Optical(d) => optical::verify_bundle(d.as_mut(), data, bundle_id),
        }
    }

    /// Unload the medium.
    pub(super) fn eject(&mut self) -> Result<(), ArchiveError> {
        match self {
            Drive::Tape(d) => d.unload()?,
            Drive::Optical(d) => d.eject()?,
        }
        Ok(())
    }

    /// Read the label and every bundle of the medium, hashing each object.
    pub(super) fn scan(&mut self, data: &DataDir) -> Result<Scanned, ArchiveError> {
        match self {
            Drive::Tape(d) => {
                // the last tape file (the end of data is in it), when the drive knows
                d.set_block_size(RECORD_SIZE as u32)?;
                d.seek_end_of_data()?;
                let last = d.status()?.file_number.map(i64::from);
                let label = match tape::read_label(d.as_mut())? {
                    TapeLabel::Cairn(l) => l,
                    TapeLabel::NoMedium => return Ok(Scanned::Nothing("no medium in the drive")),
                    TapeLabel::Blank => return Ok(Scanned::Nothing("the medium is blank")),
                    TapeLabel::Unreadable(_) => {
                        return Ok(Scanned::Nothing(
                            "the medium cannot be read at its beginning",
                        ))
                    }
                    _ => return Ok(Scanned::Nothing("the medium is not a cairn volume")),
                };
                let mut bundles = Vec::new();
                // read_label left the tape at file 1
                let mut file = 1i64;
                loop {
                    let rb = match tape::read_file(d.as_mut()) {
                        Ok(rb) => rb,
                        Err(e) => {
                            tracing::warn!(file, error = %e, "unreadable tape file");
                            break;
                        }
                    };
                    let empty = rb.manifest.is_empty() && rb.head.is_none();
                    if !empty {
                        let bytes = rb.tar_bytes;
                        bundles.push((file, rb, bytes));
                    }
                    // an empty file is the end of data, unless the drive said it is later
                    if last.map_or(empty, |l| file >= l) {
                        break;
                    }
                    file += 1;
                }
                Ok(Scanned::Volume {
                    label,
                    capacity: None,
                    bundles,
                })
            }
            Drive::Optical(d) => {
                let label = match optical::read_label(d.as_mut(), data)? {
                    DiscLabel::Cairn(l) => l,
                    DiscLabel::NoMedium => return Ok(Scanned::Nothing("no disc in the drive")),
                    DiscLabel::Blank => return Ok(Scanned::Nothing("the disc is blank")),
                    _ => return Ok(Scanned::Nothing("the disc is not a cairn volume")),
                };
                let capacity = d.status().ok().map(|s| s.capacity);
                let mut bundles = Vec::new();
                for dir in optical::bundle_dirs(d.as_mut())? {
                    let file: i64 = dir
                        .rsplit_once('.')
                        .and_then(|(_, n)| n.parse().ok())
                        .unwrap_or(0);
                    let rb = optical::verify_bundle(d.as_mut(), data, &dir)?;
                    let bytes = rb.tar_bytes;
                    bundles.push((file, rb, bytes));
                }
                Ok(Scanned::Volume {
                    label,
                    capacity,
                    bundles,
                })
            }
        }
    }

    /// Restore the `wanted` objects found in bundle `file` of `volume` (an id) through the
    /// store's writer, audited as a restore `by` the requester. Returns how many.
    pub(super) fn restore_bundle(
        &mut self,
        store: &Store,
        data: &DataDir,
        volume: &str,
        file: i64,
        wanted: &mut HashSet<String>,
        by: &str,
    ) -> Result<usize, ArchiveError> {
        match self {
            Drive::Tape(d) => {
                d.set_block_size(RECORD_SIZE as u32)?;
                d.rewind()?;
                d.space_filemarks(file as i32)?;
                let mut r = tape::FileReader::new(d.as_mut());
                let n = restore_from_tar(store, data, &mut r, wanted, by)?;
                let _ = r.drain();
                // the next append seeks the end of data again
                Ok(n)
            }
            Drive::Optical(d) => {
                let bundle_id = format!("{volume}.{file}");
                let dir = optical::scratch(data).join(format!("restore-{bundle_id}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(optical::scratch(data))
                    .map_err(|e| ArchiveError::Io(e.to_string()))?;
                d.extract(&format!("/{bundle_id}"), &dir)?;
                let r = restore_from_dir(store, &dir, wanted, by);
                let _ = std::fs::remove_dir_all(&dir);
                r
            }
        }
    }
}
