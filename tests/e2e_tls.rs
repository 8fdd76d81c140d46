//! ringwire over TLS: tokio-rustls (the `ring` provider) on loopback, with a self-signed
//! certificate made by the test, through `ringwire::tokio::wrap`; a 1 MiB ask round trip.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MIB, Peer, RECV_LIMIT, TestRuntime, assert_same_bytes, echo, payload, run, within};
use ringwire::Route;
use ringwire::net::Options;
use ringwire::tokio::Tokio;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ProtocolVersion, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A server configuration with a new self-signed certificate for `localhost`, and a client
/// configuration that trusts exactly that certificate.
fn tls_configs() -> (ServerConfig, ClientConfig) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let certificate = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let provider = Arc::new(ring::default_provider());

    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], PrivateKeyDer::Pkcs8(key))
        .expect("the certificate and its key");

    let mut roots = RootCertStore::empty();
    roots.add(certificate).expect("a root certificate");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

#[test]
fn ask_over_tls() {
    run::<Tokio, _>(Duration::from_secs(30), || async {
        let (server_config, client_config) = tls_configs();
        let listener = Tokio::listen().await;
        let addr = Tokio::local_addr(&listener);

        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let server = Tokio::spawn_task(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let tls = acceptor.accept(tcp).await.expect("the TLS handshake");
            let started = ringwire::tokio::wrap(tls, Options::default()).await;
            echo(started.expect("the ringwire handshake").into()).await
        });

        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let connector = TlsConnector::from(Arc::new(client_config));
        let name = ServerName::try_from("localhost").expect("a server name");
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("the TLS handshake");
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
        let started = ringwire::tokio::wrap(tls, Options::default());
        let client: Peer = within::<Tokio, _>(RECV_LIMIT, "handshake", started)
            .await
            .expect("the ringwire handshake")
            .into();

        // Above the 255 KiB threshold of the default ask lane: request and reply stream.
        let request = payload(7, MIB);
        let reply = client
            .conn
            .ask(7, 0, request.clone(), Duration::from_secs(20))
            .await
            .expect("a reply");
        assert_eq!(reply.route, Route::Stream);
        assert_same_bytes(&reply.payload, &request, "reply");

        within::<Tokio, _>(RECV_LIMIT, "graceful close", client.conn.close())
            .await
            .expect("a clean close");
        let echoed = within::<Tokio, _>(RECV_LIMIT, "server end", server).await;
        assert_eq!((echoed.asks, echoed.bytes), (1, MIB));
    });
}
