//! A real data directory filled through the store's writer, for the query tests.

use crate::{DataDir, InstanceRecord, Store, StoreJob};
use rusqlite::Connection;

/// One instance to store: where it belongs and its bytes.
pub(crate) struct Image<'a> {
    pub sop: &'a str,
    pub study: &'a str,
    pub series: &'a str,
    pub patient: (&'a str, &'a str),
    pub date: &'a str,
    pub modality: &'a str,
    pub bytes: &'a [u8],
}

impl Image<'_> {
    fn record(&self) -> InstanceRecord {
        let mut r = InstanceRecord {
            sop_instance_uid: self.sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        (r.patient.id, r.patient.name) = (self.patient.0.into(), self.patient.1.into());
        r.study.uid = self.study.into();
        r.study.date = self.date.into();
        r.study.accession = format!("A{}", self.study);
        r.series.uid = self.series.into();
        r.series.modality = self.modality.into();
        r.series.number = self.series.rsplit('.').next().unwrap_or_default().into();
        r
    }
}

/// A data directory holding `images` (in order) and a read-only connection to its index.
pub(crate) fn stored(images: &[Image]) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = DataDir::new(dir.path());
    let store = Store::open(data.clone()).unwrap_or_else(|e| panic!("{e}"));
    for image in images {
        let mut w = store.spool().unwrap_or_else(|e| panic!("{e}"));
        w.write(image.bytes).unwrap_or_else(|e| panic!("{e}"));
        let spool = w.finish().unwrap_or_else(|e| panic!("{e}"));
        store
            .commit(StoreJob {
                spool,
                record: image.record(),
                source_ae: "TEST".into(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let conn = crate::find::query_connection(&data).unwrap_or_else(|e| panic!("{e}"));
    (dir, conn)
}

/// Two patients: study 1.1 (CT, two series, three images, one stored twice with other
/// bytes) of 2024-01-02 and study 1.2 (MR) of 2024-03-04.
pub(crate) fn two_studies() -> (tempfile::TempDir, Connection) {
    let img = |sop, study, series, modality, bytes| Image {
        sop,
        study,
        series,
        patient: if study == "1.1" {
            ("P1", "DUPONT^JEAN")
        } else {
            ("P2", "DOE^JANE")
        },
        date: if study == "1.1" {
            "20240102"
        } else {
            "20240304"
        },
        modality,
        bytes,
    };
    stored(&[
        img("1.1.1.1", "1.1", "1.1.1", "CT", b"one"),
        img("1.1.1.2", "1.1", "1.1.1", "CT", b"two!"),
        img("1.1.2.1", "1.1", "1.1.2", "CT", b"three"),
        img("1.1.1.2", "1.1", "1.1.1", "CT", b"two, again"),
        img("1.2.1.1", "1.2", "1.2.1", "MR", b"mr image"),
    ])
}
