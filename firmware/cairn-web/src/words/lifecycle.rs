//! The lifecycle's audit rows in words: holds, dates of death, destruction, rejection, tier
//! moves and recompute passes.

use serde_json::Value;

/// `reason` as `: reason` (nothing when empty).
fn why(d: &Value) -> String {
    match d["reason"].as_str().filter(|r| !r.is_empty()) {
        Some(r) => format!(": {r}"),
        None => String::new(),
    }
}

/// A count of images.
fn images(d: &Value) -> String {
    super::count(d["instances"].as_i64().unwrap_or(0), "image", "images")
}

/// The row's details in words, for the lifecycle's actions; `None` for any other action.
pub(crate) fn detail(action: &str, d: &Value) -> Option<String> {
    let n = |k: &str| d[k].as_i64().unwrap_or(0);
    Some(match action {
        "hold-add" => format!(
            "legal hold {} placed on the {}{}",
            n("hold"),
            d["on"].as_str().unwrap_or("patient"),
            why(d)
        ),
        "hold-release" => format!("legal hold {} released{}", n("hold"), why(d)),
        "patient-death" => match (d["date"].as_str(), d["previous"].as_str()) {
            (Some(day), _) => format!("date of death recorded: {day}{}", why(d)),
            (None, Some(was)) => format!("date of death cleared (was {was}){}", why(d)),
            (None, None) => format!("date of death cleared{}", why(d)),
        },
        "destroy" => format!(
            "destroyed at the end of retention (kept until {}, rules {}): {}, {} ({}), record {}{}",
            d["expires_on"].as_str().unwrap_or("?"),
            d["rule_set"].as_str().unwrap_or("?"),
            super::count(n("studies"), "study", "studies"),
            images(d),
            cairn_core::human_bytes(n("bytes").max(0) as u64),
            n("record"),
            why(d)
        ),
        "study-reject" => format!(
            "{} rejected: {}{}",
            match d["series"].as_str() {
                Some(s) => format!("series {s}"),
                None => "the study".to_owned(),
            },
            images(d),
            why(d)
        ),
        "tier-archive" => format!(
            "moved to the archive tier (fixed): {}, dated {}",
            images(d),
            d["from"].as_str().unwrap_or("?")
        ),
        "lifecycle-pass" => format!(
            "retention recomputed with the rules {}: {} patients, {} changed, {} to review",
            d["rule_set"].as_str().unwrap_or("?"),
            n("recomputed"),
            n("changed"),
            n("review")
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifecycle_rows_in_words() {
        let d = json!({"hold": 3, "on": "study", "reason": "court case"});
        assert_eq!(
            detail("hold-add", &d).as_deref(),
            Some("legal hold 3 placed on the study: court case")
        );
        let d = json!({"patient_id": "P1", "issuer": "", "date": null,
                       "previous": "2025-01-15", "reason": "wrong patient"});
        assert_eq!(
            detail("patient-death", &d).as_deref(),
            Some("date of death cleared (was 2025-01-15): wrong patient")
        );
        let d = json!({"series": null, "tombstone": 1, "instances": 2, "bytes": 10,
                       "reason": "test images"});
        assert_eq!(
            detail("study-reject", &d).as_deref(),
            Some("the study rejected: 2 images: test images")
        );
        assert_eq!(detail("login", &d), None);
    }
}
