//! Argon2id password hashing: PHC strings at rest, bounded parameters on the way in.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::StoreError;

/// Memory cost of new hashes, in KiB (19 MiB, the OWASP argon2id baseline).
pub const M_COST_KIB: u32 = 19_456;
/// Passes (time cost) of new hashes.
pub const T_COST: u32 = 2;
/// Lanes (parallelism) of new hashes.
pub const P_COST: u32 = 1;

/// Largest memory cost, in KiB, of a hash this crate accepts (64 MiB). A stored or imported
/// hash above any of the `MAX_*` bounds is refused, so one verification's cost stays bounded.
pub const MAX_M_COST_KIB: u32 = 65_536;
/// Largest time cost of a hash this crate accepts.
pub const MAX_T_COST: u32 = 8;
/// Largest parallelism of a hash this crate accepts.
pub const MAX_P_COST: u32 = 8;

fn hasher() -> Argon2<'static> {
    // The constants are valid parameters; `Params::new` only fails outside argon2's ranges.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with argon2id ([`M_COST_KIB`], [`T_COST`], [`P_COST`]) and a fresh
/// 16-byte salt from the operating system, and returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
///
/// # Errors
///
/// [`StoreError::Hash`] if the operating system's random source fails (the only failure for a
/// password of at most 4 GiB).
pub fn hash_password(password: &[u8]) -> Result<String, StoreError> {
    hasher()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// Parses `phc` and checks that it is an argon2id hash, version 19, with parameters within
/// [`MAX_M_COST_KIB`], [`MAX_T_COST`] and [`MAX_P_COST`], a salt and an output.
///
/// # Errors
///
/// A short reason, without the hash itself.
pub fn check_hash(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm {} is not argon2id", parsed.algorithm));
    }
    if parsed
        .version
        .is_some_and(|v| v != u32::from(Version::V0x13))
    {
        return Err("argon2 version is not 19".into());
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return Err(format!(
            "argon2 parameters m={},t={},p={} above the accepted m={MAX_M_COST_KIB},t={MAX_T_COST},p={MAX_P_COST}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("no salt or no hash output".into());
    }
    Ok(())
}

/// Returns whether `password` matches the argon2id PHC string `phc`. A hash that
/// [`check_hash`] refuses matches nothing. This runs the full argon2 computation (tens of
/// milliseconds): call it from a blocking thread, within a bound on verifications at once
/// (the server's is `socks5d-net`'s `Shared::verify`).
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    check_hash(phc).is_ok() && Argon2::default().verify_password(password, phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password(b"correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(check_hash(&h).is_ok());
        assert!(verify_password(&h, b"correct horse"));
        assert!(!verify_password(&h, b"correct hors"));
        assert!(!verify_password(&h, b""));
        assert_ne!(h, hash_password(b"correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn refuses_other_hashes() {
        let ok = hash_password(b"pw").unwrap();
        let argon2i = ok.replacen("argon2id", "argon2i", 1);
        let heavy = ok.replacen("m=19456,t=2,p=1", "m=1048576,t=2,p=1", 1);
        let slow = ok.replacen("m=19456,t=2,p=1", "m=19456,t=100,p=1", 1);
        for bad in [
            "",
            "pw",
            "$argon2id$",
            "$2b$12$abcdefghijklmnopqrstuu",
            &argon2i,
            &heavy,
            &slow,
        ] {
            assert!(check_hash(bad).is_err(), "{bad}");
            assert!(!verify_password(bad, b"pw"), "{bad}");
        }
    }
}
