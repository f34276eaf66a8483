//! Kernel uevents: a `NETLINK_KOBJECT_UEVENT` socket bound to the kernel's multicast group 1,
//! so a disk slid in or pulled out is known the moment the kernel knows, without polling.
//!
//! Only messages sent by the kernel itself (netlink port id 0) are taken; udev's re-broadcasts
//! (group 2, `libudev` header) and anything a user-space process sends are ignored. The watcher
//! reports facts; what to do about a disk is the monitor's business. The kernel drops messages
//! when the socket's buffer is full (`ENOBUFS`): callers must rescan sysfs after every wake-up
//! anyway, and keep a slow sysfs poll as the fallback.

use crate::HalError;
use nix::sys::socket::{
    bind, recvfrom, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The kernel's uevent multicast group.
const KERNEL_GROUP: u32 = 1;

/// One kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `ACTION`: add, remove, change, move, online, offline, bind, unbind.
    pub action: String,
    /// `SUBSYSTEM`, e.g. `block`.
    pub subsystem: String,
    /// `DEVPATH` under `/sys`.
    pub devpath: String,
    /// `DEVNAME`, e.g. `sdc` or `loop7` (block devices carry it).
    pub devname: Option<String>,
    /// `DEVTYPE`, e.g. `disk` or `partition`.
    pub devtype: Option<String>,
}

impl Uevent {
    /// Whether this is about a whole block device (`SUBSYSTEM=block`, `DEVTYPE=disk`).
    pub fn is_block_disk(&self) -> bool {
        self.subsystem == "block" && self.devtype.as_deref() == Some("disk")
    }

    /// Whether this is about a block device, whole disk or partition.
    pub fn is_block(&self) -> bool {
        self.subsystem == "block"
    }
}

/// Parse one kernel uevent datagram: `action@devpath\0KEY=VALUE\0...`. `None` for udev's
/// re-broadcasts and for anything without `ACTION` and `SUBSYSTEM`.
pub fn parse(msg: &[u8]) -> Option<Uevent> {
    if msg.starts_with(b"libudev\0") {
        return None;
    }
    let mut action = None;
    let mut subsystem = None;
    let mut devpath = None;
    let mut devname = None;
    let mut devtype = None;
    for field in msg.split(|b| *b == 0).skip(1) {
        let Ok(field) = std::str::from_utf8(field) else {
            continue;
        };
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let value = value.to_string();
        match key {
            "ACTION" => action = Some(value),
            "SUBSYSTEM" => subsystem = Some(value),
            "DEVPATH" => devpath = Some(value),
            "DEVNAME" => devname = Some(value.trim_start_matches("/dev/").to_string()),
            "DEVTYPE" => devtype = Some(value),
            _ => {}
        }
    }
    Some(Uevent {
        action: action?,
        subsystem: subsystem?,
        devpath: devpath.unwrap_or_default(),
        devname,
        devtype,
    })
}

/// A socket receiving the kernel's uevents.
#[derive(Debug)]
pub struct UeventWatcher {
    fd: OwnedFd,
}

fn sock_err(e: nix::errno::Errno) -> HalError {
    HalError::io(PathBuf::from("netlink uevent socket"), e.into())
}

impl UeventWatcher {
    /// Open a non-blocking `NETLINK_KOBJECT_UEVENT` socket bound to the kernel's group.
    pub fn open() -> Result<Self, HalError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(sock_err)?;
        // A burst of events (a disk with many partitions, a whole enclosure) must not overflow.
        // The kernel caps it at rmem_max; a smaller buffer only means an earlier ENOBUFS.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &(1 << 20));
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP)).map_err(sock_err)?;
        Ok(Self { fd })
    }

    /// The next kernel uevent of any subsystem, waiting at most `timeout`; `None` on timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Uevent>, HalError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.try_recv()? {
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                self.fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(sock_err(e)),
            }
        }
    }

    /// Every uevent already queued, without waiting.
    pub fn drain(&self) -> Result<Vec<Uevent>, HalError> {
        let mut out = Vec::new();
        while let Some(ev) = self.try_recv()? {
            out.push(ev);
        }
        Ok(out)
    }

    /// One queued kernel uevent, skipping datagrams that are not one; `None` when none waits.
    fn try_recv(&self) -> Result<Option<Uevent>, HalError> {
        let mut buf = vec![0u8; 8192];
        loop {
            match recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), &mut buf) {
                Ok((n, from)) => {
                    // Port id 0 is the kernel; anything else is a process speaking for it.
                    if from.is_some_and(|a| a.pid() == 0) {
                        if let Some(ev) = parse(&buf[..n]) {
                            return Ok(Some(ev));
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ENOBUFS) => {
                    // Events were lost; the caller rescans sysfs after every wake-up.
                    tracing::warn!("uevent socket overflowed; relying on the sysfs rescan");
                }
                Err(e) => return Err(sock_err(e)),
            }
        }
    }
}

impl AsFd for UeventWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_messages_and_skips_udev() {
        let msg = b"remove@/devices/virtual/block/loop7\0ACTION=remove\0\
            DEVPATH=/devices/virtual/block/loop7\0SUBSYSTEM=block\0MAJOR=7\0MINOR=7\0\
            DEVNAME=loop7\0DEVTYPE=disk\0DISKSEQ=9\0SEQNUM=4242\0";
        let ev = parse(msg).unwrap();
        assert_eq!(ev.action, "remove");
        assert_eq!(ev.devname.as_deref(), Some("loop7"));
        assert!(ev.is_block_disk());
        assert_eq!(ev.devpath, "/devices/virtual/block/loop7");
        let part = parse(b"add@/x\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sdc1\0DEVTYPE=partition\0")
            .unwrap();
        assert!(part.is_block() && !part.is_block_disk());
        assert!(parse(b"libudev\0\xfe\xed\xca\xfeACTION=add\0SUBSYSTEM=block\0").is_none());
        assert!(parse(b"add@/x\0SUBSYSTEM=block\0").is_none());
    }

    /// `LOOP_CTL_REMOVE` on `/dev/loop-control`: no command-line tool deletes a loop device,
    /// and only adding and deleting one makes the kernel send `add` and `remove`.
    mod loop_control {
        #![allow(unsafe_code)]
        nix::ioctl_write_int_bad!(loop_ctl_remove, 0x4C81);

        pub fn remove(n: u32) -> std::io::Result<()> {
            use std::os::fd::AsRawFd;
            let ctl = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/loop-control")?;
            // SAFETY: LOOP_CTL_REMOVE takes the device number as a plain integer argument and
            // reads no memory of ours; `ctl` is an open file descriptor for the call's duration.
            unsafe { loop_ctl_remove(ctl.as_raw_fd(), n as libc::c_int) }
                .map(drop)
                .map_err(std::io::Error::from)
        }
    }

    fn losetup(args: &[&str]) -> String {
        let out = std::process::Command::new("losetup")
            .args(args)
            .output()
            .expect("losetup must be installed (util-linux)");
        assert!(
            out.status.success(),
            "losetup {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Wait up to 2 s for a block-disk uevent with this action for this device.
    fn saw(w: &UeventWatcher, devname: &str, actions: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match w.recv_timeout(left).unwrap() {
                Some(ev)
                    if ev.is_block_disk()
                        && ev.devname.as_deref() == Some(devname)
                        && actions.contains(&ev.action.as_str()) =>
                {
                    return Some(ev.action);
                }
                Some(_) => {}
                None => break,
            }
        }
        None
    }

    /// Real kernel events from real loop devices (needs root, as on the box and in CI). A loop
    /// device that already exists only gets `change` when `losetup` attaches and detaches a
    /// file; a new one (`losetup /dev/loopN` creates it) gets `add`, and deleting it `remove`.
    #[test]
    fn sees_loop_devices_come_and_go() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata("/proc/self").map(|m| m.uid()).ok(),
            Some(0),
            "this test needs root (the box and CI run as root)"
        );
        assert!(
            std::path::Path::new("/dev/loop-control").exists(),
            "no /dev/loop-control: loop devices are unavailable on this kernel"
        );
        let w = UeventWatcher::open().expect("netlink uevent socket");
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let img = img.to_str().unwrap();

        // The first free device, as `losetup -f` picks it.
        let dev = losetup(&["-f", "--show", img]);
        let name = dev.trim_start_matches("/dev/").to_string();
        let attached = saw(&w, &name, &["add", "change"]);
        std::thread::sleep(Duration::from_millis(200));
        w.drain().unwrap();
        losetup(&["-d", &dev]);
        assert!(attached.is_some(), "no uevent for attaching {name}");
        assert!(
            saw(&w, &name, &["remove", "change"]).is_some(),
            "no uevent for detaching {name}"
        );

        // A device that does not exist yet: add, then remove when deleted.
        let n = (200..1000)
            .find(|n| !std::path::Path::new(&format!("/sys/class/block/loop{n}")).exists())
            .unwrap();
        let name = format!("loop{n}");
        losetup(&[&format!("/dev/{name}"), img]);
        let added = saw(&w, &name, &["add"]);
        losetup(&["-d", &format!("/dev/{name}")]);
        // The detach completes when the last opener (udev's probe) closes it.
        let deadline = Instant::now() + Duration::from_secs(2);
        let removed = loop {
            match loop_control::remove(n) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other,
            }
        };
        assert_eq!(added.as_deref(), Some("add"), "no add uevent for {name}");
        removed.unwrap_or_else(|e| panic!("LOOP_CTL_REMOVE {name}: {e}"));
        assert_eq!(
            saw(&w, &name, &["remove"]).as_deref(),
            Some("remove"),
            "no remove uevent for {name}"
        );
    }
}
