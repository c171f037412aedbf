//! Chat: `sendChat` (1..2000 characters after trimming, only while the
//! webinar's chat setting is on, at most `RATE_COUNT` messages per person in
//! `RATE_WINDOW`), stored and then broadcast as `chatMessage`; the latest
//! messages are handed to a joining socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::Request;
use super::protocol::{parse, EventError, EventResult};
use super::room;
use crate::model::{self, ChatMessage};
use crate::store::{Store, StoreResult};

pub const MAX_CHARS: usize = 2000;
pub const RATE_COUNT: usize = 5;
pub const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Messages included in the `join` ack.
pub const HISTORY: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendChat {
    text: String,
}

/// The `chatMessage` event body of a stored message.
pub fn view(m: &ChatMessage) -> Value {
    json!({
        "id": m.id,
        "peerId": m.peer_id,
        "name": m.name,
        "role": m.role,
        "text": m.text,
        "ts": model::rfc3339::format(&m.ts),
    })
}

pub async fn history(store: &dyn Store, webinar_id: &str) -> StoreResult<Vec<Value>> {
    let messages = store.chat_messages(webinar_id, Some(HISTORY)).await?;
    Ok(messages.iter().map(view).collect())
}

/// Records a message in a sliding window; false when the window is full.
fn allow(window: &mut VecDeque<Instant>, now: Instant) -> bool {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
    {
        window.pop_front();
    }
    if window.len() >= RATE_COUNT {
        return false;
    }
    window.push_back(now);
    true
}

pub(super) async fn send(req: Request, data: Value) -> EventResult {
    let body: SendChat = parse(data)?;
    let text = body.text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_CHARS {
        return Err(EventError::invalid(format!(
            "text must be 1 to {MAX_CHARS} characters"
        )));
    }
    let (room, member) = req.member()?;
    let webinar = req
        .store()
        .webinar(&room.webinar_id)
        .await?
        .ok_or_else(|| EventError::new("not_found", "webinar not found"))?;
    if !webinar.settings.chat {
        return Err(EventError::new(
            "chat_disabled",
            "chat is turned off for this webinar",
        ));
    }
    let allowed = room.with(|st| {
        allow(
            st.chat_windows.entry(member.identity.clone()).or_default(),
            Instant::now(),
        )
    });
    if !allowed {
        return Err(EventError::new(
            "rate_limited",
            format!(
                "at most {RATE_COUNT} messages in {} seconds",
                RATE_WINDOW.as_secs()
            ),
        ));
    }
    let message = ChatMessage {
        id: model::new_id(),
        webinar_id: room.webinar_id.clone(),
        peer_id: member.peer_id.clone(),
        name: member.name.clone(),
        role: member.role,
        text: text.to_string(),
        ts: model::now(),
    };
    req.store().add_chat_message(&message).await?;
    if let Err(e) = req
        .io
        .within(room::everyone(&room.webinar_id))
        .emit("chatMessage", &view(&message))
        .await
    {
        tracing::warn!("chatMessage in {}: {e}", room.webinar_id);
    }
    Ok(json!({"id": message.id, "ts": model::rfc3339::format(&message.ts)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_allows_a_burst_then_refuses_until_it_slides() {
        let mut w = VecDeque::new();
        let t0 = Instant::now();
        for _ in 0..RATE_COUNT {
            assert!(allow(&mut w, t0));
        }
        assert!(!allow(&mut w, t0 + Duration::from_secs(1)));
        assert!(allow(&mut w, t0 + RATE_WINDOW));
    }
}
