//! C-MOVE: the sub-operations go out on an association the box opens to the move
//! destination (a configured peer), proposing each stored syntax and what it can convert to.

use super::send::{self, Broken, Outgoing, Problem, Sent};
use super::{SubOp, Tally};
use crate::acceptor::printable;
use crate::association::{Association, Ending};
use crate::association_out::{OpenError, OutAssociation, ReadError, Request};
use crate::damage::Damage;
use crate::dimse::Command;
use crate::services::query::{Interrupt, MOVE_DESTINATION_UNKNOWN, PENDING, UNABLE_SUBOPS};
use crate::syntax;
use cairn_store::find::{InstanceRef, Query};
use std::time::Duration;

impl Association<'_> {
    /// Runs a C-MOVE to the destination named in the command.
    pub(crate) fn c_move(
        &mut self,
        context_id: u8,
        cmd: &Command,
        query: &Query,
        keys_text: &str,
    ) -> Result<(), Ending> {
        let dest = cmd
            .string(0x0600)
            .map(|d| d.trim_matches([' ', '\0']).to_string())
            .unwrap_or_default();
        let Some(peer) = self.config.peer(&dest).cloned() else {
            self.audit_qr(
                "retrieve-move",
                query,
                keys_text,
                &[("destination", &printable(&dest)), ("status", "0xA801")],
            );
            return self.final_rsp(
                context_id,
                cmd,
                MOVE_DESTINATION_UNKNOWN,
                "move destination is not a configured peer",
                None,
            );
        };
        let list = match self.resolve(query) {
            Ok(l) => l,
            Err(refusal) => return self.refuse(context_id, cmd, refusal),
        };
        let total = list.len();
        if total == 0 {
            return self.finish_retrieve(
                context_id,
                cmd,
                query,
                keys_text,
                "retrieve-move",
                &[],
                &[],
                (0, 0, 0, 0),
                false,
                Some(&dest),
            );
        }
        let mut sub = match SubAssociation::open(
            &peer.host,
            peer.port,
            self.config.dicom.ae_title.as_str(),
            peer.ae.as_str(),
            &list,
        ) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(destination = %dest, %why, "cannot reach the move destination");
                let why = why.to_string();
                self.audit_qr(
                    "retrieve-move",
                    query,
                    keys_text,
                    &[
                        ("destination", &dest),
                        ("status", "0xA702"),
                        ("reason", &why),
                    ],
                );
                return self.final_rsp(
                    context_id,
                    cmd,
                    UNABLE_SUBOPS,
                    &format!("cannot reach {dest}: {why}"),
                    None,
                );
            }
        };
        let message_id = cmd.message_id();
        let mut tally = Tally::default();
        let mut cancelled = false;
        let mut broken = false;
        let calling = self.neg.calling_ae.clone();
        let data = self.store.data_dir().clone();
        for (k, inst) in list.iter().enumerate() {
            let outcome = sub.store(inst, &data, &calling, message_id);
            match outcome {
                Ok(Ok(o)) => tally.record(o, &inst.sop_instance_uid),
                Ok(Err(problem)) => {
                    self.sub_op_failed(inst, &problem, "retrieve-move");
                    tally.record(SubOp::Failed, &inst.sop_instance_uid);
                }
                Err(Broken(why)) => {
                    tracing::warn!(%why, "move destination failed mid-transfer");
                    for rest in &list[k..] {
                        tally.record(SubOp::Failed, &rest.sop_instance_uid);
                    }
                    broken = true;
                    break;
                }
            }
            let remaining = (total - k - 1) as u16;
            match self.check_interrupt(message_id) {
                Interrupt::Cancel => {
                    cancelled = true;
                    break;
                }
                Interrupt::Gone(why) => {
                    sub.release();
                    return Err(Ending::Aborted(why));
                }
                Interrupt::None => {}
            }
            if remaining > 0 {
                self.sub_rsp(context_id, cmd, PENDING, tally.counts(remaining), "", None)?;
            }
        }
        if broken {
            // the destination aborted or vanished: do not wait for a release it will not answer
            sub.abort();
        } else {
            sub.release();
        }
        let remaining = (total as u16).saturating_sub(tally.handled());
        self.finish_retrieve(
            context_id,
            cmd,
            query,
            keys_text,
            "retrieve-move",
            &tally.sent,
            &tally.failed_uids,
            tally.counts(remaining),
            cancelled,
            Some(&dest),
        )
    }
}

/// The association the box opens to a C-MOVE destination.
struct SubAssociation {
    out: OutAssociation,
    /// (SOP class, transfer syntax) -> accepted context ID.
    contexts: Vec<(String, String, u8)>,
    next_id: u16,
}

impl SubAssociation {
    fn open(
        host: &str,
        port: u16,
        our_ae: &str,
        their_ae: &str,
        list: &[InstanceRef],
    ) -> Result<Self, OpenError> {
        use dicom_ul::pdu::{PresentationContextProposed, PresentationContextResultReason};
        // One context per (SOP class, stored syntax), plus one per Little Endian syntax the box
        // can convert to (decompressing if need be), so the destination can take objects as
        // stored, or else uncompressed.
        let mut pairs: Vec<(String, String)> = Vec::new();
        for i in list {
            let mut wanted = vec![(i.sop_class_uid.clone(), i.transfer_syntax.clone())];
            for alt in [syntax::EXPLICIT_LE, syntax::IMPLICIT_LE] {
                if alt != i.transfer_syntax && send::can_convert(&i.transfer_syntax, alt) {
                    wanted.push((i.sop_class_uid.clone(), alt.to_string()));
                }
            }
            for p in wanted {
                if !pairs.contains(&p) && pairs.len() < 128 {
                    pairs.push(p);
                }
            }
        }
        let proposed: Vec<PresentationContextProposed> = pairs
            .iter()
            .enumerate()
            .map(|(k, (class, ts))| PresentationContextProposed {
                id: (2 * k + 1) as u8,
                abstract_syntax: class.clone(),
                transfer_syntaxes: vec![ts.clone()],
            })
            .collect();
        let (out, ac) = OutAssociation::open(Request {
            host,
            port,
            our_ae,
            their_ae,
            contexts: proposed,
            scp_role: None,
            artim: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        })?;
        let mut contexts = Vec::new();
        for r in &ac.presentation_contexts {
            if r.reason == PresentationContextResultReason::Acceptance {
                let k = (r.id as usize).saturating_sub(1) / 2;
                if let Some((class, _)) = pairs.get(k) {
                    let accepted = r.transfer_syntax.trim_end_matches(['\0', ' ']).to_string();
                    contexts.push((class.clone(), accepted, r.id));
                }
            }
        }
        Ok(SubAssociation {
            out,
            contexts,
            next_id: 0,
        })
    }

    /// Send one instance and wait for its C-STORE-RSP. `Ok(Err(_))`: the instance could not be
    /// delivered (the association goes on); `Err(_)`: the destination failed.
    fn store(
        &mut self,
        inst: &InstanceRef,
        data: &cairn_store::DataDir,
        origin_ae: &str,
        origin_id: u16,
    ) -> Result<Result<SubOp, Problem>, Broken> {
        let picked = send::pick_context(
            &inst.transfer_syntax,
            self.contexts
                .iter()
                .filter(|(c, _, _)| *c == inst.sop_class_uid)
                .map(|(_, t, id)| (t.as_str(), *id)),
        );
        let Some((pc, ts)) = picked else {
            return Ok(Err(Problem::Unconvertible(format!(
                "the destination accepted no context that can carry it (stored in {})",
                inst.transfer_syntax
            ))));
        };
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let sent = Outgoing {
            sock: &mut self.out.sock,
            peer_max_pdu: self.out.peer_max_pdu,
            context_id: pc,
            context_ts: &ts,
            message_id: id,
            move_origin: Some((origin_ae, origin_id)),
        }
        .send(inst, data)?;
        let damaged = match sent {
            Sent::Withheld(problem) => return Ok(Err(problem)),
            Sent::Damaged => true,
            Sent::Intact => false,
        };
        let status = self
            .out
            .read_commands(1 << 20, None, |c| {
                (c.u16(0x0120) == Some(id))
                    .then(|| SubOp::from_status(c.u16(0x0900).unwrap_or(0xC000)))
            })
            .map_err(|e| match e {
                ReadError::NotData(t) => Broken(format!(
                    "unexpected PDU 0x{t:02x} from the move destination"
                )),
                other => Broken(other.to_string()),
            })?;
        Ok(if damaged {
            Err(Problem::Damaged(Damage::HashMismatch))
        } else {
            Ok(status)
        })
    }

    fn abort(self) {
        self.out.abort();
    }

    fn release(self) {
        self.out.release();
    }
}
