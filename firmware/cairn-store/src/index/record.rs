//! What the index keeps about a received instance, as the DICOM layer hands it over.

/// Patient-level attributes, decoded to UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientInfo {
    /// Patient ID (0010,0020).
    pub id: String,
    /// Issuer of Patient ID (0010,0021).
    pub issuer: String,
    /// Patient's Name (0010,0010), DICOM PN form.
    pub name: String,
    /// Patient's Birth Date (0010,0030).
    pub birth_date: String,
    /// Patient's Sex (0010,0040).
    pub sex: String,
}

/// Study-level attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyInfo {
    /// Study Instance UID.
    pub uid: String,
    /// Study Date.
    pub date: String,
    /// Study Time.
    pub time: String,
    /// Study Description.
    pub description: String,
    /// Accession Number.
    pub accession: String,
    /// Referring Physician's Name.
    pub referring_physician: String,
    /// Study ID.
    pub study_id: String,
}

/// Series-level attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesInfo {
    /// Series Instance UID.
    pub uid: String,
    /// Modality.
    pub modality: String,
    /// Series Number.
    pub number: String,
    /// Series Description.
    pub description: String,
    /// Body Part Examined.
    pub body_part: String,
}

/// Everything the index keeps about one received instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Patient level.
    pub patient: PatientInfo,
    /// Study level.
    pub study: StudyInfo,
    /// Series level.
    pub series: SeriesInfo,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Instance Number.
    pub instance_number: String,
    /// Transfer syntax the data set is encoded in.
    pub transfer_syntax: String,
}
