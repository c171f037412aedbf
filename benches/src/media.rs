//! The presenter's media: encoded once with GStreamer (VP8 per simulcast
//! encoding, Opus), packetized by GStreamer's RTP payloaders and stored as
//! RFC 4571 framed RTP (`rtpstreampay`), then looped by a [`Pacer`] that
//! sends each packet at its media time, with continuous sequence numbers
//! and timestamps, and a [`stamp`] carrying the send time in the payload.

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::plan::{
    MediaPlan, AUDIO_CLOCK_RATE, OPUS_PAYLOAD_TYPE, VIDEO_CLOCK_RATE, VP8_PAYLOAD_TYPE,
};

/// Length of the encoded loop.
pub const LOOP_SECONDS: u32 = 10;

/// One RTP packet of an encoded stream, as the payloader made it.
#[derive(Debug, Clone)]
pub struct EncodedPacket {
    /// RTP timestamp relative to the stream's first packet.
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// The first packet of a VP8 key frame.
    pub key_frame_start: bool,
}

/// One stream: its packets in order, and what it looped through.
#[derive(Debug, Clone)]
pub struct EncodedStream {
    pub packets: Vec<EncodedPacket>,
    pub clock_rate: u32,
    /// RTP timestamp span of one loop (the next loop starts here).
    pub loop_timestamp: u32,
    /// Measured bitrate of the encoded payloads, bits per second.
    pub bitrate: u64,
}

/// Everything the presenter sends, encoded.
#[derive(Debug, Clone)]
pub struct EncodedMedia {
    /// One per simulcast encoding, lowest first.
    pub video: Vec<EncodedStream>,
    pub audio: EncodedStream,
}

/// Encodes `plan`'s streams into `cache_dir` (reused when the files for
/// the same parameters exist) and loads them.
pub fn encode(plan: &MediaPlan, cache_dir: &Path) -> anyhow::Result<EncodedMedia> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let frames = LOOP_SECONDS * plan.frame_rate;
    let mut video = Vec::new();
    for encoding in &plan.encodings {
        let file = cache_dir.join(format!(
            "vp8-{}x{}-{}kbps-{}fps-kf{}.rtp",
            encoding.width,
            encoding.height,
            encoding.bitrate_kbps,
            plan.frame_rate,
            plan.key_frame_interval_frames
        ));
        if !file.exists() {
            // Moving SMPTE bars: VP8 in CBR meets its target on them (a
            // still picture undershoots, noise overshoots).
            let pipeline = format!(
                "videotestsrc num-buffers={frames} pattern=smpte horizontal-speed=4 \
                 ! video/x-raw,width={w},height={h},framerate={fps}/1 \
                 ! vp8enc target-bitrate={bps} end-usage=cbr keyframe-max-dist={kf} \
                   deadline=1 cpu-used=4 max-quantizer=63 buffer-size=1000 \
                 ! rtpvp8pay mtu=1200 picture-id-mode=15-bit pt={pt} \
                 ! rtpstreampay",
                w = encoding.width,
                h = encoding.height,
                fps = plan.frame_rate,
                bps = encoding.bitrate_kbps * 1000,
                kf = plan.key_frame_interval_frames,
                pt = VP8_PAYLOAD_TYPE,
            );
            run_gstreamer(&pipeline, &file)?;
        }
        let packets = read_framed_rtp(&file)?;
        video.push(stream(packets, VIDEO_CLOCK_RATE, LOOP_SECONDS, true)?);
    }
    let file = cache_dir.join(format!("opus-{}kbps.rtp", plan.audio_bitrate_kbps));
    if !file.exists() {
        let buffers = LOOP_SECONDS * 50;
        let pipeline = format!(
            "audiotestsrc num-buffers={buffers} samplesperbuffer=960 wave=ticks \
             ! audio/x-raw,rate=48000,channels=2 \
             ! opusenc bitrate={bps} frame-size=20 \
             ! rtpopuspay pt={pt} ! rtpstreampay",
            bps = plan.audio_bitrate_kbps * 1000,
            pt = OPUS_PAYLOAD_TYPE,
        );
        run_gstreamer(&pipeline, &file)?;
    }
    let audio = stream(
        read_framed_rtp(&file)?,
        AUDIO_CLOCK_RATE,
        LOOP_SECONDS,
        false,
    )?;
    Ok(EncodedMedia { video, audio })
}

/// Runs `pipeline ! filesink location=<file>` through `gst-launch-1.0`,
/// writing to a temporary name first so that a failed run leaves nothing.
fn run_gstreamer(pipeline: &str, file: &Path) -> anyhow::Result<()> {
    let partial: PathBuf = file.with_extension("partial");
    let description = format!("{pipeline} ! filesink location={}", partial.display());
    let output = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .output()
        .context("running gst-launch-1.0 (install gstreamer1.0-tools and plugins)")?;
    if !output.status.success() {
        bail!(
            "gst-launch-1.0 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&partial, file)?;
    Ok(())
}

/// Reads RFC 4571 framing: a 16-bit big-endian length before each packet.
fn read_framed_rtp(file: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut packets = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + len {
            bail!("{}: truncated packet", file.display());
        }
        packets.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    if packets.is_empty() {
        bail!("{}: no packets", file.display());
    }
    Ok(packets)
}

/// Parses the payloader's packets into a stream.
fn stream(
    raw: Vec<Vec<u8>>,
    clock_rate: u32,
    seconds: u32,
    vp8: bool,
) -> anyhow::Result<EncodedStream> {
    let mut packets = Vec::with_capacity(raw.len());
    let mut first_timestamp = None;
    let mut payload_bytes = 0u64;
    for packet in raw {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            bail!("not an RTP packet");
        }
        let csrcs = usize::from(packet[0] & 0x0f);
        let mut offset = 12 + 4 * csrcs;
        if packet[0] & 0x10 != 0 {
            let words = usize::from(u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]));
            offset += 4 + 4 * words;
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            end -= usize::from(packet[end - 1]);
        }
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let first = *first_timestamp.get_or_insert(timestamp);
        let payload = packet[offset..end].to_vec();
        payload_bytes += payload.len() as u64;
        packets.push(EncodedPacket {
            timestamp: timestamp.wrapping_sub(first),
            marker: packet[1] & 0x80 != 0,
            key_frame_start: vp8 && vp8_key_frame_start(&payload),
            payload,
        });
    }
    Ok(EncodedStream {
        packets,
        clock_rate,
        loop_timestamp: clock_rate * seconds,
        bitrate: payload_bytes * 8 / u64::from(seconds),
    })
}

/// Whether a VP8 RTP payload starts a key frame: S bit and partition 0 in
/// the descriptor, and the P bit of the frame header clear.
pub fn vp8_key_frame_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut offset = 1;
    if first & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        offset += 1;
        if x & 0x80 != 0 {
            offset += if payload.get(offset).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if x & 0x40 != 0 {
            offset += 1;
        }
        if x & 0x30 != 0 {
            offset += 1;
        }
    }
    start && payload.get(offset).is_some_and(|b| b & 0x01 == 0)
}

/// The send time the presenter writes into the last bytes of a payload,
/// and the encoding it came from.
pub mod stamp {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    const MAGIC: [u8; 4] = *b"WBst";
    /// Bytes a stamp takes at the end of a payload.
    pub const LEN: usize = 16;
    /// Payloads shorter than this are not stamped (the head of a VP8
    /// payload must stay intact for the SFUs to read it).
    pub const MIN_PAYLOAD: usize = 48;
    /// The layer byte of audio packets.
    pub const AUDIO: u8 = 0xff;

    /// The clock stamps count from: one per process, so presenter and
    /// viewers (threads of the same generator) share it.
    pub fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// Writes a stamp for `layer` sent at `at` over the end of `payload`.
    pub fn write(payload: &mut [u8], layer: u8, at: Instant) {
        if payload.len() < MIN_PAYLOAD {
            return;
        }
        let nanos = at.saturating_duration_since(epoch()).as_nanos() as u64;
        let tail = payload.len() - LEN;
        payload[tail..tail + 4].copy_from_slice(&MAGIC);
        payload[tail + 4] = layer;
        payload[tail + 5..tail + 8].fill(0);
        payload[tail + 8..].copy_from_slice(&nanos.to_be_bytes());
    }

    /// Updates the send time of a stamped payload (a packet held by the
    /// presenter's pacer is stamped again when it leaves).
    pub fn retime(payload: &mut [u8], at: Instant) {
        if let Some((layer, _)) = read(payload) {
            write(payload, layer, at);
        }
    }

    /// Reads a stamp from the end of a payload: the layer and send time.
    pub fn read(payload: &[u8]) -> Option<(u8, Instant)> {
        if payload.len() < MIN_PAYLOAD {
            return None;
        }
        let tail = payload.len() - LEN;
        if payload[tail..tail + 4] != MAGIC {
            return None;
        }
        let nanos = u64::from_be_bytes(payload[tail + 8..].try_into().ok()?);
        Some((payload[tail + 4], epoch() + Duration::from_nanos(nanos)))
    }
}

/// Which stream of the presenter a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Track {
    Audio,
    /// A simulcast encoding, by index.
    Video(u8),
}

/// One stream's position in its loop.
struct Cursor {
    track: Track,
    ssrc: u32,
    payload_type: u8,
    index: usize,
    loops: u32,
    seq: u16,
    /// Random start, as a browser's.
    timestamp_base: u32,
    /// Jumps to the next key frame (a requested key frame).
    skip_to_key_frame: bool,
    /// Media ticks skipped by key frame requests: the packets after a jump
    /// are sent this much earlier than their place in the loop, and
    /// timestamped accordingly, so media time keeps pace with the clock.
    shift: u64,
}

impl Cursor {
    /// At the start of the loop, with a random sequence number and
    /// timestamp base, as a browser's stream starts.
    fn new(track: Track, ssrc: u32, payload_type: u8) -> Cursor {
        Cursor {
            track,
            ssrc,
            payload_type,
            index: 0,
            loops: 0,
            seq: rand::random(),
            timestamp_base: rand::random(),
            skip_to_key_frame: false,
            shift: 0,
        }
    }
}

/// A packet due at `at` (heap ordered earliest first).
#[derive(PartialEq, Eq)]
struct Due {
    at: Instant,
    cursor: usize,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at).then(other.cursor.cmp(&self.cursor))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Sends the encoded streams in a loop at their media times: yields each
/// packet, built as RTP with the plan's SSRCs, when it is due.
pub struct Pacer {
    media: EncodedMedia,
    cursors: Vec<Cursor>,
    due: BinaryHeap<Due>,
    start: Instant,
}

impl Pacer {
    pub fn new(media: EncodedMedia, plan: &MediaPlan, start: Instant) -> Pacer {
        let mut cursors = vec![Cursor::new(
            Track::Audio,
            plan.audio_ssrc,
            OPUS_PAYLOAD_TYPE,
        )];
        for (i, encoding) in plan.encodings.iter().enumerate() {
            cursors.push(Cursor::new(
                Track::Video(i as u8),
                encoding.ssrc,
                VP8_PAYLOAD_TYPE,
            ));
        }
        assert_eq!(
            media.video.len(),
            plan.encodings.len(),
            "one stream per encoding"
        );
        let mut pacer = Pacer {
            media,
            cursors,
            due: BinaryHeap::new(),
            start,
        };
        for cursor in 0..pacer.cursors.len() {
            let at = pacer.due_at(cursor);
            pacer.due.push(Due { at, cursor });
        }
        pacer
    }

    fn stream(&self, track: Track) -> &EncodedStream {
        match track {
            Track::Audio => &self.media.audio,
            Track::Video(i) => &self.media.video[usize::from(i)],
        }
    }

    /// The media time of the cursor's current packet, in clock ticks since
    /// the start.
    fn ticks(&self, cursor: usize) -> u64 {
        let c = &self.cursors[cursor];
        let stream = self.stream(c.track);
        (u64::from(c.loops) * u64::from(stream.loop_timestamp)
            + u64::from(stream.packets[c.index].timestamp))
        .saturating_sub(c.shift)
    }

    /// When the cursor's current packet is due.
    fn due_at(&self, cursor: usize) -> Instant {
        let clock_rate = self.stream(self.cursors[cursor].track).clock_rate;
        let ticks = self.ticks(cursor);
        self.start + Duration::from_nanos(ticks * 1_000_000_000 / u64::from(clock_rate))
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|d| d.at)
    }

    /// Makes the encoding `ssrc` continue from its next key frame (what a
    /// browser's encoder does on a PLI, approximated with the loop's key
    /// frames).
    pub fn request_key_frame(&mut self, ssrc: u32) {
        if let Some(c) = self
            .cursors
            .iter_mut()
            .find(|c| c.ssrc == ssrc && c.track != Track::Audio)
        {
            c.skip_to_key_frame = true;
        }
    }

    /// Writes the next packet due at or before `now` into `out` (cleared
    /// first), stamped with `now`; `None` when nothing is due.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Track> {
        let due = self.due.peek()?;
        if due.at > now {
            return None;
        }
        let cursor = self.due.pop()?.cursor;
        let track = self.cursors[cursor].track;
        self.skip_if_asked(cursor);
        let timestamp = self.cursors[cursor]
            .timestamp_base
            .wrapping_add(self.ticks(cursor) as u32);
        let c = &self.cursors[cursor];
        let stream = self.stream(track);
        let packet = &stream.packets[c.index];
        out.clear();
        out.push(0x80);
        out.push(if packet.marker { 0x80 } else { 0 } | c.payload_type);
        out.extend_from_slice(&c.seq.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&c.ssrc.to_be_bytes());
        let header = out.len();
        out.extend_from_slice(&packet.payload);
        let layer = match track {
            Track::Audio => stamp::AUDIO,
            Track::Video(i) => i,
        };
        stamp::write(&mut out[header..], layer, now);
        let len = stream.packets.len();
        let c = &mut self.cursors[cursor];
        c.seq = c.seq.wrapping_add(1);
        c.index += 1;
        if c.index == len {
            c.index = 0;
            c.loops += 1;
        }
        let at = self.due_at(cursor);
        self.due.push(Due { at, cursor });
        Some(track)
    }

    /// On a key frame request, moves the cursor to the next key frame
    /// (at a frame boundary), to be sent in place of the frame that was
    /// due; the jump is added to the cursor's shift.
    fn skip_if_asked(&mut self, cursor: usize) {
        let c = &self.cursors[cursor];
        if !c.skip_to_key_frame {
            return;
        }
        let stream = self.stream(c.track);
        let len = stream.packets.len();
        let at_frame_start = c.index == 0 || stream.packets[c.index - 1].marker;
        if !at_frame_start {
            return;
        }
        let Some(ahead) = (0..len).find(|k| stream.packets[(c.index + k) % len].key_frame_start)
        else {
            self.cursors[cursor].skip_to_key_frame = false;
            return;
        };
        let before = self.ticks(cursor);
        let c = &mut self.cursors[cursor];
        let target = c.index + ahead;
        c.loops += (target / len) as u32;
        c.index = target % len;
        c.skip_to_key_frame = false;
        let after = self.ticks(cursor);
        self.cursors[cursor].shift += after - before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_short_payloads_are_left_alone() {
        let at = stamp::epoch() + Duration::from_millis(1234);
        let mut payload = vec![7u8; 100];
        stamp::write(&mut payload, 2, at);
        assert_eq!(payload[..84], [7u8; 84]);
        assert_eq!(stamp::read(&payload), Some((2, at)));
        let mut short = vec![7u8; 20];
        stamp::write(&mut short, 2, at);
        assert_eq!(short, vec![7u8; 20]);
        assert_eq!(stamp::read(&[0u8; 100]), None);
    }

    #[test]
    fn vp8_key_frames_are_recognised() {
        // X=1, I=1 (15-bit picture id), S=1, partition 0; frame header P=0.
        assert!(vp8_key_frame_start(&[0x90, 0x80, 0x81, 0x23, 0x10]));
        // P=1: an inter frame.
        assert!(!vp8_key_frame_start(&[0x90, 0x80, 0x81, 0x23, 0x11]));
        // Not the start of a partition.
        assert!(!vp8_key_frame_start(&[0x80, 0x80, 0x81, 0x23, 0x10]));
    }
}
