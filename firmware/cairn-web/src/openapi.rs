//! The OpenAPI 3.1 document of `/api/v1`: the operations of the route table
//! ([`crate::routes::ROUTES`]) with their parameters, request bodies, answers and refusals, so a
//! client generator or a fuzzer (schemathesis, in `tools/test`) can use every operation fully.
//! The shapes here describe what the JSON API's handlers send and accept (the action inputs
//! they read are the request bodies); the router tests check the document against the route
//! table.

use crate::routes::{Perm, Route, ROUTES};
use serde_json::{json, Map, Value};

/// What one operation takes and answers, beyond what the route table says.
struct Shape {
    /// Query parameters: (name, schema).
    query: Vec<(&'static str, Value)>,
    /// Request body schema, and whether it is required.
    body: Option<(Value, bool)>,
    /// The success status and its JSON schema (`None`: no body).
    ok: (u16, Option<Value>),
    /// The answer is also offered as CSV.
    csv: bool,
    /// Refusals besides the ones every operation may give.
    refusals: Vec<u16>,
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn string() -> Value {
    json!({"type": "string"})
}

fn username() -> Value {
    json!({"type": "string", "pattern": "^[a-z0-9._-]{1,32}$"})
}

fn done() -> (u16, Option<Value>) {
    (200, Some(r("Done")))
}

fn shape(method: &str, path: &str) -> Shape {
    let mut s = Shape {
        query: Vec::new(),
        body: None,
        ok: (200, Some(json!({"type": "object"}))),
        csv: false,
        refusals: Vec::new(),
    };
    match (method, path) {
        ("GET", "/openapi.json") => {}
        ("POST", "/setup") => {
            s.body = Some((r("SetupRequest"), true));
            s.ok = (201, Some(r("LoggedIn")));
            s.refusals = vec![409, 429];
        }
        ("POST", "/session") => {
            s.body = Some((r("LoginRequest"), true));
            s.ok = (200, Some(r("LoggedIn")));
            s.refusals = vec![429];
        }
        ("GET", "/session") => s.ok = (200, Some(r("LoggedIn"))),
        ("DELETE", "/session") => s.ok = (204, None),
        ("GET", "/status") => s.ok = (200, Some(r("Status"))),
        ("POST", "/alarm/silence") => {
            s.body = Some((r("SilenceRequest"), false));
            s.ok = done();
            s.refusals = vec![409, 503];
        }
        ("POST", "/disks/action") => {
            s.body = Some((r("DiskAction"), true));
            s.ok = done();
            s.refusals = vec![409, 503];
        }
        ("GET", "/archive") => s.refusals = vec![503],
        ("POST", "/archive/eject") => {
            s.body = Some((r("EjectRequest"), false));
            s.ok = done();
            s.refusals = vec![404, 409, 503];
        }
        ("POST", "/archive/load") => {
            s.body = Some((r("LoadRequest"), false));
            s.ok = done();
            s.refusals = vec![404, 409, 503];
        }
        ("POST", "/archive/location") => {
            s.body = Some((r("LocationRequest"), true));
            s.ok = done();
            s.refusals = vec![404, 409, 503];
        }
        ("GET", "/studies") => {
            s.query = vec![
                ("name", string()),
                ("id", string()),
                ("date", string()),
                ("modality", string()),
                ("accession", string()),
                ("limit", json!({"type": "integer", "minimum": 0})),
            ];
            s.ok = (200, Some(r("StudyList")));
            s.refusals = vec![503];
        }
        ("GET", "/studies/{uid}") => {
            s.ok = (200, Some(r("Study")));
            s.refusals = vec![404, 503];
        }
        ("GET", "/audit") => {
            s.query = vec![
                ("actor", string()),
                ("action", string()),
                ("from", json!({"type": "string", "format": "date"})),
                ("to", json!({"type": "string", "format": "date"})),
                ("limit", json!({"type": "integer", "minimum": 0})),
                ("format", json!({"type": "string", "enum": ["json", "csv"]})),
            ];
            s.ok = (200, Some(r("AuditRows")));
            s.csv = true;
            s.refusals = vec![503];
        }
        ("GET", "/lifecycle") => {
            s.ok = (200, Some(r("Lifecycle")));
            s.refusals = vec![503];
        }
        ("GET", "/patients/{patient}/retention") => {
            s.query = vec![("issuer", string())];
            s.ok = (200, Some(r("PatientRetention")));
            s.refusals = vec![404, 503];
        }
        ("POST", "/patients/{patient}/death") => {
            s.body = Some((r("DeathRequest"), true));
            s.ok = done();
            s.refusals = vec![404, 503];
        }
        ("GET", "/holds") => {
            s.query = vec![("all", json!({"type": "boolean"}))];
            s.ok = (200, Some(r("Holds")));
            s.refusals = vec![503];
        }
        ("POST", "/holds") => {
            s.body = Some((r("HoldRequest"), true));
            s.ok = (201, Some(r("HoldPlaced")));
            s.refusals = vec![404, 503];
        }
        ("POST", "/holds/{hold}/release") => {
            s.body = Some((r("ReleaseRequest"), true));
            s.ok = done();
            s.refusals = vec![404, 409, 503];
        }
        ("POST", "/destruction/approve") => {
            s.body = Some((r("ApproveRequest"), true));
            s.ok = (200, Some(r("Approved")));
            s.refusals = vec![404, 409, 503];
        }
        ("POST", "/studies/{uid}/reject") => {
            s.body = Some((r("RejectRequest"), true));
            s.ok = done();
            s.refusals = vec![404, 409, 503];
        }
        ("GET", "/users") => s.ok = (200, Some(r("Users"))),
        ("POST", "/users") => {
            s.body = Some((r("NewUser"), true));
            s.ok = (201, Some(r("UserCreated")));
            s.refusals = vec![409];
        }
        ("PUT", "/users/{name}") => {
            s.body = Some((r("UserChange"), true));
            s.ok = (200, Some(r("Ok")));
            s.refusals = vec![404, 409];
        }
        ("GET", "/settings") => {
            s.ok = (200, Some(r("Settings")));
            s.refusals = vec![503];
        }
        ("PUT", "/settings") => {
            s.body = Some((r("SettingsChange"), true));
            s.ok = (200, Some(r("SettingsChanged")));
            s.refusals = vec![503];
        }
        _ => {}
    }
    s
}

fn refusal(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": r("Error")}},
    })
}

fn why(status: u16) -> &'static str {
    match status {
        400 => "bad input: {error}",
        401 => "not logged in, or a wrong name or password",
        403 => "role not allowed, or the CSRF/Origin check failed",
        404 => "no such thing",
        409 => "conflicts with the current state (e.g. the last admin, a refused step)",
        413 => "the body is over 64 KiB",
        414 => "the request target is over 8 KiB",
        429 => "too many failed attempts: wait Retry-After seconds",
        503 => "a part this needs (monitor, archive, store, configuration file) cannot answer",
        _ => "refused",
    }
}

/// One operation's object.
fn operation(route: &Route, path: &str) -> Value {
    let s = shape(route.method, path);
    let mut responses = Map::new();
    let ok = match &s.ok.1 {
        Some(schema) => {
            let mut content = json!({"application/json": {"schema": schema}});
            if s.csv {
                content["text/csv"] = json!({"schema": {"type": "string"}});
            }
            json!({"description": "done", "content": content})
        }
        None => json!({"description": "done; no body"}),
    };
    responses.insert(s.ok.0.to_string(), ok);
    let mut refusals = vec![400, 403, 414];
    if route.perm != Perm::Public || path == "/session" {
        refusals.push(401);
    }
    if s.body.is_some() {
        refusals.push(413);
    }
    refusals.extend(&s.refusals);
    refusals.sort_unstable();
    refusals.dedup();
    for status in refusals {
        let mut answer = refusal(why(status));
        if status == 429 {
            answer["headers"] = json!({"Retry-After": {"schema": {"type": "integer"}}});
        }
        responses.insert(status.to_string(), answer);
    }
    let mut op = json!({
        "operationId": format!(
            "{}{}",
            route.method.to_lowercase(),
            path.replace(['/', '.', '{', '}'], "_")
        ),
        "summary": route.summary,
        "x-roles": route.perm.roles(),
        "responses": responses,
    });
    if route.perm == Perm::Public {
        op["security"] = json!([]);
    }
    let mut params: Vec<Value> = Vec::new();
    for seg in path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            let schema = match name {
                "uid" => json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$",
                                "maxLength": 64}),
                "patient" => json!({"type": "string", "minLength": 1, "maxLength": 64}),
                "hold" => json!({"type": "integer", "minimum": 1}),
                _ => username(),
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    for (name, schema) in &s.query {
        params.push(json!({"name": name, "in": "query", "required": false, "schema": schema}));
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some((schema, required)) = &s.body {
        op["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": schema}},
        });
    }
    op
}

fn schemas() -> Value {
    let role = json!({"type": "string", "enum": ["admin", "technician", "staff", "reader"]});
    let text = string();
    let count = json!({"type": "integer"});
    let closed = |props: Value, required: &[&str]| {
        json!({"type": "object", "properties": props, "required": required,
               "additionalProperties": false})
    };
    let study_hit = json!({"type": "object", "required": [
            "study_uid", "date", "patient_name", "patient_id", "accession", "modalities",
            "description", "series", "instances"],
        "properties": {
            "study_uid": text, "date": text, "patient_name": text, "patient_id": text,
            "accession": text, "modalities": text, "description": text,
            "series": count, "instances": count}});
    let peer = closed(
        json!({"ae": text, "host": text, "port": {"type": "integer", "minimum": 0, "maximum": 65535},
               "store": {"type": "boolean"}, "query": {"type": "boolean"},
               "retrieve": {"type": "boolean"}}),
        &["ae", "host", "port"],
    );
    let settings = json!({"type": "object",
        "required": ["ae_title", "dicom_port", "accept_unknown_peers", "peers",
                     "scrub_interval_days", "archive_max_age_secs", "session_idle_secs"],
        "properties": {
            "ae_title": text, "dicom_port": count, "accept_unknown_peers": {"type": "boolean"},
            "peers": {"type": "array", "items": r("Peer")}, "scrub_interval_days": count,
            "archive_max_age_secs": count, "session_idle_secs": count}});
    let mut v = json!({
        "Error": closed(json!({"error": text}), &["error"]),
        "Done": {"type": "object", "required": ["ok", "message"],
                 "properties": {"ok": {"type": "boolean"}, "message": text}},
        "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
        "SetupRequest": closed(json!({"code": text, "username": text, "password": text}),
                               &["code", "username", "password"]),
        "LoginRequest": closed(json!({"username": text, "password": text}),
                               &["username", "password"]),
        "LoggedIn": {"type": "object", "required": ["username", "role", "csrf_token"],
                     "properties": {"username": text, "role": role, "csrf_token": text}},
        "Status": {"type": "object", "required": ["state", "headline"],
                   "properties": {"state": {"type": "string",
                                            "enum": ["ok", "working", "attention", "alarm"]},
                                  "headline": text}},
        "SilenceRequest": closed(json!({"id": {"type": ["integer", "null"], "minimum": 0}}), &[]),
        "DiskAction": closed(
            json!({"action": {"type": "string",
                              "enum": ["locate", "unlocate", "remove", "confirm"]},
                   "bay": {"type": "integer", "minimum": 0, "maximum": 4_294_967_295u64}}),
            &["action", "bay"]),
        "EjectRequest": closed(json!({"target": {"type": ["string", "null"]},
                                      "location": {"type": ["string", "null"]}}), &[]),
        "LoadRequest": closed(json!({"target": {"type": ["string", "null"]}}), &[]),
        "LocationRequest": closed(json!({"volume": text, "location": {"type": "string",
                "enum": ["onsite_shelf", "offsite_vault", "returned", "retired"]}}),
                                  &["volume", "location"]),
        "StudyHit": study_hit,
        "StudyList": {"type": "object", "required": ["studies", "more"],
                      "properties": {"studies": {"type": "array", "items": r("StudyHit")},
                                     "more": {"type": "boolean"}}},
        "Study": {"type": "object", "required": ["study", "series", "bytes", "copies"],
                  "properties": {"study": r("StudyHit"),
                                 "series": {"type": "array", "items": {"type": "object"}},
                                 "bytes": count,
                                 "copies": {"type": "array", "items": {"type": "object"}},
                                 "retention_until": {"type": ["string", "null"]},
                                 "tier": {"type": "string", "enum": ["storage", "archive"]},
                                 "lifecycle": r("PatientRetention")}},
        "AuditRow": {"type": "object",
                     "required": ["seq", "at", "actor", "action", "object", "detail"],
                     "properties": {"seq": count, "at": text, "actor": text, "action": text,
                                    "object": text, "detail": text}},
        "AuditRows": {"type": "object", "required": ["rows"],
                      "properties": {"rows": {"type": "array", "items": r("AuditRow")}}},
        "User": {"type": "object", "required": ["username", "role", "disabled", "created_at"],
                 "properties": {"username": text, "role": role, "disabled": {"type": "boolean"},
                                "created_at": count}},
        "Users": {"type": "object", "required": ["users"],
                  "properties": {"users": {"type": "array", "items": r("User")}}},
        "NewUser": closed(json!({"username": username(), "role": role,
                                 "password": {"type": "string", "minLength": 10,
                                              "maxLength": 256}}),
                          &["username", "role", "password"]),
        "UserCreated": {"type": "object", "required": ["username", "role"],
                        "properties": {"username": text, "role": text}},
        "UserChange": closed(json!({"role": {"type": ["string", "null"]},
                                    "password": {"type": ["string", "null"]},
                                    "disabled": {"type": ["boolean", "null"]}}), &[]),
        "Peer": peer,
        "Settings": settings,
        "SettingsChange": closed(json!({
            "ae_title": {"type": ["string", "null"]},
            "accept_unknown_peers": {"type": ["boolean", "null"]},
            "peers": {"type": ["array", "null"], "items": r("Peer")},
            "scrub_interval_days": {"type": ["integer", "null"], "minimum": 0,
                                    "maximum": 4_294_967_295u64},
            "archive_max_age_secs": {"type": ["integer", "null"], "minimum": 0},
            "session_idle_secs": {"type": ["integer", "null"], "minimum": 0},
            "time_zone": {"type": ["string", "null"]}}), &[]),
        "SettingsChanged": {"type": "object", "required": ["changed", "restart_needed", "settings"],
                            "properties": {"changed": {"type": "array", "items": text},
                                           "restart_needed": {"type": "boolean"},
                                           "settings": r("Settings")}},
    });
    if let (Value::Object(all), Value::Object(more)) = (&mut v, lifecycle_schemas()) {
        all.extend(more);
    }
    v
}

/// The schemas of the lifecycle operations.
fn lifecycle_schemas() -> Value {
    let text = string();
    let count = json!({"type": "integer"});
    let closed = |props: Value, required: &[&str]| {
        json!({"type": "object", "properties": props, "required": required,
               "additionalProperties": false})
    };
    json!({
        "HoldRow": hold_row(),
        "Holds": {"type": "object", "required": ["holds"],
                  "properties": {"holds": {"type": "array", "items": r("HoldRow")}}},
        "Lifecycle": lifecycle(),
        "PatientRetention": patient_retention(),
        "HoldRequest": closed(json!({"patient_id": {"type": ["string", "null"]},
                                     "issuer": {"type": ["string", "null"]},
                                     "study_uid": {"type": ["string", "null"]},
                                     "reason": text}), &["reason"]),
        "HoldPlaced": {"type": "object", "required": ["ok", "message", "id"],
                       "properties": {"ok": {"type": "boolean"}, "message": text, "id": count}},
        "ReleaseRequest": closed(json!({"reason": text}), &["reason"]),
        "DeathRequest": closed(json!({"issuer": {"type": ["string", "null"]},
                                      "date": {"type": ["string", "null"]},
                                      "clear": {"type": "boolean"}, "reason": text}),
                               &["reason"]),
        "ApproveRequest": closed(json!({"patient_id": {"type": ["string", "null"]},
                                        "issuer": {"type": ["string", "null"]},
                                        "all": {"type": "boolean"}, "reason": text}),
                                 &["reason"]),
        "Approved": {"type": "object", "required": ["ok", "message", "record"],
                     "properties": {"ok": {"type": "boolean"}, "message": text,
                                    "record": {"type": ["integer", "null"]}}},
        "RejectRequest": closed(json!({"series_uid": {"type": ["string", "null"]},
                                       "reason": text}), &["reason"]),
    })
}

/// A legal hold as listed (fields without a value are left out).
fn hold_row() -> Value {
    let text = string();
    json!({"type": "object", "required": ["id", "reason", "placed_by", "placed_at"],
        "properties": {"id": {"type": "integer"}, "patient_id": text, "issuer": text,
            "study_uid": text, "reason": text, "placed_by": text, "placed_at": text,
            "released_by": text, "released_at": text, "release_reason": text}})
}

/// The Lifecycle page's data.
fn lifecycle() -> Value {
    let list = json!({"type": "array", "items": {"type": "object"}});
    json!({"type": "object",
        "required": ["tiers", "moving_to_archive", "due_for_destruction", "review", "holds",
                     "active_holds", "recyclable_volumes", "clock_ok", "clock", "rule_set",
                     "archive_after"],
        "properties": {
            "tiers": {"type": "object", "required": ["storage", "archive"],
                      "properties": {"storage": {"type": "integer"},
                                     "archive": {"type": "integer"}}},
            "moving_to_archive": list, "due_for_destruction": list, "review": list,
            "holds": {"type": "integer"},
            "active_holds": {"type": "array", "items": r("HoldRow")},
            "recyclable_volumes": {"type": "array", "items": string()},
            "clock_ok": {"type": "boolean"},
            "clock": {"type": "object", "required": ["ok"],
                      "properties": {"ok": {"type": "boolean"},
                                     "today": {"type": ["string", "null"]}}},
            "rule_set": string(), "archive_after": string()}})
}

/// One patient's retention, date of death and holds.
fn patient_retention() -> Value {
    let text = string();
    let day = json!({"type": ["string", "null"]});
    json!({"type": "object",
        "required": ["patient_id", "issuer", "expires_on", "reason", "held", "review",
                     "rule_set", "last_visit", "death_date", "studies", "holds"],
        "properties": {
            "patient_id": text, "issuer": text, "expires_on": day, "reason": text,
            "held": {"type": "boolean"}, "review": {"type": "boolean"}, "rule_set": text,
            "last_visit": day, "death_date": day,
            "studies": {"type": "array", "items": {"type": "object",
                "required": ["study_uid", "study_date", "tier"],
                "properties": {"study_uid": text, "study_date": text,
                               "tier": {"type": "string", "enum": ["storage", "archive"]}}}},
            "holds": {"type": "array", "items": r("HoldRow")}}})
}

/// The whole document.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/v1/")) {
        let path = route.path.trim_start_matches("/api/v1");
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation(route, path);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cairn panel API",
            "version": "1",
            "description": "Log in with POST /session; send the cookie it sets and, on every \
                change, the csrf_token it returns in the X-CSRF-Token header. Every refusal is \
                {\"error\": sentence}.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": crate::COOKIE}
            },
            "schemas": schemas(),
        },
        "security": [{"session": []}],
        "paths": paths,
    })
}
