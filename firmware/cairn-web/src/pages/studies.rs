//! The Studies search page and one study's page.

use super::layout::{box_time_zone, ctx, fail, page, Ctx};
use super::retention::{outcome_notice, retention_card, with_status, Outcome};
use crate::data::{self, human_bytes, StudySearch};
use crate::extract::Q;
use crate::{blocking, Caller, Panel};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use maud::html;

/// A DICOM person name for people: `DOE^JOHN` -> `DOE, JOHN`.
fn person(pn: &str) -> String {
    let first = pn.split('=').next().unwrap_or("");
    let parts: Vec<&str> = first.split('^').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [] => String::new(),
        [family] => family.to_string(),
        [family, rest @ ..] => format!("{family}, {}", rest.join(" ")),
    }
}

/// A DICOM date `YYYYMMDD` as `YYYY-MM-DD`; anything else (received text need not be digits)
/// is shown as received.
fn date(d: &str) -> String {
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8])
    } else {
        d.to_string()
    }
}

/// GET /studies: the search form and, once searched, the hits.
pub(super) async fn studies(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Q(s): Q<StudySearch>,
) -> Response {
    let c = ctx(&panel, &caller, "/studies").await;
    let searched = !s.is_empty();
    let form = s.clone();
    let result = if searched {
        let p = panel.clone();
        Some(blocking(move || data::search_studies(&p.0.data, &s)).await)
    } else {
        None
    };
    let (hits, more, error) = match result {
        Some(Ok((h, m))) => (h, m, None),
        Some(Err(e)) => (Vec::new(), false, Some(e.public_message())),
        None => (Vec::new(), false, None),
    };
    page(
        &c,
        "Studies",
        false,
        html! {
            h1 { "Studies" }
            form.search method="get" action="/studies" {
                label { "Patient name" input type="search" name="name" value=(form.name) autocomplete="off"; }
                label { "Patient ID" input type="search" name="id" value=(form.id) autocomplete="off"; }
                label { "Date (YYYYMMDD or range)" input type="search" name="date" value=(form.date) placeholder="20240101-20240131"; }
                label { "Modality" input type="search" name="modality" value=(form.modality) placeholder="CT"; }
                label { "Accession" input type="search" name="accession" value=(form.accession); }
                button type="submit" { "Search" }
            }
            @if let Some(e) = error { p.error { (e) } }
            @if searched {
                p.small id="study-count" { (hits.len()) " found" @if more { " (more: narrow the search)" } }
                table.studies id="studies" {
                    thead { tr { th { "Date" } th { "Patient" } th { "ID" } th { "Modality" } th { "Accession" } th { "Description" } th { "Images" } } }
                    tbody {
                        @for h in &hits {
                            tr {
                                td { a href={"/studies/" (h.study_uid)} { (date(&h.date)) } }
                                td.patient { a href={"/studies/" (h.study_uid)} { (person(&h.patient_name)) } }
                                td { (h.patient_id) }
                                td { (h.modalities) }
                                td { (h.accession) }
                                td { (h.description) }
                                td { (h.instances) }
                            }
                        }
                    }
                }
            } @else {
                p.small { "Type part of a name, an ID, a date, a modality or an accession number." }
            }
        },
    )
}

/// GET /studies/{uid}: one study.
pub(super) async fn study(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> Response {
    let c = ctx(&panel, &caller, "/studies").await;
    study_view(&panel, &c, uid, None).await
}

/// One study's page, with the outcome of a lifecycle form above it.
pub(super) async fn study_view(
    panel: &Panel,
    c: &Ctx,
    uid: String,
    outcome: Option<Outcome>,
) -> Response {
    let (p, lc) = (panel.clone(), panel.lifecycle());
    let d = match blocking(move || data::study(&p.0.data, &uid, &lc)).await {
        Ok(d) => d,
        Err(e) => return fail(c, e),
    };
    let tz = box_time_zone(panel).await;
    let s = &d.study;
    let r = page(
        c,
        "Study",
        false,
        html! {
            (outcome_notice(outcome.as_ref()))
            h1.patient { (person(&s.patient_name)) }
            dl.facts {
                dt { "Patient ID" } dd { (s.patient_id) }
                dt { "Study date" } dd { (date(&s.date)) }
                dt { "Accession" } dd { (s.accession) }
                dt { "Description" } dd { (s.description) }
                dt { "Size" } dd { (human_bytes(d.bytes as u64)) " in " (s.instances) " images" }
                dt { "Study UID" } dd.uid { (s.study_uid) }
            }
            (retention_card(c, &d, &tz))
            @if !d.conflicts.is_empty() {
                h2 { "Values that differ between images" }
                p.small { "The first value received is kept. Later images carried these; check which is right." }
                table id="conflicts" {
                    thead { tr { th { "Field" } th { "Kept" } th { "Received" } th { "Received at" } } }
                    tbody {
                        @for cf in &d.conflicts {
                            tr {
                                td { (cf.label) }
                                td { (cf.kept) }
                                td { (cf.received) @if cf.reason == "invalid" { " (not a valid value: not used)" } }
                                td { (cf.received_at) }
                            }
                        }
                    }
                }
            }
            h2 { "Series" }
            table {
                thead { tr { th { "#" } th { "Modality" } th { "Description" } th { "Images" } th { "Size" } } }
                tbody {
                    @for se in &d.series {
                        tr { td { (se.number) } td { (se.modality) } td { (se.description) } td { (se.instances) } td { (human_bytes(se.bytes as u64)) } }
                    }
                }
            }
            h2 { "Copies" }
            table {
                thead { tr { th { "Where" } th { "Images" } th { "Checked" } } }
                tbody {
                    @for cp in &d.copies {
                        tr { td { (cp.place) } td { (cp.instances) } td { @if cp.verified { "verified" } @else { "not yet verified" } } }
                    }
                }
            }
        },
    );
    with_status(r, outcome.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_people() {
        assert_eq!(person("DOE^JOHN^^^"), "DOE, JOHN");
        assert_eq!(person("DOE"), "DOE");
        assert_eq!(date("20240131"), "2024-01-31");
        assert_eq!(date("123é567"), "123é567");
    }
}
