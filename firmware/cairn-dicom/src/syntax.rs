//! Which SOP classes and transfer syntaxes the node accepts, and how each syntax is encoded.

use dicom_core::dictionary::{UidDictionary, UidType};
use dicom_dictionary_std::StandardSopClassDictionary;

/// Storage Commitment Push Model SOP Class.
pub const STORAGE_COMMITMENT_PUSH: &str = "1.2.840.10008.1.20.1";
/// Its well-known SOP Instance.
pub const STORAGE_COMMITMENT_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

/// Implicit VR Little Endian.
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// Verification SOP Class.
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Patient Root Query/Retrieve Information Model - FIND.
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
/// Patient Root Query/Retrieve Information Model - MOVE.
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
/// Patient Root Query/Retrieve Information Model - GET.
pub const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
/// Study Root Query/Retrieve Information Model - FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
/// Study Root Query/Retrieve Information Model - MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
/// Study Root Query/Retrieve Information Model - GET.
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// The query/retrieve service of an abstract syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrService {
    /// C-FIND.
    Find,
    /// C-MOVE.
    Move,
    /// C-GET.
    Get,
}

/// Query/retrieve SOP classes: the service and whether it is the Study Root model.
pub fn qr_class(uid: &str) -> Option<(QrService, bool)> {
    match uid {
        PATIENT_ROOT_FIND => Some((QrService::Find, false)),
        PATIENT_ROOT_MOVE => Some((QrService::Move, false)),
        PATIENT_ROOT_GET => Some((QrService::Get, false)),
        STUDY_ROOT_FIND => Some((QrService::Find, true)),
        STUDY_ROOT_MOVE => Some((QrService::Move, true)),
        STUDY_ROOT_GET => Some((QrService::Get, true)),
        _ => None,
    }
}

/// How a transfer syntax lays out the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Implicit VR Little Endian.
    ImplicitLe,
    /// Explicit VR Little Endian (also every encapsulated syntax).
    ExplicitLe,
    /// Explicit VR Big Endian (retired, still sent by old devices).
    ExplicitBe,
    /// Deflated Explicit VR Little Endian.
    DeflatedLe,
}

/// The encoding of a transfer syntax, or `None` when cairn does not know it (then it is refused
/// at negotiation, since a data set we cannot walk is a data set we cannot validate).
pub fn encoding(ts: &str) -> Option<Encoding> {
    match ts {
        "1.2.840.10008.1.2" => Some(Encoding::ImplicitLe),
        "1.2.840.10008.1.2.1"
        | "1.2.840.10008.1.2.1.98"
        | "1.2.840.10008.1.2.5"
        | "1.2.840.10008.1.2.8.1" => Some(Encoding::ExplicitLe),
        "1.2.840.10008.1.2.2" => Some(Encoding::ExplicitBe),
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => Some(Encoding::DeflatedLe),
        _ => {
            // JPEG, JPEG-LS, JPEG 2000, HTJ2K, JPIP, MPEG, HEVC, JPEG XL: encapsulated pixel data
            // in an Explicit VR Little Endian data set.
            let rest = ts.strip_prefix("1.2.840.10008.1.2.4.")?;
            let n: u32 = rest.parse().ok()?;
            (50..=250).contains(&n).then_some(Encoding::ExplicitLe)
        }
    }
}

/// True for a syntax with encapsulated (compressed) pixel data that cairn knows: JPEG, JPEG-LS,
/// JPEG 2000, RLE and the other `1.2.840.10008.1.2.4.*` ones; not the deflated or uncompressed
/// syntaxes.
pub fn is_compressed(ts: &str) -> bool {
    ts == "1.2.840.10008.1.2.5"
        || (ts.starts_with("1.2.840.10008.1.2.4.")
            && ts != "1.2.840.10008.1.2.4.95"
            && encoding(ts) == Some(Encoding::ExplicitLe))
}

/// True when the UID is a storage SOP class of the standard dictionary.
pub fn is_storage_class(uid: &str) -> bool {
    let Some(e) = StandardSopClassDictionary.by_uid(uid) else {
        return false;
    };
    e.r#type == UidType::SopClass
        && e.name.contains("Storage")
        && !e.name.contains("Commitment")
        && !e.name.contains("Storage Management")
        && !e.name.contains("Directory Storage")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes() {
        assert!(is_storage_class("1.2.840.10008.5.1.4.1.1.2")); // CT
        assert!(is_storage_class("1.2.840.10008.5.1.4.1.1.4")); // MR
        assert!(is_storage_class("1.2.840.10008.5.1.4.1.1.88.22")); // Enhanced SR
        assert!(!is_storage_class("1.2.840.10008.1.20.1")); // storage commitment
        assert!(!is_storage_class("1.2.840.10008.1.3.10")); // DICOMDIR
        assert!(!is_storage_class(VERIFICATION));
        assert!(!is_storage_class("1.2.3.4"));
    }

    #[test]
    fn compressed_syntaxes() {
        assert!(is_compressed("1.2.840.10008.1.2.5"));
        assert!(is_compressed("1.2.840.10008.1.2.4.50"));
        assert!(is_compressed("1.2.840.10008.1.2.4.90"));
        assert!(!is_compressed(EXPLICIT_LE));
        assert!(!is_compressed(IMPLICIT_LE));
        assert!(!is_compressed("1.2.840.10008.1.2.1.99"));
        assert!(!is_compressed("1.2.840.10008.1.2.4.95"));
        assert!(!is_compressed("1.2.840.10008.1.2.2"));
        assert!(!is_compressed("1.2.840.10008.1.2.4.x"));
    }

    #[test]
    fn encodings() {
        assert_eq!(encoding("1.2.840.10008.1.2"), Some(Encoding::ImplicitLe));
        assert_eq!(
            encoding("1.2.840.10008.1.2.4.50"),
            Some(Encoding::ExplicitLe)
        );
        assert_eq!(
            encoding("1.2.840.10008.1.2.4.201"),
            Some(Encoding::ExplicitLe)
        );
        assert_eq!(
            encoding("1.2.840.10008.1.2.1.99"),
            Some(Encoding::DeflatedLe)
        );
        assert_eq!(encoding("1.2.840.10008.1.2.2"), Some(Encoding::ExplicitBe));
        assert_eq!(encoding("1.2.3.4"), None);
        assert_eq!(encoding("1.2.840.10008.1.2.4.x"), None);
    }
}
