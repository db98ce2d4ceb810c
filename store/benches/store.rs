//! What authentication and persistence cost: a cold argon2id verification (the parameters
//! of `hash_password`) and one durable commit (write, fsync,
//! rename, fsync the directory) on the disk that holds the target directory.
//!
//! `cargo bench -p socks5d-store`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use socks5d_store::{
    hash_password, verify_password, Change, Setting, Store, StoredSettings, StoredUser,
};

fn auth(c: &mut Criterion) {
    let phc = hash_password(b"bench password").unwrap();
    let mut g = c.benchmark_group("auth");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("argon2id_cold_verify", |b| {
        b.iter(|| {
            assert!(verify_password(
                black_box(&phc),
                black_box(b"bench password")
            ))
        });
    });
    g.finish();
}

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let phc = hash_password(b"x").unwrap();
    // A full store: 255 users, so each commit rewrites the largest file it can have.
    let users = (0..255)
        .map(|i| StoredUser {
            name: format!("user{i:03}").into(),
            hash: phc.clone(),
            privilege: 0,
        })
        .collect();
    store
        .commit(&Change::Replace {
            users,
            settings: StoredSettings::default(),
        })
        .unwrap();
    let mut n = 0u32;
    let mut g = c.benchmark_group("store");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("commit_255_users", |b| {
        b.iter(|| {
            n += 1;
            store
                .commit(&Change::SetSetting(Setting::BufferSize(50 + n % 1000)))
                .unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, auth, commit);
criterion_main!(benches);
