//! The RTCP packet layer: compound splitting that isolates malformed items,
//! and zero-copy parsers plus writers into caller buffers for the reports
//! and feedback the SFU exchanges (SR/RR, SDES CNAME, BYE, NACK, PLI, FIR,
//! REMB, transport-wide CC, XR RRTR/DLRR), with NTP and RTT helpers.
//!
//! Parsed values borrow the datagram; variable-length parts are iterators.
//! Writers return the number of bytes written and never panic on a short
//! buffer. No input panics.

mod compound;
mod feedback;
#[cfg(test)]
mod fuzz_tests;
mod header;
mod ntp;
mod report;
mod sdes_bye;
mod twcc;
mod xr;

pub use compound::{parse_compound, split_compound, RtcpItems, RtcpPacket};
pub use feedback::{Fir, FirEntry, Nack, NackItem, Pli, Remb};
pub use header::{
    RtcpError, RtcpHeader, FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, FMT_TWCC, PT_APP, PT_BYE, PT_PSFB,
    PT_RR, PT_RTPFB, PT_SDES, PT_SR, PT_XR,
};
pub use ntp::{compact_ntp_to_duration, duration_to_compact_ntp, rtt_from_report, NtpTime};
pub use report::{ReceiverReport, ReportBlock, ReportBlocks, SenderInfo, SenderReport};
pub use sdes_bye::{Bye, SdesChunk, SourceDescription};
pub use twcc::{TransportCc, TransportCcBuilder, TwccPacket, TwccPackets, TwccPushError};
pub use xr::{DlrrItem, DlrrItems, ExtendedReport, XrBlock};
