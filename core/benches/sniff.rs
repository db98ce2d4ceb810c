//! Sniffer throughput, in bytes of relayed traffic inspected per second, fed in 16 KiB chunks
//! (the default relay buffer size):
//! - `http`: a keep-alive HTTP/1.1 connection, 64 exchanges of a request (one with a Basic
//!   `Authorization` header) followed by its response with a 16 KiB `Content-Length` body;
//! - `http_headers`: 256 exchanges of header-heavy requests and empty (`Content-Length: 0`)
//!   responses, where every byte is a header line the sniffer scans;
//! - `binary`: 1 MiB each way of bytes that are no known protocol (a TLS-looking start), from a
//!   new sniffer, fed until the end even after the sniffer has given up (as a transport that
//!   keeps calling it would).
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use socks5d_core::sniff::Sniffer;

const CHUNK: usize = 16 * 1024;

/// One client write followed by the server's answer.
type Exchange = (Vec<u8>, Vec<u8>);

fn http_exchanges() -> Vec<Exchange> {
    let body = vec![b'x'; 16 * 1024];
    let mut v = Vec::new();
    for i in 0..64 {
        let mut client = Vec::new();
        let mut server = Vec::new();
        client.extend_from_slice(
            format!(
                "GET /file/{i} HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bench/1.0\r\n\
                 Accept: */*\r\n"
            )
            .as_bytes(),
        );
        if i == 7 {
            client.extend_from_slice(b"Authorization: Basic Ym9iOmh1bnRlcjI=\r\n");
        }
        client.extend_from_slice(b"\r\n");
        server.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        server.extend_from_slice(&body);
        v.push((client, server));
    }
    v
}

fn http_header_exchanges() -> Vec<Exchange> {
    let cookie = "c".repeat(400);
    (0..256)
        .map(|i| {
            let client = format!(
                "GET /api/item/{i}?fields=all HTTP/1.1\r\nHost: example.test\r\n\
                 User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n\
                 Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\
                 Accept-Language: en-US,en;q=0.5\r\nCookie: session={cookie}\r\n\r\n"
            );
            let server = "HTTP/1.1 204 No Content\r\nServer: bench\r\nCache-Control: no-store\r\n\
                          Content-Length: 0\r\n\r\n"
                .to_string();
            (client.into_bytes(), server.into_bytes())
        })
        .collect()
}

fn binary_exchanges() -> Vec<Exchange> {
    // A TLS ClientHello-like start, then pseudo-random bytes (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut gen = |n: usize| -> Vec<u8> {
        let mut v = vec![0x16, 0x03, 0x01, 0x02, 0x00];
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(n);
        v
    };
    vec![(gen(1 << 20), gen(1 << 20))]
}

fn total(ex: &[Exchange]) -> u64 {
    ex.iter().map(|(c, s)| (c.len() + s.len()) as u64).sum()
}

/// Feeds each exchange (client bytes, then server bytes) in chunks; returns the credentials
/// found.
fn run(port: u16, exchanges: &[Exchange]) -> usize {
    let mut s = Sniffer::new(port);
    let mut found = 0;
    for (client, server) in exchanges {
        for chunk in client.chunks(CHUNK) {
            s.on_client(chunk);
        }
        for chunk in server.chunks(CHUNK) {
            s.on_server(chunk);
        }
        while s.poll_credential().is_some() {
            found += 1;
        }
    }
    black_box(s.is_done());
    found
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sniff");

    let http = http_exchanges();
    assert_eq!(run(80, &http), 1, "the Basic credential is found");
    g.throughput(Throughput::Bytes(total(&http)));
    g.bench_function("http_keepalive_16k_bodies", |b| {
        b.iter(|| black_box(run(80, &http)));
    });

    let headers = http_header_exchanges();
    assert_eq!(run(80, &headers), 0);
    g.throughput(Throughput::Bytes(total(&headers)));
    g.bench_function("http_headers_only", |b| {
        b.iter(|| black_box(run(80, &headers)));
    });

    let binary = binary_exchanges();
    assert_eq!(run(443, &binary), 0);
    g.throughput(Throughput::Bytes(total(&binary)));
    g.bench_function("binary_1mib_each_way", |b| {
        b.iter(|| black_box(run(443, &binary)));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
