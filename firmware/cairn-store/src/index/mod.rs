//! The SQLite index: schema, migrations, and the upserts the writer runs.

mod insert;
mod open;
mod record;
mod recovery;
mod schema;
#[cfg(test)]
mod tests;

pub use insert::ArchivedChange;
pub(crate) use insert::{index_instance, Indexed};
pub(crate) use open::{open_ro, open_rw};
pub use record::{InstanceRecord, PatientInfo, SeriesInfo, StudyInfo};
pub(crate) use recovery::{
    max_instance_id, roll_back_instance, set_synced_watermark, sha_indexed, synced_watermark,
};
