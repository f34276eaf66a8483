//! PDU transport: reading whole PDUs off a blocking socket with bounded memory and deadlines,
//! and writing PDUs. Association PDUs are decoded with dicom-ul's codec; P-DATA-TF is split
//! into PDVs here without copying.

use dicom_ul::pdu::{Pdu, PDU_HEADER_SIZE};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use thiserror::Error;

/// PDU type codes (PS3.8 section 9.3).
pub mod types {
    /// A-ASSOCIATE-RQ.
    pub const ASSOCIATE_RQ: u8 = 0x01;
    /// A-ASSOCIATE-AC.
    pub const ASSOCIATE_AC: u8 = 0x02;
    /// A-ASSOCIATE-RJ.
    pub const ASSOCIATE_RJ: u8 = 0x03;
    /// P-DATA-TF.
    pub const P_DATA: u8 = 0x04;
    /// A-RELEASE-RQ.
    pub const RELEASE_RQ: u8 = 0x05;
    /// A-RELEASE-RP.
    pub const RELEASE_RP: u8 = 0x06;
    /// A-ABORT.
    pub const ABORT: u8 = 0x07;
}

/// Largest A-ASSOCIATE-RQ accepted (128 contexts with a few syntaxes each fit easily).
pub const MAX_ASSOCIATE_RQ: u32 = 256 * 1024;

/// Transport failures while reading a PDU.
#[derive(Debug, Error)]
pub enum PduError {
    /// The peer closed the connection between PDUs.
    #[error("connection closed by peer")]
    Closed,
    /// Nothing arrived before the deadline.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The PDU announces more bytes than allowed.
    #[error("PDU of {length} bytes is over the limit of {limit}")]
    TooLarge {
        /// Announced length.
        length: u32,
        /// Our limit.
        limit: u32,
    },
    /// The bytes do not form a valid PDU.
    #[error("malformed PDU: {0}")]
    Malformed(String),
    /// A PDU type that does not exist.
    #[error("unknown PDU type 0x{0:02x}")]
    UnknownType(u8),
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// A PDU as read: the type and its body (bytes after the 6-byte header).
#[derive(Debug)]
pub struct RawPdu {
    /// PDU type.
    pub pdu_type: u8,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// One presentation data value of a P-DATA-TF PDU.
#[derive(Debug, Clone, Copy)]
pub struct Pdv<'a> {
    /// Presentation context ID.
    pub context_id: u8,
    /// True for a command fragment, false for a data set fragment.
    pub is_command: bool,
    /// True for the last fragment of the command or data set.
    pub is_last: bool,
    /// The fragment bytes.
    pub data: &'a [u8],
}

/// Split a P-DATA-TF body into PDVs, checking every length.
pub fn split_pdvs(body: &[u8]) -> Result<Vec<Pdv<'_>>, PduError> {
    let mut out = Vec::new();
    let mut rest = body;
    if rest.is_empty() {
        return Err(PduError::Malformed("P-DATA-TF without any PDV".into()));
    }
    while !rest.is_empty() {
        if rest.len() < 6 {
            return Err(PduError::Malformed("truncated PDV header".into()));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 2 {
            return Err(PduError::Malformed("PDV shorter than its header".into()));
        }
        if len > rest.len() - 4 {
            return Err(PduError::Malformed(
                "PDV runs past the end of its PDU".into(),
            ));
        }
        let context_id = rest[4];
        let control = rest[5];
        if control & !0x03 != 0 {
            return Err(PduError::Malformed(
                "reserved bits set in PDV header".into(),
            ));
        }
        if context_id.is_multiple_of(2) {
            return Err(PduError::Malformed("even presentation context ID".into()));
        }
        out.push(Pdv {
            context_id,
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            data: &rest[6..4 + len],
        });
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Reads PDUs off a socket. Waiting for the first byte of a PDU is bounded by the idle timeout;
/// once a PDU has started, the rest of it must arrive within the ARTIM timeout.
///
/// Bytes are read in chunks of up to `READ_CHUNK`, so a stream of small P-DATA PDUs costs about
/// one `read` per chunk instead of three per PDU. One reader serves one socket for its whole
/// life: bytes it has read ahead belong to the next PDU on that socket.
#[derive(Debug)]
pub struct PduReader {
    artim: Duration,
    idle: Duration,
    /// Bytes read ahead and not yet returned: `ahead[start..end]`.
    ahead: Vec<u8>,
    start: usize,
    end: usize,
    /// The read timeout last set on the socket.
    timeout: Option<Duration>,
}

/// The most a reader reads from its socket at once (the buffer is allocated on first use).
const READ_CHUNK: usize = 128 * 1024;

/// A socket timeout this close to the time left is kept rather than set again (one syscall
/// less per read); a deadline may thus end this much early or late.
const TIMEOUT_SLACK: Duration = Duration::from_millis(20);

impl PduReader {
    /// A reader with these timeouts.
    pub fn new(artim: Duration, idle: Duration) -> Self {
        Self {
            artim,
            idle,
            ahead: Vec::new(),
            start: 0,
            end: 0,
            timeout: None,
        }
    }

    /// Read one PDU whose body may be at most `limit` bytes (the type-specific limit is applied
    /// by the caller through `limit_for`). `first_wait` overrides the idle timeout for the
    /// first byte (ARTIM while waiting for the A-ASSOCIATE-RQ).
    pub fn read(
        &mut self,
        sock: &mut TcpStream,
        limit_for: impl Fn(u8) -> u32,
        first_wait: Option<Duration>,
        buf: &mut Vec<u8>,
    ) -> Result<u8, PduError> {
        let first = Instant::now() + first_wait.unwrap_or(self.idle);
        self.read_until(sock, limit_for, first, None, buf)
    }

    /// Read one PDU that must have arrived whole by `deadline`, however it is paced (the
    /// association request: a peer trickling it cannot hold a connection longer than that).
    pub fn read_by(
        &mut self,
        sock: &mut TcpStream,
        limit_for: impl Fn(u8) -> u32,
        deadline: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<u8, PduError> {
        self.read_until(sock, limit_for, deadline, Some(deadline), buf)
    }

    /// The first byte by `first`; the rest by `whole`, or within ARTIM of the first byte.
    fn read_until(
        &mut self,
        sock: &mut TcpStream,
        limit_for: impl Fn(u8) -> u32,
        first: Instant,
        whole: Option<Instant>,
        buf: &mut Vec<u8>,
    ) -> Result<u8, PduError> {
        if self.start == self.end {
            match self.fill(sock, first) {
                Err(PduError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(PduError::Closed)
                }
                other => other?,
            }
        }
        let deadline = whole.unwrap_or_else(|| Instant::now() + self.artim);
        while self.end - self.start < PDU_HEADER_SIZE as usize {
            self.fill(sock, deadline)?;
        }
        let header = &self.ahead[self.start..self.start + PDU_HEADER_SIZE as usize];
        let pdu_type = header[0];
        if !(types::ASSOCIATE_RQ..=types::ABORT).contains(&pdu_type) {
            return Err(PduError::UnknownType(pdu_type));
        }
        let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let limit = limit_for(pdu_type);
        if length > limit {
            return Err(PduError::TooLarge { length, limit });
        }
        self.start += PDU_HEADER_SIZE as usize;
        let length = length as usize;
        let take = length.min(self.end - self.start);
        buf.clear();
        buf.extend_from_slice(&self.ahead[self.start..self.start + take]);
        self.start += take;
        if take < length {
            // The rest of a body goes straight into `buf`, however large the PDU.
            buf.resize(length, 0);
            let mut rest = &mut buf[take..];
            while !rest.is_empty() {
                self.arm(sock, deadline)?;
                match sock.read(rest) {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                    Ok(n) => rest = &mut rest[n..],
                    Err(e) => read_error(e)?,
                }
            }
        }
        Ok(pdu_type)
    }

    /// Read what the socket has (at least one byte) into the read-ahead buffer.
    fn fill(&mut self, sock: &mut TcpStream, deadline: Instant) -> Result<(), PduError> {
        if self.ahead.is_empty() {
            self.ahead = vec![0; READ_CHUNK];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.ahead.len() {
            self.ahead.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            self.arm(sock, deadline)?;
            match sock.read(&mut self.ahead[self.end..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) => read_error(e)?,
            }
        }
    }

    /// Make the socket's read timeout end at `deadline` (within `TIMEOUT_SLACK`).
    fn arm(&mut self, sock: &TcpStream, deadline: Instant) -> Result<(), PduError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(PduError::Timeout);
        }
        let left = deadline - now;
        if self
            .timeout
            .is_none_or(|t| t.abs_diff(left) > TIMEOUT_SLACK)
        {
            sock.set_read_timeout(Some(left))?;
            self.timeout = Some(left);
        }
        Ok(())
    }
}

/// A failed `read`: a timeout becomes `PduError::Timeout`; an interrupted call is retried.
fn read_error(e: io::Error) -> Result<(), PduError> {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(PduError::Timeout),
        io::ErrorKind::Interrupted => Ok(()),
        _ => Err(e.into()),
    }
}

/// Decode an association-phase PDU (RQ, RELEASE, ABORT...) with dicom-ul's codec.
pub fn decode(pdu_type: u8, body: &[u8]) -> Result<Pdu, PduError> {
    let mut whole = Vec::with_capacity(body.len() + 6);
    whole.push(pdu_type);
    whole.push(0);
    whole.extend_from_slice(&(body.len() as u32).to_be_bytes());
    whole.extend_from_slice(body);
    let max = (body.len() as u32).max(dicom_ul::pdu::MINIMUM_PDU_SIZE);
    match dicom_ul::pdu::read_pdu(&whole[..], max, true) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(PduError::Malformed("incomplete PDU".into())),
        Err(e) => Err(PduError::Malformed(e.to_string())),
    }
}

/// Encode and send a PDU with dicom-ul's codec.
pub fn send(sock: &mut TcpStream, pdu: &Pdu) -> io::Result<()> {
    let mut out = Vec::with_capacity(256);
    dicom_ul::pdu::write_pdu(&mut out, pdu).map_err(|e| io::Error::other(e.to_string()))?;
    sock.write_all(&out)
}

/// A-ABORT from the service provider with a reason (PS3.8 table 9-26), best effort, then
/// wait for the peer to close (see [`linger`]).
pub fn send_abort(sock: &mut TcpStream, reason: u8) {
    let pdu = [types::ABORT, 0, 0, 0, 0, 4, 0, 0, 2, reason];
    if sock.write_all(&pdu).is_ok() {
        linger(sock, LINGER);
    }
}

/// How long to wait for the peer to close after an A-ASSOCIATE-RJ or A-ABORT.
pub const LINGER: Duration = Duration::from_secs(5);

/// After sending A-ASSOCIATE-RJ or A-ABORT, the acceptor waits (ARTIM, state Sta13) for the
/// requestor to close the connection, so the peer reads the answer before seeing the close.
/// Bounded in time and bytes.
pub fn linger(sock: &mut TcpStream, max: Duration) {
    let deadline = Instant::now() + max;
    let mut buf = [0u8; 4096];
    let mut seen = 0usize;
    while seen < (1 << 20) {
        let now = Instant::now();
        if now >= deadline || sock.set_read_timeout(Some(deadline - now)).is_err() {
            return;
        }
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
    }
}

/// Largest even fragment that fits one PDV in a PDU the peer accepts. A peer maximum of 0 means
/// unlimited; fragments are capped at 1 MiB anyway. PDU body = one PDV: 4 (length) +
/// 2 (context, control) + fragment.
fn max_fragment(peer_max_pdu: u32) -> usize {
    let max_pdu = if peer_max_pdu == 0 {
        1 << 20
    } else {
        peer_max_pdu.min(1 << 20)
    };
    (max_pdu as usize).saturating_sub(6).max(2) & !1
}

/// Writes one DIMSE message (command, then optional data set) as P-DATA-TF PDUs no larger than
/// the peer's maximum, fragmenting as needed.
pub fn send_message(
    sock: &mut TcpStream,
    peer_max_pdu: u32,
    context_id: u8,
    command: &[u8],
    dataset: Option<&[u8]>,
) -> io::Result<()> {
    // A peer maximum of 0 means unlimited; cap our fragments at 1 MiB anyway.
    let max_fragment = max_fragment(peer_max_pdu);
    // Small messages (responses, C-FIND answers) go out in one write: one segment, and no
    // delayed-ACK stall at a peer that left Nagle on.
    let mut out = Vec::with_capacity(command.len() + dataset.map_or(0, <[u8]>::len) + 24);
    let append = |data: &[u8], is_command: bool, out: &mut Vec<u8>| {
        if data.is_empty() {
            push_pdv(out, context_id, is_command, true, &[]);
        }
        let mut chunks = data.chunks(max_fragment).peekable();
        while let Some(chunk) = chunks.next() {
            push_pdv(out, context_id, is_command, chunks.peek().is_none(), chunk);
        }
    };
    append(command, true, &mut out);
    if let Some(d) = dataset {
        let mut padded;
        let d = if d.len() % 2 == 1 {
            padded = d.to_vec();
            padded.push(0);
            &padded[..]
        } else {
            d
        };
        append(d, false, &mut out);
    }
    sock.write_all(&out)
}

/// Like [`send_message`], but a command and a data set that fit in one PDU of the peer's
/// maximum go out as two PDVs of one P-DATA-TF. For a retrieve's final response: DCMTK's
/// getscu never reads the identifier after a C-GET-RSP, and a P-DATA PDU still in flight when
/// it asks to release makes it fail the release; the rest of a PDU it did not read is dropped.
pub fn send_message_packed(
    sock: &mut TcpStream,
    peer_max_pdu: u32,
    context_id: u8,
    command: &[u8],
    dataset: &[u8],
) -> io::Result<()> {
    let padded = dataset.len() + dataset.len() % 2;
    let body = command.len() + 6 + padded + 6;
    let fits = peer_max_pdu == 0 || body <= peer_max_pdu as usize;
    if !fits || body > 1 << 20 {
        return send_message(sock, peer_max_pdu, context_id, command, Some(dataset));
    }
    let mut out = Vec::with_capacity(body + 6);
    out.push(types::P_DATA);
    out.push(0);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    for (data, is_command) in [(command, true), (dataset, false)] {
        let pad = if is_command { 0 } else { data.len() % 2 };
        out.extend_from_slice(&((data.len() + pad + 2) as u32).to_be_bytes());
        out.push(context_id);
        out.push(u8::from(is_command) | 2);
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    sock.write_all(&out)
}

fn push_pdv(out: &mut Vec<u8>, context_id: u8, is_command: bool, is_last: bool, chunk: &[u8]) {
    let pdv_len = chunk.len() as u32 + 2;
    out.push(types::P_DATA);
    out.push(0);
    out.extend_from_slice(&(pdv_len + 4).to_be_bytes());
    out.extend_from_slice(&pdv_len.to_be_bytes());
    out.push(context_id);
    out.push(u8::from(is_command) | (u8::from(is_last) << 1));
    out.extend_from_slice(chunk);
}

/// Send a data set of `len` bytes read from `src` as P-DATA fragments (memory: one PDU).
pub fn send_stream(
    sock: &mut TcpStream,
    peer_max_pdu: u32,
    context_id: u8,
    src: &mut impl Read,
    len: u64,
) -> io::Result<()> {
    let max_fragment = max_fragment(peer_max_pdu);
    // PDVs carry even lengths (PS3.8 annex E). A data set received with an odd length (a
    // deflated stream sent without its pad byte) goes out with the trailing NUL that PS3.5
    // A.5 prescribes for deflated data.
    let padded = len + (len % 2);
    let mut chunk = vec![0u8; max_fragment.min(padded.max(2) as usize)];
    let mut out = Vec::with_capacity(chunk.len() + 12);
    let mut left = len;
    if left == 0 {
        return write_pdv(sock, &mut out, context_id, false, true, &[]);
    }
    while left > 0 {
        let n = (left as usize).min(chunk.len());
        src.read_exact(&mut chunk[..n])?;
        left -= n as u64;
        let mut k = n;
        if left == 0 && n % 2 == 1 {
            if k == chunk.len() {
                // the pad byte does not fit in this fragment: send it in its own
                write_pdv(sock, &mut out, context_id, false, false, &chunk[..n - 1])?;
                chunk[0] = chunk[n - 1];
                k = 1;
            }
            chunk[k] = 0;
            k += 1;
            return write_pdv(sock, &mut out, context_id, false, true, &chunk[..k]);
        }
        write_pdv(sock, &mut out, context_id, false, left == 0, &chunk[..k])?;
    }
    Ok(())
}

/// A `Write` that sends what it is given as data set P-DATA fragments; the last fragment is
/// held back until [`PdvWriter::finish`], so the total length need not be known in advance.
pub struct PdvWriter<'a> {
    sock: &'a mut TcpStream,
    context_id: u8,
    max_fragment: usize,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl<'a> PdvWriter<'a> {
    /// A writer for one data set on `context_id`.
    pub fn new(sock: &'a mut TcpStream, peer_max_pdu: u32, context_id: u8) -> Self {
        let max_fragment = max_fragment(peer_max_pdu);
        Self {
            sock,
            context_id,
            max_fragment,
            buf: Vec::with_capacity(max_fragment),
            out: Vec::with_capacity(max_fragment + 12),
        }
    }

    /// Send what is left as the last fragment (padded to an even length).
    pub fn finish(mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() % 2 == 1 {
            buf.push(0);
        }
        write_pdv(self.sock, &mut self.out, self.context_id, false, true, &buf)
    }
}

impl Write for PdvWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == self.max_fragment {
                let buf = std::mem::take(&mut self.buf);
                write_pdv(
                    self.sock,
                    &mut self.out,
                    self.context_id,
                    false,
                    false,
                    &buf,
                )?;
                self.buf = buf;
                self.buf.clear();
            }
            let k = (self.max_fragment - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..k]);
            rest = &rest[k..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_pdv(
    sock: &mut TcpStream,
    out: &mut Vec<u8>,
    context_id: u8,
    is_command: bool,
    is_last: bool,
    chunk: &[u8],
) -> io::Result<()> {
    out.clear();
    push_pdv(out, context_id, is_command, is_last, chunk);
    sock.write_all(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pdvs() {
        let mut b = Vec::new();
        b.extend_from_slice(&5u32.to_be_bytes());
        b.extend_from_slice(&[1, 3, 9, 9, 9]);
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&[3, 0, 7]);
        let p = split_pdvs(&b).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_command && p[0].is_last);
        assert_eq!(p[0].data, &[9, 9, 9]);
        assert!(!p[1].is_command && !p[1].is_last);
        assert_eq!(p[1].context_id, 3);
    }

    #[test]
    fn refuses_bad_pdvs() {
        // length past the end
        let mut b = Vec::new();
        b.extend_from_slice(&50u32.to_be_bytes());
        b.extend_from_slice(&[1, 3, 9]);
        assert!(split_pdvs(&b).is_err());
        // zero length
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&[1, 3]);
        assert!(split_pdvs(&b).is_err());
        // empty
        assert!(split_pdvs(&[]).is_err());
        // huge length
        let mut b = Vec::new();
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.extend_from_slice(&[1, 3]);
        assert!(split_pdvs(&b).is_err());
    }

    /// A P-DATA PDU of `body` bytes filled with `fill`.
    fn pdata(body: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![types::P_DATA, 0];
        v.extend_from_slice(&(body as u32).to_be_bytes());
        v.extend(std::iter::repeat_n(fill, body));
        v
    }

    #[test]
    fn reads_pdus_that_share_a_read_or_outgrow_the_buffer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let big = READ_CHUNK * 3 + 5;
        let sender = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            let mut all = pdata(10, 1);
            all.extend(pdata(3, 2));
            all.extend(pdata(big, 3));
            all.extend(pdata(7, 4));
            // one write for all four, then a PDU split across two writes
            c.write_all(&all).unwrap();
            let last = pdata(20, 5);
            c.write_all(&last[..4]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            c.write_all(&last[4..]).unwrap();
        });
        let (mut sock, _) = listener.accept().unwrap();
        let mut reader = PduReader::new(Duration::from_secs(5), Duration::from_secs(5));
        let mut buf = Vec::new();
        for (len, fill) in [(10, 1u8), (3, 2), (big, 3), (7, 4), (20, 5)] {
            let t = reader
                .read(&mut sock, |_| u32::MAX, None, &mut buf)
                .unwrap();
            assert_eq!(t, types::P_DATA);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|b| *b == fill), "PDU of {len} bytes");
        }
        sender.join().unwrap();
        assert!(matches!(
            reader.read(&mut sock, |_| u32::MAX, None, &mut buf),
            Err(PduError::Closed)
        ));
    }

    #[test]
    fn a_trickled_pdu_misses_its_whole_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            // one byte every 100 ms: each read is quick, the PDU takes 4 s
            for b in pdata(34, 1) {
                if c.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (mut sock, _) = listener.accept().unwrap();
        let mut reader = PduReader::new(Duration::from_secs(10), Duration::from_secs(10));
        let mut buf = Vec::new();
        let t0 = Instant::now();
        let r = reader.read_by(
            &mut sock,
            |_| u32::MAX,
            t0 + Duration::from_millis(800),
            &mut buf,
        );
        assert!(matches!(r, Err(PduError::Timeout)), "{r:?}");
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t0.elapsed()
        );
        drop(sock);
        sender.join().unwrap();
    }

    #[test]
    fn a_pdu_that_stops_halfway_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&pdata(100, 1)[..50]).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
        });
        let (mut sock, _) = listener.accept().unwrap();
        let mut reader = PduReader::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut buf = Vec::new();
        // a timeout, not the close that comes after 1.5 s
        let r = reader.read(&mut sock, |_| u32::MAX, None, &mut buf);
        assert!(matches!(r, Err(PduError::Timeout)), "{r:?}");
        sender.join().unwrap();
    }
}
