//! The `HELLO` handshake: versions and limits agreed, foreign peers refused early.

use ringwire_core::{
    ConnectionConfig, HELLO_FRAME_LEN, HandshakeError, Hello, PROTOCOL_VERSION, ReceiveLimits,
};

fn limits() -> ReceiveLimits {
    ConnectionConfig::default().receive_limits()
}

#[test]
fn hello_round_trips_byte_by_byte() {
    let small = ConnectionConfig::builder()
        .max_message_size(1 << 20)
        .max_inbound_streams(3)
        .reassembly_budget(5 << 20)
        .build()
        .unwrap();
    let hello = Hello::new(small.receive_limits(), true);
    let bytes = hello.encode();
    assert_eq!(bytes.len(), HELLO_FRAME_LEN);
    for cut in 0..bytes.len() {
        assert_eq!(Hello::decode(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(Hello::decode(&bytes), Ok(Some((hello, HELLO_FRAME_LEN))));
}

#[test]
fn hello_layout_matches_the_protocol_document() {
    let bytes = Hello::new(limits(), false).encode();
    assert_eq!(bytes[0], 0x10, "kind");
    assert_eq!(&bytes[1..4], &[0, 0, 0], "flags and reserved");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 40);
    assert_eq!(&bytes[8..12], b"RGWR");
    assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), PROTOCOL_VERSION);
    assert_eq!(u16::from_le_bytes([bytes[14], bytes[15]]), PROTOCOL_VERSION);
    let max_message = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    assert_eq!(max_message, ConnectionConfig::DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(
        u32::from_le_bytes(bytes[44..48].try_into().unwrap()),
        0,
        "features"
    );
}

#[test]
fn version_mismatch_is_a_typed_error_naming_both_ranges() {
    let ours = Hello::new(limits(), false);
    let theirs = Hello {
        min_version: 2,
        max_version: 3,
        ..ours
    };
    let error = ours.negotiate(&theirs).unwrap_err();
    assert_eq!(
        error,
        HandshakeError::VersionMismatch {
            ours_min: 1,
            ours_max: 1,
            theirs_min: 2,
            theirs_max: 3
        }
    );
    assert!(error.to_string().contains("2..=3"), "{error}");
}

#[test]
fn negotiation_takes_the_highest_common_version_and_the_peers_limits() {
    let ours = Hello {
        min_version: 1,
        max_version: 3,
        ..Hello::new(limits(), true)
    };
    let peer_config = ConnectionConfig::builder()
        .max_message_size(1 << 20)
        .build()
        .unwrap();
    let theirs = Hello {
        min_version: 1,
        max_version: 2,
        ..Hello::new(peer_config.receive_limits(), false)
    };
    let agreed = ours.negotiate(&theirs).unwrap();
    assert_eq!(agreed.version, 2);
    assert_eq!(agreed.peer_limits, peer_config.receive_limits());
    assert!(!agreed.crc32c, "CRC32C only when both sides ask");
    assert!(
        ours.negotiate(&Hello {
            crc32c: true,
            ..theirs
        })
        .unwrap()
        .crc32c
    );
}

#[test]
fn a_foreign_peer_is_refused_from_its_first_bytes() {
    let http = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    for len in 1..http.len() {
        assert!(
            matches!(
                Hello::decode(&http[..len]),
                Err(HandshakeError::NotRingwire { kind: b'G', .. })
            ),
            "prefix of {len} bytes"
        );
    }
    // Right kind, wrong magic.
    let mut bytes = Hello::new(limits(), false).encode();
    bytes[9] = b'X';
    assert!(matches!(
        Hello::decode(&bytes[..10]),
        Err(HandshakeError::NotRingwire { kind: 0x10, .. })
    ));
}

#[test]
fn a_hello_claiming_a_huge_body_is_refused_without_waiting() {
    let mut bytes = Hello::new(limits(), false).encode();
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Hello::decode(&bytes[..8]),
        Err(HandshakeError::NotRingwire { .. })
    ));
}

#[test]
fn a_later_versions_longer_hello_is_read_and_its_extra_fields_skipped() {
    let hello = Hello {
        max_version: 2,
        ..Hello::new(limits(), false)
    };
    let mut bytes = hello.encode().to_vec();
    bytes[4..8].copy_from_slice(&48u32.to_le_bytes());
    bytes.extend_from_slice(&[0xAA; 8]);
    bytes.extend_from_slice(b"next frame");
    assert_eq!(
        Hello::decode(&bytes),
        Ok(Some((hello, HELLO_FRAME_LEN + 8)))
    );
}

#[test]
fn limits_that_admit_no_message_are_refused() {
    let ours = Hello::new(limits(), false);
    let mut no_streams = ours;
    no_streams.limits.max_inbound_streams = 0;
    assert!(matches!(
        ours.negotiate(&no_streams),
        Err(HandshakeError::UnusableLimits { .. })
    ));
    let mut small_budget = ours;
    small_budget.limits.reassembly_budget = small_budget.limits.max_message_size - 1;
    assert!(matches!(
        ours.negotiate(&small_budget),
        Err(HandshakeError::UnusableLimits { .. })
    ));
}
