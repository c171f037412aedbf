//! The SDP the load generator exchanges with Janus's VideoRoom: the
//! presenter's offer (sendonly Opus + simulcast VP8, the way a browser
//! signals SSRC-based simulcast), the parsing of what Janus sends back
//! (answers to publishers, offers to subscribers) into [`RemoteParameters`]
//! plus the SSRCs and payload types, and a viewer's recvonly answer.
//!
//! Only what a synthetic peer needs: one BUNDLE transport with rtcp-mux,
//! one host UDP candidate of ours, no header extensions, no RTX from our
//! presenter (viewers accept Janus's RTX).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use anyhow::{anyhow, bail, Result};

use crate::params::{
    Fingerprint, IceCredentials, LocalDtlsRole, LocalParameters, RemoteParameters,
};
use crate::plan::{
    MediaPlan, AUDIO_CLOCK_RATE, OPUS_PAYLOAD_TYPE, VIDEO_CLOCK_RATE, VP8_PAYLOAD_TYPE,
};

/// The media stream id and RTCP CNAME our presenter signals.
const STREAM_ID: &str = "webinar-bench";
const CNAME: &str = "webinar-bench";
/// Priority of our only candidate (host, UDP, component 1).
const HOST_PRIORITY: u32 = 2_130_706_431;

/// What a remote description (Janus's answer or offer) says.
#[derive(Debug, Clone)]
pub struct ParsedSdp {
    pub remote: RemoteParameters,
    /// SSRC of the first active audio m-section (what Janus will send on,
    /// in an offer to a subscriber; Janus's RTCP sender SSRC in an answer).
    pub audio_ssrc: Option<u32>,
    /// Media SSRCs of the first active video m-section: the `SIM` group
    /// when there is one (lowest layer first), else every SSRC that is not
    /// an RTX (FID) repair SSRC, in order of appearance.
    pub video_ssrcs: Vec<u32>,
    pub audio_payload_type: Option<u8>,
    /// The VP8 payload type.
    pub video_payload_type: Option<u8>,
    /// The RTX payload type whose `apt` is the VP8 payload type.
    pub video_rtx_payload_type: Option<u8>,
    /// The repair SSRC of the first `FID` group of the video m-section.
    pub video_rtx_ssrc: Option<u32>,
    /// Every m-section in order: (kind, mid), rejected ones included.
    pub mids: Vec<(String, String)>,
}

impl ParsedSdp {
    /// The mid of the first active m-section of `kind` ("audio", "video").
    pub fn mid_of(&self, kind: &str) -> Option<&str> {
        self.mids
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, mid)| mid.as_str())
    }
}

/// An SDP offer for the presenter: sendonly Opus (mid "0") and sendonly VP8
/// (mid "1", SSRC-signalled simulcast when the plan has several encodings),
/// BUNDLEd, rtcp-mux, our ICE credentials, fingerprint and one host
/// candidate, `a=setup:actpass`, all candidates included
/// (`a=end-of-candidates`).
pub fn publisher_offer(plan: &MediaPlan, local: &LocalParameters, session_id: u64) -> String {
    let mut sdp = String::new();
    let has_video = !plan.encodings.is_empty();
    session_header(&mut sdp, session_id, local);
    if has_video {
        sdp.push_str("a=group:BUNDLE 0 1\r\n");
    } else {
        sdp.push_str("a=group:BUNDLE 0\r\n");
    }
    let _ = write!(sdp, "a=msid-semantic: WMS {STREAM_ID}\r\n");

    // Audio.
    media_header(&mut sdp, "audio", local, &[OPUS_PAYLOAD_TYPE]);
    transport_attributes(&mut sdp, local, "actpass", true);
    sdp.push_str("a=mid:0\r\na=sendonly\r\n");
    let _ = write!(sdp, "a=msid:{STREAM_ID} {STREAM_ID}-audio\r\n");
    sdp.push_str("a=rtcp-mux\r\n");
    let _ = write!(
        sdp,
        "a=rtpmap:{OPUS_PAYLOAD_TYPE} opus/{AUDIO_CLOCK_RATE}/2\r\n\
         a=fmtp:{OPUS_PAYLOAD_TYPE} minptime=10;useinbandfec=1\r\n"
    );
    let _ = write!(
        sdp,
        "a=ssrc:{ssrc} cname:{CNAME}\r\na=ssrc:{ssrc} msid:{STREAM_ID} {STREAM_ID}-audio\r\n",
        ssrc = plan.audio_ssrc
    );

    // Video.
    if has_video {
        media_header(&mut sdp, "video", local, &[VP8_PAYLOAD_TYPE]);
        transport_attributes(&mut sdp, local, "actpass", false);
        sdp.push_str("a=mid:1\r\na=sendonly\r\n");
        let _ = write!(sdp, "a=msid:{STREAM_ID} {STREAM_ID}-video\r\n");
        sdp.push_str("a=rtcp-mux\r\na=rtcp-rsize\r\n");
        let pt = VP8_PAYLOAD_TYPE;
        let _ = write!(
            sdp,
            "a=rtpmap:{pt} VP8/{VIDEO_CLOCK_RATE}\r\n\
             a=rtcp-fb:{pt} nack\r\n\
             a=rtcp-fb:{pt} nack pli\r\n\
             a=rtcp-fb:{pt} ccm fir\r\n"
        );
        if plan.encodings.len() > 1 {
            sdp.push_str("a=ssrc-group:SIM");
            for encoding in &plan.encodings {
                let _ = write!(sdp, " {}", encoding.ssrc);
            }
            sdp.push_str("\r\n");
        }
        for encoding in &plan.encodings {
            let _ = write!(
                sdp,
                "a=ssrc:{ssrc} cname:{CNAME}\r\na=ssrc:{ssrc} msid:{STREAM_ID} {STREAM_ID}-video\r\n",
                ssrc = encoding.ssrc
            );
        }
    }
    sdp
}

/// A viewer's answer to Janus's offer: Opus and VP8 m-sections accepted
/// recvonly with Janus's payload type numbers (VP8's RTX too when offered,
/// so that Janus retransmits on its RTX SSRC as our SFU does; no header
/// extensions; rtcp-fb nack and nack pli on VP8), anything else (other
/// codecs only, data channels) rejected with port 0; same mids, BUNDLE of
/// the accepted ones, our ICE credentials, fingerprint and one host
/// candidate, and the DTLS role `offer.remote.local_role` says (Janus
/// offers actpass: we answer `active`, i.e. we are the DTLS client).
pub fn subscriber_answer(
    offer: &ParsedSdp,
    offer_sdp: &str,
    local: &LocalParameters,
    session_id: u64,
) -> String {
    let sections = match parse_sections(offer_sdp) {
        Ok((_, sections)) => sections,
        Err(_) => Vec::new(),
    };
    let setup = match offer.remote.local_role {
        LocalDtlsRole::Client => "active",
        LocalDtlsRole::Server => "passive",
    };

    // Decide per m-section: the payload type to accept, if any.
    let accepted: Vec<Option<u8>> = sections
        .iter()
        .map(|section| {
            if section.port == 0 {
                return None;
            }
            match section.kind.as_str() {
                "audio" => section.payload_type_of("opus", Some(AUDIO_CLOCK_RATE)),
                "video" => section.payload_type_of("vp8", Some(VIDEO_CLOCK_RATE)),
                _ => None,
            }
        })
        .collect();

    let mut sdp = String::new();
    session_header(&mut sdp, session_id, local);
    let bundle: Vec<&str> = sections
        .iter()
        .zip(&accepted)
        .filter(|(_, pt)| pt.is_some())
        .map(|(section, _)| section.mid.as_str())
        .collect();
    if !bundle.is_empty() {
        let _ = write!(sdp, "a=group:BUNDLE {}\r\n", bundle.join(" "));
    }
    sdp.push_str("a=msid-semantic: WMS\r\n");

    let mut first_accepted = true;
    for (section, pt) in sections.iter().zip(&accepted) {
        let Some(pt) = *pt else {
            // Rejected: same kind, proto and formats, port 0, same mid.
            let formats = if section.formats.is_empty() {
                "0".to_string()
            } else {
                section.formats.join(" ")
            };
            let _ = write!(
                sdp,
                "m={} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\n",
                section.kind, section.proto, formats
            );
            if !section.mid.is_empty() {
                let _ = write!(sdp, "a=mid:{}\r\n", section.mid);
            }
            sdp.push_str("a=inactive\r\n");
            continue;
        };
        let rtx = if section.kind == "video" {
            section.rtx_for(pt)
        } else {
            None
        };
        let mut payload_types = vec![pt];
        payload_types.extend(rtx);
        media_header(&mut sdp, &section.kind, local, &payload_types);
        transport_attributes(&mut sdp, local, setup, first_accepted);
        first_accepted = false;
        let _ = write!(sdp, "a=mid:{}\r\n", section.mid);
        let direction = match section.direction.as_str() {
            "sendonly" | "sendrecv" => "recvonly",
            _ => "inactive",
        };
        let _ = write!(sdp, "a={direction}\r\na=rtcp-mux\r\n");
        if let Some(rtpmap) = section.rtpmap(pt) {
            let _ = write!(sdp, "a=rtpmap:{pt} {rtpmap}\r\n");
        }
        if let Some(fmtp) = section.fmtp(pt) {
            let _ = write!(sdp, "a=fmtp:{pt} {fmtp}\r\n");
        }
        if section.kind == "video" {
            let _ = write!(sdp, "a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n");
        }
        if let Some(rtx) = rtx {
            let rtpmap = section.rtpmap(rtx).unwrap_or("rtx/90000");
            let _ = write!(sdp, "a=rtpmap:{rtx} {rtpmap}\r\na=fmtp:{rtx} apt={pt}\r\n");
        }
    }
    sdp
}

/// Parses Janus's answer (`we_offered`) or offer into what our peer needs.
pub fn parse_remote(sdp: &str, we_offered: bool) -> Result<ParsedSdp> {
    let (session, sections) = parse_sections(sdp)?;
    if sections.is_empty() {
        bail!("SDP without m-sections");
    }
    let active: Vec<&Section> = sections.iter().filter(|s| s.port != 0).collect();

    // ICE credentials: session level, else the first active m-section.
    let ufrag = session
        .attribute("ice-ufrag")
        .or_else(|| active.iter().find_map(|s| s.attrs.attribute("ice-ufrag")))
        .ok_or_else(|| anyhow!("SDP without a=ice-ufrag"))?;
    let pwd = session
        .attribute("ice-pwd")
        .or_else(|| active.iter().find_map(|s| s.attrs.attribute("ice-pwd")))
        .ok_or_else(|| anyhow!("SDP without a=ice-pwd"))?;
    let ice_lite = session.has("ice-lite") || active.iter().any(|s| s.attrs.has("ice-lite"));

    // Fingerprints, session level first, without duplicates.
    let mut fingerprints: Vec<Fingerprint> = Vec::new();
    for value in session
        .all("fingerprint")
        .chain(active.iter().flat_map(|s| s.attrs.all("fingerprint")))
    {
        let mut parts = value.split_whitespace();
        let (Some(algorithm), Some(fingerprint)) = (parts.next(), parts.next()) else {
            continue;
        };
        let parsed = Fingerprint {
            algorithm: algorithm.to_ascii_lowercase(),
            value: fingerprint.to_ascii_uppercase(),
        };
        if !fingerprints.contains(&parsed) {
            fingerprints.push(parsed);
        }
    }
    if fingerprints.is_empty() {
        bail!("SDP without a=fingerprint");
    }

    // DTLS role.
    let setup = session
        .attribute("setup")
        .or_else(|| active.iter().find_map(|s| s.attrs.attribute("setup")))
        .map(|s| s.trim().to_ascii_lowercase());
    let local_role = match setup.as_deref() {
        Some("active") => LocalDtlsRole::Server,
        Some("passive") => LocalDtlsRole::Client,
        Some("actpass") => LocalDtlsRole::Client,
        Some(other) => bail!("unknown a=setup:{other}"),
        // RFC 4145: an answer without a=setup is active; an offer without it
        // is treated as actpass.
        None if we_offered => LocalDtlsRole::Server,
        None => LocalDtlsRole::Client,
    };

    // Candidates: UDP, component 1, literal IPs; IPv4 host first, then other
    // IPv4, then IPv6, each by priority. mDNS names, IPv6 link-local
    // addresses and TCP are skipped.
    let mut candidates: Vec<(u8, u32, SocketAddr)> = Vec::new();
    for value in session
        .all("candidate")
        .chain(active.iter().flat_map(|s| s.attrs.all("candidate")))
    {
        let Some(candidate) = parse_candidate(value) else {
            continue;
        };
        if candidates.iter().any(|(_, _, a)| *a == candidate.1) {
            continue;
        }
        let ((is_host, priority), address) = candidate;
        let rank = match (address.is_ipv4(), is_host) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        candidates.push((rank, priority, address));
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut candidates: Vec<SocketAddr> = candidates.into_iter().map(|(_, _, a)| a).collect();
    if candidates.is_empty() {
        // No candidate lines: fall back on the connection address and port.
        for section in &active {
            let ip = section
                .connection
                .or(session.connection)
                .filter(|ip| !ip.is_unspecified());
            if let Some(ip) = ip {
                if section.port != 9 {
                    candidates.push(SocketAddr::new(ip, section.port));
                    break;
                }
            }
        }
    }

    // Per m-section media details.
    let mut parsed = ParsedSdp {
        remote: RemoteParameters {
            ice: IceCredentials {
                ufrag: ufrag.trim().to_string(),
                pwd: pwd.trim().to_string(),
            },
            ice_lite,
            candidates,
            fingerprints,
            local_role,
            controlling: we_offered || ice_lite,
        },
        audio_ssrc: None,
        video_ssrcs: Vec::new(),
        audio_payload_type: None,
        video_payload_type: None,
        video_rtx_payload_type: None,
        video_rtx_ssrc: None,
        mids: sections
            .iter()
            .map(|s| (s.kind.clone(), s.mid.clone()))
            .collect(),
    };
    if let Some(audio) = active.iter().find(|s| s.kind == "audio") {
        parsed.audio_payload_type = audio.payload_type_of("opus", Some(AUDIO_CLOCK_RATE));
        parsed.audio_ssrc = audio.media_ssrcs().first().copied();
    }
    if let Some(video) = active.iter().find(|s| s.kind == "video") {
        let vp8 = video.payload_type_of("vp8", Some(VIDEO_CLOCK_RATE));
        parsed.video_payload_type = vp8;
        if let Some(vp8) = vp8 {
            parsed.video_rtx_payload_type = video.rtx_for(vp8);
        }
        parsed.video_ssrcs = match video.ssrc_group("SIM").next() {
            Some(sim) => sim,
            None => video.media_ssrcs(),
        };
        parsed.video_rtx_ssrc = video
            .ssrc_group("FID")
            .next()
            .and_then(|fid| fid.get(1).copied());
    }
    Ok(parsed)
}

// ---------------------------------------------------------------------------
// Writing helpers.

fn ip_kind(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn session_header(sdp: &mut String, session_id: u64, local: &LocalParameters) {
    let ip = local.address.ip();
    let _ = write!(
        sdp,
        "v=0\r\no=- {session_id} 2 IN {} {ip}\r\ns=-\r\nt=0 0\r\n",
        ip_kind(ip)
    );
}

fn media_header(sdp: &mut String, kind: &str, local: &LocalParameters, payload_types: &[u8]) {
    let ip = local.address.ip();
    let _ = write!(sdp, "m={kind} {} UDP/TLS/RTP/SAVPF", local.address.port());
    for pt in payload_types {
        let _ = write!(sdp, " {pt}");
    }
    let _ = write!(sdp, "\r\nc=IN {} {ip}\r\n", ip_kind(ip));
}

/// ICE credentials, fingerprint, setup and (on the BUNDLE-tagged first
/// m-section only) our candidate.
fn transport_attributes(sdp: &mut String, local: &LocalParameters, setup: &str, candidate: bool) {
    if candidate {
        let _ = write!(
            sdp,
            "a=candidate:1 1 udp {HOST_PRIORITY} {} {} typ host\r\na=end-of-candidates\r\n",
            local.address.ip(),
            local.address.port()
        );
    }
    let _ = write!(
        sdp,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{} {}\r\na=setup:{setup}\r\n",
        local.ice.ufrag, local.ice.pwd, local.fingerprint.algorithm, local.fingerprint.value
    );
}

// ---------------------------------------------------------------------------
// Parsing helpers.

/// `a=` lines of one level, in order: (name, value); value empty for flags.
#[derive(Debug, Default)]
struct Attributes(Vec<(String, String)>);

impl Attributes {
    fn attribute(&self, name: &'static str) -> Option<&str> {
        self.all(name).next()
    }
    fn all(&self, name: &'static str) -> impl Iterator<Item = &str> + '_ {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn has(&self, name: &'static str) -> bool {
        self.all(name).next().is_some()
    }
}

#[derive(Debug)]
struct Section {
    kind: String,
    port: u16,
    proto: String,
    formats: Vec<String>,
    connection: Option<IpAddr>,
    mid: String,
    direction: String,
    attrs: Attributes,
}

impl Section {
    /// The first payload type whose rtpmap names `codec` (at `clock_rate`).
    fn payload_type_of(&self, codec: &str, clock_rate: Option<u32>) -> Option<u8> {
        self.attrs.all("rtpmap").find_map(|value| {
            let (pt, encoding) = value.split_once(' ')?;
            let mut parts = encoding.trim().split('/');
            let name = parts.next()?;
            let rate: Option<u32> = parts.next().and_then(|r| r.parse().ok());
            if !name.eq_ignore_ascii_case(codec) {
                return None;
            }
            if clock_rate.is_some() && rate.is_some() && rate != clock_rate {
                return None;
            }
            let pt: u8 = pt.trim().parse().ok()?;
            self.formats
                .iter()
                .any(|f| f == &pt.to_string())
                .then_some(pt)
        })
    }

    fn rtpmap(&self, pt: u8) -> Option<&str> {
        self.by_payload_type("rtpmap", pt)
    }

    fn fmtp(&self, pt: u8) -> Option<&str> {
        self.by_payload_type("fmtp", pt)
    }

    fn by_payload_type(&self, name: &'static str, pt: u8) -> Option<&str> {
        self.attrs.all(name).find_map(|value| {
            let (p, rest) = value.split_once(' ')?;
            (p.trim().parse::<u8>().ok()? == pt).then_some(rest.trim())
        })
    }

    /// The `rtx` payload type whose fmtp has `apt=<pt>`.
    fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.attrs.all("rtpmap").find_map(|value| {
            let (rtx, encoding) = value.split_once(' ')?;
            if !encoding.trim().to_ascii_lowercase().starts_with("rtx/") {
                return None;
            }
            let rtx: u8 = rtx.trim().parse().ok()?;
            let fmtp = self.fmtp(rtx)?;
            let apt = fmtp
                .split(';')
                .find_map(|p| p.trim().strip_prefix("apt="))?
                .trim()
                .parse::<u8>()
                .ok()?;
            (apt == pt).then_some(rtx)
        })
    }

    /// Every SSRC named in `a=ssrc:` lines, in order of first appearance.
    fn ssrcs(&self) -> Vec<u32> {
        let mut ssrcs = Vec::new();
        for value in self.attrs.all("ssrc") {
            let Some(ssrc) = value
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if !ssrcs.contains(&ssrc) {
                ssrcs.push(ssrc);
            }
        }
        ssrcs
    }

    /// The SSRC lists of `a=ssrc-group:<semantics>` lines.
    fn ssrc_group(&self, semantics: &'static str) -> impl Iterator<Item = Vec<u32>> + '_ {
        self.attrs.all("ssrc-group").filter_map(move |value| {
            let mut parts = value.split_whitespace();
            if !parts.next()?.eq_ignore_ascii_case(semantics) {
                return None;
            }
            Some(parts.filter_map(|s| s.parse().ok()).collect())
        })
    }

    /// SSRCs that are not the repair SSRC of an FID group.
    fn media_ssrcs(&self) -> Vec<u32> {
        let repair: HashSet<u32> = self
            .ssrc_group("FID")
            .flat_map(|group| group.into_iter().skip(1))
            .collect();
        self.ssrcs()
            .into_iter()
            .filter(|s| !repair.contains(s))
            .collect()
    }
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    // "IN IP4 1.2.3.4" (possibly with a /ttl).
    let address = value.split_whitespace().nth(2)?;
    address.split('/').next()?.parse().ok()
}

/// `((is_host, priority), address)` of a UDP component-1 candidate with a
/// literal IP address.
fn parse_candidate(value: &str) -> Option<((bool, u32), SocketAddr)> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let component: u32 = fields[1].parse().ok()?;
    if component != 1 || !fields[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    let priority: u32 = fields[3].parse().ok()?;
    let ip: IpAddr = fields[4].parse().ok()?;
    if let IpAddr::V6(v6) = ip {
        // Link-local: unusable without a scope id.
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
    }
    let port: u16 = fields[5].parse().ok()?;
    if fields[6] != "typ" {
        return None;
    }
    Some(((fields[7] == "host", priority), SocketAddr::new(ip, port)))
}

/// The session level of an SDP.
#[derive(Debug, Default)]
struct Session {
    connection: Option<IpAddr>,
    attrs: Attributes,
}

impl std::ops::Deref for Session {
    type Target = Attributes;
    fn deref(&self) -> &Attributes {
        &self.attrs
    }
}

/// The session level and the m-sections.
fn parse_sections(sdp: &str) -> Result<(Session, Vec<Section>)> {
    let mut session = Session::default();
    let mut sections: Vec<Section> = Vec::new();
    let mut saw_version = false;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            bail!("malformed SDP line {line:?}");
        };
        match kind {
            "v" => saw_version = true,
            "m" => {
                let mut parts = value.split_whitespace();
                let media = parts.next().unwrap_or_default().to_string();
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| anyhow!("malformed m-line {line:?}"))?;
                let proto = parts.next().unwrap_or_default().to_string();
                let formats = parts.map(str::to_string).collect();
                sections.push(Section {
                    kind: media,
                    port,
                    proto,
                    formats,
                    connection: None,
                    mid: String::new(),
                    direction: "sendrecv".to_string(),
                    attrs: Attributes::default(),
                });
            }
            "c" => match sections.last_mut() {
                Some(section) => section.connection = parse_connection(value),
                None => session.connection = parse_connection(value),
            },
            "a" => {
                let (name, value) = match value.split_once(':') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None => (value.to_string(), String::new()),
                };
                match sections.last_mut() {
                    Some(section) => {
                        match name.as_str() {
                            "mid" => section.mid = value.trim().to_string(),
                            "sendonly" | "recvonly" | "sendrecv" | "inactive" => {
                                section.direction = name.clone()
                            }
                            _ => {}
                        }
                        section.attrs.0.push((name, value));
                    }
                    None => session.attrs.0.push((name, value)),
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        bail!("not an SDP (no v= line)");
    }
    // Sessions without mids: number them as browsers would.
    for (index, section) in sections.iter_mut().enumerate() {
        if section.mid.is_empty() {
            section.mid = index.to_string();
        }
    }
    Ok((session, sections))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MediaPlan;

    /// Janus 1.1.2's answer to `publisher_offer` (captured from the live
    /// server this module was written against; the host has 192.0.2.2 and
    /// IPv6 addresses on eth0).
    pub const JANUS_PUBLISHER_ANSWER: &str = "v=0\r\no=- 123 2 IN IP4 127.0.0.1\r\ns=VideoRoom 1110178627013111\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=ice-options:trickle\r\na=fingerprint:sha-256 2E:54:96:18:A8:D3:23:67:CB:5E:63:CE:63:69:5D:EB:1B:7A:E3:B6:9E:74:2C:71:BF:48:1F:F5:0A:56:86:A1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS *\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\na=mid:0\r\na=rtcp-mux\r\na=ice-ufrag:tty1\r\na=ice-pwd:xGpsT7BTxWWamPew5txjTO\r\na=ice-options:trickle\r\na=setup:active\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=msid:janus janus0\r\na=ssrc:2651710596 cname:janus\r\na=candidate:1 1 udp 2015363327 192.0.2.2 40066 typ host\r\na=candidate:2 1 udp 2015363583 fd00::2 40091 typ host\r\na=candidate:3 1 udp 2015363839 fe80::fc:ff:fe00:1 40063 typ host\r\na=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\na=mid:1\r\na=rtcp-mux\r\na=ice-ufrag:tty1\r\na=ice-pwd:xGpsT7BTxWWamPew5txjTO\r\na=ice-options:trickle\r\na=setup:active\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=msid:janus janus1\r\na=ssrc:4104272025 cname:janus\r\na=candidate:1 1 udp 2015363327 192.0.2.2 40066 typ host\r\na=candidate:2 1 udp 2015363583 fd00::2 40091 typ host\r\na=candidate:3 1 udp 2015363839 fe80::fc:ff:fe00:1 40063 typ host\r\na=end-of-candidates\r\n";

    /// Janus 1.1.2's offer to a subscriber (`streams: [{feed, substream: 0}]`)
    /// of a live simulcast publisher (Chromium, rid-based, ICE and DTLS up):
    /// one Opus and one VP8 + RTX (FID group) SSRC of Janus's own, and the
    /// header extensions Janus would like.
    pub const JANUS_SUBSCRIBER_OFFER: &str = "v=0\r\no=- 1795619073931407 1 IN IP4 127.0.0.1\r\ns=VideoRoom 4242\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=ice-options:trickle\r\na=fingerprint:sha-256 B0:13:DE:6A:C1:7E:F3:7B:32:C6:98:7F:41:CA:2F:83:59:2A:FF:69:77:C2:6B:FA:74:FC:AE:8C:54:FD:25:C5\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS *\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=sendonly\r\na=mid:0\r\na=rtcp-mux\r\na=ice-ufrag:Fbqj\r\na=ice-pwd:CuRY5FDKSmC9cfSfsN/wtn\r\na=ice-options:trickle\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=fmtp:111 useinbandfec=1\r\na=msid:janus janus0\r\na=ssrc:2177982721 cname:janus\r\na=candidate:1 1 udp 2015363327 192.0.2.2 40057 typ host\r\na=candidate:2 1 udp 2015363583 fd00::2 40086 typ host\r\na=candidate:3 1 udp 2015363839 fe80::fc:ff:fe00:1 40099 typ host\r\na=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 127.0.0.1\r\na=sendonly\r\na=mid:1\r\na=rtcp-mux\r\na=ice-ufrag:Fbqj\r\na=ice-pwd:CuRY5FDKSmC9cfSfsN/wtn\r\na=ice-options:trickle\r\na=setup:actpass\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:12 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\na=extmap:13 urn:3gpp:video-orientation\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=ssrc-group:FID 2497717154 2961425845\r\na=msid:janus janus1\r\na=ssrc:2497717154 cname:janus\r\na=ssrc:2961425845 cname:janus\r\na=candidate:1 1 udp 2015363327 192.0.2.2 40057 typ host\r\na=candidate:2 1 udp 2015363583 fd00::2 40086 typ host\r\na=candidate:3 1 udp 2015363839 fe80::fc:ff:fe00:1 40099 typ host\r\na=end-of-candidates\r\n";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn local() -> LocalParameters {
        LocalParameters {
            ice: IceCredentials {
                ufrag: "Ab12".to_string(),
                pwd: "0123456789abcdefghijkl".to_string(),
            },
            fingerprint: Fingerprint {
                algorithm: "sha-256".to_string(),
                value: ["AB"; 32].join(":"),
            },
            address: addr("127.0.0.1:50000"),
        }
    }

    #[test]
    fn janus_publisher_answer() {
        let parsed = parse_remote(JANUS_PUBLISHER_ANSWER, true).unwrap();
        let remote = &parsed.remote;
        assert_eq!(remote.ice.ufrag, "tty1");
        assert_eq!(remote.ice.pwd, "xGpsT7BTxWWamPew5txjTO");
        assert!(!remote.ice_lite);
        assert!(remote.controlling, "we offered, so we control");
        // Janus answers setup:active: it is the DTLS client.
        assert_eq!(remote.local_role, LocalDtlsRole::Server);
        assert_eq!(
            remote.candidates,
            vec![addr("192.0.2.2:40066"), addr("[fd00::2]:40091"),]
        );
        assert_eq!(remote.fingerprints.len(), 1);
        assert_eq!(remote.fingerprints[0].algorithm, "sha-256");
        assert!(remote.fingerprints[0].value.starts_with("2E:54:96"));
        assert_eq!(parsed.audio_payload_type, Some(111));
        assert_eq!(parsed.video_payload_type, Some(96));
        assert_eq!(parsed.video_rtx_payload_type, None);
        // Janus's RTCP sender SSRCs.
        assert_eq!(parsed.audio_ssrc, Some(2651710596));
        assert_eq!(parsed.video_ssrcs, vec![4104272025]);
        assert_eq!(
            parsed.mids,
            vec![
                ("audio".to_string(), "0".to_string()),
                ("video".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn janus_subscriber_offer() {
        let parsed = parse_remote(JANUS_SUBSCRIBER_OFFER, false).unwrap();
        let remote = &parsed.remote;
        assert_eq!(remote.ice.ufrag, "Fbqj");
        assert!(!remote.controlling, "Janus offered and is a full agent");
        assert_eq!(remote.local_role, LocalDtlsRole::Client);
        assert_eq!(remote.candidates[0], addr("192.0.2.2:40057"));
        assert_eq!(parsed.audio_ssrc, Some(2177982721));
        assert_eq!(parsed.video_ssrcs, vec![2497717154]);
        assert_eq!(parsed.video_rtx_ssrc, Some(2961425845));
        assert_eq!(parsed.video_payload_type, Some(96));
        assert_eq!(parsed.video_rtx_payload_type, Some(97));
        assert_eq!(parsed.audio_payload_type, Some(111));
        assert_eq!(parsed.mid_of("video"), Some("1"));
    }

    #[test]
    fn our_offer_round_trips() {
        let plan = MediaPlan::simulcast(&[150, 500, 1500], 64);
        let local = local();
        let offer = publisher_offer(&plan, &local, 42);
        assert!(offer.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(offer.contains("a=ssrc-group:SIM 268435456 268435457 268435458\r\n"));
        assert!(offer.contains("a=setup:actpass\r\n"));
        assert!(!offer.contains("extmap"));
        assert!(!offer.contains("rtx"));
        assert_eq!(offer.matches("a=candidate:").count(), 1);
        let parsed = parse_remote(&offer, false).unwrap();
        assert_eq!(parsed.remote.ice, local.ice);
        assert_eq!(parsed.remote.fingerprints, vec![local.fingerprint.clone()]);
        assert_eq!(parsed.remote.candidates, vec![local.address]);
        assert_eq!(parsed.audio_ssrc, Some(plan.audio_ssrc));
        let ssrcs: Vec<u32> = plan.encodings.iter().map(|e| e.ssrc).collect();
        assert_eq!(parsed.video_ssrcs, ssrcs);
        assert_eq!(parsed.audio_payload_type, Some(OPUS_PAYLOAD_TYPE));
        assert_eq!(parsed.video_payload_type, Some(VP8_PAYLOAD_TYPE));
        assert_eq!(parsed.video_rtx_payload_type, None);
        assert_eq!(parsed.remote.local_role, LocalDtlsRole::Client);
        assert_eq!(parsed.mid_of("audio"), Some("0"));
        assert_eq!(parsed.mid_of("video"), Some("1"));
        for line in offer.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.as_bytes()[1] == b'=', "{line:?}");
        }
    }

    #[test]
    fn single_encoding_has_no_sim_group() {
        let plan = MediaPlan::simulcast(&[500], 64);
        let offer = publisher_offer(&plan, &local(), 1);
        assert!(!offer.contains("ssrc-group"));
        let parsed = parse_remote(&offer, false).unwrap();
        assert_eq!(parsed.video_ssrcs, vec![plan.encodings[0].ssrc]);
    }

    #[test]
    fn answer_to_janus_offer() {
        let offer = parse_remote(JANUS_SUBSCRIBER_OFFER, false).unwrap();
        let local = local();
        let answer = subscriber_answer(&offer, JANUS_SUBSCRIBER_OFFER, &local, 7);
        assert!(answer.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(answer.contains("a=setup:active\r\n"));
        assert!(answer.contains("m=audio 50000 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert!(answer.contains("m=video 50000 UDP/TLS/RTP/SAVPF 96 97\r\n"));
        assert!(answer.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));
        assert!(!answer.contains("extmap"));
        assert_eq!(answer.matches("a=recvonly").count(), 2);
        assert!(answer.contains("a=rtcp-fb:96 nack pli\r\n"));
        // Parsed from Janus's side: it offered, we answered.
        let parsed = parse_remote(&answer, false).unwrap();
        assert_eq!(parsed.video_rtx_payload_type, Some(97));
        assert_eq!(parsed.remote.ice, local.ice);
        assert_eq!(parsed.remote.candidates, vec![local.address]);
        // Janus (the offerer) reads our setup:active as "Janus is server".
        let as_janus = parse_remote(&answer, true).unwrap();
        assert_eq!(as_janus.remote.local_role, LocalDtlsRole::Server);
        assert_eq!(parsed.mids, offer.mids);
    }

    #[test]
    fn answer_rejects_what_we_do_not_take() {
        let offer_sdp = JANUS_SUBSCRIBER_OFFER
            .replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 0")
            .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000")
            + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\na=mid:2\r\na=sctp-port:5000\r\n";
        let offer = parse_remote(&offer_sdp, false).unwrap();
        assert_eq!(offer.audio_payload_type, None);
        assert_eq!(offer.mids.len(), 3);
        let answer = subscriber_answer(&offer, &offer_sdp, &local(), 7);
        assert!(answer.contains("a=group:BUNDLE 1\r\n"));
        assert!(answer.contains("m=audio 0 UDP/TLS/RTP/SAVPF 0\r\n"));
        assert!(answer.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        // The candidate goes with the first accepted (BUNDLE-tagged) section.
        let video_at = answer.find("m=video").unwrap();
        let candidate_at = answer.find("a=candidate").unwrap();
        assert!(candidate_at > video_at);
        let parsed = parse_remote(&answer, false).unwrap();
        assert_eq!(parsed.mids.len(), 3);
        assert_eq!(parsed.video_payload_type, Some(96));
    }

    #[test]
    fn setup_and_lite() {
        let lite = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
                    a=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 aa:bb\r\n\
                    m=video 40000 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 10.0.0.1\r\na=setup:passive\r\n\
                    a=rtpmap:100 VP8/90000\r\n\
                    a=candidate:a 1 tcp 1 10.0.0.1 40001 typ host tcptype passive\r\n\
                    a=candidate:b 1 udp 5 10.0.0.1 40000 typ host\r\n\
                    a=candidate:c 1 udp 9 10.0.0.2 40002 typ srflx raddr 0.0.0.0 rport 0\r\n\
                    a=candidate:d 1 udp 3 x.local 40003 typ host\r\n";
        let parsed = parse_remote(lite, false).unwrap();
        assert!(parsed.remote.ice_lite);
        assert!(parsed.remote.controlling);
        assert_eq!(parsed.remote.local_role, LocalDtlsRole::Client);
        assert_eq!(parsed.remote.fingerprints[0].value, "AA:BB");
        assert_eq!(
            parsed.remote.candidates,
            vec![addr("10.0.0.1:40000"), addr("10.0.0.2:40002")]
        );
        let no_candidates: String = lite
            .lines()
            .filter(|l| !l.starts_with("a=candidate"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let parsed = parse_remote(&no_candidates, false).unwrap();
        assert_eq!(parsed.remote.candidates, vec![addr("10.0.0.1:40000")]);
        assert!(parse_remote("hello", false).is_err());
        assert!(parse_remote(&lite.replace("a=ice-ufrag:u\r\n", ""), false).is_err());
    }
}
