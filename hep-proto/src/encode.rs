//! Encoding HEPv1, HEPv2 and HEPv3, byte-exact.

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::chunk::CHUNK_HEADER_LEN;
use crate::decode::{HEP3_HEADER_LEN, HEP3_MAGIC};
use crate::{EncodeError, HepMessage, HepVersion, Payload};

/// Order of the chunks in an encoded HEPv3 message.
///
/// Receivers that walk chunks by type do not care; receivers that parse by position
/// (older sngrep, captagent-derived code) need [`ChunkOrder::Generic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChunkOrder {
    /// The OpenSIPS/captagent `hep_generic` block first: 01 02 07 08 09 0a 0b 0c, then
    /// the addresses 03 04 (or 05 06), then 0e 11 12 13, the kept chunks, payload last.
    #[default]
    Generic,
    /// The spec example's order, also Kamailio's and heplify's: 01 02 03 04 (or 05 06)
    /// 07 08 09 0a 0b 0c, then 0e 11 12 13, the kept chunks, payload last.
    Spec,
}

impl HepMessage {
    /// Encodes as `version` in the default chunk order.
    ///
    /// # Errors
    /// See [`encode_to`](Self::encode_to).
    pub fn encode(&self, version: HepVersion) -> Result<Bytes, EncodeError> {
        let mut dst = BytesMut::new();
        self.encode_to(version, ChunkOrder::default(), &mut dst)?;
        Ok(dst.freeze())
    }

    /// The exact number of bytes [`encode_to`](Self::encode_to) appends.
    ///
    /// # Errors
    /// As [`encode_to`](Self::encode_to), for the same reasons.
    pub fn encoded_len(&self, version: HepVersion) -> Result<usize, EncodeError> {
        match version {
            HepVersion::V1 | HepVersion::V2 => {
                let (header, _) = self.v12_addresses()?;
                let time = if version == HepVersion::V2 { 12 } else { 0 };
                Ok(header + time + self.payload.bytes().len())
            }
            HepVersion::V3 => self.v3_len(),
        }
    }

    /// Appends the encoded message to `dst`.
    ///
    /// HEPv3 writes only the fields that are present. HEPv1/v2 need both addresses (of
    /// one family); absent ports, protocol and time are written as 0, like the C agents;
    /// they carry the plain payload (a compressed one is sent inflated) and cannot carry
    /// the other chunks, which are left out.
    ///
    /// # Errors
    /// [`EncodeError`] when the message does not fit the version: too long for the u16
    /// lengths of v3, addresses missing for v1/v2, or a capture id above 65535 for v2.
    /// Nothing is appended on error.
    pub fn encode_to(
        &self,
        version: HepVersion,
        order: ChunkOrder,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match version {
            HepVersion::V1 | HepVersion::V2 => self.encode_v12(version, dst),
            HepVersion::V3 => self.encode_v3(order, dst),
        }
    }

    fn v12_addresses(&self) -> Result<(usize, (IpAddr, IpAddr)), EncodeError> {
        match (self.src_ip, self.dst_ip) {
            (Some(s @ IpAddr::V4(_)), Some(d @ IpAddr::V4(_))) => Ok((16, (s, d))),
            (Some(s @ IpAddr::V6(_)), Some(d @ IpAddr::V6(_))) => Ok((40, (s, d))),
            (Some(_), Some(_)) => Err(EncodeError::FamilyMismatch),
            _ => Err(EncodeError::MissingAddresses),
        }
    }

    fn encode_v12(&self, version: HepVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (hp_l, (src, dstip)) = self.v12_addresses()?;
        let captid = self.capture_id.unwrap_or(0);
        let captid = u16::try_from(captid).map_err(|_| EncodeError::CaptureIdTooLarge(captid))?;
        let payload = self.payload.bytes();
        let time_block = if version == HepVersion::V2 { 12 } else { 0 };
        dst.reserve(hp_l + time_block + payload.len());
        dst.put_u8(version.number());
        dst.put_u8(if hp_l == 16 { 16 } else { 40 });
        dst.put_u8(if hp_l == 16 { 2 } else { 10 });
        dst.put_u8(self.ip_proto.unwrap_or(0));
        dst.put_u16(self.src_port.unwrap_or(0));
        dst.put_u16(self.dst_port.unwrap_or(0));
        put_ip(dst, src);
        put_ip(dst, dstip);
        if version == HepVersion::V2 {
            dst.put_u32_le(self.ts_sec.unwrap_or(0));
            dst.put_u32_le(self.ts_usec.unwrap_or(0));
            dst.put_u16_le(captid);
            dst.put_u16(0); // padding of the unpacked C struct
        }
        dst.put_slice(payload);
        Ok(())
    }

    fn v3_payload(&self) -> (u16, &Bytes) {
        match &self.payload {
            Payload::Plain(b) => (0x000f, b),
            Payload::Compressed { compressed, .. } => (0x0010, compressed),
        }
    }

    fn v3_len(&self) -> Result<usize, EncodeError> {
        let fixed = |present: bool, len: usize| if present { len } else { 0 };
        let var = |ty: u16, v: Option<&Bytes>| -> Result<usize, EncodeError> {
            v.map_or(Ok(0), |b| chunk_len(ty, b.len()))
        };
        let ip = |a: Option<IpAddr>| match a {
            Some(IpAddr::V4(_)) => 10,
            Some(IpAddr::V6(_)) => 22,
            None => 0,
        };
        let (payload_type, payload) = self.v3_payload();
        let mut len = HEP3_HEADER_LEN
            + fixed(self.family.is_some(), 7)
            + fixed(self.ip_proto.is_some(), 7)
            + ip(self.src_ip)
            + ip(self.dst_ip)
            + fixed(self.src_port.is_some(), 8)
            + fixed(self.dst_port.is_some(), 8)
            + fixed(self.ts_sec.is_some(), 10)
            + fixed(self.ts_usec.is_some(), 10)
            + fixed(self.proto_type.is_some(), 7)
            + fixed(self.capture_id.is_some(), 10)
            + var(0x000e, self.auth_key.as_ref())?
            + var(0x0011, self.correlation_id.as_ref())?
            + fixed(self.vlan.is_some(), 8)
            + var(0x0013, self.node_name.as_ref())?
            + chunk_len(payload_type, payload.len())?;
        for c in &self.chunks {
            len += chunk_len(c.chunk_type, c.data.len())?;
        }
        if len > usize::from(u16::MAX) {
            return Err(EncodeError::TooLong(len));
        }
        Ok(len)
    }

    fn encode_v3(&self, order: ChunkOrder, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let total = self.v3_len()?;
        dst.reserve(total);
        // The control header and the fixed-size chunks are laid out in a stack buffer and
        // appended with one copy: a `put_*` per field costs a capacity check and a call
        // to `memcpy` each (see `docs/BENCHMARKS.md`).
        let mut head = Head::new();
        head.put_raw(&HEP3_MAGIC);
        // v3_len checked total <= u16::MAX.
        head.put_raw(&(total as u16).to_be_bytes());
        if let Some(f) = self.family {
            head.chunk(0x0001, [f.wire()]);
        }
        if let Some(p) = self.ip_proto {
            head.chunk(0x0002, [p]);
        }
        if order == ChunkOrder::Spec {
            head.addresses(self);
        }
        if let Some(p) = self.src_port {
            head.chunk(0x0007, p.to_be_bytes());
        }
        if let Some(p) = self.dst_port {
            head.chunk(0x0008, p.to_be_bytes());
        }
        if let Some(t) = self.ts_sec {
            head.chunk(0x0009, t.to_be_bytes());
        }
        if let Some(t) = self.ts_usec {
            head.chunk(0x000a, t.to_be_bytes());
        }
        if let Some(t) = self.proto_type {
            head.chunk(0x000b, [t.id()]);
        }
        if let Some(c) = self.capture_id {
            head.chunk(0x000c, c.to_be_bytes());
        }
        if order == ChunkOrder::Generic {
            head.addresses(self);
        }
        dst.put_slice(head.bytes());

        let w = &mut ChunkWriter(dst);
        w.opt_bytes(0x000e, self.auth_key.as_ref());
        w.opt_bytes(0x0011, self.correlation_id.as_ref());
        if let Some(v) = self.vlan {
            w.raw(0, 0x0012, &v.to_be_bytes());
        }
        w.opt_bytes(0x0013, self.node_name.as_ref());
        for c in &self.chunks {
            w.raw(c.vendor, c.chunk_type, &c.data);
        }
        let (payload_type, payload) = self.v3_payload();
        w.raw(0, payload_type, payload);
        Ok(())
    }
}

/// The most the control header and the fixed-size chunks take: 6 + 7 + 7 + 22 + 22 + 8 +
/// 8 + 10 + 10 + 7 + 10.
const HEAD_MAX: usize = 117;

/// The start of a HEPv3 message, laid out on the stack (see `encode_v3`).
struct Head {
    buf: [u8; HEAD_MAX],
    len: usize,
}

impl Head {
    const fn new() -> Self {
        Self {
            buf: [0; HEAD_MAX],
            len: 0,
        }
    }

    #[inline(always)]
    fn put_raw(&mut self, bytes: &[u8]) {
        // Never short: HEAD_MAX is the sum of all that is written. Were it short, the
        // bytes would be left out rather than panic (and the round-trip tests fail).
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    /// A generic chunk with an `N`-byte value (`N` is at most 16).
    #[inline(always)]
    fn chunk<const N: usize>(&mut self, ty: u16, value: [u8; N]) {
        let [t0, t1] = ty.to_be_bytes();
        let [l0, l1] = ((CHUNK_HEADER_LEN + N) as u16).to_be_bytes();
        self.put_raw(&[0, 0, t0, t1, l0, l1]);
        self.put_raw(&value);
    }

    #[inline(always)]
    fn addresses(&mut self, msg: &HepMessage) {
        for (addr, v4, v6) in [(msg.src_ip, 0x0003, 0x0005), (msg.dst_ip, 0x0004, 0x0006)] {
            match addr {
                Some(IpAddr::V4(a)) => self.chunk(v4, a.octets()),
                Some(IpAddr::V6(a)) => self.chunk(v6, a.octets()),
                None => {}
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

fn chunk_len(ty: u16, data_len: usize) -> Result<usize, EncodeError> {
    let len = CHUNK_HEADER_LEN + data_len;
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::ChunkTooLong {
            chunk_type: ty,
            len: data_len,
        });
    }
    Ok(len)
}

fn put_ip(dst: &mut BytesMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => dst.put_slice(&a.octets()),
        IpAddr::V6(a) => dst.put_slice(&a.octets()),
    }
}

/// Writes chunks whose lengths were checked by `v3_len`.
struct ChunkWriter<'a>(&'a mut BytesMut);

impl ChunkWriter<'_> {
    fn raw(&mut self, vendor: u16, ty: u16, data: &[u8]) {
        let [v0, v1] = vendor.to_be_bytes();
        let [t0, t1] = ty.to_be_bytes();
        // v3_len checked every chunk length fits u16.
        let [l0, l1] = ((CHUNK_HEADER_LEN + data.len()) as u16).to_be_bytes();
        self.0.put_slice(&[v0, v1, t0, t1, l0, l1]);
        self.0.put_slice(data);
    }

    fn opt_bytes(&mut self, ty: u16, v: Option<&Bytes>) {
        if let Some(v) = v {
            self.raw(0, ty, v);
        }
    }
}
