//! Sniffer tests: real-looking transcripts fed whole, cut at every byte boundary, byte by byte,
//! and (for the protocols that match replies in order) with the two directions interleaved
//! out of causal order. Negatives: refused logins, binary, TLS, give-up limits, memory bound.

use bytes::Bytes;

use super::*;

use Dir::{Client as C, Server as S};

/// One transcript: segments in the order they crossed the proxy.
type Script = Vec<(Dir, Vec<u8>)>;

fn script(parts: &[(Dir, &[u8])]) -> Script {
    parts.iter().map(|(d, b)| (*d, b.to_vec())).collect()
}

fn cred(protocol: Protocol, user: &str, password: &str) -> Credential {
    Credential {
        protocol,
        user: Bytes::copy_from_slice(user.as_bytes()),
        password: Bytes::copy_from_slice(password.as_bytes()),
    }
}

/// Feeds chunks in order, draining credentials after each call as a transport would.
/// Returns the credentials and whether the sniffer gave up.
fn run(port: u16, chunks: &[(Dir, &[u8])]) -> (Vec<Credential>, bool) {
    let mut s = Sniffer::new(port);
    let mut out = Vec::new();
    for (d, b) in chunks {
        match d {
            C => s.on_client(b),
            S => s.on_server(b),
        }
        while let Some(c) = s.poll_credential() {
            out.push(c);
        }
        assert!(s.buffered_capacity() <= 4 * MAX_STASH, "memory bound");
    }
    (out, s.is_done())
}

fn run_script(port: u16, sc: &Script) -> (Vec<Credential>, bool) {
    let chunks: Vec<(Dir, &[u8])> = sc.iter().map(|(d, b)| (*d, &b[..])).collect();
    run(port, &chunks)
}

/// Cuts the causal byte sequence at segment boundaries and wherever `cut(i)` says.
fn recut(sc: &Script, cut: impl Fn(usize) -> bool) -> Script {
    let mut out: Script = Vec::new();
    let mut i = 0;
    for (d, seg) in sc {
        let mut start = 0;
        for j in 0..seg.len() {
            if j > start && cut(i) {
                out.push((*d, seg[start..j].to_vec()));
                start = j;
            }
            i += 1;
        }
        out.push((*d, seg[start..].to_vec()));
    }
    out
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks `sc` gives `want` (and the same final `is_done`) fed whole, cut once at every byte
/// boundary of either direction, byte by byte, and cut at random places.
fn check_causal(port: u16, sc: &Script, want: &[Credential]) -> bool {
    let (got, done) = run_script(port, sc);
    assert_eq!(got, want, "whole segments");
    let total: usize = sc.iter().map(|(_, b)| b.len()).sum();
    for k in 0..total {
        let r = run_script(port, &recut(sc, |i| i == k));
        assert_eq!((&r.0[..], r.1), (want, done), "one cut at byte {k}");
    }
    let r = run_script(port, &recut(sc, |_| true));
    assert_eq!((&r.0[..], r.1), (want, done), "byte by byte");
    for seed in 1..40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let cuts: Vec<bool> = (0..total).map(|_| rng.below(7) == 0).collect();
        let r = run_script(port, &recut(sc, |i| cuts[i]));
        assert_eq!((&r.0[..], r.1), (want, done), "random cuts, seed {seed}");
    }
    done
}

/// Checks `sc` gives `want` when the directions are fed out of causal order: all server bytes
/// first, all client bytes first, and random merges of the two streams in random chunks.
fn check_interleavings(port: u16, sc: &Script, want: &[Credential]) {
    let stream = |dir: Dir| -> Vec<u8> {
        sc.iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, b)| b.clone())
            .collect()
    };
    let (cs, ss) = (stream(C), stream(S));
    let r = run(port, &[(S, &ss[..]), (C, &cs[..])]);
    assert_eq!(r.0, want, "server first");
    let r = run(port, &[(C, &cs[..]), (S, &ss[..])]);
    assert_eq!(r.0, want, "client first");
    for seed in 1..200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let (mut ci, mut si) = (0, 0);
        let mut chunks: Vec<(Dir, &[u8])> = Vec::new();
        while ci < cs.len() || si < ss.len() {
            let n = 1 + rng.below(40) as usize;
            if si >= ss.len() || (ci < cs.len() && rng.below(2) == 0) {
                let end = (ci + n).min(cs.len());
                chunks.push((C, &cs[ci..end]));
                ci = end;
            } else {
                let end = (si + n).min(ss.len());
                chunks.push((S, &ss[si..end]));
                si = end;
            }
        }
        let r = run(port, &chunks);
        assert_eq!(r.0, want, "random interleaving, seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

fn http_response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nDate: Mon, 15 Jun 2020 19:56:34 GMT\r\nServer: nginx/1.18.0\r\n\
         {headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

const CURL_GET: &[u8] = b"GET /private/ HTTP/1.1\r\nHost: www.example.com\r\n\
    Authorization: Basic YWxpY2U6czNjcmV0\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

#[test]
fn http_curl_basic_auth_200() {
    let ok = http_response(
        "200 OK",
        "Content-Type: text/html\r\n",
        b"<html><body>members only</body></html>\n",
    );
    let sc = script(&[(C, CURL_GET), (S, &ok)]);
    let want = [cred(Protocol::Http, "alice", "s3cret")];
    let done = check_causal(80, &sc, &want);
    assert!(!done, "keep-alive: more requests may follow");
    check_interleavings(80, &sc, &want);
}

#[test]
fn http_refused_credentials_are_not_recorded() {
    for status in [
        "401 Unauthorized",
        "403 Forbidden",
        "500 Internal Server Error",
    ] {
        let res = http_response(status, "WWW-Authenticate: Basic realm=\"x\"\r\n", b"no\n");
        let sc = script(&[(C, CURL_GET), (S, &res)]);
        check_causal(80, &sc, &[]);
        check_interleavings(80, &sc, &[]);
    }
}

#[test]
fn http_keep_alive_pipelined_session() {
    // 1: no credentials, 401 whose body looks like a successful exchange.
    let r1 = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let fake = b"HTTP/1.1 200 OK\r\nAuthorization: Basic ZXZlOmV2aWw=\r\n\r\n";
    let s1 = http_response("401 Unauthorized", "WWW-Authenticate: Basic\r\n", fake);
    // 2: lower-case header name and scheme, first header; chunked 200.
    let r2 = b"GET /a HTTP/1.1\r\nauthorization: basic YWxpY2U6czNjcmV0\r\nHost: h\r\n\r\n";
    let s2 = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1B\r\nHTTP/1.1 200 OK\r\n\r\nxxxxxxxx\r\n0\r\nX-Trailer: 1\r\n\r\n";
    // 3: HEAD with the same credential: no body despite Content-Length, no second record.
    let r3 = b"HEAD /a HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YWxpY2U6czNjcmV0\r\n\r\n";
    let s3 = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    // 4: POST whose body holds a header line; other credential refused with 403.
    let body = b"Authorization: Basic bWFsbG9yeTp4\r\n\r\n";
    let mut r4 = format!(
        "POST /f HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Ym9iOnd\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r4.extend_from_slice(body);
    let s4 = http_response("403 Forbidden", "", b"");
    // 5: a different credential accepted with 204 (no body), padding-free base64, colon in
    // the password, 100-continue before the final answer.
    let r5 = b"PUT /g HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\
        Authorization:   Basic   Ym9iOnB3OjI   \r\n\r\n";
    let s5a = b"HTTP/1.1 100 Continue\r\n\r\n";
    let r5b = b"abc";
    let s5b = b"HTTP/1.1 204 No Content\r\n\r\n";
    // 6: 304 (not 2xx: not recorded) has no body whatever its Content-Length says.
    let r6 =
        b"GET /h HTTP/1.1\r\nIf-None-Match: \"x\"\r\nAuthorization: Basic Y2Fyb2w6Yw==\r\n\r\n";
    let s6 = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n";
    // 7: chunked request body, 201.
    let r7 = b"POST /h HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nAuthorization: Basic Y2Fyb2w6Yw==\r\n\r\n\
        3\r\nabc\r\n0\r\n\r\n";
    let s7 = http_response("201 Created", "", b"");
    let sc = script(&[
        (C, &r1),
        (S, &s1),
        (C, r2),
        (S, s2),
        (C, r3),
        (S, s3),
        (C, &r4),
        (S, &s4),
        (C, r5),
        (S, s5a),
        (C, r5b),
        (S, s5b),
        (C, r6),
        (S, s6),
        (C, r7),
        (S, &s7),
    ]);
    let want = [
        cred(Protocol::Http, "alice", "s3cret"),
        cred(Protocol::Http, "bob", "pw:2"),
        cred(Protocol::Http, "carol", "c"),
    ];
    assert!(!check_causal(80, &sc, &want));
    check_interleavings(80, &sc, &want);
}

#[test]
fn http_pipelined_requests_in_one_write() {
    let mut reqs = CURL_GET.to_vec();
    reqs.extend_from_slice(b"GET /x HTTP/1.1\r\nAuthorization: Basic Ym9iOmI=\r\n\r\n");
    let mut res = http_response("200 OK", "", b"one");
    res.extend(http_response("401 Unauthorized", "", b"two"));
    let sc = script(&[(C, &reqs), (S, &res)]);
    let want = [cred(Protocol::Http, "alice", "s3cret")];
    check_causal(8080, &sc, &want);
    check_interleavings(8080, &sc, &want);
}

#[test]
fn http_tolerates_blank_lines_between_messages() {
    let mut res = http_response("200 OK", "", b"body");
    res.extend_from_slice(b"\r\n");
    res.extend(http_response("200 OK", "", b""));
    let mut req = CURL_GET.to_vec();
    req.extend_from_slice(b"\r\nGET / HTTP/1.1\r\nAuthorization: Basic Ym9iOmI=\r\n\r\n");
    let sc = script(&[(C, &req), (S, &res)]);
    let want = [
        cred(Protocol::Http, "alice", "s3cret"),
        cred(Protocol::Http, "bob", "b"),
    ];
    assert!(!check_causal(80, &sc, &want));
    check_interleavings(80, &sc, &want);
}

#[test]
fn http_1_0_close_delimited_response() {
    let req = b"GET / HTTP/1.0\r\nAuthorization: Basic YWxpY2U6czNjcmV0\r\n\r\n";
    let res = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of the rest is body";
    let sc = script(&[(C, req), (S, res)]);
    let done = check_causal(80, &sc, &[cred(Protocol::Http, "alice", "s3cret")]);
    assert!(done, "a close-delimited body ends the watch");
}

#[test]
fn http_detected_on_any_port_and_first_basic_header_wins() {
    let req = b"GET / HTTP/1.1\r\nAuthorization: Basic YTpi\r\nAuthorization: Basic Yzpk\r\n\r\n";
    let res = http_response("200 OK", "", b"");
    let sc = script(&[(C, req), (S, &res)]);
    check_causal(5000, &sc, &[cred(Protocol::Http, "a", "b")]);
}

#[test]
fn http_ignores_other_schemes_and_bad_base64() {
    for header in [
        "Authorization: Bearer YWxpY2U6czNjcmV0",
        "Authorization: Basic YWxpY2U6czNjcmV0!",
        "Authorization: Basic YWxpY2U",    // no colon
        "Authorization: Basic",            // no token
        "Proxy-Authorization: Basic YTpi", // not the origin's
        "X-Authorization: Basic YTpi",
    ] {
        let req = format!("GET / HTTP/1.1\r\n{header}\r\n\r\n");
        let res = http_response("200 OK", "", b"ok");
        let sc = script(&[(C, req.as_bytes()), (S, &res)]);
        assert_eq!(run_script(80, &sc).0, [], "{header}");
    }
}

#[test]
fn http_connect_and_upgrade_end_the_watch() {
    let (_, done) = run(80, &[(C, b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")]);
    assert!(done);
    let req = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nAuthorization: Basic YTpi\r\n\r\n";
    let res = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let (got, done) = run(80, &[(C, req), (S, res)]);
    assert_eq!(got, []);
    assert!(done);
    let (_, done) = run(80, &[(C, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")]);
    assert!(done, "HTTP/2 prior knowledge");
}

#[test]
fn http_credential_never_comes_from_a_body() {
    // A POST whose body is an HTTP request with credentials, answered 200.
    let inner = b"GET / HTTP/1.1\r\nAuthorization: Basic YTpi\r\n\r\n";
    let mut req =
        format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", inner.len()).into_bytes();
    req.extend_from_slice(inner);
    let mut res = http_response("200 OK", "", b"");
    res.extend(http_response("200 OK", "", b""));
    let sc = script(&[(C, &req), (S, &res)]);
    assert_eq!(run_script(80, &sc).0, []);
}

// ---------------------------------------------------------------------------------------
// POP3

fn dovecot_pop3(user_cmd: &[u8], pass_cmd: &[u8], pass_reply: &[u8]) -> Script {
    script(&[
        (S, b"+OK Dovecot (Ubuntu) ready.\r\n"),
        (C, b"CAPA\r\n"),
        (
            S,
            b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n\
              STLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
        ),
        (C, user_cmd),
        (S, b"+OK\r\n"),
        (C, pass_cmd),
        (S, pass_reply),
        (C, b"STAT\r\n"),
        (S, b"+OK 2 320\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"+OK Logging out.\r\n"),
    ])
}

#[test]
fn pop3_login() {
    let sc = dovecot_pop3(b"USER alice\r\n", b"PASS s3cret\r\n", b"+OK Logged in.\r\n");
    let want = [cred(Protocol::Pop3, "alice", "s3cret")];
    assert!(check_causal(110, &sc, &want), "done once logged in");
    check_interleavings(110, &sc, &want);
}

#[test]
fn pop3_lower_case_lf_only_password_with_spaces() {
    let sc = script(&[
        (
            S,
            b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\n",
        ),
        (C, b"user alice@example.org\n"),
        (S, b"+OK send PASS\n"),
        (C, b"pass correct horse battery\n"),
        (S, b"+OK maildrop has 2 messages (320 octets)\n"),
    ]);
    let want = [cred(
        Protocol::Pop3,
        "alice@example.org",
        "correct horse battery",
    )];
    check_causal(110, &sc, &want);
    check_interleavings(110, &sc, &want);
}

#[test]
fn pop3_refused_password_is_not_recorded() {
    let sc = dovecot_pop3(
        b"USER alice\r\n",
        b"PASS wrong\r\n",
        b"-ERR [AUTH] Authentication failed.\r\n",
    );
    check_causal(110, &sc, &[]);
    check_interleavings(110, &sc, &[]);
}

#[test]
fn pop3_retry_after_failure() {
    let sc = script(&[
        (S, b"+OK ready\r\n"),
        (C, b"USER alice\r\nPASS wrong\r\n"),
        (S, b"+OK\r\n-ERR [AUTH] Authentication failed.\r\n"),
        (C, b"PASS s3cret\r\n"),
        // RFC 1939: after a failed PASS a new USER is needed; a server that says +OK anyway
        // did not accept a user we saw.
        (S, b"-ERR no USER\r\n"),
        (C, b"USER alice\r\nPASS s3cret\r\n"),
        (S, b"+OK\r\n+OK Logged in.\r\n"),
    ]);
    let want = [cred(Protocol::Pop3, "alice", "s3cret")];
    check_causal(110, &sc, &want);
    check_interleavings(110, &sc, &want);
}

#[test]
fn pop3_pass_without_user() {
    let sc = script(&[
        (S, b"+OK ready\r\n"),
        (C, b"PASS s3cret\r\n"),
        (S, b"+OK\r\n"),
    ]);
    check_causal(110, &sc, &[]);
    // A refused USER does not pair with the next PASS either.
    let sc = script(&[
        (S, b"+OK ready\r\n"),
        (C, b"USER nobody\r\n"),
        (S, b"-ERR unknown\r\n"),
        (C, b"PASS s3cret\r\n"),
        (S, b"+OK\r\n"),
    ]);
    check_causal(110, &sc, &[]);
}

#[test]
fn pop3_stls_and_sasl_end_the_watch() {
    let (got, done) = run(
        110,
        &[
            (S, b"+OK ready\r\n"),
            (C, b"STLS\r\n"),
            (S, b"+OK Begin TLS negotiation now.\r\n"),
            (C, b"\x16\x03\x01\x00\x05USER alice\r\nPASS s3cret\r\n"),
            (S, b"+OK\r\n+OK\r\n"),
        ],
    );
    assert_eq!(got, []);
    assert!(done);
    let (got, done) = run(110, &[(S, b"+OK ready\r\n"), (C, b"AUTH PLAIN\r\n")]);
    assert_eq!(got, []);
    assert!(done);
}

#[test]
fn pop3_gives_up_after_the_login_byte_limit() {
    let mut noise = Vec::new();
    while noise.len() <= MAX_LOGIN_BYTES as usize {
        noise.extend_from_slice(b"NOOP\r\n");
    }
    let mut sniffer = Sniffer::new(110);
    sniffer.on_server(b"+OK ready\r\n");
    for chunk in noise.chunks(100) {
        sniffer.on_client(chunk);
    }
    assert!(sniffer.is_done());
    sniffer.on_client(b"USER alice\r\nPASS s3cret\r\n");
    sniffer.on_server(b"+OK\r\n+OK\r\n");
    assert_eq!(sniffer.poll_credential(), None);
}

#[test]
fn pop3_not_detected_from_a_port_alone() {
    // Port 110, but the server speaks something else.
    let (got, done) = run(
        110,
        &[
            (S, b"SSH-2.0-OpenSSH_9.6\r\n"),
            (C, b"USER alice\r\nPASS s3cret\r\n"),
            (S, b"+OK\r\n+OK\r\n"),
        ],
    );
    assert_eq!(got, []);
    assert!(done);
}

// ---------------------------------------------------------------------------------------
// FTP

#[test]
fn ftp_login() {
    let sc = script(&[
        (
            S,
            b"220-Welcome to the archive.\r\n220-Be nice.\r\n220 (vsFTPd 3.0.5)\r\n",
        ),
        (C, b"FEAT\r\n"),
        (
            S,
            b"211-Features:\r\n EPRT\r\n EPSV\r\n UTF8\r\n211 End\r\n",
        ),
        (C, b"USER alice\r\n"),
        (S, b"331 Please specify the password.\r\n"),
        (C, b"PASS s3cret\r\n"),
        (S, b"230 Login successful.\r\n"),
        (C, b"SYST\r\n"),
        (S, b"215 UNIX Type: L8\r\n"),
    ]);
    let want = [cred(Protocol::Ftp, "alice", "s3cret")];
    assert!(check_causal(21, &sc, &want));
    check_interleavings(21, &sc, &want);
}

#[test]
fn ftp_refused_and_tls() {
    let sc = script(&[
        (S, b"220 ProFTPD Server\r\n"),
        (C, b"USER alice\r\n"),
        (S, b"331 Password required for alice\r\n"),
        (C, b"PASS wrong\r\n"),
        (S, b"530 Login incorrect.\r\n"),
    ]);
    check_causal(21, &sc, &[]);
    let (got, done) = run(
        21,
        &[
            (S, b"220 ready\r\n"),
            (C, b"AUTH TLS\r\n"),
            (S, b"234 Proceed with negotiation.\r\n"),
        ],
    );
    assert_eq!(got, []);
    assert!(done);
}

#[test]
fn smtp_is_not_ftp() {
    for (port, greeting) in [
        (25, &b"220 mx.example.com ESMTP Postfix\r\n"[..]),
        (587, b"220 mail ready\r\n"),
        (2121, b"220 mx.example.com ESMTP Exim 4.96\r\n"),
    ] {
        let (got, done) = run(
            port,
            &[
                (S, greeting),
                (C, b"USER alice\r\nPASS s3cret\r\n"),
                (S, b"331 x\r\n230 y\r\n"),
            ],
        );
        assert_eq!(got, []);
        assert!(done, "{port}");
    }
}

// ---------------------------------------------------------------------------------------
// IMAP

#[test]
fn imap_login_quoted_and_atom() {
    let sc = script(&[
        (S, b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.\r\n"),
        (C, b"a1 CAPABILITY\r\n"),
        (S, b"* CAPABILITY IMAP4rev1 LITERAL+ STARTTLS AUTH=PLAIN\r\na1 OK Pre-login capabilities listed.\r\n"),
        (C, b"a2 LOGIN alice \"s3 \\\"cret\\\\\"\r\n"),
        (S, b"a2 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
        (C, b"a3 SELECT INBOX\r\n"),
    ]);
    let want = [cred(Protocol::Imap, "alice", "s3 \"cret\\")];
    assert!(check_causal(143, &sc, &want));
}

#[test]
fn imap_refused_then_literal_then_ok() {
    let sc = script(&[
        (S, b"* OK IMAP4rev1 ready\r\n"),
        (C, b"a1 LOGIN alice wrong\r\n"),
        (
            S,
            b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        ),
        (C, b"a2 LOGIN {5}\r\n"),
        (S, b"+ OK\r\n"),
        (C, b"alice {12}\r\na3 LOGIN x y\r\n"),
        (
            S,
            b"a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        ),
        (C, b"a4 login \"bob\" pw\r\n"),
        (S, b"* CAPABILITY IMAP4rev1 {3}\r\nabc\r\na4 OK done\r\n"),
    ]);
    let want = [cred(Protocol::Imap, "bob", "pw")];
    check_causal(143, &sc, &want);
}

#[test]
fn imap_preauth_gives_up() {
    let (got, done) = run(
        143,
        &[(S, b"* PREAUTH IMAP4rev1 server logged in as alice\r\n")],
    );
    assert_eq!(got, []);
    assert!(done);
}

// ---------------------------------------------------------------------------------------
// Binary, TLS, limits

/// The first bytes of a real TLS 1.3 ClientHello (curl to https://example.com).
const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f\xa2\
    \x41\x9c\x4e\x00\x12GET / HTTP/1.1\r\nAuthorization: Basic YTpi\r\n\r\n";

#[test]
fn tls_client_hello_gives_up_at_once() {
    for port in [443, 80, 110] {
        let mut s = Sniffer::new(port);
        s.on_client(&CLIENT_HELLO[..2]);
        assert!(s.is_done(), "{port}");
        s.on_client(&CLIENT_HELLO[2..]);
        s.on_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(s.poll_credential(), None);
    }
    // A TLS server speaking first (or seen first) too.
    let (_, done) = run(443, &[(S, b"\x16\x03\x03\x00\x7a\x02")]);
    assert!(done);
}

#[test]
fn binary_noise_gives_up_without_credentials() {
    for seed in 1..300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let noise: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        let mut s = Sniffer::new(80);
        for chunk in noise.chunks(1 + rng.below(700) as usize) {
            if rng.below(2) == 0 {
                s.on_client(chunk);
            } else {
                s.on_server(chunk);
            }
            assert_eq!(s.poll_credential(), None);
        }
        assert!(s.is_done(), "seed {seed}");
    }
}

#[test]
fn text_without_a_protocol_gives_up_after_the_limit() {
    // A client chatting in an unknown text protocol while the server stays silent.
    let mut s = Sniffer::new(7);
    let mut sent = 0;
    while !s.is_done() {
        s.on_client(b"hello there\r\n");
        sent += 13;
        assert!(sent <= MAX_UNDETECTED + 13, "never gave up");
    }
    assert!(sent > MAX_UNDETECTED);
    // A request line longer than the limit.
    let mut s = Sniffer::new(80);
    s.on_client(b"GET /");
    s.on_client(&vec![b'a'; MAX_UNDETECTED]);
    assert!(s.is_done());
}

#[test]
fn memory_stays_bounded_on_huge_lines() {
    // A header line without end, fed in pieces: the line buffer stops growing.
    let mut s = Sniffer::new(80);
    s.on_client(b"GET / HTTP/1.1\r\nCookie: ");
    for _ in 0..1000 {
        s.on_client(&[b'a'; 1000]);
        assert!(s.buffered_capacity() <= 4 * MAX_STASH);
    }
    assert!(!s.is_done());
    // The overlong line ends; credentials after it are still found.
    s.on_client(b"\r\nAuthorization: Basic YTpi\r\n\r\n");
    s.on_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(s.poll_credential(), Some(cred(Protocol::Http, "a", "b")));
    // An overlong Authorization header is never captured (it was cut).
    let mut s = Sniffer::new(80);
    let long = format!(
        "GET / HTTP/1.1\r\nAuthorization: Basic YTpi{}\r\n\r\n",
        "A".repeat(MAX_LINE)
    );
    s.on_client(long.as_bytes());
    s.on_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(s.poll_credential(), None);
}

#[test]
fn held_back_server_bytes_are_bounded() {
    // A server answering far ahead of any request cannot make the sniffer buffer it all.
    let mut s = Sniffer::new(80);
    s.on_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    for _ in 0..100 {
        s.on_server(&[b'x'; 1000]);
        assert!(s.buffered_capacity() <= 4 * MAX_STASH);
    }
    assert!(s.is_done());
}

#[test]
fn huge_bodies_are_skipped_not_buffered() {
    let mut s = Sniffer::new(80);
    s.on_client(CURL_GET);
    s.on_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
    let block = vec![b'\n'; 64 * 1024];
    for _ in 0..100 {
        s.on_server(&block);
    }
    assert_eq!(
        s.poll_credential(),
        Some(cred(Protocol::Http, "alice", "s3cret"))
    );
    assert!(!s.is_done());
    assert!(s.buffered_capacity() <= 4 * MAX_STASH);
}

#[test]
fn queued_credentials_are_bounded() {
    let mut s = Sniffer::new(80);
    for i in 0..(MAX_QUEUED + 4) {
        let pass = format!("p{i}");
        let token = encode_b64(format!("u:{pass}").as_bytes());
        s.on_client(format!("GET / HTTP/1.1\r\nAuthorization: Basic {token}\r\n\r\n").as_bytes());
        s.on_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    let mut n = 0;
    while s.poll_credential().is_some() {
        n += 1;
    }
    assert_eq!(n, MAX_QUEUED);
}

#[test]
fn find_lf_matches_naive_search() {
    let mut rng = Rng(7);
    for len in 0..80 {
        for _ in 0..20 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(30) == 0 {
                        b'\n'
                    } else {
                        rng.next() as u8 | 1
                    }
                })
                .collect();
            assert_eq!(find_lf(&v), v.iter().position(|&b| b == b'\n'), "{v:?}");
        }
    }
    // Bytes that trip naive SWAR tricks (0x0b = LF ^ 1, 0x8a = LF | 0x80).
    assert_eq!(find_lf(b"\x0b\x8a\x0b\x8a\x0b\x8a\x0b\x8a\x0b\n"), Some(9));
}

// ---------------------------------------------------------------------------------------
// base64

/// Test-only encoder, to check the decoder against.
fn encode_b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            s.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
        for _ in c.len()..3 {
            s.push('=');
        }
    }
    s
}

#[test]
fn base64_vectors() {
    // RFC 4648 §10.
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(
            base64::decode(enc.as_bytes()).as_deref(),
            Some(plain.as_bytes())
        );
        assert_eq!(encode_b64(plain.as_bytes()), enc);
        let unpadded = enc.trim_end_matches('=');
        assert_eq!(
            base64::decode(unpadded.as_bytes()).as_deref(),
            Some(plain.as_bytes())
        );
    }
    // RFC 7617 §2 example.
    assert_eq!(
        base64::decode(b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==").as_deref(),
        Some(&b"Aladdin:open sesame"[..])
    );
    for bad in [&b"Zg="[..], b"Z", b"Zm9v!", b"Zm=v", b"Zg===", b"Zm9v\x00"] {
        assert_eq!(base64::decode(bad), None, "{bad:?}");
    }
    let mut rng = Rng(3);
    for len in 0..100 {
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert_eq!(base64::decode(encode_b64(&data).as_bytes()), Some(data));
    }
}

// ---------------------------------------------------------------------------------------
// Robustness

#[test]
fn mutated_transcripts_never_panic_and_stay_bounded() {
    let ok = http_response(
        "200 OK",
        "Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    let bases: Vec<(u16, Script)> = vec![
        (
            80,
            script(&[(C, CURL_GET), (S, &ok), (C, CURL_GET), (S, &ok)]),
        ),
        (110, dovecot_pop3(b"USER a\r\n", b"PASS b\r\n", b"+OK\r\n")),
        (
            21,
            script(&[
                (S, b"220-a\r\n220 b\r\n"),
                (C, b"USER a\r\n"),
                (S, b"331 p\r\n"),
                (C, b"PASS b\r\n"),
                (S, b"230 ok\r\n"),
            ]),
        ),
        (
            143,
            script(&[
                (S, b"* OK hi\r\n"),
                (C, b"a1 LOGIN {1}\r\nx {1}\r\ny\r\na2 LOGIN \"u\" \"p\"\r\n"),
                (S, b"+ go\r\n* X {2}\r\nab\r\na2 OK\r\n"),
            ]),
        ),
    ];
    // Bytes that matter to the parsers, so mutations hit interesting paths.
    const SPICE: &[u8] = b"\r\n :{}\"\\-+0123456789aAfF;.* \x00\x16\xff";
    let mut rng = Rng(0x5eed);
    for round in 0..3000 {
        let (port, base) = &bases[round % bases.len()];
        let mut sc = base.clone();
        for _ in 0..1 + rng.below(6) {
            let seg = rng.below(sc.len() as u64) as usize;
            let bytes = &mut sc[seg].1;
            if bytes.is_empty() {
                continue;
            }
            let at = rng.below(bytes.len() as u64) as usize;
            match rng.below(3) {
                0 => bytes[at] = SPICE[rng.below(SPICE.len() as u64) as usize],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, SPICE[rng.below(SPICE.len() as u64) as usize]),
            }
        }
        let cuts: Vec<bool> = (0..4096).map(|_| rng.below(5) == 0).collect();
        let chunked = recut(&sc, |i| cuts[i % cuts.len()]);
        let (got, _) = run_script(*port, &chunked);
        assert!(got.len() <= MAX_QUEUED);
    }
}

/// Found by fuzzing (`sniffer`): replies that arrive before their commands are held back, and
/// must be matched as each command is seen, whatever the size of the client's write. A write
/// with more than [`MAX_PENDING`] pipelined commands made the sniffer give up (losing the
/// credentials) when fed whole, but not when fed line by line.
#[test]
fn held_back_replies_match_commands_of_one_large_write() {
    let mut server = b"220 hi\r\n".to_vec();
    let mut client = Vec::new();
    for _ in 0..MAX_PENDING {
        server.extend_from_slice(b"200 ok\r\n");
        client.extend_from_slice(b"NOOP\r\n");
    }
    server.extend_from_slice(b"331 pw\r\n230 ok\r\n");
    client.extend_from_slice(b"USER anna\r\nPASS pw1\r\n");
    let want = [cred(Protocol::Ftp, "anna", "pw1")];
    let (got, done) = run(21, &[(S, &server[..]), (C, &client[..])]);
    assert_eq!((&got[..], done), (&want[..], true), "client write whole");
    let lines: Vec<(Dir, &[u8])> = std::iter::once((S, &server[..]))
        .chain(client.split_inclusive(|&b| b == b'\n').map(|l| (C, l)))
        .collect();
    assert_eq!(run(21, &lines).0, want, "client write line by line");
}
