//! The admin protocol over SCTP, end to end. The development and CI kernels have no SCTP, so
//! these are ignored by default and run under a kernel that has it:
//!
//! ```text
//! cargo test -p socks5d-tests --no-run
//! ../shared/sctp-vm/run --timeout 300 -- cargo test -p socks5d-tests --test sctp -- --ignored
//! ```
//!
//! Run with `--ignored` on a kernel without SCTP they fail (never skip): the server cannot
//! bind its SCTP listener, and the tests say so.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use socket2::Socket;
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Modify, ModifyCmd, Query, ValueCmd};
use socks5d_core::admin::Dialect;
use socks5d_net::{sctp, AdminTransport, ServerOptions};
use socks5d_tests::harness::{Runtime, Setup, TestServer};
use socks5d_tests::{peers, script};

const IGNORE: &str = "needs kernel SCTP: run under ../shared/sctp-vm/run";

fn start(rt: Runtime, transport: AdminTransport) -> TestServer {
    let setup = Setup {
        options: ServerOptions {
            admin_transport: transport,
            ..Setup::default().options
        },
        ..Setup::default()
    };
    TestServer::start(rt, setup)
}

/// A blocking SCTP admin client that sees message boundaries.
struct SctpClient {
    s: Socket,
}

impl SctpClient {
    fn connect(addr: SocketAddr) -> Self {
        let s = sctp::socket(addr).unwrap_or_else(|e| panic!("no SCTP socket ({e}): {IGNORE}"));
        s.set_nonblocking(false).unwrap();
        s.connect(&addr.into()).expect("SCTP connect");
        s.set_read_timeout(Some(peers::IO_TIMEOUT)).unwrap();
        Self { s }
    }

    fn send(&self, msg: &[u8]) {
        sctp::send_msg(&self.s, msg).expect("send");
    }

    /// Receives one whole message.
    fn recv(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        loop {
            let r = sctp::recv_msg(&self.s, &mut buf, 65536).expect("recv");
            assert_ne!(r.len, 0, "server closed the association");
            if r.end_of_message {
                return buf.to_vec();
            }
        }
    }

    fn recv_response(&self, req: &AdminRequest) -> AdminResponse {
        self.recv_response_in(Dialect::Draft, req)
    }

    fn recv_response_in(&self, dialect: Dialect, req: &AdminRequest) -> AdminResponse {
        let msg = self.recv();
        let mut b = BytesMut::from(&msg[..]);
        let resp = AdminResponse::decode(&mut b, dialect, req)
            .expect("decodes")
            .expect("complete");
        assert!(b.is_empty(), "one response per SCTP message, got {msg:?}");
        resp
    }
}

fn encode(reqs: &[AdminRequest]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for r in reqs {
        r.encode(&mut b);
    }
    b.to_vec()
}

fn admin_over_sctp(rt: Runtime) {
    let srv = start(rt, AdminTransport::Sctp);
    assert_eq!(srv.admin_transport, AdminTransport::Sctp);
    let c = SctpClient::connect(srv.admin);
    c.send(&peers::userpass("admin", "adminpw"));
    assert_eq!(c.recv(), [0x01, 0x00]);

    // Two requests in one message: two responses, each its own message.
    let reqs = [
        AdminRequest::Query(Query::UserCount),
        AdminRequest::Modify(Modify::SetConnectionTimeout(33)),
    ];
    c.send(&encode(&reqs));
    assert_eq!(
        c.recv_response(&reqs[0]),
        AdminResponse::Value {
            cmd: ValueCmd::UserCount,
            value: 2
        }
    );
    assert_eq!(
        c.recv_response(&reqs[1]),
        AdminResponse::Status {
            cmd: ModifyCmd::SetConnectionTimeout,
            status: 0
        }
    );
    assert_eq!(srv.state.settings().connection_timeout(), 33);

    // An unknown CMD cannot be framed: the rest of its message is discarded, and the next
    // message is served (PROTOCOL.md, "Requests").
    let mut bad = vec![0x00, 0x7F];
    bad.extend(encode(&[AdminRequest::Modify(Modify::SetBufferSize(999))]));
    c.send(&bad);
    assert_eq!(c.recv(), [0x00, 0xFF]);
    let add = AdminRequest::Modify(Modify::AddUser {
        name: Bytes::from_static(b"dave"),
        password: Bytes::from_static(b"pw"),
        privilege: 0,
    });
    c.send(&encode(std::slice::from_ref(&add)));
    assert_eq!(
        c.recv_response(&add),
        AdminResponse::Status {
            cmd: ModifyCmd::AddUser,
            status: 0
        }
    );
    assert_ne!(
        srv.state.settings().buffer_size(),
        999,
        "discarded request was applied"
    );
    assert_eq!(srv.state.user_count(), 3);

    // A request split over two messages is joined (PROTOCOL.md: requests are reassembled
    // across SCTP message boundaries, as the original server reads its association).
    let q = AdminRequest::Query(Query::SelectorTimeout);
    let bytes = encode(std::slice::from_ref(&q));
    c.send(&bytes[..1]);
    c.send(&bytes[1..]);
    assert_eq!(
        c.recv_response(&q),
        AdminResponse::Value {
            cmd: ValueCmd::SelectorTimeout,
            value: 5
        }
    );
}

/// Issue "like the original where its clients notice": the authentication one byte per SCTP
/// message, then two queries split across three messages, are all answered; after an unknown
/// TYPE in the middle of a message, the next message is served.
fn requests_span_sctp_messages(rt: Runtime) {
    let srv = start(rt, AdminTransport::Sctp);
    let c = SctpClient::connect(srv.admin);
    for b in peers::userpass("admin", "adminpw") {
        c.send(&[b]);
    }
    assert_eq!(c.recv(), [0x01, 0x00]);
    let reqs = [
        AdminRequest::Query(Query::UserCount),
        AdminRequest::Query(Query::BufferSize),
    ];
    let bytes = encode(&reqs);
    // `00 07 00 | 08`, split so both queries are cut: three messages.
    c.send(&bytes[..1]);
    c.send(&bytes[1..3]);
    c.send(&bytes[3..]);
    assert_eq!(
        c.recv_response(&reqs[0]),
        AdminResponse::Value {
            cmd: ValueCmd::UserCount,
            value: 2
        }
    );
    assert_eq!(
        c.recv_response(&reqs[1]),
        AdminResponse::Value {
            cmd: ValueCmd::BufferSize,
            value: 16384
        }
    );
    // A query, an unknown TYPE, then bytes that would be a query: the first is answered, the
    // unknown TYPE gets `FF FF`, the rest of that message is discarded; the next message is
    // served.
    let mut msg = encode(&reqs[..1]);
    msg.push(0x7E);
    msg.extend(encode(&reqs[1..]));
    c.send(&msg);
    assert_eq!(
        c.recv_response(&reqs[0]),
        AdminResponse::Value {
            cmd: ValueCmd::UserCount,
            value: 2
        }
    );
    assert_eq!(c.recv(), [0xFF, 0xFF]);
    c.send(&encode(&reqs[1..]));
    assert_eq!(
        c.recv_response(&reqs[1]),
        AdminResponse::Value {
            cmd: ValueCmd::BufferSize,
            value: 16384
        }
    );
}

fn auto_uses_sctp_when_the_kernel_has_it(rt: Runtime) {
    let srv = start(rt, AdminTransport::Auto);
    assert_eq!(
        srv.admin_transport,
        AdminTransport::Sctp,
        "fell back to TCP: {IGNORE}"
    );
    let c = SctpClient::connect(srv.admin);
    c.send(&peers::userpass("admin", "wrong"));
    assert_eq!(c.recv(), [0x01, 0x01]);
}

fn shutdown_closes_sctp_sessions(rt: Runtime) {
    let srv = start(rt, AdminTransport::Sctp);
    let c = SctpClient::connect(srv.admin);
    c.send(&peers::userpass("admin", "adminpw"));
    assert_eq!(c.recv(), [0x01, 0x00]);
    srv.shutdown();
    let mut buf = BytesMut::new();
    let r = sctp::recv_msg(&c.s, &mut buf, 1024);
    assert!(
        matches!(r, Ok(ref r) if r.len == 0)
            || r.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "association still open after shutdown"
    );
}

/// Every request of the protocol over SCTP, one request per message as the draft asks, all
/// sent before the first answer is read, in both dialects: each answer in its own message and
/// as the spec requires (`script::every_command`).
fn every_admin_command_over_sctp(rt: Runtime) {
    for dialect in [Dialect::Draft, Dialect::Final] {
        let options = ServerOptions {
            admin_transport: AdminTransport::Sctp,
            dialect,
            ..Setup::default().options
        };
        let srv = TestServer::start(
            rt,
            Setup {
                options,
                ..Setup::default()
            },
        );
        let c = SctpClient::connect(srv.admin);
        c.send(&peers::userpass("admin", "adminpw"));
        assert_eq!(c.recv(), [0x01, 0x00]);
        let script = script::every_command(dialect);
        for (request, _) in &script {
            c.send(&encode(std::slice::from_ref(request)));
        }
        for (i, (request, want)) in script.iter().enumerate() {
            let got = c.recv_response_in(dialect, request);
            assert_eq!(&got, want, "{dialect:?}, request {i}: {request:?}");
        }
        assert_eq!(srv.state.settings().connection_timeout(), 33);
    }
}

macro_rules! per_runtime {
    ($runtime:ident: $($scenario:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $runtime {
            $(
                #[test]
                #[ignore = "needs kernel SCTP: run under ../shared/sctp-vm/run"]
                fn $scenario() {
                    super::$scenario(socks5d_tests::harness::Runtime::$runtime);
                }
            )*
        }
    };
}

macro_rules! scenarios {
    ($($runtime:ident),*) => {
        $(
            per_runtime!($runtime:
                admin_over_sctp,
                auto_uses_sctp_when_the_kernel_has_it,
                shutdown_closes_sctp_sessions,
                every_admin_command_over_sctp,
                requests_span_sctp_messages,
            );
        )*
    };
}

scenarios!(Tokio, Smol, AsyncStd);

#[test]
fn every_runtime_is_instantiated() {
    // Adding a runtime to `Runtime::ALL` without adding it to `scenarios!` above fails here.
    assert_eq!(
        Runtime::ALL,
        &[Runtime::Tokio, Runtime::Smol, Runtime::AsyncStd]
    );
}
