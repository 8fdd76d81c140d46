//! The wire is the contract: each runtime's client against each runtime's server, the server
//! on its runtime in a thread of its own, messages both ways, an ask, and a graceful close.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{
    Echoed, KIB, Peer, RECV_LIMIT, TestRuntime, assert_same_bytes, echo, in_thread, payload,
    recv_tell, run, within,
};
use ringwire::Route;
use ringwire::async_std::AsyncStd;
use ringwire::net::Options;
use ringwire::smol::Smol;
use ringwire::tokio::Tokio;

/// How long one pair may take, end to end.
const LIMIT: Duration = Duration::from_secs(30);

/// Sizes of the tells: a small one, one through the 1 MiB default tell ring, and one above its
/// threshold, which streams.
const TELLS: [usize; 3] = [KIB, 200 * KIB, 1200 * KIB];
/// Above the 255 KiB threshold of the default ask lane, so the request and the reply stream.
const ASK: usize = 300 * KIB;

macro_rules! client_server_matrix {
    ($($name:ident: $client:ty => $server:ty),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                client_against_server::<$client, $server>();
            }
        )+
    };
}

client_server_matrix! {
    tokio_client_tokio_server: Tokio => Tokio,
    tokio_client_async_std_server: Tokio => AsyncStd,
    tokio_client_smol_server: Tokio => Smol,
    async_std_client_tokio_server: AsyncStd => Tokio,
    async_std_client_async_std_server: AsyncStd => AsyncStd,
    async_std_client_smol_server: AsyncStd => Smol,
    smol_client_tokio_server: Smol => Tokio,
    smol_client_async_std_server: Smol => AsyncStd,
    smol_client_smol_server: Smol => Smol,
}

/// An echo server on `S` in one thread, a client on `C` in another.
fn client_against_server<C: TestRuntime, S: TestRuntime>() {
    let (listening, address) = mpsc::channel();
    let server = in_thread(&format!("{} server", S::NAME), move || {
        S::block_on(async move {
            let listener = S::listen().await;
            listening
                .send(S::local_addr(&listener))
                .expect("the test waits");
            let accepted = within::<S, _>(
                RECV_LIMIT,
                "accept",
                S::accept(&listener, Options::default()),
            )
            .await
            .expect("the server accepts");
            echo(accepted.into()).await
        })
    });
    let addr = address.recv_timeout(LIMIT).expect("the server listens");

    run::<C, _>(LIMIT, move || async move {
        let connected = within::<C, _>(RECV_LIMIT, "connect", C::connect(addr, Options::default()));
        let client: Peer = connected.await.expect("the client connects").into();

        // Tells out, and their echoes back in order.
        let tells: Vec<_> = TELLS.iter().map(|&len| payload(len as u64, len)).collect();
        for message in &tells {
            client.conn.tell(3, 0, message.clone()).await.expect("sent");
        }
        for message in &tells {
            let echoed = recv_tell::<C>(&client.inbox).await;
            assert_same_bytes(&echoed.payload, message, "echo");
            if message.len() > 1023 * KIB {
                assert_eq!(echoed.route, Route::Stream);
            }
        }

        let request = payload(99, ASK);
        let ask = client
            .conn
            .ask(3, 0, request.clone(), Duration::from_secs(20));
        let reply = ask.await.expect("a reply");
        assert_eq!(reply.route, Route::Stream);
        assert_same_bytes(&reply.payload, &request, "reply");

        within::<C, _>(RECV_LIMIT, "graceful close", client.conn.close())
            .await
            .expect("a clean close");
        let end = within::<C, _>(RECV_LIMIT, "inbox end", client.inbox.recv()).await;
        assert!(end.is_none(), "nothing more after the close");
    });

    let echoed = server.wait(LIMIT);
    let bytes = TELLS.iter().sum::<usize>() + ASK;
    let expected = Echoed {
        tells: TELLS.len(),
        asks: 1,
        bytes,
    };
    assert_eq!(echoed, expected, "{} client, {} server", C::NAME, S::NAME);
}
