//! DIMSE command sets (PS3.7 section 9 and annex E): group 0000, always Implicit VR Little Endian.

use thiserror::Error;

/// Command Field values (PS3.7 E.1).
pub mod command {
    /// C-STORE-RQ.
    pub const C_STORE_RQ: u16 = 0x0001;
    /// C-GET-RQ.
    pub const C_GET_RQ: u16 = 0x0010;
    /// C-FIND-RQ.
    pub const C_FIND_RQ: u16 = 0x0020;
    /// C-MOVE-RQ.
    pub const C_MOVE_RQ: u16 = 0x0021;
    /// C-ECHO-RQ.
    pub const C_ECHO_RQ: u16 = 0x0030;
    /// C-CANCEL-RQ.
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    /// Responses set this bit.
    pub const RESPONSE: u16 = 0x8000;
}

/// Status codes (PS3.4, PS3.7 annex C).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Refused: not authorized.
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    /// Unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class.
    pub const DATASET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

/// A DIMSE request refused: the status its response carries and the Error Comment (0000,0902)
/// that says why in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("status 0x{status:04X}: {comment}")]
pub struct Refusal {
    /// The response status.
    pub status: u16,
    /// Why, for the Error Comment, the log and the audit row.
    pub comment: String,
}

impl Refusal {
    /// A refusal with any status.
    pub fn new(status: u16, comment: impl Into<String>) -> Self {
        Self {
            status,
            comment: comment.into(),
        }
    }

    /// Error: cannot understand (0xC000), the request or its data set does not parse.
    pub fn cannot_understand(comment: impl Into<String>) -> Self {
        Self::new(status::CANNOT_UNDERSTAND, comment)
    }

    /// Refused: out of resources (0xA700).
    pub fn out_of_resources(comment: impl Into<String>) -> Self {
        Self::new(status::OUT_OF_RESOURCES, comment)
    }

    /// Out of resources because the archive's disk cannot be written (full or failing).
    pub fn disk_unwritable() -> Self {
        Self::out_of_resources("the archive cannot write to its disk (full or failing)")
    }

    /// Out of resources because the archive's disk cannot be read.
    pub fn disk_unreadable() -> Self {
        Self::out_of_resources("the archive cannot read its disk")
    }

    /// Error: the data set or identifier does not match the SOP class (0xA900).
    pub fn mismatch(comment: impl Into<String>) -> Self {
        Self::new(status::DATASET_MISMATCH, comment)
    }
}

/// "No data set" value of Command Data Set Type.
pub const NO_DATASET: u16 = 0x0101;

/// Largest command set accepted (commands are small; this bounds the buffer).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Why a command set was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// Ran past the end of the command bytes.
    #[error("command set is truncated")]
    Truncated,
    /// An element outside group 0000.
    #[error("command set holds element ({0:04x},{1:04x}) outside group 0000")]
    WrongGroup(u16, u16),
    /// (0000,0000) does not match the bytes that follow.
    #[error("command group length {declared} does not match {actual} bytes")]
    GroupLength {
        /// What it says.
        declared: u32,
        /// What follows.
        actual: usize,
    },
    /// A required element is missing or has the wrong size.
    #[error("command set lacks a valid {0}")]
    Missing(&'static str),
    /// Over MAX_COMMAND_BYTES.
    #[error("command set is too large")]
    TooLarge,
}

/// A decoded command set. Values are kept raw; accessors decode them.
#[derive(Debug, Clone, Default)]
pub struct Command {
    elements: Vec<(u16, Vec<u8>)>,
}

impl Command {
    /// Decode and check a command set.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::TooLarge);
        }
        let mut elements = Vec::new();
        let mut rest = bytes;
        let mut group_length: Option<(u32, usize)> = None;
        while !rest.is_empty() {
            if rest.len() < 8 {
                return Err(CommandError::Truncated);
            }
            let group = u16::from_le_bytes([rest[0], rest[1]]);
            let elem = u16::from_le_bytes([rest[2], rest[3]]);
            let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            if group != 0x0000 {
                return Err(CommandError::WrongGroup(group, elem));
            }
            if len as usize > rest.len() - 8 {
                return Err(CommandError::Truncated);
            }
            let value = &rest[8..8 + len as usize];
            rest = &rest[8 + len as usize..];
            if elem == 0x0000 {
                if len != 4 {
                    return Err(CommandError::Missing("(0000,0000) group length"));
                }
                let v = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                group_length = Some((v, rest.len()));
            }
            elements.push((elem, value.to_vec()));
        }
        if let Some((declared, actual)) = group_length {
            if declared as usize != actual {
                return Err(CommandError::GroupLength { declared, actual });
            }
        }
        let c = Command { elements };
        if c.u16(0x0100).is_none() {
            return Err(CommandError::Missing("(0000,0100) Command Field"));
        }
        let field = c.field();
        let is_rq = field & command::RESPONSE == 0;
        if is_rq && field != command::C_CANCEL_RQ && c.u16(0x0110).is_none() {
            return Err(CommandError::Missing("(0000,0110) Message ID"));
        }
        if c.u16(0x0800).is_none() {
            return Err(CommandError::Missing("(0000,0800) Command Data Set Type"));
        }
        Ok(c)
    }

    fn raw(&self, elem: u16) -> Option<&[u8]> {
        self.elements
            .iter()
            .find(|(e, _)| *e == elem)
            .map(|(_, v)| v.as_slice())
    }

    /// A US element.
    pub fn u16(&self, elem: u16) -> Option<u16> {
        match self.raw(elem)? {
            [a, b] => Some(u16::from_le_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A string element (UI, AE, LO), padding kept; invalid UTF-8 is replaced.
    pub fn string(&self, elem: u16) -> Option<String> {
        self.raw(elem)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Command Field.
    pub fn field(&self) -> u16 {
        self.u16(0x0100).unwrap_or(0)
    }
    /// Message ID (0 when absent).
    pub fn message_id(&self) -> u16 {
        self.u16(0x0110).unwrap_or(0)
    }
    /// True when a data set follows.
    pub fn has_dataset(&self) -> bool {
        self.u16(0x0800).is_some_and(|v| v != NO_DATASET)
    }
    /// Affected SOP Class UID, raw.
    pub fn affected_sop_class(&self) -> Option<String> {
        self.string(0x0002)
    }
    /// Affected SOP Instance UID, raw.
    pub fn affected_sop_instance(&self) -> Option<String> {
        self.string(0x1000)
    }
}

/// Builds a command set in tag order.
#[derive(Debug, Default)]
pub struct CommandBuilder {
    elements: Vec<(u16, Vec<u8>)>,
}

impl CommandBuilder {
    /// Start an empty command.
    pub fn new() -> Self {
        Self::default()
    }

    /// A US element.
    pub fn u16(mut self, elem: u16, v: u16) -> Self {
        self.elements.push((elem, v.to_le_bytes().to_vec()));
        self
    }

    /// A UI element (NUL-padded to even length).
    pub fn uid(mut self, elem: u16, v: &str) -> Self {
        let mut b = v.as_bytes().to_vec();
        if b.len() % 2 == 1 {
            b.push(0);
        }
        self.elements.push((elem, b));
        self
    }

    /// A text element (LO, AE...: space-padded to even length, at most 64 bytes).
    pub fn text(mut self, elem: u16, v: &str) -> Self {
        let mut b: Vec<u8> = v
            .bytes()
            .filter(|c| (0x20..0x7f).contains(c) && *c != b'\\')
            .take(64)
            .collect();
        if b.len() % 2 == 1 {
            b.push(b' ');
        }
        self.elements.push((elem, b));
        self
    }

    /// Encode with its group length.
    pub fn encode(mut self) -> Vec<u8> {
        self.elements.sort_by_key(|(e, _)| *e);
        let body_len: usize = self.elements.iter().map(|(_, v)| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        for (e, v) in self.elements {
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(&v);
        }
        out
    }
}

/// A response to a request: same SOP class/instance, no data set.
pub fn response(request: &Command, status: u16, comment: Option<&str>) -> Vec<u8> {
    let mut b = CommandBuilder::new()
        .u16(0x0100, request.field() | command::RESPONSE)
        .u16(0x0120, request.message_id())
        .u16(0x0800, NO_DATASET)
        .u16(0x0900, status);
    if let Some(c) = request.affected_sop_class() {
        b = b.uid(0x0002, crate::dimse::trim(&c));
    }
    if let Some(i) = request.affected_sop_instance() {
        b = b.uid(0x1000, crate::dimse::trim(&i));
    }
    if let Some(text) = comment {
        b = b.text(0x0902, text);
    }
    b.encode()
}

/// Trim UID padding for echoing back (never used to build a path).
pub fn trim(s: &str) -> &str {
    s.trim_end_matches(['\0', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_rq() -> Vec<u8> {
        CommandBuilder::new()
            .uid(0x0002, "1.2.840.10008.1.1")
            .u16(0x0100, command::C_ECHO_RQ)
            .u16(0x0110, 7)
            .u16(0x0800, NO_DATASET)
            .encode()
    }

    #[test]
    fn roundtrip() {
        let c = Command::decode(&echo_rq()).unwrap();
        assert_eq!(c.field(), command::C_ECHO_RQ);
        assert_eq!(c.message_id(), 7);
        assert!(!c.has_dataset());
        let r = Command::decode(&response(&c, status::SUCCESS, None)).unwrap();
        assert_eq!(r.field(), 0x8030);
        assert_eq!(r.u16(0x0120), Some(7));
        assert_eq!(r.u16(0x0900), Some(0));
        assert_eq!(
            r.affected_sop_class().as_deref(),
            Some("1.2.840.10008.1.1\0")
        );
    }

    #[test]
    fn refuses_bad_commands() {
        let mut b = echo_rq();
        b[8] = b[8].wrapping_add(2); // group length off by two
        assert!(matches!(
            Command::decode(&b),
            Err(CommandError::GroupLength { .. })
        ));
        let no_field = CommandBuilder::new()
            .u16(0x0110, 1)
            .u16(0x0800, NO_DATASET)
            .encode();
        assert_eq!(
            Command::decode(&no_field).unwrap_err(),
            CommandError::Missing("(0000,0100) Command Field")
        );
        let no_id = CommandBuilder::new().u16(0x0100, 1).u16(0x0800, 0).encode();
        assert_eq!(
            Command::decode(&no_id).unwrap_err(),
            CommandError::Missing("(0000,0110) Message ID")
        );
        let mut b = echo_rq();
        b.truncate(b.len() - 1);
        assert!(Command::decode(&b).is_err());
        let mut b = echo_rq();
        b.extend_from_slice(&[8, 0, 0x18, 0, 0, 0, 0, 0]);
        assert!(Command::decode(&b).is_err());
    }
}
