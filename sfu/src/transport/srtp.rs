//! The SRTP/SRTCP session of one transport: an outbound context that
//! protects what we send and an inbound context that unprotects (and
//! replay-checks) what the peer sends, keyed from DTLS-SRTP keying material
//! (RFC 5764) or from explicit master keys.
//!
//! The API is deliberately small and owned (`&[u8]` in, `Vec<u8>` out) so
//! that the implementation behind it can change. Today it wraps rtc-srtp
//! 0.21.1, which has no in-place API: every call allocates a fresh buffer
//! and copies the packet before encrypting it (see the engineering note,
//! §3 and §5: the copy and allocation are a large part of the ~450 ns per
//! GCM packet). A faster in-place implementation (protect into the caller's
//! buffer with a preserved tail room for the tag) can replace this module
//! without touching its callers; only these signatures are promised.

use super::srtp_protect::RtpProtector;
use rtc_crypto::RTCCrypto;
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::error::Error as RtcError;
use rtc_srtp::config::Config as SrtpConfig;
use rtc_srtp::context::Context;
use rtc_srtp::option::{
    srtcp_no_replay_protection, srtcp_replay_protection, srtp_no_replay_protection,
    srtp_replay_protection,
};
use rtc_srtp::protection_profile::ProtectionProfile;
use serde::{Deserialize, Serialize};

/// An SRTP protection profile, named as mediasoup names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SrtpProfile {
    /// AEAD_AES_256_GCM (RFC 7714).
    #[serde(rename = "AEAD_AES_256_GCM")]
    AeadAes256Gcm,
    /// AEAD_AES_128_GCM (RFC 7714): the cheapest to run (about 2.5× cheaper
    /// than AES-CM + HMAC-SHA1 on this stack), so preferred by default.
    #[serde(rename = "AEAD_AES_128_GCM")]
    AeadAes128Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (RFC 3711): what every browser supports.
    #[serde(rename = "AES_CM_128_HMAC_SHA1_80")]
    AesCm128HmacSha1_80,
    /// AES_CM_128_HMAC_SHA1_32 (RFC 3711).
    #[serde(rename = "AES_CM_128_HMAC_SHA1_32")]
    AesCm128HmacSha1_32,
}

impl SrtpProfile {
    pub(crate) fn to_dtls(self) -> SrtpProtectionProfile {
        match self {
            SrtpProfile::AeadAes256Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
            SrtpProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProfile::AesCm128HmacSha1_80 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProfile::AesCm128HmacSha1_32 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
        }
    }

    /// `None` for a profile the DTLS layer reports but we do not implement
    /// (including "none negotiated").
    pub(crate) fn from_dtls(profile: SrtpProtectionProfile) -> Option<Self> {
        match profile {
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => Some(SrtpProfile::AeadAes256Gcm),
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Some(SrtpProfile::AeadAes128Gcm),
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                Some(SrtpProfile::AesCm128HmacSha1_80)
            }
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => {
                Some(SrtpProfile::AesCm128HmacSha1_32)
            }
            _ => None,
        }
    }

    fn to_srtp(self) -> ProtectionProfile {
        match self {
            SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProfile::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpProfile::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }

    /// Length of one master key, in bytes.
    pub fn master_key_len(self) -> usize {
        self.to_srtp().key_len()
    }

    /// Length of one master salt, in bytes.
    pub fn master_salt_len(self) -> usize {
        self.to_srtp().salt_len()
    }

    /// Bytes of DTLS-SRTP keying material this profile needs: two master
    /// keys and two master salts.
    pub fn keying_material_len(self) -> usize {
        let profile = self.to_srtp();
        2 * (profile.key_len() + profile.salt_len())
    }
}

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The packet was already received (inbound replay protection).
    #[error("replayed SRTP/SRTCP packet")]
    Replayed,
    /// The authentication tag did not verify: forged, corrupted, or keyed
    /// for another session.
    #[error("SRTP/SRTCP authentication failed")]
    AuthenticationFailed,
    /// Anything else: a packet too short or unparsable, wrong key sizes,
    /// an exhausted index space.
    #[error("SRTP/SRTCP error: {0}")]
    Invalid(String),
}

impl From<RtcError> for SrtpError {
    fn from(error: RtcError) -> Self {
        match error {
            RtcError::SrtpSsrcDuplicated(..) | RtcError::SrtcpSsrcDuplicated(..) => {
                SrtpError::Replayed
            }
            RtcError::ErrFailedToVerifyAuthTag
            | RtcError::RtpFailedToVerifyAuthTag
            | RtcError::RtcpFailedToVerifyAuthTag => SrtpError::AuthenticationFailed,
            other => SrtpError::Invalid(other.to_string()),
        }
    }
}

/// One transport's SRTP session: both directions, all SSRCs.
pub struct SrtpSession {
    profile: SrtpProfile,
    /// Outbound RTP without allocation (every profile but AES-256-GCM).
    protector: Option<RtpProtector>,
    outbound: Context,
    inbound: Context,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// Keys a session from DTLS-SRTP keying material (exported with the
    /// label `EXTRACTOR-dtls_srtp`), split by our DTLS role: the client
    /// writes with the first key and salt, the server with the second.
    ///
    /// `replay_window` is the inbound replay window in packets; 0 disables
    /// replay protection (never do that for a peer you don't control).
    pub fn from_keying_material(
        profile: SrtpProfile,
        keying_material: &[u8],
        is_dtls_client: bool,
        replay_window: usize,
        crypto: &dyn RTCCrypto,
    ) -> Result<Self, SrtpError> {
        let mut config = SrtpConfig {
            profile: profile.to_srtp(),
            ..Default::default()
        };
        config.set_session_keys_from_keying_material(keying_material, is_dtls_client)?;
        let keys = config.keys;
        SrtpSession::from_master_keys(
            profile,
            (&keys.local_master_key, &keys.local_master_salt),
            (&keys.remote_master_key, &keys.remote_master_salt),
            replay_window,
            crypto,
        )
    }

    /// Keys a session from explicit master keys and salts, as a signalled
    /// (SDES-style) plain transport would.
    pub fn from_master_keys(
        profile: SrtpProfile,
        (outbound_key, outbound_salt): (&[u8], &[u8]),
        (inbound_key, inbound_salt): (&[u8], &[u8]),
        replay_window: usize,
        crypto: &dyn RTCCrypto,
    ) -> Result<Self, SrtpError> {
        // Our own packets need no replay check; rtc-srtp's default (None)
        // would also be "off", but say it.
        let outbound = Context::new(
            outbound_key,
            outbound_salt,
            profile.to_srtp(),
            Some(srtp_no_replay_protection()),
            Some(srtcp_no_replay_protection()),
            crypto,
        )?;
        // rtc-srtp defaults to *no* replay protection when given None, so
        // the window is always passed explicitly.
        let (srtp_replay, srtcp_replay) = if replay_window == 0 {
            (srtp_no_replay_protection(), srtcp_no_replay_protection())
        } else {
            (
                srtp_replay_protection(replay_window),
                srtcp_replay_protection(replay_window),
            )
        };
        let inbound = Context::new(
            inbound_key,
            inbound_salt,
            profile.to_srtp(),
            Some(srtp_replay),
            Some(srtcp_replay),
            crypto,
        )?;
        Ok(SrtpSession {
            profile,
            protector: RtpProtector::new(profile, outbound_key, outbound_salt, crypto)?,
            outbound,
            inbound,
        })
    }

    /// The negotiated profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Encrypts and authenticates one RTP packet we send.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::new();
        self.protect_rtp_into(packet, &mut out)?;
        Ok(out)
    }

    /// Encrypts and authenticates one RTP packet we send into `out`
    /// (cleared first, its capacity reused: no allocation once it is big
    /// enough, except with AES-256-GCM, which goes through rtc-srtp).
    pub fn protect_rtp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        match &mut self.protector {
            Some(protector) => protector.protect(packet, out),
            None => {
                *out = self.outbound.encrypt_rtp(packet)?.into();
                Ok(())
            }
        }
    }

    /// Authenticates, replay-checks and decrypts one SRTP packet we receive.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        Ok(self.inbound.decrypt_rtp(packet)?.into())
    }

    /// Encrypts and authenticates one (compound) RTCP packet we send.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        Ok(self.outbound.encrypt_rtcp(packet)?.into())
    }

    /// Authenticates, replay-checks and decrypts one SRTCP packet we receive.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        Ok(self.inbound.decrypt_rtcp(packet)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_crypto::RTCCryptoProvider;
    use std::sync::Arc;

    const PROFILES: [SrtpProfile; 4] = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ];

    fn provider() -> Arc<dyn RTCCryptoProvider> {
        rtc_crypto::default_provider().expect("the ring provider is compiled in")
    }

    fn pair(profile: SrtpProfile) -> (SrtpSession, SrtpSession) {
        let provider = provider();
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|byte| byte as u8)
            .collect();
        let client =
            SrtpSession::from_keying_material(profile, &material, true, 64, provider.crypto())
                .expect("keying material of the right length keys a session");
        let server =
            SrtpSession::from_keying_material(profile, &material, false, 64, provider.crypto())
                .expect("keying material of the right length keys a session");
        (client, server)
    }

    fn rtp(sequence: u16) -> Vec<u8> {
        let mut packet = vec![0x80, 96];
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(&1234u32.to_be_bytes());
        packet.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        packet.extend_from_slice(b"payload bytes");
        packet
    }

    fn receiver_report() -> Vec<u8> {
        let mut packet = vec![0x80, 201, 0, 1];
        packet.extend_from_slice(&0x5566_7788u32.to_be_bytes());
        packet
    }

    #[test]
    fn every_profile_round_trips_rtp_and_rtcp_between_roles() {
        for profile in PROFILES {
            let (mut client, mut server) = pair(profile);
            let protected = client.protect_rtp(&rtp(1)).expect("RTP protects");
            assert_ne!(protected, rtp(1));
            assert_eq!(server.unprotect_rtp(&protected), Ok(rtp(1)), "{profile:?}");
            let protected = server
                .protect_rtcp(&receiver_report())
                .expect("RTCP protects");
            assert_eq!(
                client.unprotect_rtcp(&protected),
                Ok(receiver_report()),
                "{profile:?}"
            );
        }
    }

    /// Our own outbound RTP (srtp_protect) against rtc-srtp's unprotect,
    /// across a sequence number wrap (the rollover counter), with header
    /// extensions, for every profile, and byte for byte what rtc-srtp's
    /// own protect makes.
    #[test]
    fn own_rtp_protection_matches_rtc_srtp_across_a_wrap() {
        for profile in PROFILES {
            let (mut client, mut server) = pair(profile);
            let mut reference = pair(profile).0;
            let mut out = Vec::new();
            for seq in (65530..=65535).chain(0..6) {
                let mut packet = rtp(seq);
                // Header extension: one element (id 1, two bytes), padded.
                packet[0] |= 0x10;
                packet.splice(12..12, [0xbe, 0xde, 0, 1, 0x11, 0xaa, 0xbb, 0]);
                client
                    .protect_rtp_into(&packet, &mut out)
                    .expect("protects");
                assert_eq!(
                    server.unprotect_rtp(&out).as_deref(),
                    Ok(&packet[..]),
                    "{profile:?} seq {seq}"
                );
                let theirs: Vec<u8> = reference.outbound.encrypt_rtp(&packet).unwrap().into();
                assert_eq!(out, theirs, "{profile:?} seq {seq}");
            }
        }
    }

    #[test]
    fn replayed_packets_are_rejected() {
        let (mut client, mut server) = pair(SrtpProfile::AeadAes128Gcm);
        let protected = client.protect_rtp(&rtp(7)).expect("RTP protects");
        assert!(server.unprotect_rtp(&protected).is_ok());
        assert_eq!(server.unprotect_rtp(&protected), Err(SrtpError::Replayed));
        let protected = client
            .protect_rtcp(&receiver_report())
            .expect("RTCP protects");
        assert!(server.unprotect_rtcp(&protected).is_ok());
        assert_eq!(server.unprotect_rtcp(&protected), Err(SrtpError::Replayed));
    }

    #[test]
    fn tampered_packets_fail_authentication() {
        for profile in PROFILES {
            let (mut client, mut server) = pair(profile);
            let mut protected = client.protect_rtp(&rtp(1)).expect("RTP protects");
            let last = protected.len() - 1;
            protected[last] ^= 1;
            assert_eq!(
                server.unprotect_rtp(&protected),
                Err(SrtpError::AuthenticationFailed),
                "{profile:?}"
            );
        }
    }

    #[test]
    fn same_role_keys_do_not_interoperate() {
        let (mut client, _) = pair(SrtpProfile::AesCm128HmacSha1_80);
        let (mut other_client, _) = pair(SrtpProfile::AesCm128HmacSha1_80);
        let protected = client.protect_rtp(&rtp(1)).expect("RTP protects");
        assert!(other_client.unprotect_rtp(&protected).is_err());
    }

    #[test]
    fn wrong_keying_material_length_is_an_error() {
        let provider = provider();
        let result = SrtpSession::from_keying_material(
            SrtpProfile::AeadAes128Gcm,
            &[0; 10],
            true,
            64,
            provider.crypto(),
        );
        assert!(matches!(result, Err(SrtpError::Invalid(_))));
    }

    #[test]
    fn short_or_garbage_input_is_an_error_not_a_panic() {
        let (_, mut server) = pair(SrtpProfile::AeadAes128Gcm);
        for len in 0..40 {
            let garbage: Vec<u8> = (0..len).map(|byte| (byte * 37 + 0x80) as u8).collect();
            assert!(server.unprotect_rtp(&garbage).is_err());
            assert!(server.unprotect_rtcp(&garbage).is_err());
        }
    }
}
