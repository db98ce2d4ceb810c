//! A small base64 decoder (RFC 4648 §4, standard alphabet) for HTTP Basic credentials.

/// Decodes `input`; `=` padding is optional. Returns `None` on any byte outside the alphabet,
/// padding in the middle, or an impossible length.
pub(super) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let data = match input {
        [rest @ .., b'=', b'='] | [rest @ .., b'='] => rest,
        _ => input,
    };
    if data.len() % 4 == 1 || (data.len() != input.len() && input.len() % 4 != 0) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in data {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}
