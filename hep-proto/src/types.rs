//! Small value types of a HEP message: version, family, protocol type.

use std::fmt;

/// HEP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::exhaustive_enums, reason = "users match on the three versions")]
pub enum HepVersion {
    /// HEPv1: 16/40-byte header, no timestamp, no capture id.
    V1,
    /// HEPv2: v1 plus a 12-byte little-endian time block with a 16-bit capture id.
    V2,
    /// HEPv3: `HEP3` + length + typed chunks.
    V3,
}

impl HepVersion {
    /// The version number as on the wire (1, 2 or 3).
    pub const fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }

    /// The version for a number, if it is 1, 2 or 3.
    ///
    /// ```
    /// # use hep_proto::HepVersion;
    /// assert_eq!(HepVersion::from_number(2), Some(HepVersion::V2));
    /// assert_eq!(HepVersion::from_number(4), None);
    /// ```
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            _ => None,
        }
    }
}

impl fmt::Display for HepVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The HEP version this crate writes unless told otherwise (the seed's `hep_version`).
pub const HEP_VERSION: HepVersion = HepVersion::V3;

/// The HEP version this crate writes unless told otherwise, as OpenSIPS's `hep_version`.
///
/// ```
/// assert_eq!(hep_proto::hep_version(), hep_proto::HepVersion::V3);
/// ```
pub const fn hep_version() -> HepVersion {
    HEP_VERSION
}

/// Address family of the captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(
    clippy::exhaustive_enums,
    reason = "HEP carries IPv4 or IPv6 addresses only"
)]
pub enum AddressFamily {
    /// IPv4 (`AF_INET`, 2 on the wire).
    Ipv4,
    /// IPv6 (Linux `AF_INET6`, 10 on the wire).
    Ipv6,
}

impl AddressFamily {
    /// The value written on the wire (Linux numbering: 2 or 10).
    pub const fn wire(self) -> u8 {
        match self {
            Self::Ipv4 => 2,
            Self::Ipv6 => 10,
        }
    }

    /// Reads a wire value. Besides Linux's 10, the BSD values of `AF_INET6`
    /// (28 FreeBSD, 30 macOS, 24 NetBSD/OpenBSD) are understood, since agents on those
    /// systems write their own constant.
    pub const fn from_wire(v: u8) -> Option<Self> {
        match v {
            2 => Some(Self::Ipv4),
            10 | 24 | 28 | 30 => Some(Self::Ipv6),
            _ => None,
        }
    }

    /// `"ipv4"` or `"ipv6"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }
}

/// IP protocol numbers seen in chunk 0x0002 / `hp_p`, including the "fake" ones agents use.
pub mod ip_proto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// TLS, as OpenSIPS and Kamailio write it (`IPPROTO_IDP`).
    pub const TLS: u8 = 22;
    /// WebSocket, as OpenSIPS writes it (`IPPROTO_ESP`).
    pub const WS: u8 = 50;
    /// SCTP.
    pub const SCTP: u8 = 132;

    /// A short name for a protocol number, if it is one of the above.
    pub const fn name(p: u8) -> Option<&'static str> {
        match p {
            TCP => Some("tcp"),
            UDP => Some("udp"),
            TLS => Some("tls"),
            WS => Some("ws"),
            SCTP => Some("sctp"),
            _ => None,
        }
    }
}

macro_rules! proto_types {
    ($( $(#[$doc:meta])* $name:ident = $id:literal, $label:literal; )*) => {
        /// What the payload is (chunk 0x000b), from the HEP3 spec rev 37 and the ids
        /// OpenSIPS, Kamailio and heplify use in practice. Unknown ids are kept as `Other`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ProtoType {
            $( $(#[$doc])* $name, )*
            /// Any id not named above.
            Other(u8),
        }

        impl ProtoType {
            /// The id on the wire.
            pub const fn id(self) -> u8 {
                match self { $( Self::$name => $id, )* Self::Other(v) => v }
            }

            /// The type for an id; ids without a name become `Other`.
            pub const fn from_id(id: u8) -> Self {
                match id { $( $id => Self::$name, )* v => Self::Other(v) }
            }

            /// A short lowercase name (`"sip"`, `"log"` ...), or `None` for `Other`.
            pub const fn name(self) -> Option<&'static str> {
                match self { $( Self::$name => Some($label), )* Self::Other(_) => None }
            }

            /// The type for a name as given by [`name`](Self::name), or a decimal id.
            ///
            /// ```
            /// # use hep_proto::ProtoType;
            /// assert_eq!(ProtoType::parse("sip"), Some(ProtoType::Sip));
            /// assert_eq!(ProtoType::parse("100"), Some(ProtoType::Log));
            /// assert_eq!(ProtoType::parse("250"), Some(ProtoType::Other(250)));
            /// ```
            pub fn parse(s: &str) -> Option<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $( $label => Some(Self::$name), )*
                    other => other.parse::<u8>().ok().map(Self::from_id),
                }
            }
        }
    };
}

proto_types! {
    /// 0x01 SIP.
    Sip = 1, "sip";
    /// 0x02 XMPP.
    Xmpp = 2, "xmpp";
    /// 0x03 SDP.
    Sdp = 3, "sdp";
    /// 0x04 RTP.
    Rtp = 4, "rtp";
    /// 0x05 RTCP as JSON.
    Rtcp = 5, "rtcp";
    /// 0x06 MGCP.
    Mgcp = 6, "mgcp";
    /// 0x07 MEGACO (H.248).
    Megaco = 7, "megaco";
    /// 0x08 M2UA (SS7/SIGTRAN).
    M2ua = 8, "m2ua";
    /// 0x09 M3UA (SS7/SIGTRAN).
    M3ua = 9, "m3ua";
    /// 0x0a IAX.
    Iax = 10, "iax";
    /// 0x0b H.322.
    H322 = 11, "h322";
    /// 0x0c H.321.
    H321 = 12, "h321";
    /// 0x0d M2PA.
    M2pa = 13, "m2pa";
    /// 0x14 JSON/webRTC (hep.lua).
    WebRtc = 0x14, "webrtc";
    /// 0x20 JSON QoS report.
    QosReport = 0x20, "qos_report";
    /// 0x22 MOS full report (JSON).
    MosFull = 0x22, "mos_full";
    /// 0x23 MOS short report (rtcpxr).
    MosShort = 0x23, "mos_short";
    /// 0x26 horaclifix.
    Horaclifix = 0x26, "horaclifix";
    /// 0x32 SIP as JSON.
    SipJson = 0x32, "sip_json";
    /// 0x35 DNS as JSON.
    Dns = 0x35, "dns";
    /// 0x36 M3UA (ISUP) as JSON.
    M3uaJson = 0x36, "m3ua_json";
    /// 0x37 RTSP as JSON.
    Rtsp = 0x37, "rtsp";
    /// 0x38 DIAMETER as JSON.
    Diameter = 0x38, "diameter";
    /// 0x39 GSM MAP as JSON.
    GsmMap = 0x39, "gsm_map";
    /// 0x3a RTCP PION.
    RtcpPion = 0x3a, "rtcp_pion";
    /// 0x3c CDR (call or registration).
    Cdr = 0x3c, "cdr";
    /// 0x3d Verto (JSON).
    Verto = 0x3d, "verto";
    /// 0x56 OpenSIPS's unused `HEP_PROTO_TYPE_XLOG` define (real xlog uses 100).
    OpensipsXlogDefine = 0x56, "xlog_define";
    /// 0x57 OpenSIPS MI command trace.
    Mi = 0x57, "mi";
    /// 0x58 OpenSIPS rest_client trace.
    Rest = 0x58, "rest";
    /// 0x59 OpenSIPS connection events (JSON).
    Net = 0x59, "net";
    /// 0x60 OpenSIPS `correlate()` control message.
    Control = 0x60, "control";
    /// 0x63 JSON QoS (Kamailio report_capture).
    JsonQos = 0x63, "json_qos";
    /// 0x64 LOG (OpenSIPS xlog, Kamailio hlog()).
    Log = 0x64, "log";
}

impl fmt::Display for ProtoType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.id()),
        }
    }
}

impl From<u8> for ProtoType {
    fn from(id: u8) -> Self {
        Self::from_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_type_ids_round_trip_for_every_byte() {
        for id in 0..=255u8 {
            assert_eq!(ProtoType::from_id(id).id(), id);
        }
    }

    #[test]
    fn proto_type_names_parse_back() {
        for id in 0..=255u8 {
            let t = ProtoType::from_id(id);
            if let Some(name) = t.name() {
                assert_eq!(ProtoType::parse(name), Some(t));
            } else {
                assert_eq!(ProtoType::parse(&id.to_string()), Some(t));
            }
        }
    }

    #[test]
    fn bsd_inet6_values_are_ipv6() {
        for v in [10, 24, 28, 30] {
            assert_eq!(AddressFamily::from_wire(v), Some(AddressFamily::Ipv6));
        }
        assert_eq!(AddressFamily::from_wire(7), None);
    }
}
