//! Live captions pushed by a presenter's browser: every piece is broadcast
//! as `caption`; final ones are kept as transcript segments, timed in
//! milliseconds from the webinar's start (or from its first caption when it
//! was never started), starting where the utterance's first interim piece
//! arrived.

use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::Request;
use super::protocol::{parse, EventError, EventResult};
use super::room;
use crate::model::{self, TranscriptSegment};

pub const MAX_CHARS: usize = 5000;
const MAX_LANG: usize = 35;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PushCaption {
    text: String,
    is_final: bool,
    #[serde(default)]
    lang: Option<String>,
}

pub(super) async fn push(req: Request, data: Value) -> EventResult {
    let body: PushCaption = parse(data)?;
    let text = body.text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_CHARS {
        return Err(EventError::invalid(format!(
            "text must be 1 to {MAX_CHARS} characters"
        )));
    }
    if body
        .lang
        .as_deref()
        .is_some_and(|l| l.is_empty() || l.len() > MAX_LANG)
    {
        return Err(EventError::invalid(format!(
            "lang must be a language tag of at most {MAX_LANG} characters"
        )));
    }
    let (room, member, _) = req.require_presenter().await?;
    let webinar = req
        .store()
        .webinar(&room.webinar_id)
        .await?
        .ok_or_else(|| EventError::new("not_found", "webinar not found"))?;
    if !webinar.settings.captions {
        return Err(EventError::new(
            "captions_disabled",
            "captions are turned off for this webinar",
        ));
    }
    let now = model::now();
    let (base, start) = room.with(|st| {
        let first = *st.first_caption_at.get_or_insert(now);
        let start = if body.is_final {
            st.utterance_start.remove(&member.peer_id).unwrap_or(now)
        } else {
            *st.utterance_start
                .entry(member.peer_id.clone())
                .or_insert(now)
        };
        (webinar.started_at.unwrap_or(first), start)
    });
    if let Err(e) = req
        .io
        .within(room::everyone(&room.webinar_id))
        .emit(
            "caption",
            &json!({
                "peerId": member.peer_id,
                "name": member.name,
                "text": text,
                "isFinal": body.is_final,
                "ts": model::rfc3339::format(&now),
            }),
        )
        .await
    {
        tracing::warn!("caption in {}: {e}", room.webinar_id);
    }
    if body.is_final {
        let start_ms = (start - base).num_milliseconds().max(0);
        let segment = TranscriptSegment {
            id: model::new_id(),
            webinar_id: room.webinar_id.clone(),
            start_ms,
            end_ms: (now - base).num_milliseconds().max(start_ms),
            speaker: member.name.clone(),
            text: text.to_string(),
            lang: body.lang,
            source: "caption".to_string(),
        };
        req.store().add_transcript_segment(&segment).await?;
    }
    Ok(json!({}))
}
