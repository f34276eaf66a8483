//! Application Entity titles (PS3.5: AE VR, at most 16 characters, no backslash or controls).

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use thiserror::Error;

/// Why a string is not an AE title.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AeTitleError {
    /// Empty or only spaces.
    #[error("AE title is empty")]
    Empty,
    /// More than 16 characters.
    #[error("AE title is longer than 16 characters")]
    TooLong,
    /// A backslash, a control character or a non-ASCII character.
    #[error("AE title contains a backslash, control or non-ASCII character")]
    BadCharacter,
}

/// A validated AE title, stored without leading or trailing spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AeTitle(String);

impl AeTitle {
    /// Validate and normalise (trim spaces and NUL padding).
    pub fn new(raw: &str) -> Result<Self, AeTitleError> {
        let t = raw.trim_matches([' ', '\0']);
        if t.is_empty() {
            return Err(AeTitleError::Empty);
        }
        if t.len() > 16 {
            return Err(AeTitleError::TooLong);
        }
        if !t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
            return Err(AeTitleError::BadCharacter);
        }
        Ok(Self(t.to_string()))
    }

    /// The title as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AeTitle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AeTitle::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert_eq!(AeTitle::new(" CAIRN  ").unwrap().as_str(), "CAIRN");
        assert_eq!(AeTitle::new(""), Err(AeTitleError::Empty));
        assert_eq!(
            AeTitle::new("ABCDEFGHIJKLMNOPQ"),
            Err(AeTitleError::TooLong)
        );
        assert_eq!(AeTitle::new("A\\B"), Err(AeTitleError::BadCharacter));
        assert_eq!(AeTitle::new("A\nB"), Err(AeTitleError::BadCharacter));
    }
}
