//! The st commands on the open drive: status, block size, rewind, write and read records,
//! write filemarks, space over filemarks, seek to the end of data, unload.

use super::controls::{eject, update_meta};
use super::drive::{EmulatedTape, LastOp};
use super::files::{data_path, invalid, io_err, stamp, CARTRIDGE_JSON};
use super::mount::{advance_to, enter_file};
use super::runs::push_run;
use crate::tape::{TapeDrive, TapeError, TapeStatus};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

impl TapeDrive for EmulatedTape {
    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        self.refresh()?;
        let block_size = self.block_size;
        let Some(m) = self.mount.as_ref() else {
            return Ok(TapeStatus {
                online: false,
                write_protected: false,
                bot: false,
                eod: false,
                early_warning: false,
                door_open: true,
                file_number: None,
                block_number: None,
                block_size,
            });
        };
        let pos = m.base() + m.offset;
        Ok(TapeStatus {
            online: true,
            write_protected: m.meta.write_protected,
            bot: m.file == 0 && m.block == 0,
            eod: m.file == m.meta.filemarks && m.at_file_end(),
            early_warning: pos >= m.meta.early_warning,
            door_open: false,
            file_number: Some(m.file),
            block_number: m.block_known.then_some(m.block),
            block_size,
        })
    }

    fn set_block_size(&mut self, size: u32) -> Result<(), TapeError> {
        self.refresh()?;
        if size > 16 * 1024 * 1024 {
            return Err(invalid(&self.dir, format!("block size {size} too large")));
        }
        self.block_size = size;
        Ok(())
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.mounted()?;
        self.filemark_if_written()?;
        let dev = self.dir.clone();
        let m = self.mount_now()?;
        enter_file(&dev, m, 0)?;
        self.last_op = LastOp::Other;
        self.reset_flags();
        self.save_position();
        Ok(())
    }

    fn write_block(&mut self, data: &[u8]) -> Result<(), TapeError> {
        self.mounted()?;
        let dev = self.dir.clone();
        if data.is_empty() {
            return Ok(());
        }
        let bs = self.block_size;
        if bs > 0 && !data.len().is_multiple_of(bs as usize) {
            return Err(invalid(
                &dev,
                format!(
                    "write of {} bytes is not a multiple of the block size {bs}",
                    data.len()
                ),
            ));
        }
        let (len, count) = if bs > 0 {
            (bs, (data.len() / bs as usize) as u32)
        } else {
            let len = u32::try_from(data.len())
                .ok()
                .filter(|l| *l <= 16 * 1024 * 1024)
                .ok_or_else(|| invalid(&dev, "record larger than 16 MiB"))?;
            (len, 1)
        };
        self.prepare_write()?;
        let allow_next = self.ew_allow_next;
        let m = self.mount_now()?;
        let start = m.base() + m.offset;
        let end = start + data.len() as u64;
        if start >= m.meta.early_warning && start < m.meta.capacity && !allow_next {
            self.ew_allow_next = true;
            return Err(TapeError::EarlyWarning { device: dev });
        }
        let m = self.mount.as_mut().ok_or(TapeError::NoMedium {
            device: dev.clone(),
        })?;
        if end > m.meta.capacity {
            self.ew_allow_next = false;
            return Err(TapeError::EndOfMedium { device: dev });
        }
        if let Some(at) = m.meta.inject_write_error_at {
            if at >= start && at < end {
                let meta = update_meta(&dev, &m.id, |meta| meta.inject_write_error_at = None)?;
                m.meta = meta;
                m.meta_stamp = stamp(&m.cdir.join(CARTRIDGE_JSON));
                return Err(TapeError::Io {
                    device: dev,
                    op: "write",
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                });
            }
        }
        let (dfile, rfile) = m
            .writer
            .as_mut()
            .ok_or_else(|| invalid(&dev, "not open for writing"))?;
        dfile
            .write_all(data)
            .map_err(|e| io_err(&dev, "write tape file", e))?;
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&len.to_le_bytes());
        entry[4..].copy_from_slice(&count.to_le_bytes());
        rfile
            .write_all(&entry)
            .map_err(|e| io_err(&dev, "write .rec", e))?;
        push_run(&mut m.runs, len, u64::from(count));
        m.block += u64::from(count);
        m.offset += data.len() as u64;
        m.cursor = (m.runs.len(), 0);
        m.sizes[m.file as usize] = m.offset;
        self.ew_allow_next = false;
        self.last_op = LastOp::Write;
        self.after_filemark = false;
        self.eod_zero_given = false;
        Ok(())
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        self.mounted()?;
        if count == 0 {
            let m = self.mount_now()?;
            if let Some((d, r)) = m.writer.as_ref() {
                d.sync_data()
                    .and_then(|_| r.sync_data())
                    .map_err(|e| io_err(&dev, "flush", e))?;
            }
            return Ok(());
        }
        self.prepare_write()?;
        let m = self.mount_now()?;
        if let Some((d, r)) = m.writer.as_ref() {
            d.sync_data()
                .and_then(|_| r.sync_data())
                .map_err(|e| io_err(&dev, "flush", e))?;
        }
        let file = m
            .file
            .checked_add(count)
            .ok_or_else(|| invalid(&dev, "too many filemarks"))?;
        let meta = update_meta(&dev, &m.id, |meta| meta.filemarks = file)?;
        m.meta = meta;
        m.meta_stamp = stamp(&m.cdir.join(CARTRIDGE_JSON));
        m.sizes.resize(file as usize + 1, 0);
        enter_file(&dev, m, file)?;
        self.last_op = LastOp::Other;
        self.ew_allow_next = false;
        self.after_filemark = true;
        self.eod_zero_given = false;
        self.save_position();
        Ok(())
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        let dev = self.dir.clone();
        let bs = self.block_size;
        let after_fm = self.after_filemark;
        let zero_given = self.eod_zero_given;
        self.last_op = LastOp::Other;
        let m = self.mounted()?;
        m.writer = None;
        if m.meta.unreadable_when_blank && m.meta.filemarks == 0 && m.sizes[0] == 0 {
            return Err(TapeError::Io {
                device: dev,
                op: "read",
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        if m.at_file_end() {
            if m.file < m.meta.filemarks {
                let next = m.file + 1;
                enter_file(&dev, m, next)?;
                self.after_filemark = true;
                self.eod_zero_given = false;
                return Ok(0);
            }
            if after_fm && !zero_given {
                self.eod_zero_given = true;
                return Ok(0);
            }
            return Err(TapeError::EndOfData { device: dev });
        }
        let (i, used) = m.cursor;
        let run = m.runs[i];
        let len = run.len as usize;
        let n = if bs > 0 {
            if run.len != bs {
                advance_to(m, m.block + 1);
                return Err(invalid(
                    &dev,
                    format!("record of {len} bytes read in fixed block mode of {bs} bytes"),
                ));
            }
            (buf.len() / len).min((run.count - used) as usize)
        } else {
            usize::from(buf.len() >= len)
        };
        if n == 0 {
            let block = m.block + 1;
            advance_to(m, block);
            return Err(invalid(
                &dev,
                format!(
                    "record of {len} bytes does not fit a buffer of {} bytes",
                    buf.len()
                ),
            ));
        }
        if m.reader.is_none() {
            m.reader = Some(
                File::open(data_path(&m.cdir, m.file))
                    .map_err(|e| io_err(&dev, "open tape file", e))?,
            );
        }
        let reader = m
            .reader
            .as_ref()
            .ok_or_else(|| invalid(&dev, "no reader"))?;
        let bytes = n * len;
        reader
            .read_exact_at(&mut buf[..bytes], m.offset)
            .map_err(|e| io_err(&dev, "read tape file", e))?;
        let block = m.block + n as u64;
        advance_to(m, block);
        self.after_filemark = false;
        self.eod_zero_given = false;
        Ok(bytes)
    }

    fn space_filemarks(&mut self, count: i32) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        self.mounted()?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            self.filemark_if_written()?;
        }
        self.last_op = LastOp::Other;
        self.reset_flags();
        let m = self.mount_now()?;
        if count > 0 {
            for _ in 0..count {
                if m.file < m.meta.filemarks {
                    let next = m.file + 1;
                    enter_file(&dev, m, next)?;
                } else {
                    let end = m.records();
                    advance_to(m, end);
                    self.save_position();
                    return Err(TapeError::EndOfData { device: dev });
                }
            }
            self.after_filemark = true;
        } else {
            let back = count.unsigned_abs();
            if back > m.file {
                enter_file(&dev, m, 0)?;
                self.save_position();
                return Err(TapeError::BeginningOfMedium { device: dev });
            }
            let target = m.file - back;
            enter_file(&dev, m, target)?;
            let end = m.records();
            advance_to(m, end);
            // st cannot know the block number after spacing backwards.
            m.block_known = false;
        }
        self.save_position();
        Ok(())
    }

    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        self.last_op = LastOp::Other;
        self.reset_flags();
        let m = self.mounted()?;
        if m.file != m.meta.filemarks || !m.at_file_end() {
            let last = m.meta.filemarks;
            enter_file(&dev, m, last)?;
            let end = m.records();
            advance_to(m, end);
        }
        self.save_position();
        Ok(())
    }

    fn cartridge_name(&mut self) -> Option<String> {
        self.refresh().ok()?;
        self.mount.as_ref().map(|m| m.id.clone())
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.mounted()?;
        self.filemark_if_written()?;
        self.last_op = LastOp::None;
        self.reset_flags();
        self.mount = None;
        eject(&self.dir)?;
        self.refresh()?;
        Ok(())
    }
}
