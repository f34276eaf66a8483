//! Who may hold a connection or an association slot: the overall cap, the per-address and
//! per-AE caps, and the slots kept for configured peers. Pure bookkeeping, so that one peer
//! taking every slot can be tested without a socket.

use cairn_config::DicomConfig;
use std::collections::HashMap;
use std::net::IpAddr;

/// The caps, from `[dicom]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Associations at once, overall.
    pub max: usize,
    /// Associations at once from one IP address; also its connections that have not yet sent
    /// their A-ASSOCIATE-RQ.
    pub per_address: usize,
    /// Associations at once with one calling AE title.
    pub per_ae: usize,
    /// Slots only AE titles listed under `[[dicom.peers]]` may take (at most `max - 1`).
    pub reserved: usize,
}

impl Limits {
    /// The caps a configuration sets.
    pub fn from_config(d: &DicomConfig) -> Self {
        Self {
            max: d.max_associations,
            per_address: d.max_associations_per_address,
            per_ae: d.max_associations_per_ae,
            reserved: d
                .reserved_associations_for_peers
                .min(d.max_associations.saturating_sub(1)),
        }
    }
}

/// Why an association found no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// Every slot is taken (or every one an unlisted AE may take).
    Full,
    /// Its address already holds `per_address` associations.
    Address,
    /// Its calling AE title already holds `per_ae` associations.
    Ae,
}

impl NoSlot {
    /// Plain words for the log and the audit row.
    pub fn why(self) -> &'static str {
        match self {
            NoSlot::Full => "too many associations at once",
            NoSlot::Address => "too many associations from this address",
            NoSlot::Ae => "too many associations with this calling AE title",
        }
    }
}

/// Connections waiting for their association request, and associations, counted.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    active: usize,
    by_address: HashMap<IpAddr, usize>,
    by_ae: HashMap<String, usize>,
    waiting: HashMap<IpAddr, usize>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Slots {
    /// A new connection from `ip`, before its association request: false when that address
    /// already has `per_address` connections waiting (the new one is closed at once).
    pub fn begin_waiting(&mut self, limits: &Limits, ip: IpAddr) -> bool {
        let n = self.waiting.entry(ip).or_insert(0);
        if *n >= limits.per_address {
            if *n == 0 {
                self.waiting.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// When every connection is taken and one from `newcomer` arrives: the address whose
    /// waiting connections should make room (the one with the most, if it has at least two
    /// more than `newcomer`), so that an address never loses a connection to one that already
    /// holds as many. None: the newcomer is the one turned away.
    pub fn make_room_from(&self, newcomer: IpAddr) -> Option<IpAddr> {
        let own = self.waiting.get(&newcomer).copied().unwrap_or(0);
        self.waiting
            .iter()
            .filter(|(ip, n)| **ip != newcomer && **n >= own + 2)
            .max_by_key(|(ip, n)| (**n, **ip))
            .map(|(ip, _)| *ip)
    }

    /// The connection from `ip` sent its request, or ended.
    pub fn end_waiting(&mut self, ip: IpAddr) {
        decrement(&mut self.waiting, &ip);
    }

    /// Take an association slot for `ae` calling from `ip`; `listed` when the AE is in
    /// `[[dicom.peers]]`.
    pub fn admit(
        &mut self,
        limits: &Limits,
        ip: IpAddr,
        ae: &str,
        listed: bool,
    ) -> Result<(), NoSlot> {
        let open = if listed {
            limits.max
        } else {
            limits.max - limits.reserved
        };
        if self.active >= open {
            return Err(NoSlot::Full);
        }
        if self.by_address.get(&ip).copied().unwrap_or(0) >= limits.per_address {
            return Err(NoSlot::Address);
        }
        if self.by_ae.get(ae).copied().unwrap_or(0) >= limits.per_ae {
            return Err(NoSlot::Ae);
        }
        self.active += 1;
        *self.by_address.entry(ip).or_insert(0) += 1;
        *self.by_ae.entry(ae.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// Give back a slot taken by `admit`.
    pub fn release(&mut self, ip: IpAddr, ae: &str) {
        self.active = self.active.saturating_sub(1);
        decrement(&mut self.by_address, &ip);
        decrement(&mut self.by_ae, &ae.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max: 6,
        per_address: 3,
        per_ae: 4,
        reserved: 2,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let mut s = Slots::default();
        for _ in 0..3 {
            s.admit(&LIMITS, ip(1), "A", true).unwrap();
        }
        assert_eq!(s.admit(&LIMITS, ip(1), "B", true), Err(NoSlot::Address));
        s.admit(&LIMITS, ip(2), "C", true).unwrap();
        s.release(ip(1), "A");
        s.admit(&LIMITS, ip(1), "B", true).unwrap();
    }

    #[test]
    fn one_ae_title_cannot_take_every_slot() {
        let mut s = Slots::default();
        for k in 0..4 {
            s.admit(&LIMITS, ip(k), "SPOOF", true).unwrap();
        }
        assert_eq!(s.admit(&LIMITS, ip(9), "SPOOF", true), Err(NoSlot::Ae));
        s.admit(&LIMITS, ip(9), "CT", true).unwrap();
    }

    #[test]
    fn reserved_slots_are_for_listed_peers() {
        let mut s = Slots::default();
        for k in 0..4 {
            s.admit(&LIMITS, ip(k), &format!("X{k}"), false).unwrap();
        }
        assert_eq!(s.admit(&LIMITS, ip(8), "X8", false), Err(NoSlot::Full));
        s.admit(&LIMITS, ip(8), "CT", true).unwrap();
        s.admit(&LIMITS, ip(9), "MR", true).unwrap();
        assert_eq!(s.admit(&LIMITS, ip(10), "US", true), Err(NoSlot::Full));
    }

    #[test]
    fn reservation_never_takes_the_last_slot() {
        let mut d = cairn_config::Config::parse(
            "[dicom]\nae_title = \"CAIRN\"\nmax_associations = 1\n[store]\ndata_dir = \"/d\"\n",
            std::path::Path::new("t"),
        )
        .unwrap()
        .dicom;
        let l = Limits::from_config(&d);
        assert_eq!(l.reserved, 0);
        d.max_associations = 16;
        assert_eq!(Limits::from_config(&d).reserved, 2);
    }

    #[test]
    fn room_is_made_from_the_address_waiting_most() {
        let mut s = Slots::default();
        for _ in 0..3 {
            s.begin_waiting(&LIMITS, ip(1));
        }
        s.begin_waiting(&LIMITS, ip(2));
        assert_eq!(s.make_room_from(ip(9)), Some(ip(1)));
        assert_eq!(s.make_room_from(ip(1)), None, "not from itself");
        s.begin_waiting(&LIMITS, ip(9));
        s.begin_waiting(&LIMITS, ip(9));
        assert_eq!(s.make_room_from(ip(9)), None, "3 is not 2 more than 2");
        let mut even = Slots::default();
        for k in 0..5 {
            even.begin_waiting(&LIMITS, ip(k));
        }
        assert_eq!(
            even.make_room_from(ip(9)),
            None,
            "one each: nobody loses theirs"
        );
    }

    #[test]
    fn waiting_connections_are_counted_per_address() {
        let mut s = Slots::default();
        for _ in 0..3 {
            assert!(s.begin_waiting(&LIMITS, ip(1)));
        }
        assert!(!s.begin_waiting(&LIMITS, ip(1)));
        assert!(s.begin_waiting(&LIMITS, ip(2)));
        s.end_waiting(ip(1));
        assert!(s.begin_waiting(&LIMITS, ip(1)));
        for _ in 0..3 {
            s.end_waiting(ip(1));
        }
        s.end_waiting(ip(2));
        assert!(s.waiting.is_empty(), "{:?}", s.waiting);
    }
}
