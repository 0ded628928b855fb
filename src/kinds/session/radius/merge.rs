//! Combining the requests of one batch before they reach the database, by
//! the same rules the database applies to a stored row (`db::sessions`), so
//! a batch gives the same rows as its requests one by one, in any order:
//!
//! - start is the earliest, update and stop the latest heard; a stop, once
//!   known, is never cleared (an Interim-Update after the Stop does not
//!   reopen the session);
//! - session time and octet counters never go backwards;
//! - every other attribute is the one of the latest event that carried it.

use std::collections::HashMap;

use super::{NasReboot, Request, SessionRow, StatusType};

/// What a batch does, in order: sessions merged by key between NAS reboots.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Session rows, one per key, sorted by key (a stable lock order).
    Sessions(Vec<SessionRow>),
    /// Close every open session of a NAS.
    Reboot(NasReboot),
}

/// Merges a batch's requests into steps.
pub fn merge_requests(requests: impl IntoIterator<Item = Request>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut pending: HashMap<String, SessionRow> = HashMap::new();
    let flush = |pending: &mut HashMap<String, SessionRow>, steps: &mut Vec<Step>| {
        if !pending.is_empty() {
            let mut rows: Vec<SessionRow> = pending.drain().map(|(_, r)| r.finished()).collect();
            rows.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
            steps.push(Step::Sessions(rows));
        }
    };
    for request in requests {
        match request {
            Request::Session(row) => match pending.get_mut(&row.unique_id) {
                Some(existing) => existing.absorb(*row),
                None => {
                    pending.insert(row.unique_id.clone(), *row);
                }
            },
            Request::NasReboot(reboot) => {
                flush(&mut pending, &mut steps);
                steps.push(Step::Reboot(reboot));
            }
        }
    }
    flush(&mut pending, &mut steps);
    steps
}

fn later<T>(mine: &mut Option<T>, theirs: Option<T>, theirs_newer: bool) {
    if theirs.is_some() && (theirs_newer || mine.is_none()) {
        *mine = theirs;
    }
}

impl SessionRow {
    /// Takes in another request of the same session.
    pub fn absorb(&mut self, other: SessionRow) {
        let newer = other.update >= self.update;
        if other.interval.is_some() {
            self.interval = other.interval;
        } else if other.status == StatusType::InterimUpdate
            && self.stop.is_none()
            && other.update > self.update
        {
            self.interval = Some((other.update - self.update).num_seconds());
        }
        if other.status == StatusType::InterimUpdate {
            self.status = StatusType::InterimUpdate;
        }
        self.start = self.start.min(other.start);
        self.update = self.update.max(other.update);
        self.stop = self.stop.max(other.stop);
        self.session_time = self.session_time.max(other.session_time);
        self.input_octets = self.input_octets.max(other.input_octets);
        self.output_octets = self.output_octets.max(other.output_octets);
        self.stop_without_time |= other.stop_without_time;
        later(&mut self.user, other.user, newer);
        later(&mut self.realm, other.realm, newer);
        later(&mut self.nas_port_id, other.nas_port_id, newer);
        later(&mut self.nas_port_type, other.nas_port_type, newer);
        later(&mut self.authentic, other.authentic, newer);
        later(
            &mut self.connect_info_start,
            other.connect_info_start,
            newer,
        );
        later(&mut self.connect_info_stop, other.connect_info_stop, newer);
        later(&mut self.called, other.called, newer);
        later(&mut self.calling, other.calling, newer);
        later(&mut self.terminate_cause, other.terminate_cause, newer);
        later(&mut self.service_type, other.service_type, newer);
        later(&mut self.framed_protocol, other.framed_protocol, newer);
        later(&mut self.framed_ip, other.framed_ip, newer);
        later(&mut self.framed_ipv6, other.framed_ipv6, newer);
        later(
            &mut self.framed_ipv6_prefix,
            other.framed_ipv6_prefix,
            newer,
        );
        later(
            &mut self.framed_interface_id,
            other.framed_interface_id,
            newer,
        );
        later(
            &mut self.delegated_ipv6_prefix,
            other.delegated_ipv6_prefix,
            newer,
        );
        later(&mut self.class, other.class, newer);
    }

    /// A stopped session whose Stop carried no session time lasted from
    /// its start to its stop.
    fn finished(mut self) -> SessionRow {
        if let (true, Some(stop)) = (self.stop_without_time, self.stop) {
            if stop > self.start {
                let length = (stop - self.start).num_seconds();
                self.session_time = self.session_time.max(Some(length));
            }
        }
        self
    }
}
