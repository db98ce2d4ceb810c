//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};

/// An argon2id PHC string with the smallest parameters, so that debug-build tests stay fast.
/// (The real cost is `hash_password`'s, measured by the bench.)
pub fn cheap_hash(password: &[u8]) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password)
        .unwrap()
        .to_string()
}
