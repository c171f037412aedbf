//! The in-memory state of live rooms on this node: who has joined (with
//! their current role), how many attendees count against the capacity, the
//! spotlight, kicked participants, chat rate windows and caption timing.
//!
//! Admission (the capacity check and the insert) happens under the room's
//! lock, so two attendees racing for the last seat cannot both get in. The
//! lock is never held across an `await`; fan-out works on snapshots.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use socketioxide::socket::Sid;

use super::protocol::EventError;
use crate::model::{AttendanceSession, Role, Timestamp};

/// A participant across sockets: `r:<registration id>` or `u:<user id>`.
pub type IdentityKey = String;

/// Socket.IO room with every joined socket of a webinar.
pub fn everyone(webinar_id: &str) -> String {
    format!("w:{webinar_id}")
}

/// Socket.IO room with the joined hosts and co-hosts of a webinar.
pub fn presenters(webinar_id: &str) -> String {
    format!("w:{webinar_id}:presenters")
}

/// Socket.IO room of one peer (so that a broadcast to it and to the
/// presenters reaches a presenter peer once).
pub fn peer(peer_id: &str) -> String {
    format!("p:{peer_id}")
}

/// One joined socket.
#[derive(Debug, Clone)]
pub struct Member {
    pub peer_id: String,
    pub sid: Sid,
    pub identity: IdentityKey,
    pub registration_id: Option<String>,
    /// The account's e-mail, for members who joined with a host account
    /// (a co-host registration under that e-mail makes them co-host).
    pub email: Option<String>,
    pub name: String,
    pub role: Role,
    pub session: AttendanceSession,
}

/// A presenter's attendance session kept open for a while after their
/// socket went away, so that a reconnect continues it.
#[derive(Debug, Clone)]
pub struct PendingSession {
    pub session: AttendanceSession,
    pub disconnected_at: Timestamp,
}

#[derive(Debug, Default)]
pub struct CountState {
    pub last_sent_at: Option<Instant>,
    pub last_sent: Option<usize>,
    pub scheduled: bool,
}

#[derive(Debug, Default)]
pub struct RoomState {
    pub members: HashMap<String, Member>,
    /// Joined members whose role is attendee (what the capacity limits).
    pub attendees: usize,
    pub ended: bool,
    pub spotlight: Option<String>,
    pub kicked: HashSet<IdentityKey>,
    pub chat_windows: HashMap<IdentityKey, VecDeque<Instant>>,
    pub first_caption_at: Option<Timestamp>,
    /// When each presenter's current (not yet final) caption began.
    pub utterance_start: HashMap<String, Timestamp>,
    pub pending_sessions: HashMap<IdentityKey, PendingSession>,
    pub count: CountState,
}

impl RoomState {
    /// Admits `member` unless the room is over, the participant was
    /// kicked, or an attendee would exceed `capacity` (hosts and co-hosts
    /// always get in).
    pub fn admit(&mut self, member: Member, capacity: u32) -> Result<(), EventError> {
        if self.ended {
            return Err(EventError::webinar_ended());
        }
        if self.kicked.contains(&member.identity) {
            return Err(EventError::new(
                "kicked",
                "you were removed from this webinar",
            ));
        }
        if member.role == Role::Attendee {
            if self.attendees >= capacity as usize {
                return Err(EventError::new(
                    "capacity_reached",
                    format!("the webinar is full ({capacity} attendees)"),
                ));
            }
            self.attendees += 1;
        }
        self.members.insert(member.peer_id.clone(), member);
        Ok(())
    }

    pub fn remove(&mut self, peer_id: &str) -> Option<Member> {
        let member = self.members.remove(peer_id)?;
        if member.role == Role::Attendee {
            self.attendees -= 1;
        }
        if self.spotlight.as_deref() == Some(peer_id) {
            self.spotlight = None;
        }
        self.utterance_start.remove(peer_id);
        Some(member)
    }

    /// Changes a member's role, keeping the attendee count right. A
    /// demoted co-host gets in even when that puts the room over capacity.
    pub fn set_role(&mut self, peer_id: &str, role: Role) -> Option<Role> {
        let member = self.members.get_mut(peer_id)?;
        let old = member.role;
        if old == role {
            return Some(old);
        }
        member.role = role;
        member.session.role = role;
        match (old, role) {
            (Role::Attendee, _) => self.attendees -= 1,
            (_, Role::Attendee) => self.attendees += 1,
            _ => {}
        }
        Some(old)
    }

    /// Members who are a registration: joined with it, or with the host
    /// account under its e-mail (one person may have several tabs open).
    pub fn members_of(&self, registration_id: &str, email: &str) -> Vec<Member> {
        self.members
            .values()
            .filter(|m| {
                m.registration_id.as_deref() == Some(registration_id)
                    || m.email.as_deref() == Some(email)
            })
            .cloned()
            .collect()
    }
}

pub struct Room {
    pub webinar_id: String,
    state: Mutex<RoomState>,
}

impl Room {
    /// Runs `f` under the room's lock (which must not be held across an await).
    pub fn with<R>(&self, f: impl FnOnce(&mut RoomState) -> R) -> R {
        let mut state = self.state.lock().expect("room lock is never poisoned");
        f(&mut state)
    }
}

#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
}

impl Rooms {
    pub fn get_or_create(&self, webinar_id: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().expect("rooms lock is never poisoned");
        rooms
            .entry(webinar_id.to_string())
            .or_insert_with(|| {
                Arc::new(Room {
                    webinar_id: webinar_id.to_string(),
                    state: Mutex::new(RoomState::default()),
                })
            })
            .clone()
    }

    pub fn get(&self, webinar_id: &str) -> Option<Arc<Room>> {
        self.rooms
            .lock()
            .expect("rooms lock is never poisoned")
            .get(webinar_id)
            .cloned()
    }

    /// Forgets an ended webinar's room.
    pub fn remove(&self, webinar_id: &str) {
        self.rooms
            .lock()
            .expect("rooms lock is never poisoned")
            .remove(webinar_id);
    }

    /// (live rooms, joined members) on this node, for metrics.
    pub fn totals(&self) -> (usize, usize) {
        let rooms: Vec<_> = self
            .rooms
            .lock()
            .expect("rooms lock is never poisoned")
            .values()
            .cloned()
            .collect();
        let members = rooms.iter().map(|r| r.with(|s| s.members.len())).sum();
        (rooms.len(), members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    fn member(peer_id: &str, role: Role) -> Member {
        Member {
            peer_id: peer_id.into(),
            sid: Sid::new(),
            identity: format!("r:{peer_id}"),
            registration_id: Some(peer_id.into()),
            email: None,
            name: peer_id.into(),
            role,
            session: AttendanceSession {
                id: model::new_id(),
                webinar_id: "w".into(),
                registration_id: Some(peer_id.into()),
                user_id: None,
                peer_id: peer_id.into(),
                name: peer_id.into(),
                role,
                joined_at: model::now(),
                left_at: None,
                location: Default::default(),
            },
        }
    }

    #[test]
    fn capacity_limits_attendees_but_never_presenters() {
        let mut room = RoomState::default();
        room.admit(member("a", Role::Attendee), 1).unwrap();
        let err = room.admit(member("b", Role::Attendee), 1).unwrap_err();
        assert_eq!(err.code, "capacity_reached");
        room.admit(member("h", Role::Host), 1).unwrap();
        room.admit(member("c", Role::CoHost), 1).unwrap();
        assert_eq!(room.attendees, 1);
        room.remove("a");
        room.admit(member("b", Role::Attendee), 1).unwrap();
    }

    #[test]
    fn role_changes_move_people_in_and_out_of_the_attendee_count() {
        let mut room = RoomState::default();
        room.admit(member("a", Role::Attendee), 5).unwrap();
        room.set_role("a", Role::CoHost);
        assert_eq!(room.attendees, 0);
        room.set_role("a", Role::Attendee);
        assert_eq!(room.attendees, 1);
        room.remove("a");
        assert_eq!(room.attendees, 0);
    }

    #[test]
    fn an_ended_room_admits_nobody() {
        let mut room = RoomState {
            ended: true,
            ..Default::default()
        };
        let err = room.admit(member("h", Role::Host), 5).unwrap_err();
        assert_eq!(err.code, "webinar_ended");
    }
}
