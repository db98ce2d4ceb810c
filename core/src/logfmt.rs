//! The access-log and credentials-log lines of PROTOCOL.md (formats of `socks5d.8`), as pure
//! functions.
//!
//! Fields are separated by one tab. No field ever contains a tab, CR, LF or other control
//! character: every byte that came from the network (SOCKS user, domain name, captured user
//! and password) is escaped so that a crafted name cannot forge a field or a line:
//!
//! | byte(s) | written as |
//! |---|---|
//! | `\` | `\\` |
//! | tab, LF, CR | `\t`, `\n`, `\r` |
//! | other C0 controls, DEL, the bytes of C1 controls and of U+2028/U+2029 | `\xNN` (lower-case hex) |
//! | format characters (general category Cf: bidi controls such as U+202E and U+2066, U+200B, U+FEFF, U+00AD, tags) | `\u{NNNN}` (lower-case hex, at least 4 digits) |
//! | bytes that are not valid UTF-8 | `\xNN` |
//! | anything else (printable ASCII, space, other UTF-8 characters) | itself |
//!
//! Format characters are invisible, and the bidi ones make a terminal or an editor show the
//! rest of the line reordered (a user `x\u{202e}4ogol` would read `xlogo4`), so they never
//! reach a log raw.
//!
//! Because the backslash itself is escaped, the escaping can be undone without ambiguity. A
//! SOCKS user literally named `-` is written `\x2d`, so it cannot be mistaken for the
//! anonymous `-`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::sniff::Credential;
use crate::socks5::{ReplyCode, TargetAddr};

/// Formats one access-log line (no trailing newline): time, user (`-` if anonymous), `A`,
/// source IP, source port, destination, destination port, reply code. `unix_time` is the
/// time since the Unix epoch.
///
/// The source IP is written in canonical form (an IPv4-mapped IPv6 address from a dual-stack
/// socket is written as IPv4); the destination exactly as the client sent it.
pub fn access_line(
    unix_time: Duration,
    user: Option<&[u8]>,
    source: SocketAddr,
    target: &TargetAddr,
    code: ReplyCode,
) -> String {
    let mut s = String::with_capacity(96);
    push_time(&mut s, unix_time);
    s.push('\t');
    push_user(&mut s, user);
    let _ = write!(
        s,
        "\tA\t{}\t{}\t",
        source.ip().to_canonical(),
        source.port()
    );
    push_target(&mut s, target);
    let _ = write!(s, "\t{}", code as u8);
    s
}

/// Formats one credentials-log line (no trailing newline): time, user, `P`, protocol,
/// destination, destination port, captured user, captured password.
pub fn credential_line(
    unix_time: Duration,
    user: Option<&[u8]>,
    target: &TargetAddr,
    credential: &Credential,
) -> String {
    let mut s = String::with_capacity(96);
    push_time(&mut s, unix_time);
    s.push('\t');
    push_user(&mut s, user);
    s.push_str("\tP\t");
    s.push_str(credential.protocol.as_str());
    s.push('\t');
    push_target(&mut s, target);
    s.push('\t');
    push_escaped(&mut s, &credential.user);
    s.push('\t');
    push_escaped(&mut s, &credential.password);
    s
}

/// Writes `YYYY-MM-DDTHH:MM:SSZ` (UTC; fractions of a second are dropped).
fn push_time(s: &mut String, since_epoch: Duration) {
    let secs = since_epoch.as_secs();
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days` (eras of 400 years, years starting in March).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so that the leap day is the last day of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn push_user(s: &mut String, user: Option<&[u8]>) {
    match user {
        None => s.push('-'),
        Some(b"-") => s.push_str("\\x2d"),
        Some(u) => push_escaped(s, u),
    }
}

/// Writes the destination host as sent: the IP address, or the escaped name.
fn push_target(s: &mut String, target: &TargetAddr) {
    match target {
        TargetAddr::Ip(a) => {
            let _ = write!(s, "{}", a.ip());
        }
        // Not `TargetAddr`'s Display: it leaves `\` as is, which would make the escaping
        // ambiguous.
        TargetAddr::Domain(name, _) => push_escaped(s, name),
    }
    let _ = write!(s, "\t{}", target.port());
}

/// Appends `bytes` escaped as the module documentation describes.
fn push_escaped(s: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\t' => s.push_str("\\t"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(s, "\\x{b:02x}");
                    }
                }
                c if is_format(c) => {
                    let _ = write!(s, "\\u{{{:04x}}}", u32::from(c));
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
}

/// The code points of general category Cf ("Other, format"), as sorted, disjoint, inclusive
/// ranges. Source: the Unicode Character Database, `extracted/DerivedGeneralCategory.txt`,
/// the lines marked `Cf`; the same 21 ranges (170 code points) in Unicode 15.0, 15.1, 16.0
/// and 17.0. (U+2065 between the two invisible-operator blocks is unassigned.)
const FORMAT_RANGES: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),   // SOFT HYPHEN
    (0x0600, 0x0605),   // ARABIC NUMBER SIGN..ARABIC NUMBER MARK ABOVE
    (0x061C, 0x061C),   // ARABIC LETTER MARK
    (0x06DD, 0x06DD),   // ARABIC END OF AYAH
    (0x070F, 0x070F),   // SYRIAC ABBREVIATION MARK
    (0x0890, 0x0891),   // ARABIC POUND MARK ABOVE..ARABIC PIASTRE MARK ABOVE
    (0x08E2, 0x08E2),   // ARABIC DISPUTED END OF AYAH
    (0x180E, 0x180E),   // MONGOLIAN VOWEL SEPARATOR
    (0x200B, 0x200F),   // ZERO WIDTH SPACE..RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),   // LEFT-TO-RIGHT EMBEDDING..RIGHT-TO-LEFT OVERRIDE
    (0x2060, 0x2064),   // WORD JOINER..INVISIBLE PLUS
    (0x2066, 0x206F),   // LEFT-TO-RIGHT ISOLATE..NOMINAL DIGIT SHAPES
    (0xFEFF, 0xFEFF),   // ZERO WIDTH NO-BREAK SPACE
    (0xFFF9, 0xFFFB),   // INTERLINEAR ANNOTATION ANCHOR..TERMINATOR
    (0x110BD, 0x110BD), // KAITHI NUMBER SIGN
    (0x110CD, 0x110CD), // KAITHI NUMBER SIGN ABOVE
    (0x13430, 0x1343F), // EGYPTIAN HIEROGLYPH VERTICAL JOINER..END WALLED ENCLOSURE
    (0x1BCA0, 0x1BCA3), // SHORTHAND FORMAT LETTER OVERLAP..SHORTHAND FORMAT UP STEP
    (0x1D173, 0x1D17A), // MUSICAL SYMBOL BEGIN BEAM..MUSICAL SYMBOL END PHRASE
    (0xE0001, 0xE0001), // LANGUAGE TAG
    (0xE0020, 0xE007F), // TAG SPACE..CANCEL TAG
];

/// Returns whether `c` is a format character (general category Cf).
fn is_format(c: char) -> bool {
    let c = u32::from(c);
    // Below U+00AD nothing is Cf: the common (ASCII) case costs one comparison.
    c >= 0xAD
        && FORMAT_RANGES
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use bytes::Bytes;

    use super::*;
    use crate::sniff::Protocol;

    const T: Duration = Duration::from_secs(1_592_250_994);

    fn time(secs: u64) -> String {
        let mut s = String::new();
        push_time(&mut s, Duration::from_secs(secs));
        s
    }

    fn esc(b: &[u8]) -> String {
        let mut s = String::new();
        push_escaped(&mut s, b);
        s
    }

    /// Undoes `push_escaped`, to show the escaping loses nothing.
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            match b[i + 1] {
                b'\\' => out.push(b'\\'),
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b'u' => {
                    assert_eq!(b[i + 2], b'{');
                    let end = i + 3 + b[i + 3..].iter().position(|&c| c == b'}').unwrap();
                    let hex = std::str::from_utf8(&b[i + 3..end]).unwrap();
                    assert!(hex.len() >= 4, "{hex}");
                    let c = char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap();
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i = end - 1;
                }
                other => panic!("unexpected escape {other}"),
            }
            i += 2;
        }
        out
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::from(a).into(), port)
    }

    fn cred(protocol: Protocol, user: &[u8], password: &[u8]) -> Credential {
        Credential {
            protocol,
            user: Bytes::copy_from_slice(user),
            password: Bytes::copy_from_slice(password),
        }
    }

    #[test]
    fn man_page_date() {
        assert_eq!(time(1_592_250_994), "2020-06-15T19:56:34Z");
        // Fractions of a second are dropped, not rounded.
        let mut s = String::new();
        push_time(&mut s, Duration::from_millis(1_592_250_994_999));
        assert_eq!(s, "2020-06-15T19:56:34Z");
    }

    #[test]
    fn calendar_edges() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"), // divisible by 400: leap
            (951_868_800, "2000-03-01T00:00:00Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (1_709_251_200, "2024-03-01T00:00:00Z"),
            (1_677_628_800, "2023-03-01T00:00:00Z"), // 2023 not leap: Feb 28 + 1
            (1_704_067_199, "2023-12-31T23:59:59Z"),
            (1_704_067_200, "2024-01-01T00:00:00Z"),
            (4_107_456_000, "2100-02-28T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"), // divisible by 100 only: not leap
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(time(secs), want, "{secs}");
        }
    }

    #[test]
    fn calendar_matches_day_counting() {
        // Walk day by day from 1970 to 2200 and compare with a naive calendar.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for day in 0..84_000u64 {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn huge_time_does_not_panic() {
        let s = time(u64::MAX);
        assert!(s.ends_with('Z'), "{s}");
    }

    #[test]
    fn access_line_man_page_example() {
        let line = access_line(
            T,
            Some(b"juan"),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 54786),
            &TargetAddr::Domain(Bytes::from_static(b"www.itba.edu.ar"), 443),
            ReplyCode::Succeeded,
        );
        assert_eq!(
            line,
            "2020-06-15T19:56:34Z\tjuan\tA\t::1\t54786\twww.itba.edu.ar\t443\t0"
        );
    }

    #[test]
    fn access_line_anonymous_ipv4_failure() {
        let line = access_line(
            T,
            None,
            v4([192, 168, 0, 7], 40000),
            &TargetAddr::Ip(v4([10, 0, 0, 1], 25)),
            ReplyCode::ConnectionRefused,
        );
        assert_eq!(
            line,
            "2020-06-15T19:56:34Z\t-\tA\t192.168.0.7\t40000\t10.0.0.1\t25\t5"
        );
    }

    #[test]
    fn access_line_ipv6_target_and_mapped_source() {
        let mapped = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped();
        let line = access_line(
            T,
            Some(b"ana"),
            SocketAddr::new(mapped.into(), 1),
            &TargetAddr::Ip(SocketAddr::new(
                "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
                8080,
            )),
            ReplyCode::TtlExpired,
        );
        assert_eq!(
            line,
            "2020-06-15T19:56:34Z\tana\tA\t127.0.0.1\t1\t2001:db8::1\t8080\t6"
        );
    }

    #[test]
    fn credential_line_golden() {
        let line = credential_line(
            T,
            Some(b"juan"),
            &TargetAddr::Domain(Bytes::from_static(b"pop.example.org"), 110),
            &cred(Protocol::Pop3, b"alice", b"s3cret pass"),
        );
        assert_eq!(
            line,
            "2020-06-15T19:56:34Z\tjuan\tP\tPOP3\tpop.example.org\t110\talice\ts3cret pass"
        );
        let line = credential_line(
            T,
            None,
            &TargetAddr::Ip(v4([93, 184, 216, 34], 80)),
            &cred(Protocol::Http, b"", b""),
        );
        assert_eq!(
            line,
            "2020-06-15T19:56:34Z\t-\tP\tHTTP\t93.184.216.34\t80\t\t"
        );
    }

    #[test]
    fn every_network_field_is_escaped() {
        let evil = b"a\tb\nc\\d\re";
        let escaped = "a\\tb\\nc\\\\d\\re";
        let target = TargetAddr::Domain(Bytes::from_static(evil), 80);
        let line = credential_line(T, Some(evil), &target, &cred(Protocol::Http, evil, evil));
        let want = format!(
            "2020-06-15T19:56:34Z\t{escaped}\tP\tHTTP\t{escaped}\t80\t{escaped}\t{escaped}"
        );
        assert_eq!(line, want);
        assert_eq!(line.split('\t').count(), 8);
        let line = access_line(
            T,
            Some(evil),
            v4([1, 2, 3, 4], 5),
            &target,
            ReplyCode::NotAllowed,
        );
        assert_eq!(
            line,
            format!("2020-06-15T19:56:34Z\t{escaped}\tA\t1.2.3.4\t5\t{escaped}\t80\t2")
        );
        assert_eq!(line.split('\t').count(), 8);
    }

    #[test]
    fn escapes_controls_and_invalid_utf8() {
        assert_eq!(esc(b"plain user@x.org"), "plain user@x.org");
        assert_eq!(esc(b"\x00\x1b[31m\x7f"), "\\x00\\x1b[31m\\x7f");
        assert_eq!(esc(b"\xff\xfe"), "\\xff\\xfe");
        assert_eq!(esc("jos\u{e9}".as_bytes()), "jos\u{e9}");
        assert_eq!(
            esc("a\u{85}b\u{2028}".as_bytes()),
            "a\\xc2\\x85b\\xe2\\x80\\xa8"
        );
        // A backslash followed by what looks like an escape stays distinguishable.
        assert_eq!(esc(b"\\t"), "\\\\t");
        assert_ne!(esc(b"\\t"), esc(b"\t"));
    }

    #[test]
    fn escaping_round_trips_and_has_no_controls() {
        let mut samples: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b, b'x', b]).collect();
        samples.push(b"\\x41".to_vec());
        samples.push(b"\\u{202e}".to_vec());
        samples.push(["\u{2029}\u{9f}\u{e9}".as_bytes(), &b"\xe2"[..]].concat());
        samples.push(vec![0xe2, 0x80]); // truncated UTF-8
        samples.push(
            "a\u{202e}b\u{2066}\u{200b}\u{feff}\u{ad}\u{e0041}"
                .as_bytes()
                .to_vec(),
        );
        // Every format character, each between two letters.
        for &(lo, hi) in &FORMAT_RANGES {
            for c in (lo..=hi).filter_map(char::from_u32) {
                samples.push(format!("x{c}y").into_bytes());
            }
        }
        for raw in samples {
            let e = esc(&raw);
            assert!(!e.chars().any(|c| c.is_control() || is_format(c)), "{e:?}");
            assert!(!e.contains(['\u{2028}', '\u{2029}']), "{e:?}");
            assert_eq!(unescape(&e), raw, "{e:?}");
        }
    }

    #[test]
    fn escapes_format_characters() {
        for (c, want) in [
            ('\u{202e}', "\\u{202e}"),   // RIGHT-TO-LEFT OVERRIDE
            ('\u{202a}', "\\u{202a}"),   // LEFT-TO-RIGHT EMBEDDING
            ('\u{200b}', "\\u{200b}"),   // ZERO WIDTH SPACE
            ('\u{200e}', "\\u{200e}"),   // LEFT-TO-RIGHT MARK
            ('\u{2066}', "\\u{2066}"),   // LEFT-TO-RIGHT ISOLATE
            ('\u{2069}', "\\u{2069}"),   // POP DIRECTIONAL ISOLATE
            ('\u{feff}', "\\u{feff}"),   // ZERO WIDTH NO-BREAK SPACE (BOM)
            ('\u{ad}', "\\u{00ad}"),     // SOFT HYPHEN: padded to 4 digits
            ('\u{61c}', "\\u{061c}"),    // ARABIC LETTER MARK
            ('\u{e0001}', "\\u{e0001}"), // LANGUAGE TAG
            ('\u{e007f}', "\\u{e007f}"), // CANCEL TAG
        ] {
            assert_eq!(esc(c.to_string().as_bytes()), want, "{:04x}", u32::from(c));
        }
        // The classic: a program named `invoice<RLO>gpj.exe` is shown as `invoiceexe.jpg`.
        assert_eq!(
            esc("invoice\u{202e}gpj.exe".as_bytes()),
            "invoice\\u{202e}gpj.exe"
        );
        // Neighbours that are not Cf stay as they are (visible, or already escaped).
        assert_eq!(
            esc("\u{200a}\u{2010}\u{2065}\u{fffc}".as_bytes()),
            "\u{200a}\u{2010}\u{2065}\u{fffc}"
        );
        // The existing escapes are unchanged: U+2028 is Zl, not Cf.
        assert_eq!(esc("\u{2028}".as_bytes()), "\\xe2\\x80\\xa8");
    }

    #[test]
    fn format_table_matches_known_members() {
        // Sorted, disjoint, non-empty ranges.
        assert!(FORMAT_RANGES.iter().all(|&(lo, hi)| lo <= hi));
        assert!(FORMAT_RANGES.windows(2).all(|w| w[0].1 + 1 < w[1].0));
        // Unicode 15.0 to 17.0 have 170 code points in Cf.
        let count: u32 = FORMAT_RANGES.iter().map(|&(lo, hi)| hi - lo + 1).sum();
        assert_eq!(count, 170);
        // Known members, whole runs of them (from the UCD, independent of the table's shape).
        let members = [
            0xAD..=0xAD,
            0x600..=0x605,
            0x200B..=0x200F,
            0x202A..=0x202E,
            0x2060..=0x2064,
            0x2066..=0x206F,
            0xFEFF..=0xFEFF,
            0xFFF9..=0xFFFB,
            0x13430..=0x1343F,
            0x1D173..=0x1D17A,
            0xE0020..=0xE007F,
        ];
        for c in members.into_iter().flatten() {
            assert!(is_format(char::from_u32(c).unwrap()), "U+{c:04X}");
        }
        // Known non-members around them: letters, spaces, separators, controls, unassigned.
        for c in [
            0x00,
            0x41,
            0x7F,
            0x85,
            0xA0,
            0xAC,
            0xAE,
            0x5FF,
            0x606,
            0x200A,
            0x2010,
            0x2028,
            0x2029,
            0x2065,
            0x2070,
            0xFEFE,
            0xFF00,
            0xFFFC,
            0x1343F + 1,
            0xE0000,
            0xE0002,
            0xE001F,
            0xE0080,
            0x10FFFF,
        ] {
            assert!(!is_format(char::from_u32(c).unwrap()), "U+{c:04X}");
        }
    }

    #[test]
    fn format_characters_are_escaped_in_every_network_field() {
        let evil = "r\u{202e}oot".as_bytes();
        let escaped = "r\\u{202e}oot";
        let target = TargetAddr::Domain(Bytes::copy_from_slice(evil), 443);
        let line = access_line(
            T,
            Some(evil),
            v4([1, 2, 3, 4], 5),
            &target,
            ReplyCode::Succeeded,
        );
        assert_eq!(
            line,
            format!("2020-06-15T19:56:34Z\t{escaped}\tA\t1.2.3.4\t5\t{escaped}\t443\t0")
        );
        let line = credential_line(T, Some(evil), &target, &cred(Protocol::Ftp, evil, evil));
        assert!(!line.chars().any(is_format), "{line:?}");
        assert_eq!(line.matches(escaped).count(), 4);
    }

    #[test]
    fn user_named_dash_is_not_anonymous() {
        let t = TargetAddr::Ip(v4([1, 1, 1, 1], 53));
        let a = access_line(T, Some(b"-"), v4([2, 2, 2, 2], 9), &t, ReplyCode::Succeeded);
        let b = access_line(T, None, v4([2, 2, 2, 2], 9), &t, ReplyCode::Succeeded);
        assert_ne!(a, b);
        assert_eq!(a.split('\t').nth(1), Some("\\x2d"));
    }

    #[test]
    fn all_reply_codes_are_decimal() {
        let t = TargetAddr::Ip(v4([1, 1, 1, 1], 53));
        for b in 0..=8u8 {
            let code = ReplyCode::from_u8(b).unwrap();
            let line = access_line(T, None, v4([2, 2, 2, 2], 9), &t, code);
            assert_eq!(line.rsplit('\t').next(), Some(b.to_string().as_str()));
        }
    }
}
