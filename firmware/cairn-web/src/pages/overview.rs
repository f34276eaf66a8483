//! The Overview page: the box's health in one sentence, storage, images received, the last
//! verified archive copy. It refreshes itself every 10 s.

use super::layout::{bar, bar_saying, box_time_zone, ctx, fail, page};
use crate::data::{self, human_bytes, human_secs};
use crate::{blocking, words, Caller, Panel};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use maud::html;

/// GET /.
pub(super) async fn overview(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let c = ctx(&panel, &caller, "/").await;
    let p = panel.clone();
    let o = match blocking(move || data::overview(&p.0.data)).await {
        Ok(o) => o,
        Err(e) => return fail(&c, e),
    };
    let st = &o.storage;
    let tz = box_time_zone(&panel).await;
    let rebuild = o.raid.as_ref().and_then(|r| {
        r.arrays
            .iter()
            .find(|a| a.progress.as_ref().is_some_and(|p| p.is_rebuild()))
    });
    let used_pct = if st.total_bytes > 0 {
        (st.total_bytes - st.free_bytes) as f64 * 100.0 / st.total_bytes as f64
    } else {
        0.0
    };
    page(
        &c,
        "Overview",
        true,
        html! {
            section class={"verdict " (o.health.state)} id="verdict" {
                h1 { (words::without_device_names(&o.health.headline)) }
                @if !o.health.action.is_empty() {
                    p.action { (words::without_device_names(&o.health.action)) }
                }
                @if let Some(p) = rebuild.as_ref().and_then(|a| a.progress.as_ref()) {
                    div.rebuild id="rebuild" {
                        (bar(p.percent, "rebuild"))
                        @match p.eta_secs {
                            Some(eta) => p.eta { "about " (human_secs(eta)) " left" },
                            None => p.eta { "working out the time left" },
                        }
                    }
                }
                @if !o.health.action_page.is_empty() {
                    a.button href=(o.health.action_page) { "Show me what to do" }
                }
            }
            div.tiles {
                section.tile {
                    h2 { "Storage" }
                    p.big { (human_bytes(st.free_bytes)) " free" }
                    (bar_saying(used_pct, "storage used", "used"))
                    p.small { (human_bytes(st.images_bytes.max(0) as u64)) " of images; "
                        (human_bytes(st.total_bytes)) " in all" }
                }
                section.tile {
                    h2 { "Images received today" }
                    p.big id="images-today" { (o.images_today) }
                    p.small id="images-stored" { (words::count(o.instances, "image", "images")) " stored in all, in " (words::count(o.studies, "study", "studies")) }
                }
                section.tile {
                    h2 { "Last verified archive copy" }
                    @match &o.last_verified_copy {
                        Some(t) => p.big { (words::local_time(t, &tz).get(0..16).unwrap_or("")) },
                        None => p.big { "none yet" },
                    }
                    p.small { a href="/archive" { "Archive" } }
                }
            }
        },
    )
}
