//! Sentences the engine publishes about a target's drive and volume, worded in one place.

use crate::catalog::LiveTarget;
use crate::MediumKind;

/// When the box chose a volume's name (its drive cannot read a printed one), the words that
/// ask the person to write it on the cartridge or disc; nothing otherwise.
pub(super) fn write_it_on(name: &str, kind: MediumKind, chosen: bool) -> String {
    if !chosen {
        return String::new();
    }
    format!(": write {name} on {}", kind.where_to_write_name())
}

/// What the status and a refused load tell a person about a tape that cannot be read at its
/// beginning.
pub(super) fn unreadable_advice(target: &str, several: bool) -> String {
    format!(
        "This tape cannot be read at its start. If it is new or erased, label it with \
         `cairnctl archive load --label-unreadable{}` (anything on it is overwritten); \
         otherwise eject it and load another. Nothing is written to it until then.",
        if several {
            format!(" --target {target}")
        } else {
            String::new()
        }
    )
}

/// The drive's state, with its message in brackets when it has one.
pub(super) fn drive_says(live: &LiveTarget) -> String {
    if live.message.is_empty() {
        live.drive.clone()
    } else {
        format!("{} ({})", live.drive, live.message)
    }
}
