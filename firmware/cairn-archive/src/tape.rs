//! Bundles on tape: the label as tape file 0, one pax tar per tape file after it, fixed
//! 256 KiB records, a filemark after each; read back by spacing backwards over the filemarks.

use crate::bundle::{self, Member, ObjectSource, ReadBack, RecordSink, SmallFiles};
use crate::label::Label;
use crate::{ArchiveError, RECORD_SIZE};
use cairn_hal::tape::{TapeDrive, TapeErrorKind};
use std::io::Read;

/// What the loaded tape holds at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapeLabel {
    /// No cartridge in the drive.
    NoMedium,
    /// Nothing recorded.
    Blank,
    /// A cairn label.
    Cairn(Label),
    /// Data that is not a cairn label (never overwritten).
    Foreign,
    /// The first read at the beginning of the tape failed with an I/O or medium error, so
    /// nothing can be said about what it holds: a factory-new or degaussed cartridge on some
    /// drives (and Debian's tgt for a blank tape), or a damaged one. Never written unless a
    /// person asks for it (`Archiver::label_unreadable`). Holds the drive's error.
    Unreadable(String),
}

/// Read tape file 0 (the label). Leaves the tape at file 1. Only an I/O error on the very
/// first read at the beginning of the tape is [`TapeLabel::Unreadable`]; any other failure
/// is an error.
pub fn read_label(drive: &mut dyn TapeDrive) -> Result<TapeLabel, ArchiveError> {
    let st = drive.status()?;
    if !st.online || st.door_open {
        return Ok(TapeLabel::NoMedium);
    }
    drive.set_block_size(RECORD_SIZE as u32)?;
    drive.rewind()?;
    let mut buf = vec![0u8; RECORD_SIZE];
    match drive.read_block(&mut buf) {
        Ok(0) => {
            // an empty first file: blank if nothing follows
            match drive.read_block(&mut buf) {
                Ok(0) => Ok(TapeLabel::Blank),
                Err(e) if e.kind() == TapeErrorKind::EndOfData => Ok(TapeLabel::Blank),
                _ => Ok(TapeLabel::Foreign),
            }
        }
        Ok(n) => {
            let label = Label::parse(&buf[..n]);
            // move on to file 1
            let _ = drive.space_filemarks(1);
            Ok(label.map(TapeLabel::Cairn).unwrap_or(TapeLabel::Foreign))
        }
        Err(e) if e.kind() == TapeErrorKind::EndOfData => Ok(TapeLabel::Blank),
        Err(e) if e.kind() == TapeErrorKind::NoMedium => Ok(TapeLabel::NoMedium),
        Err(e) if e.kind() == TapeErrorKind::Invalid => Ok(TapeLabel::Foreign),
        Err(e) if e.kind() == TapeErrorKind::Io => Ok(TapeLabel::Unreadable(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Write the label as tape file 0 of a blank tape (rewinds first).
pub fn write_label(drive: &mut dyn TapeDrive, label: &Label) -> Result<(), ArchiveError> {
    drive.set_block_size(RECORD_SIZE as u32)?;
    drive.rewind()?;
    drive.write_block(&label.to_record(RECORD_SIZE)?)?;
    drive.write_filemarks(1)?;
    Ok(())
}

/// Move to the end of data; returns the file number where the next bundle starts.
pub fn append_position(drive: &mut dyn TapeDrive) -> Result<u32, ArchiveError> {
    drive.set_block_size(RECORD_SIZE as u32)?;
    drive.seek_end_of_data()?;
    let mut st = drive.status()?;
    let unfinished = match st.block_number {
        Some(b) => b > 0,
        None => last_file_has_records(drive)?,
    };
    if unfinished {
        // the last tape file has records but no filemark (a write cut short by a crash or a
        // power cut): end it, so the next bundle starts a tape file of its own
        tracing::warn!(file = ?st.file_number, "ending an unfinished tape file with a filemark");
        drive.seek_end_of_data()?;
        drive.write_filemarks(1)?;
        st = drive.status()?;
    }
    match st.file_number {
        Some(n) => Ok(n),
        None => {
            // count the files from the start
            drive.rewind()?;
            let mut n = 0u32;
            loop {
                match drive.space_filemarks(1) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == TapeErrorKind::EndOfData => break,
                    Err(e) => return Err(e.into()),
                }
            }
            drive.seek_end_of_data()?;
            Ok(n)
        }
    }
}

/// From the end of data: does the last tape file hold records (written without a filemark)?
/// Leaves the tape at the end of data.
fn last_file_has_records(drive: &mut dyn TapeDrive) -> Result<bool, ArchiveError> {
    // back over the filemark before the last file, forward over it: block 0 of the last file
    if let Err(e) = drive.space_filemarks(-1) {
        if e.kind() == TapeErrorKind::BeginningOfMedium {
            return Ok(false);
        }
        return Err(e.into());
    }
    drive.space_filemarks(1)?;
    let mut buf = vec![0u8; RECORD_SIZE];
    let has = match drive.read_block(&mut buf) {
        Ok(n) => n > 0,
        Err(e) if e.kind() == TapeErrorKind::EndOfData => false,
        Err(e) if e.kind() == TapeErrorKind::Invalid => true,
        Err(e) if e.kind() == TapeErrorKind::Io => {
            // Some drives (Debian's tgt among them) answer a fixed-block read at the end of
            // data with a medium error instead of BLANK CHECK. Taken as "no records": if the
            // file did hold records after all, the next bundle lands in it and its read-back
            // fails, so nothing is marked verified (the instances stay queued).
            tracing::warn!(error = %e, "a read at the end of data failed: taken as the end of data");
            false
        }
        Err(e) => return Err(e.into()),
    };
    drive.seek_end_of_data()?;
    Ok(has)
}

/// Hands full records to the drive-writer thread, recycling buffers.
struct PipeSink {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl RecordSink for PipeSink {
    fn write_record(&mut self, record: &[u8]) -> Result<(), ArchiveError> {
        let mut buf = self.free.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(record);
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(buf).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            // the writer stopped on an error; it is reported by the caller
            Err(ArchiveError::Io("the drive writer stopped".into()))
        }
    }
}

/// How writing one bundle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Length of the tar stream.
    pub tar_bytes: u64,
    /// Records written (each [`RECORD_SIZE`]).
    pub records: u64,
}

/// Records in flight between the hashing thread and the drive.
const PIPE_DEPTH: usize = 8;

/// Write one bundle at the current position (the end of data) and its filemark.
///
/// Objects are read and hashed on this thread while another thread writes the full records to
/// the drive, so hashing and the drive overlap (two cores).
/// On early warning the bundle is ended with a filemark (allowed past the warning) and the
/// `EarlyWarning` error is returned: the caller marks the bundle incomplete on this volume.
pub fn write_bundle(
    drive: &mut dyn TapeDrive,
    small: &SmallFiles,
    members: &[Member],
    src: &dyn ObjectSource,
    mtime: u64,
) -> Result<Written, ArchiveError> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (produced, written) = std::thread::scope(|s| {
        let d: &mut dyn TapeDrive = &mut *drive;
        let writer = s.spawn(move || -> Result<u64, cairn_hal::tape::TapeError> {
            let mut n = 0u64;
            for rec in full_rx {
                d.write_block(&rec)?;
                n += 1;
                let _ = free_tx.send(rec);
            }
            Ok(n)
        });
        let mut sink = PipeSink {
            tx: Some(full_tx),
            free: free_rx,
        };
        let produced = bundle::write_tar(&mut sink, RECORD_SIZE, small, members, src, mtime);
        sink.tx = None;
        drop(sink);
        let written = writer.join().unwrap_or_else(|_| {
            Err(cairn_hal::tape::TapeError::Io {
                device: "tape".into(),
                op: "write",
                source: std::io::Error::other("the drive writer thread panicked"),
            })
        });
        (produced, written)
    });
    let r = match (produced, written) {
        (Ok(tar_bytes), Ok(records)) => Ok(Written { tar_bytes, records }),
        (_, Err(e)) => Err(ArchiveError::Tape(e)),
        (Err(e), Ok(_)) => Err(e),
    };
    match r {
        Ok(w) => {
            drive.write_filemarks(1)?;
            Ok(w)
        }
        Err(e) => {
            // end the unfinished file so the next one starts cleanly; st allows a filemark
            // past the early warning
            if let Err(fm) = drive.write_filemarks(1) {
                tracing::warn!(error = %fm, "could not end an unfinished bundle with a filemark");
            }
            Err(e)
        }
    }
}

/// Reads the records of one tape file as a byte stream (EOF at its filemark).
pub struct FileReader<'a> {
    drive: &'a mut dyn TapeDrive,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    done: bool,
}

impl<'a> FileReader<'a> {
    /// Read from the current position (block 0 of a tape file).
    pub fn new(drive: &'a mut dyn TapeDrive) -> Self {
        Self {
            drive,
            buf: vec![0u8; RECORD_SIZE],
            pos: 0,
            len: 0,
            done: false,
        }
    }

    /// Read to the end of the file (past its filemark) and discard.
    pub fn drain(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(|_| ())
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.len {
            if self.done {
                return Ok(0);
            }
            match self.drive.read_block(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                }
                Err(e) if e.kind() == TapeErrorKind::EndOfData => {
                    self.done = true;
                    return Ok(0);
                }
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Space back over the bundle just written (after its filemark) and read it back, hashing
/// every member. Leaves the tape after the bundle's filemark (the end of data).
pub fn verify_last(drive: &mut dyn TapeDrive) -> Result<ReadBack, ArchiveError> {
    // after FM(k): back over FM(k) and FM(k-1), then forward over FM(k-1): block 0 of file k
    drive.space_filemarks(-2)?;
    drive.space_filemarks(1)?;
    read_file(drive)
}

/// Read the tape file at the current position to its filemark (past it), hashing on this
/// thread while another reads the records from the drive.
pub fn read_file(drive: &mut dyn TapeDrive) -> Result<ReadBack, ArchiveError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, String>>(PIPE_DEPTH);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let d: &mut dyn TapeDrive = &mut *drive;
        s.spawn(move || {
            let mut consumer_gone = false;
            loop {
                let mut buf = free_rx.try_recv().unwrap_or_default();
                buf.resize(RECORD_SIZE, 0);
                let msg = match d.read_block(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) if e.kind() == TapeErrorKind::EndOfData => break,
                    Err(e) => Err(e.to_string()),
                };
                let stop = msg.is_err();
                if !consumer_gone && tx.send(msg).is_err() {
                    // keep reading to the filemark so the tape ends up after this file
                    consumer_gone = true;
                }
                if stop {
                    break;
                }
            }
        });
        let mut r = PipeReader {
            rx,
            free: free_tx,
            cur: Vec::new(),
            pos: 0,
        };
        let rb = bundle::read_back(&mut r);
        // let the reader finish the file
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        drop(r);
        rb
    })
}

/// Bytes of records received from the drive-reader thread.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    free: std::sync::mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    let old = std::mem::replace(&mut self.cur, buf);
                    let _ = self.free.send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
