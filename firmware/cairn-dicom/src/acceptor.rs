//! Association acceptance: who may talk to the box and about what (PS3.8 section 7.1).
//!
//! Decisions are pure functions of the request and the config so they can be tested without a
//! socket; `server` reads the request and sends what `negotiate` decides.

use crate::syntax::{self, VERIFICATION};
use cairn_config::Config;
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, AssociationRQ, PresentationContextResult, PresentationContextResultReason,
    RequestorRoles, UserVariableItem,
};

/// The standard DICOM application context.
pub const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// What a calling AE may do here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    /// C-STORE.
    pub store: bool,
    /// C-FIND.
    pub query: bool,
    /// C-MOVE, C-GET.
    pub retrieve: bool,
}

/// One accepted presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedContext {
    /// Presentation context ID.
    pub id: u8,
    /// Abstract syntax (SOP class).
    pub abstract_syntax: String,
    /// Chosen transfer syntax.
    pub transfer_syntax: String,
}

/// A negotiated association.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The calling AE title.
    pub calling_ae: String,
    /// What it may do.
    pub rights: Rights,
    /// Accepted contexts.
    pub contexts: Vec<AcceptedContext>,
    /// Largest PDU the peer accepts (0: unlimited).
    pub peer_max_pdu: u32,
    /// Storage SOP classes for which the peer accepted to be SCP (C-GET destinations).
    pub peer_scp_classes: std::collections::HashSet<String>,
    /// The A-ASSOCIATE-AC to send.
    pub ac: AssociationAC,
}

/// Why an association was refused, for the audit row and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The A-ASSOCIATE-RJ to send.
    pub rj: AssociationRJ,
    /// Plain words.
    pub why: String,
}

/// The A-ASSOCIATE-RJ for temporary congestion (too many associations).
pub fn congestion() -> Refusal {
    Refusal {
        rj: AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::TemporaryCongestion,
            ),
        },
        why: "too many associations at once".into(),
    }
}

/// The A-ASSOCIATE-RJ for a per-address or per-AE cap (transient, local limit exceeded).
pub fn local_limit(why: &str) -> Refusal {
    Refusal {
        rj: AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        },
        why: why.into(),
    }
}

fn user_reject(reason: AssociationRJServiceUserReason, why: String) -> Refusal {
    Refusal {
        rj: AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(reason),
        },
        why,
    }
}

/// What kind of service a SOP class belongs to.
fn service_of(abstract_syntax: &str) -> Option<Service> {
    if abstract_syntax == VERIFICATION {
        Some(Service::Verification)
    } else if abstract_syntax == syntax::STORAGE_COMMITMENT_PUSH {
        Some(Service::Commitment)
    } else if syntax::is_storage_class(abstract_syntax) {
        Some(Service::Storage)
    } else {
        syntax::qr_class(abstract_syntax).map(|(s, _)| match s {
            syntax::QrService::Find => Service::Query,
            _ => Service::Retrieve,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Verification,
    Commitment,
    Storage,
    Query,
    Retrieve,
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// Structural checks on a request: the things no honest peer sends. A request failing them is
/// aborted (invalid PDU parameter), not negotiated.
pub fn check_structure(rq: &AssociationRQ) -> Result<(), MalformedRequest> {
    if rq.presentation_contexts.is_empty() {
        return Err(MalformedRequest("no presentation context".into()));
    }
    if rq.presentation_contexts.len() > 128 {
        return Err(MalformedRequest(format!(
            "{} presentation contexts (at most 128 IDs exist)",
            rq.presentation_contexts.len()
        )));
    }
    let mut ids = std::collections::HashSet::new();
    for pc in &rq.presentation_contexts {
        if pc.id % 2 == 0 || !ids.insert(pc.id) {
            return Err(MalformedRequest(format!(
                "presentation context ID {} is even or repeated",
                pc.id
            )));
        }
        if pc.transfer_syntaxes.is_empty() || pc.transfer_syntaxes.len() > 64 {
            return Err(MalformedRequest(format!(
                "presentation context {} has {} transfer syntaxes",
                pc.id,
                pc.transfer_syntaxes.len()
            )));
        }
    }
    let max_lengths = rq
        .user_variables
        .iter()
        .filter(|u| matches!(u, UserVariableItem::MaxLength(_)))
        .count();
    if max_lengths > 1 {
        return Err(MalformedRequest("more than one Maximum Length item".into()));
    }
    let identities = rq
        .user_variables
        .iter()
        .filter(|u| matches!(u, UserVariableItem::UserIdentityItem(_)))
        .count();
    if identities > 1 {
        return Err(MalformedRequest("more than one User Identity item".into()));
    }
    if rq.calling_ae_title.len() > 16 || rq.called_ae_title.len() > 16 {
        return Err(MalformedRequest(
            "AE title longer than 16 characters".into(),
        ));
    }
    Ok(())
}

/// An association request no honest peer sends, and why in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedRequest(pub String);

/// The syntax to accept for a storage context where the peer is the SCP (a C-GET requester):
/// the peer's first choice among the ones the box can send, before the query says which objects
/// will go. A compressed syntax the box knows, proposed before any Little Endian one, is taken
/// as is (objects stored in it go unchanged; others of that class only through another context
/// of the peer's); otherwise Explicit VR Little Endian, the syntax most objects are stored in,
/// or Implicit: the box converts or decompresses into both. `None`: the usual first known one.
fn scp_role_syntax<'a>(offered: &[&'a str]) -> Option<&'a str> {
    let little_endian = |t: &str| t == syntax::EXPLICIT_LE || t == syntax::IMPLICIT_LE;
    let first = offered
        .iter()
        .copied()
        .find(|t| little_endian(t) || syntax::is_compressed(t))?;
    if !little_endian(first) {
        return Some(first);
    }
    offered
        .iter()
        .copied()
        .find(|t| *t == syntax::EXPLICIT_LE)
        .or(Some(first))
}

/// Decide on an A-ASSOCIATE-RQ.
pub fn negotiate(
    rq: &AssociationRQ,
    config: &Config,
    our_max_pdu: u32,
) -> Result<Negotiated, Refusal> {
    let called = trim(&rq.called_ae_title);
    let calling = trim(&rq.calling_ae_title).to_string();
    if rq.protocol_version & 1 == 0 {
        return Err(user_reject(
            AssociationRJServiceUserReason::NoReasonGiven,
            format!("unsupported protocol version {}", rq.protocol_version),
        ));
    }
    if trim(&rq.application_context_name) != APPLICATION_CONTEXT {
        return Err(user_reject(
            AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
            "unknown application context".into(),
        ));
    }
    if called != config.dicom.ae_title.as_str() {
        return Err(user_reject(
            AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            format!("called AE title '{}' is not this box", printable(called)),
        ));
    }
    let rights = match config.peer(&calling) {
        Some(p) => Rights {
            store: p.store,
            query: p.query,
            retrieve: p.retrieve,
        },
        None if config.dicom.accept_unknown_peers && !calling.is_empty() => Rights {
            store: true,
            query: true,
            retrieve: true,
        },
        None => {
            return Err(user_reject(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                format!(
                    "calling AE title '{}' is not a configured peer",
                    printable(&calling)
                ),
            ))
        }
    };

    // SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET requester asks to be SCP for storage.
    let mut role_requests = std::collections::HashMap::new();
    for uv in &rq.user_variables {
        if let UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) = uv {
            role_requests.insert(trim(uid).to_string(), *roles);
        }
    }
    let mut role_replies = Vec::new();
    let mut peer_scp_classes = std::collections::HashSet::new();
    let mut results = Vec::new();
    let mut contexts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut refused_for_rights = false;
    for pc in &rq.presentation_contexts {
        if !seen.insert(pc.id) {
            // `check_structure` refuses repeated IDs; never answer one twice anyway
            continue;
        }
        let abstract_syntax = trim(&pc.abstract_syntax).to_string();
        let wants_scp = role_requests.get(&abstract_syntax).is_some_and(|r| r.scp);
        let allowed = match service_of(&abstract_syntax) {
            Some(Service::Storage) => rights.store || (wants_scp && rights.retrieve),
            Some(Service::Query) => rights.query,
            Some(Service::Retrieve) => rights.retrieve,
            _ => true,
        };
        let reason = match service_of(&abstract_syntax) {
            None => Err(PresentationContextResultReason::AbstractSyntaxNotSupported),
            Some(_) if !allowed => {
                refused_for_rights = true;
                Err(PresentationContextResultReason::UserRejection)
            }
            Some(_) => {
                let offered: Vec<&str> = pc.transfer_syntaxes.iter().map(|t| trim(t)).collect();
                let preferred = if wants_scp {
                    scp_role_syntax(&offered)
                } else {
                    None
                };
                preferred
                    .or_else(|| {
                        offered
                            .iter()
                            .copied()
                            .find(|t| syntax::encoding(t).is_some())
                    })
                    .map(str::to_string)
                    .ok_or(PresentationContextResultReason::TransferSyntaxesNotSupported)
            }
        };
        if reason.is_ok() && service_of(&abstract_syntax) == Some(Service::Storage) {
            if let Some(r) = role_requests.get(&abstract_syntax) {
                let scp = r.scp && rights.retrieve;
                let scu = r.scu && rights.store;
                if scp {
                    peer_scp_classes.insert(abstract_syntax.clone());
                }
                if !role_replies
                    .iter()
                    .any(|(u, _): &(String, _)| *u == abstract_syntax)
                {
                    role_replies.push((abstract_syntax.clone(), RequestorRoles { scu, scp }));
                }
            }
        }
        match reason {
            Ok(ts) => {
                results.push(PresentationContextResult {
                    id: pc.id,
                    reason: PresentationContextResultReason::Acceptance,
                    transfer_syntax: ts.clone(),
                });
                contexts.push(AcceptedContext {
                    id: pc.id,
                    abstract_syntax,
                    transfer_syntax: ts,
                });
            }
            Err(r) => results.push(PresentationContextResult {
                id: pc.id,
                reason: r,
                transfer_syntax: "1.2.840.10008.1.2".into(),
            }),
        }
    }
    if contexts.is_empty() && refused_for_rights {
        return Err(user_reject(
            AssociationRJServiceUserReason::NoReasonGiven,
            format!(
                "peer '{}' has no right to the services it proposed",
                printable(&calling)
            ),
        ));
    }

    let mut peer_max_pdu = dicom_ul::pdu::DEFAULT_MAX_PDU;
    for uv in &rq.user_variables {
        if let UserVariableItem::MaxLength(l) = uv {
            peer_max_pdu = *l;
        }
    }
    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: results,
        user_variables: {
            let mut v = vec![
                UserVariableItem::MaxLength(our_max_pdu),
                UserVariableItem::ImplementationClassUID(crate::IMPLEMENTATION_CLASS_UID.into()),
                UserVariableItem::ImplementationVersionName(
                    crate::IMPLEMENTATION_VERSION_NAME.into(),
                ),
            ];
            v.extend(
                role_replies
                    .into_iter()
                    .map(|(u, r)| UserVariableItem::ScuScpRoleSelectionSubItem(u, r)),
            );
            v
        },
    };
    Ok(Negotiated {
        calling_ae: calling,
        rights,
        contexts,
        peer_max_pdu,
        peer_scp_classes,
        ac,
    })
}

/// Make a received string safe for a log line or audit row (printable ASCII, at most 64 chars).
pub fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;
    use std::path::Path;

    fn config(extra: &str, unknown: bool) -> Config {
        let d = cairn_config::Defaults {
            bind: "127.0.0.1".parse().unwrap(),
            dicom_port: 11112,
            http_port: 8080,
            data_dir: "/tmp/x".into(),
            accept_unknown_peers: unknown,
        };
        Config::parse(&(cairn_config::default_toml(&d) + extra), Path::new("t")).unwrap()
    }

    fn rq(calling: &str, called: &str, abstract_syntax: &str) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: calling.into(),
            called_ae_title: called.into(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: vec![PresentationContextProposed {
                id: 1,
                abstract_syntax: abstract_syntax.into(),
                transfer_syntaxes: vec!["1.2.3".into(), "1.2.840.10008.1.2.1".into()],
            }],
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        }
    }

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const PEERS: &str =
        "\n[[dicom.peers]]\nae = \"CT\"\nhost = \"127.0.0.1\"\nport = 104\nstore = true\n\
        [[dicom.peers]]\nae = \"VIEWER\"\nhost = \"127.0.0.1\"\nport = 104\nquery = true\n";

    #[test]
    fn accepts_known_peer() {
        let n = negotiate(&rq("CT", "CAIRN", CT), &config(PEERS, false), 65536).unwrap();
        assert_eq!(n.contexts.len(), 1);
        assert_eq!(n.contexts[0].transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(n.peer_max_pdu, 16384);
    }

    #[test]
    fn rejects_wrong_called_and_unknown_calling() {
        let e = negotiate(&rq("CT", "OTHER", CT), &config(PEERS, false), 65536).unwrap_err();
        assert_eq!(
            e.rj.source,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized
            )
        );
        let e = negotiate(&rq("NOBODY", "CAIRN", CT), &config(PEERS, false), 65536).unwrap_err();
        assert_eq!(
            e.rj.source,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized
            )
        );
        assert!(negotiate(&rq("NOBODY", "CAIRN", CT), &config(PEERS, true), 65536).is_ok());
    }

    #[test]
    fn structure_checks() {
        let good = rq("CT", "CAIRN", CT);
        assert!(check_structure(&good).is_ok());
        let mut dup = good.clone();
        dup.presentation_contexts
            .push(dup.presentation_contexts[0].clone());
        assert!(check_structure(&dup).is_err());
        let mut two_max = good.clone();
        two_max.user_variables.push(UserVariableItem::MaxLength(0));
        assert!(check_structure(&two_max).is_err());
        let mut none = good;
        none.presentation_contexts.clear();
        assert!(check_structure(&none).is_err());
    }

    #[test]
    fn get_destination_gets_its_first_sendable_syntax() {
        const RLE: &str = "1.2.840.10008.1.2.5";
        const BE: &str = "1.2.840.10008.1.2.2";
        const ILE: &str = syntax::IMPLICIT_LE;
        const ELE: &str = syntax::EXPLICIT_LE;
        // getscu +xr: RLE first
        assert_eq!(scp_role_syntax(&[RLE, ELE, BE, ILE]), Some(RLE));
        // getscu's default and pynetdicom's list: Explicit VR LE is preferred among the
        // uncompressed ones, whatever their order
        assert_eq!(scp_role_syntax(&[ELE, BE, ILE]), Some(ELE));
        assert_eq!(scp_role_syntax(&[ILE, ELE, BE, RLE]), Some(ELE));
        assert_eq!(scp_role_syntax(&[BE, ILE]), Some(ILE));
        // big endian first, then a compressed one: the compressed one
        assert_eq!(scp_role_syntax(&[BE, RLE, ELE]), Some(RLE));
        // nothing the rule knows: the caller's usual choice
        assert_eq!(scp_role_syntax(&[BE, "1.2.3"]), None);

        let mut r = rq("CT", "CAIRN", CT);
        r.presentation_contexts[0].transfer_syntaxes = vec![RLE.into(), ELE.into()];
        r.user_variables
            .push(UserVariableItem::ScuScpRoleSelectionSubItem(
                CT.into(),
                RequestorRoles {
                    scu: false,
                    scp: true,
                },
            ));
        let peers = "\n[[dicom.peers]]\nae = \"CT\"\nhost = \"127.0.0.1\"\nport = 104\n\
            retrieve = true\n";
        let n = negotiate(&r, &config(peers, false), 65536).unwrap();
        assert_eq!(n.contexts[0].transfer_syntax, RLE);
        assert!(n.peer_scp_classes.contains(CT));
    }

    #[test]
    fn rejects_peer_without_right() {
        let e = negotiate(&rq("VIEWER", "CAIRN", CT), &config(PEERS, false), 65536).unwrap_err();
        assert_eq!(e.rj.result, AssociationRJResult::Permanent);
        assert_eq!(
            e.rj.source,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven)
        );
        // verification is always allowed
        assert!(negotiate(
            &rq("VIEWER", "CAIRN", VERIFICATION),
            &config(PEERS, false),
            65536
        )
        .is_ok());
    }
}
