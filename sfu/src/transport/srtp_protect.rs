//! Outbound SRTP for RTP, written into a caller's buffer: the per-consumer
//! hot path of the fan-out, which must not allocate. rtc-srtp allocates
//! and copies on every call, so the worker protects the RTP it sends here,
//! on rtc-crypto's primitives (AES-GCM sealed in place, AES-CTR keystream,
//! HMAC-SHA1), and keeps rtc-srtp for what is rarer: RTCP, and everything
//! it receives.
//!
//! - Session keys: the AES-CM PRF of RFC 3711 section 4.3.1 (key
//!   derivation rate 0, as DTLS-SRTP has it).
//! - AEAD_AES_128_GCM (RFC 7714 section 8): IV = (0x0000 || SSRC || ROC ||
//!   SEQ) XOR salt, the header as associated data, a 16-byte tag.
//! - AES_CM_128_HMAC_SHA1_80/32 (RFC 3711): counter-mode keystream from
//!   (salt XOR SSRC XOR index) << 16, HMAC-SHA1 over the packet and the
//!   ROC, truncated to 10 or 4 bytes.
//! - The rollover counter of each SSRC we send follows its sequence
//!   numbers (kept per SSRC in a map that only grows with new SSRCs).

use std::collections::HashMap;

use rtc_crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, HmacAlgorithm, Mac, RTCCrypto, StreamCipher,
    StreamCipherAlgorithm,
};

use super::srtp::{SrtpError, SrtpProfile};

const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_AUTHENTICATION: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
const GCM_TAG_LEN: usize = 16;
const HMAC_SHA1_LEN: usize = 20;
const RTP_HEADER_LEN: usize = 12;

enum Cipher {
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; 12],
    },
    CmHmacSha1 {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
        salt: [u8; 14],
        tag_len: usize,
    },
}

/// The sending half of an SRTP session for RTP.
pub(crate) struct RtpProtector {
    cipher: Cipher,
    /// Per SSRC: the highest sequence number sent and its rollover count.
    rollover: HashMap<u32, (u16, u32)>,
}

impl RtpProtector {
    /// Keys the protector from the master key and salt; `None` for the
    /// profiles it does not implement (AES-256-GCM), which stay on
    /// rtc-srtp.
    pub(crate) fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        crypto: &dyn RTCCrypto,
    ) -> Result<Option<RtpProtector>, SrtpError> {
        let cipher = match profile {
            SrtpProfile::AeadAes128Gcm => {
                let key = derive(crypto, LABEL_RTP_ENCRYPTION, master_key, master_salt, 16)?;
                let salt = derive(crypto, LABEL_RTP_SALT, master_key, master_salt, 12)?;
                Cipher::Gcm {
                    aead: crypto
                        .new_aead(AeadAlgorithm::Aes128Gcm, &key)
                        .map_err(invalid)?,
                    salt: salt.try_into().map_err(|_| invalid("salt"))?,
                }
            }
            SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32 => {
                let key = derive(crypto, LABEL_RTP_ENCRYPTION, master_key, master_salt, 16)?;
                let auth = derive(
                    crypto,
                    LABEL_RTP_AUTHENTICATION,
                    master_key,
                    master_salt,
                    20,
                )?;
                let salt = derive(crypto, LABEL_RTP_SALT, master_key, master_salt, 14)?;
                Cipher::CmHmacSha1 {
                    ctr: crypto
                        .new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, &key)
                        .map_err(invalid)?,
                    mac: crypto
                        .new_hmac(HmacAlgorithm::Sha1, &auth)
                        .map_err(invalid)?,
                    salt: salt.try_into().map_err(|_| invalid("salt"))?,
                    tag_len: if profile == SrtpProfile::AesCm128HmacSha1_80 {
                        10
                    } else {
                        4
                    },
                }
            }
            SrtpProfile::AeadAes256Gcm => return Ok(None),
        };
        Ok(Some(RtpProtector {
            cipher,
            rollover: HashMap::new(),
        }))
    }

    /// Protects `packet` into `out` (cleared first; its capacity is
    /// reused, so a recycled buffer means no allocation).
    pub(crate) fn protect(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header_len = rtp_header_len(packet).ok_or_else(|| invalid("RTP header"))?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let roc = self.rollover_count(ssrc, seq);
        out.clear();
        out.extend_from_slice(packet);
        match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&seq.to_be_bytes());
                for (byte, salt) in iv.iter_mut().zip(salt.iter()) {
                    *byte ^= salt;
                }
                let mut tag = [0u8; GCM_TAG_LEN];
                let (header, payload) = out.split_at_mut(header_len);
                aead.seal_in_place(&iv, header, payload, &mut tag)
                    .map_err(invalid)?;
                out.extend_from_slice(&tag);
            }
            Cipher::CmHmacSha1 {
                ctr,
                mac,
                salt,
                tag_len,
            } => {
                let mut iv = [0u8; 16];
                iv[..14].copy_from_slice(salt);
                for (byte, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
                    *byte ^= s;
                }
                let index = (u64::from(roc) << 16) | u64::from(seq);
                for (byte, i) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
                    *byte ^= i;
                }
                ctr.apply_keystream(&iv, &mut out[header_len..])
                    .map_err(invalid)?;
                let mut full = [0u8; HMAC_SHA1_LEN];
                mac.sign(&[out.as_slice(), &roc.to_be_bytes()], &mut full)
                    .map_err(invalid)?;
                out.extend_from_slice(&full[..*tag_len]);
            }
        }
        Ok(())
    }

    /// The rollover count for `seq` of `ssrc`, advancing it when the
    /// sequence wraps (RFC 3711 section 3.3.1, sender side).
    fn rollover_count(&mut self, ssrc: u32, seq: u16) -> u32 {
        let (highest, roc) = self.rollover.entry(ssrc).or_insert((seq, 0));
        let ahead = seq.wrapping_sub(*highest);
        if ahead != 0 && ahead < 0x8000 {
            if seq < *highest {
                *roc = roc.wrapping_add(1);
            }
            *highest = seq;
            *roc
        } else if ahead >= 0x8000 && seq > *highest {
            // A retransmission from before the last wrap.
            roc.wrapping_sub(1)
        } else {
            *roc
        }
    }
}

/// The RTP header's length (CSRCs and extension included), if well formed.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < RTP_HEADER_LEN || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = RTP_HEADER_LEN + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

/// The AES-CM PRF of RFC 3711 section 4.3.1 with a key derivation rate of
/// zero: AES-128 of (salt, label XORed into its eighth byte, a 16-bit
/// block counter), for `len` bytes.
fn derive(
    crypto: &dyn RTCCrypto,
    label: u8,
    master_key: &[u8],
    master_salt: &[u8],
    len: usize,
) -> Result<Vec<u8>, SrtpError> {
    if master_key.len() != 16 || master_salt.len() > 14 {
        return Err(invalid("master key or salt length"));
    }
    let mut out = Vec::with_capacity(len.div_ceil(16) * 16);
    for counter in 0..len.div_ceil(16) as u16 {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..].copy_from_slice(&counter.to_be_bytes());
        crypto
            .block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)
            .map_err(invalid)?;
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    Ok(out)
}

fn invalid(what: impl std::fmt::Display) -> SrtpError {
    SrtpError::Invalid(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollover_follows_wraps_and_late_packets() {
        let provider = rtc_crypto::default_provider().unwrap();
        let mut p = RtpProtector::new(
            SrtpProfile::AeadAes128Gcm,
            &[1; 16],
            &[2; 12],
            provider.crypto(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.rollover_count(7, 65534), 0);
        assert_eq!(p.rollover_count(7, 65535), 0);
        assert_eq!(p.rollover_count(7, 1), 1);
        assert_eq!(
            p.rollover_count(7, 65533),
            0,
            "a retransmission from before the wrap"
        );
        assert_eq!(p.rollover_count(7, 2), 1);
        assert_eq!(p.rollover_count(8, 5), 0, "per SSRC");
    }

    #[test]
    fn malformed_packets_are_refused() {
        let provider = rtc_crypto::default_provider().unwrap();
        let mut p = RtpProtector::new(
            SrtpProfile::AesCm128HmacSha1_80,
            &[1; 16],
            &[2; 14],
            provider.crypto(),
        )
        .unwrap()
        .unwrap();
        let mut out = Vec::new();
        assert!(p.protect(&[0x80, 96, 0, 1], &mut out).is_err());
        // An extension running past the end.
        let packet = [0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xbe, 0xde, 0, 9];
        assert!(p.protect(&packet, &mut out).is_err());
    }
}
