//! `HepDatagramCodec` under `tokio_util::udp::UdpFramed`, over real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hep_proto::{DecodeError, HepCodecError, HepDatagramCodec, HepMessage, HepVersion, ProtoType};
use tokio::net::UdpSocket;
use tokio::time::timeout;
use tokio_util::udp::UdpFramed;

async fn loopback() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1")
}

/// The next item of the stream, which must come within 10 s and must not be the end.
async fn next(
    rx: &mut UdpFramed<HepDatagramCodec>,
) -> Result<(HepMessage, SocketAddr), HepCodecError> {
    timeout(Duration::from_secs(10), rx.next())
        .await
        .expect("a datagram within 10 s")
        .expect("the stream goes on")
}

fn message() -> HepMessage {
    HepMessage::builder()
        .src("192.0.2.1:5060".parse().unwrap())
        .dst("192.0.2.2:5080".parse().unwrap())
        .timestamp(1_795_670_509, 909_050)
        .proto_type(ProtoType::Sip)
        .capture_id(2001)
        .payload("OPTIONS sip:x SIP/2.0\r\n\r\n")
        .build()
}

/// A bad datagram comes out as one `Err`; the stream goes on and the next datagram
/// decodes, in every version the sender's codec is set to.
#[tokio::test]
async fn udp_framed_round_trip_survives_a_bad_datagram() {
    let mut rx = UdpFramed::new(loopback().await, HepDatagramCodec::new());
    let to = rx.get_ref().local_addr().unwrap();
    let mut tx = UdpFramed::new(loopback().await, HepDatagramCodec::new());
    let from = tx.get_ref().local_addr().unwrap();
    let msg = message();

    for version in [HepVersion::V3, HepVersion::V2, HepVersion::V1] {
        // Garbage first, through the same socket (UdpFramed's sink writes whole datagrams).
        tx.get_ref()
            .send_to(b"\x02\x10\x07garbage", to)
            .await
            .unwrap();
        tx.codec_mut().set_version(version);
        tx.send((&msg, to)).await.unwrap();

        match next(&mut rx).await {
            Err(HepCodecError::Decode(e)) => {
                assert_eq!(
                    e,
                    DecodeError::UnknownFamily {
                        version: 2,
                        family: 7
                    }
                );
            }
            other => panic!("expected the bad datagram's decode error, got {other:?}"),
        }

        let (got, peer) = next(&mut rx).await.expect("the good datagram decodes");
        assert_eq!(peer, from);
        assert_eq!(got.version, Some(version));
        assert_eq!((got.src(), got.dst()), (msg.src(), msg.dst()));
        assert_eq!(got.payload, msg.payload);
        if version != HepVersion::V1 {
            assert_eq!((got.ts_sec, got.ts_usec), (msg.ts_sec, msg.ts_usec));
            assert_eq!(got.capture_id, msg.capture_id);
        }
        if version == HepVersion::V3 {
            // v3 carries every field.
            let mut want = msg.clone();
            want.version = Some(HepVersion::V3);
            assert_eq!(got, want);
        }
    }
}
