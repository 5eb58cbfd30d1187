//! Bad input on the wire gets a protocol error and closes that stream only: the connection,
//! its other streams and the node go on (docs/PROTOCOL.md, "Errors on the stream itself").

use std::time::Duration;

use protocol::{Op, OpResult, ProtocolErrorCode, ServerMessage};
use testkit::{Cluster, RawConnection};

fn expect_error(message: Option<ServerMessage>, code: ProtocolErrorCode) {
    match message {
        Some(ServerMessage::ProtocolError {
            code: got,
            supported_versions,
            ..
        }) => {
            assert_eq!(got, code);
            assert_eq!(supported_versions, vec![protocol::PROTOCOL_VERSION]);
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_stream() {
    let cluster = Cluster::replicated(1).await.expect("cluster starts");
    let raw = RawConnection::connect(&cluster.addr(1), &cluster.ca_path())
        .await
        .expect("raw connection");
    let wait = Duration::from_secs(5);

    // Unknown version.
    let mut frame = protocol::encode(&protocol::ClientFrame {
        id: 1,
        ops: vec![Op::Status],
    })
    .expect("encode");
    frame[4] = 0x63;
    expect_error(
        raw.send_bytes(&frame, wait)
            .await
            .expect("a readable reply"),
        ProtocolErrorCode::UnsupportedVersion,
    );
    // Garbage body.
    expect_error(
        raw.send_bytes(&[5, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff], wait)
            .await
            .expect("a readable reply"),
        ProtocolErrorCode::Malformed,
    );
    // Oversized length prefix: rejected before anything is buffered.
    expect_error(
        raw.send_bytes(&u32::MAX.to_le_bytes(), wait)
            .await
            .expect("a readable reply"),
        ProtocolErrorCode::FrameTooLarge,
    );
    // Truncated: a prefix announcing more than the stream carries.
    expect_error(
        raw.send_bytes(&[100, 0, 0, 0, 1, 0, 1], wait)
            .await
            .expect("a readable reply"),
        ProtocolErrorCode::Truncated,
    );
    // Too many operations in one frame.
    let many = vec![Op::Status; protocol::OPS_PER_FRAME_MAX + 1];
    let frame = protocol::encode(&protocol::ClientFrame { id: 1, ops: many }).expect("encode");
    expect_error(
        raw.send_bytes(&frame, wait)
            .await
            .expect("a readable reply"),
        ProtocolErrorCode::Malformed,
    );

    // The same connection still works, on a new stream.
    let reply = raw.call(vec![Op::Status], wait).await.expect("a reply");
    let ServerMessage::Reply { id: 1, results } = reply else {
        panic!("{reply:?}")
    };
    assert!(
        matches!(&results[0], OpResult::Status(s) if s.node.id == 1),
        "{results:?}"
    );
    raw.connection.close(0u32.into(), b"done");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_stream_is_closed_cleanly() {
    let cluster = Cluster::replicated(1).await.expect("cluster starts");
    let raw = RawConnection::connect(&cluster.addr(1), &cluster.ca_path())
        .await
        .expect("raw connection");
    assert_eq!(
        raw.send_bytes(&[], Duration::from_secs(5))
            .await
            .expect("a readable reply"),
        None
    );
    raw.connection.close(0u32.into(), b"done");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_large_frames_hold_no_memory_and_block_no_one() {
    // Found by the break-it pass: a 4-byte prefix announcing 4 MiB made the node allocate
    // 4 MiB at once, so 256 such streams took 1 GiB that stayed. Now the buffer grows with the
    // bytes that arrive, within a per-connection and a node-wide budget.
    let cluster = Cluster::replicated(1).await.expect("cluster starts");
    let raw = RawConnection::connect(&cluster.addr(1), &cluster.ca_path())
        .await
        .expect("raw connection");
    let announced = (protocol::FRAME_BYTES_MAX as u32 - 4).to_le_bytes();
    let mut held = Vec::new();
    for _ in 0..60 {
        let (mut send, recv) = raw.connection.open_bi().await.expect("open stream");
        protocol::write_frame(&mut send, &announced)
            .await
            .expect("prefix");
        protocol::write_frame(&mut send, &[1, 0, 7, 7, 7])
            .await
            .expect("a few bytes");
        held.push((send, recv));
    }
    // Another stream of the same connection is still served at once.
    let reply = raw
        .call(vec![Op::Status], Duration::from_secs(5))
        .await
        .expect("a reply");
    assert!(
        matches!(reply, ServerMessage::Reply { id: 1, .. }),
        "{reply:?}"
    );
    drop(held);
    raw.connection.close(0u32.into(), b"done");
    cluster.shutdown().await;
}
