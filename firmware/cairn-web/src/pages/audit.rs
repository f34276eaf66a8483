//! The Audit page: the trail, filtered and paged, in the box's time zone; and its CSV export.

use super::layout::{ctx, error_page, fail, page};
use crate::data::{self, AuditFilter};
use crate::extract::Q;
use crate::{blocking, read, words, Caller, Panel};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use maud::html;

/// Rows on one page of the Audit page.
const AUDIT_PAGE_ROWS: usize = 50;

/// GET /audit: one page of the filtered trail.
pub(super) async fn audit(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Q(mut f): Q<AuditFilter>,
) -> Response {
    let c = ctx(&panel, &caller, "/audit").await;
    let tz_name = read::current_settings(&panel)
        .await
        .map_or_else(|_| "UTC".to_string(), |s| s.time_zone);
    let tz = words::time_zone(&tz_name);
    f.limit = Some(AUDIT_PAGE_ROWS);
    // From and To are days where the box is, like the times shown.
    f.days_in = Some(tz_name.clone());
    let page_no = f.page.unwrap_or(1);
    let p = panel.clone();
    let ff = f.clone();
    let r = blocking(move || {
        Ok((
            data::audit_rows(&p.0.data, &ff)?,
            data::audit_count(&p.0.data, &ff)?,
            data::audit_actions(&p.0.data)?,
        ))
    })
    .await;
    let (rows, count, actions) = match r {
        Ok(x) => x,
        Err(e) => return fail(&c, e),
    };
    let pages = (count.max(0) as usize).div_ceil(AUDIT_PAGE_ROWS).max(1);
    // The filters travel in every link: paging, the CSV export, a bookmark.
    let query = |page: Option<usize>| {
        let mut q = vec![
            ("actor", f.actor.clone()),
            ("action", f.action.clone()),
            ("from", f.from.clone()),
            ("to", f.to.clone()),
        ];
        if let Some(p) = page {
            q.push(("page", p.to_string()));
        }
        serde_urlencoded::to_string(q).unwrap_or_default()
    };
    page(
        &c,
        "Audit",
        false,
        html! {
            h1 { "Audit trail" }
            form.search method="get" action="/audit" {
                label { "Person" input type="search" name="actor" value=(f.actor) placeholder="user:alice"; }
                label { "Action"
                    select name="action" {
                        option value="" { "any" }
                        @for a in &actions { option value=(a) selected[*a == f.action] { (a) } }
                    }
                }
                label { "From" input type="date" name="from" value=(f.from); }
                label { "To" input type="date" name="to" value=(f.to); }
                button type="submit" { "Filter" }
                a.button href={"/audit.csv?" (query(None))} download="cairn-audit.csv" id="csv" { "Export CSV" }
            }
            p.small id="audit-count" { (count) " entries, page " (page_no) " of " (pages) "; times in " (tz_name) }
            table.audit id="audit" {
                thead { tr { th { "#" } th { "When (" (tz_name) ")" } th { "Who" } th { "What" } th { "On" } th { "Details" } } }
                tbody {
                    @for r in &rows {
                        tr data-seq=(r.seq) { td { (r.seq) } td.when { (words::local_time(&r.at, &tz)) } td { (r.actor) } td { (r.action) } td.uid { (r.object) } td.detail { (words::audit_detail(&r.action, &r.object, &r.detail)) } }
                    }
                }
            }
            div.pages {
                @if page_no > 1 { a.button href={"/audit?" (query(Some(page_no - 1)))} id="newer" { "Newer" } }
                span { "page " (page_no) " of " (pages) }
                @if page_no < pages { a.button href={"/audit?" (query(Some(page_no + 1)))} id="older" { "Older" } }
            }
        },
    )
}

/// GET /audit.csv: the filtered trail as CSV, in the days the page shows.
pub(super) async fn audit_csv(State(panel): State<Panel>, Q(mut f): Q<AuditFilter>) -> Response {
    f.format = "csv".into();
    // The page's export: the same days as the page shows (the API's are UTC days).
    f.days_in = read::current_settings(&panel)
        .await
        .ok()
        .map(|s| s.time_zone);
    match read::audit_response(&panel, f).await {
        Ok(r) => r,
        Err(e) => error_page(None, e),
    }
}
