//! DICOM UID checks (PS3.5 section 9), tuned for an archive: refuse what is unsafe or
//! unusable, accept the minor violations real modalities produce.

use thiserror::Error;

/// Why a UID cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UidError {
    /// Nothing left once padding is trimmed.
    #[error("empty UID")]
    Empty,
    /// More than 64 characters.
    #[error("UID longer than 64 characters ({0})")]
    TooLong(usize),
    /// A character other than a digit or a dot (this covers `/`, `\`, NUL, letters).
    #[error("UID contains a character other than digits and dots")]
    BadCharacter,
    /// Starts or ends with a dot, or has two dots in a row.
    #[error("UID has an empty component")]
    EmptyComponent,
}

/// A tolerated deviation from PS3.5, worth a log line but not a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UidWarning {
    /// A multi-digit component starting with 0 (seen from real modalities).
    LeadingZero,
}

/// Trim DICOM padding (trailing NUL and spaces, leading spaces) from a UID value.
pub fn trim_uid(raw: &str) -> &str {
    raw.trim_end_matches(['\0', ' ']).trim_start_matches(' ')
}

/// Check a UID once padding is trimmed. Returns the trimmed UID and any tolerated warning.
pub fn check_uid(raw: &str) -> Result<(&str, Option<UidWarning>), UidError> {
    let uid = trim_uid(raw);
    if uid.is_empty() {
        return Err(UidError::Empty);
    }
    if uid.len() > 64 {
        return Err(UidError::TooLong(uid.len()));
    }
    if !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(UidError::BadCharacter);
    }
    let mut warning = None;
    for component in uid.split('.') {
        if component.is_empty() {
            return Err(UidError::EmptyComponent);
        }
        if component.len() > 1 && component.starts_with('0') {
            warning = Some(UidWarning::LeadingZero);
        }
    }
    Ok((uid, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_padded_uids() {
        assert_eq!(
            check_uid("1.2.840.10008.1.1\0"),
            Ok(("1.2.840.10008.1.1", None))
        );
        assert_eq!(check_uid("1.2.3 "), Ok(("1.2.3", None)));
    }

    #[test]
    fn tolerates_leading_zero() {
        assert_eq!(
            check_uid("1.2.03"),
            Ok(("1.2.03", Some(UidWarning::LeadingZero)))
        );
        assert_eq!(check_uid("1.0.3"), Ok(("1.0.3", None)));
    }

    #[test]
    fn refuses_hostile_uids() {
        assert_eq!(check_uid("../../etc/passwd"), Err(UidError::BadCharacter));
        assert_eq!(check_uid("/abs/path"), Err(UidError::BadCharacter));
        assert_eq!(check_uid("1.2\\3"), Err(UidError::BadCharacter));
        assert_eq!(check_uid("1.2\x003"), Err(UidError::BadCharacter));
        assert_eq!(check_uid("1.2.abc"), Err(UidError::BadCharacter));
        assert_eq!(check_uid(""), Err(UidError::Empty));
        assert_eq!(check_uid("\0\0"), Err(UidError::Empty));
        assert_eq!(check_uid("1..2"), Err(UidError::EmptyComponent));
        assert_eq!(check_uid(".1.2"), Err(UidError::EmptyComponent));
        let long = "1.".repeat(32) + "1";
        assert_eq!(check_uid(&long), Err(UidError::TooLong(65)));
        let max = "1".repeat(64);
        assert!(check_uid(&max).is_ok());
    }
}
