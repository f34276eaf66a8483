//! The route table: every route the panel serves, with the permission it needs. The
//! authorisation layer looks each request up here; a route missing from the table is denied.
//! The OpenAPI document is generated from the `/api/v1` rows.

use crate::auth::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Anyone, logged in or not (login, first-boot setup, the stylesheet, the API document).
    Public,
    /// Any logged-in role: health, disks and archive views, silencing the alarm, logout.
    Any,
    /// Patient data: admin, staff, reader (a technician sees no patient data).
    Patients,
    /// Changing patient records: dates of death, legal holds placed and released: admin,
    /// staff (the clinic's people who know of a death or a pending case; neither removes
    /// anything, and nothing is destroyed without an admin's approval).
    Records,
    /// Handling media (eject, load, location): admin, technician, staff.
    Media,
    /// The disk swap (locate, remove, confirm wipe): admin, technician.
    Disks,
    /// Users, settings and the audit trail: admin only.
    Admin,
}

impl Perm {
    /// The role matrix.
    pub fn allows(self, role: Role) -> bool {
        use Role::*;
        match self {
            Perm::Public | Perm::Any => true,
            Perm::Patients => matches!(role, Admin | Staff | Reader),
            Perm::Records => matches!(role, Admin | Staff),
            Perm::Media => matches!(role, Admin | Technician | Staff),
            Perm::Disks => matches!(role, Admin | Technician),
            Perm::Admin => role == Admin,
        }
    }

    /// The roles allowed, for the API document.
    pub fn roles(self) -> Vec<&'static str> {
        Role::ALL
            .into_iter()
            .filter(|r| self.allows(*r))
            .map(|r| r.as_str())
            .collect()
    }
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path as registered with axum.
    pub path: &'static str,
    /// Permission.
    pub perm: Perm,
    /// One line for the API document.
    pub summary: &'static str,
}

const fn r(method: &'static str, path: &'static str, perm: Perm, summary: &'static str) -> Route {
    Route {
        method,
        path,
        perm,
        summary,
    }
}

/// Every route (one a line, so that the table reads as a table).
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    // pages
    r("GET", "/", Perm::Any, "Overview page"),
    r("GET", "/disks", Perm::Any, "Disks page"),
    r("POST", "/disks", Perm::Disks, "Disk swap step (form)"),
    r("GET", "/archive", Perm::Any, "Archive page"),
    r("POST", "/archive", Perm::Media, "Eject or set a volume's location (form)"),
    r("GET", "/studies", Perm::Patients, "Studies search page"),
    r("GET", "/studies/{uid}", Perm::Patients, "One study page"),
    r("GET", "/lifecycle", Perm::Patients, "Lifecycle page: tiers, due for destruction, review, holds"),
    r("POST", "/lifecycle/hold", Perm::Records, "Place a legal hold (form)"),
    r("POST", "/lifecycle/release", Perm::Records, "Release a legal hold (form)"),
    r("POST", "/lifecycle/death", Perm::Records, "Record or clear a date of death (form)"),
    r("POST", "/lifecycle/approve", Perm::Admin, "Approve destruction of patients due (form)"),
    r("POST", "/lifecycle/reject", Perm::Admin, "Reject a study or one series (form)"),
    r("GET", "/audit", Perm::Admin, "Audit page"),
    r("GET", "/audit.csv", Perm::Admin, "Audit as CSV"),
    r("GET", "/settings", Perm::Admin, "Settings page"),
    r("POST", "/settings", Perm::Admin, "Change settings or users (form)"),
    r("POST", "/alarm/silence", Perm::Any, "Silence the alarm (form)"),
    r("GET", "/login", Perm::Public, "Login page"),
    r("POST", "/login", Perm::Public, "Log in (form)"),
    r("POST", "/logout", Perm::Any, "Log out (form)"),
    r("GET", "/setup", Perm::Public, "First-boot setup page"),
    r("POST", "/setup", Perm::Public, "First-boot setup (form)"),
    r("GET", "/static/panel.css", Perm::Public, "Stylesheet"),
    // JSON API
    r("GET", "/api/v1/openapi.json", Perm::Public, "This document"),
    r("POST", "/api/v1/setup", Perm::Public, "First boot: setup code, admin name and password"),
    r("POST", "/api/v1/session", Perm::Public, "Log in: {username, password}; returns the CSRF token"),
    r("GET", "/api/v1/session", Perm::Any, "Who is logged in, and the CSRF token"),
    r("DELETE", "/api/v1/session", Perm::Any, "Log out"),
    r("GET", "/api/v1/status", Perm::Any, "Health in one word and sentence, storage, RAID, alarm, archive"),
    r("POST", "/api/v1/alarm/silence", Perm::Any, "Silence the alarm: {id?}"),
    r("POST", "/api/v1/disks/action", Perm::Disks, "Disk swap step: {action: locate|unlocate|remove|confirm, bay}"),
    r("GET", "/api/v1/archive", Perm::Any, "Archive drive, volumes and queue"),
    r("POST", "/api/v1/archive/eject", Perm::Media, "Eject the volume of a target once written and verified: {target?, location?}"),
    r("POST", "/api/v1/archive/load", Perm::Media, "Take the medium in a target's drive into use: {target?}"),
    r("POST", "/api/v1/archive/location", Perm::Media, "Set a volume's location: {volume, location}"),
    r("GET", "/api/v1/studies", Perm::Patients, "Search studies: name, id, date, modality, accession, limit"),
    r("GET", "/api/v1/studies/{uid}", Perm::Patients, "One study: series, size, copies, retention"),
    r("GET", "/api/v1/lifecycle", Perm::Patients, "Lifecycle status: tiers, moving to archive, due for destruction, review, holds, recyclable volumes, clock"),
    r("GET", "/api/v1/patients/{patient}/retention", Perm::Patients, "A patient's retention computed now, date of death and holds: issuer"),
    r("POST", "/api/v1/patients/{patient}/death", Perm::Records, "Record or clear a date of death: {issuer?, date?, clear?, reason}"),
    r("GET", "/api/v1/holds", Perm::Patients, "Legal holds: active ones, or all with all=true"),
    r("POST", "/api/v1/holds", Perm::Records, "Place a legal hold: {patient_id, issuer?} or {study_uid}, and reason"),
    r("POST", "/api/v1/holds/{hold}/release", Perm::Records, "Release a legal hold: {reason}"),
    r("POST", "/api/v1/destruction/approve", Perm::Admin, "Approve destruction: {patient_id, issuer?} or {all: true}, and reason"),
    r("POST", "/api/v1/studies/{uid}/reject", Perm::Admin, "Reject a study or one of its series: {series_uid?, reason}"),
    r("GET", "/api/v1/audit", Perm::Admin, "Audit rows: actor, action, from, to, limit; format=csv"),
    r("GET", "/api/v1/users", Perm::Admin, "Accounts and roles"),
    r("POST", "/api/v1/users", Perm::Admin, "Make an account: {username, role, password}"),
    r("PUT", "/api/v1/users/{name}", Perm::Admin, "Change an account: {role?, password?, disabled?}"),
    r("GET", "/api/v1/settings", Perm::Admin, "AE title, peers, schedules"),
    r("PUT", "/api/v1/settings", Perm::Admin, "Change AE title, peers, schedules (applied at the next start)"),
];

/// The route registered for this method and matched path.
pub fn lookup(method: &str, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}

/// The `Allow` header for a path in the table: its methods, and HEAD wherever GET is.
/// None when the path is not in the table.
pub fn allow(path: &str) -> Option<String> {
    let mut methods: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method)
        .collect();
    if methods.is_empty() {
        return None;
    }
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    Some(methods.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_shape() {
        assert!(Perm::Admin.allows(Role::Admin));
        assert!(!Perm::Admin.allows(Role::Technician));
        assert!(!Perm::Patients.allows(Role::Technician));
        assert!(Perm::Patients.allows(Role::Reader));
        assert!(!Perm::Media.allows(Role::Reader));
        assert!(!Perm::Disks.allows(Role::Staff));
        assert!(Perm::Records.allows(Role::Staff));
        assert!(!Perm::Records.allows(Role::Reader));
        assert!(!Perm::Records.allows(Role::Technician));
    }
}
