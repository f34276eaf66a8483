//! The bundles' `holds.csv`: every legal hold the box knew when the bundle was built, active
//! and released, so a box rebuilt from its cold copies knows them (the newest bundle holds the
//! newest list). RFC 4180 with a header line, one row per hold; an empty field is an absent
//! value: a hold on a patient has no `study_uid`, a hold on a study no `patient_id` or
//! `issuer`, an active hold no `released_*`. Bundles written before this member existed lack
//! it, and are valid.

use crate::csv;
use crate::ArchiveError;
use cairn_store::HoldRecord;

/// Name of the holds member.
pub const HOLDS_CSV: &str = "holds.csv";

/// The `holds.csv` header line (column names).
pub const HOLDS_COLUMNS: &[&str] = &[
    "id",
    "patient_id",
    "issuer",
    "study_uid",
    "reason",
    "placed_by",
    "placed_at",
    "released_by",
    "released_at",
    "release_reason",
];

/// The whole `holds.csv` text for these holds (the header alone for none).
pub fn holds_csv(holds: &[HoldRecord]) -> String {
    let mut out = String::new();
    csv::push_row(&mut out, HOLDS_COLUMNS);
    for h in holds {
        let id = h.id.to_string();
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let (patient_id, issuer, study_uid) =
            (opt(&h.patient_id), opt(&h.issuer), opt(&h.study_uid));
        let (released_by, released_at, release_reason) = (
            opt(&h.released_by),
            opt(&h.released_at),
            opt(&h.release_reason),
        );
        csv::push_row(
            &mut out,
            &[
                &id,
                &patient_id,
                &issuer,
                &study_uid,
                &h.reason,
                &h.placed_by,
                &h.placed_at,
                &released_by,
                &released_at,
                &release_reason,
            ],
        );
    }
    out
}

/// Parse `holds.csv` text back into holds. A hold with a `patient_id` is on that patient (its
/// `issuer` is kept, `""` for none); otherwise it is on its `study_uid`.
pub fn parse_holds_csv(text: &str) -> Result<Vec<HoldRecord>, ArchiveError> {
    let bad = |why: String| ArchiveError::Format(format!("{HOLDS_CSV}: {why}"));
    let mut rows = csv::parse(text).into_iter();
    let header = rows.next().unwrap_or_default();
    let idx =
        csv::positions(&header, HOLDS_COLUMNS).map_err(|c| bad(format!("lacks the column {c}")))?;
    let mut out = Vec::new();
    for row in rows {
        if row.len() == 1 && row[0].is_empty() {
            continue;
        }
        let g = |i: usize| row.get(idx[i]).cloned().unwrap_or_default();
        let some = |i: usize| Some(g(i)).filter(|s| !s.is_empty());
        let id = g(0)
            .parse()
            .map_err(|_| bad(format!("bad hold number {:?}", g(0))))?;
        let patient_id = some(1);
        out.push(HoldRecord {
            id,
            issuer: patient_id.is_some().then(|| g(2)),
            patient_id,
            study_uid: some(3),
            reason: g(4),
            placed_by: g(5),
            placed_at: g(6),
            released_by: some(7),
            released_at: some(8),
            release_reason: some(9),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_patient() -> HoldRecord {
        HoldRecord {
            id: 3,
            patient_id: Some("PID,1".into()),
            issuer: Some(String::new()),
            reason: "court order \"Doe v. Roe\",\nsecond line\r\nthird".into(),
            placed_by: "admin".into(),
            placed_at: "2026-01-02T03:04:05Z".into(),
            ..Default::default()
        }
    }

    fn on_study_released() -> HoldRecord {
        HoldRecord {
            id: 7,
            study_uid: Some("1.2.840.99".into()),
            reason: "audit".into(),
            placed_by: "dpo".into(),
            placed_at: "2026-02-01T00:00:00Z".into(),
            released_by: Some("admin".into()),
            released_at: Some("2026-03-01T00:00:00Z".into()),
            release_reason: Some("closed, \"finally\"".into()),
            ..Default::default()
        }
    }

    #[test]
    fn holds_round_trip_with_quotes_commas_and_line_breaks() {
        let holds = vec![on_patient(), on_study_released()];
        let text = holds_csv(&holds);
        assert!(text.starts_with(
            "id,patient_id,issuer,study_uid,reason,placed_by,placed_at,released_by,\
             released_at,release_reason\n"
        ));
        assert!(text.contains("\"court order \"\"Doe v. Roe\"\",\nsecond line\r\nthird\""));
        assert!(text.contains("3,\"PID,1\",,,"));
        assert_eq!(
            parse_holds_csv(&text).unwrap_or_else(|e| panic!("{e}")),
            holds
        );
    }

    #[test]
    fn no_holds_is_the_header_alone() {
        let text = holds_csv(&[]);
        assert_eq!(text.lines().count(), 1);
        assert_eq!(
            parse_holds_csv(&text).unwrap_or_else(|e| panic!("{e}")),
            vec![]
        );
        assert_eq!(parse_holds_csv("").ok(), None);
    }

    #[test]
    fn columns_are_found_by_name_and_bad_rows_are_refused() {
        let text = "reason,id,study_uid,patient_id,issuer,placed_by,placed_at,released_by,\
                    released_at,release_reason,later\nwhy,5,1.2,,,u,t,,,,x\n";
        let holds = parse_holds_csv(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(holds[0].id, 5);
        assert_eq!(holds[0].study_uid.as_deref(), Some("1.2"));
        assert_eq!(holds[0].issuer, None);
        let cols = HOLDS_COLUMNS.join(",");
        for bad in [
            "id,reason\n1,x\n".to_string(),
            format!("{cols}\nx,P1,,,why,u,t,,,\n"),
        ] {
            assert!(
                matches!(parse_holds_csv(&bad), Err(ArchiveError::Format(_))),
                "{bad}"
            );
        }
    }
}
