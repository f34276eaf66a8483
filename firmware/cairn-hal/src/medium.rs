//! Ids of removable media (tape cartridge barcodes, disc names) as the emulators use them for
//! file and directory names.

/// The characters an id may use, for messages.
pub(crate) const ID_RULE: &str = "1 to 32 of A-Z a-z 0-9 - _";

/// Whether `id` is 1 to 32 of `A-Z a-z 0-9 - _` (so it is safe as a file name).
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
