//! The crate runs on any executor: here an `async_executor::Executor` (what smol uses),
//! with no async-std task anywhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use socks5d_async_std::{run, Listeners, Shared, Smol};
use socks5d_core::state::{Config, State};
use socks5d_net::{AdminTransport, ServerOptions};

#[test]
fn serves_on_a_smol_style_executor() {
    let ex = Arc::new(async_executor::Executor::new());
    let spawned = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(State::new(Instant::now(), &Config::default()));
    let (spawner, count) = (ex.clone(), spawned.clone());
    let smol = Smol::new(move |task| {
        count.fetch_add(1, Ordering::SeqCst);
        spawner.spawn(task).detach();
    });
    let listeners = Listeners::bind(
        &smol,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        AdminTransport::Tcp,
    )
    .unwrap();
    let socks = listeners.socks.local_addr().unwrap();
    let shared = Shared::new(smol, state, ServerOptions::default());
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let server = ex.spawn(run(listeners, shared, async move {
        let _ = stop_rx.recv().await;
    }));
    let reply = async_io::block_on(ex.run(async {
        let mut c = TcpStream::connect(socks).await.unwrap();
        // Only "no authentication", which is not allowed by default: 05 FF, then close.
        c.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).await.unwrap();
        drop(stop_tx);
        server.await;
        reply
    }));
    assert_eq!(reply, [0x05, 0xFF]);
    assert_eq!(spawned.load(Ordering::SeqCst), 1, "one task per connection");
}
