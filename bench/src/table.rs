//! The comparison table: one column per server, each number followed by its ratio to the
//! baseline server's.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::Results;

struct Row {
    label: String,
    values: Vec<Option<f64>>,
    prec: usize,
}

fn get(v: &Option<Value>, key: &str) -> Option<f64> {
    v.as_ref()?.get(key)?.as_f64().filter(|x| x.is_finite())
}

/// (request bytes, response bytes) of an rr result.
fn rr_key(v: &Value) -> Option<(u64, u64)> {
    Some((
        v.get("request_bytes")?.as_u64()?,
        v.get("response_bytes")?.as_u64()?,
    ))
}

/// `1K`, `256K`, `3M`, or bytes.
fn size(b: u64) -> String {
    match b {
        0 => "0".into(),
        b if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

pub(crate) fn print(files: &[PathBuf], baseline: Option<&str>) -> Result<(), String> {
    let mut all = Vec::new();
    for f in files {
        let text = fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let r: Results =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        all.push(r);
    }
    if all.is_empty() {
        return Err("no result files".into());
    }
    let base = match baseline {
        Some(b) => all
            .iter()
            .position(|r| r.name == b)
            .ok_or_else(|| format!("no results named {b}"))?,
        None => 0,
    };

    let mut rows = Vec::new();
    let mut row = |label: &str, prec: usize, f: &dyn Fn(&Results) -> Option<f64>| {
        let values: Vec<_> = all.iter().map(f).collect();
        if values.iter().any(Option::is_some) {
            rows.push(Row {
                label: label.to_string(),
                values,
                prec,
            });
        }
    };
    row("handshakes/s", 0, &|r| get(&r.handshake, "per_sec"));
    row("handshake p50 (µs)", 0, &|r| get(&r.handshake, "p50_us"));
    row("handshake p99 (µs)", 0, &|r| get(&r.handshake, "p99_us"));
    row("handshake errors", 0, &|r| get(&r.handshake, "errors"));
    row("server CPU per handshake (µs)", 1, &|r| {
        get(&r.handshake, "server_cpu_us_per_handshake")
    });
    row("handshake CPU in user space (%)", 1, &|r| {
        get(&r.handshake, "server_user_share").map(|v| v * 100.0)
    });
    row("relay direct (MiB/s)", 0, &|r| {
        get(&r.relay, "direct_mib_per_sec")
    });
    row("relay proxied (MiB/s)", 0, &|r| {
        get(&r.relay, "proxied_mib_per_sec")
    });
    row("relay proxied/direct", 3, &|r| get(&r.relay, "ratio"));
    let idle_sizes: Vec<u64> = {
        let mut v: Vec<u64> = all
            .iter()
            .flat_map(|r| r.idle.iter().filter_map(|i| i.get("connections")?.as_u64()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for n in idle_sizes {
        let find = move |r: &Results, key: &str| -> Option<f64> {
            let i = r
                .idle
                .iter()
                .find(|i| i.get("connections").and_then(Value::as_u64) == Some(n))?;
            i.get(key)?.as_f64()
        };
        row(&format!("idle {n}: established"), 0, &|r| {
            find(r, "established")
        });
        row(&format!("idle {n}: RSS per conn (KiB)"), 2, &|r| {
            find(r, "rss_per_connection_kib")
        });
        row(&format!("idle {n}: PSS per conn (KiB)"), 2, &|r| {
            find(r, "pss_per_connection_kib")
        });
    }
    let rr_sizes: Vec<(u64, u64)> = {
        let mut v: Vec<(u64, u64)> = all
            .iter()
            .flat_map(|r| r.rr.iter().filter_map(rr_key))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for key in rr_sizes {
        let find = move |r: &Results, field: &str| -> Option<f64> {
            let i = r.rr.iter().find(|i| rr_key(i) == Some(key))?;
            i.get(field)?.as_f64().filter(|x| x.is_finite())
        };
        let name = format!("rr {}/{}", size(key.0), size(key.1));
        row(&format!("{name}: exchanges/s"), 0, &|r| find(r, "per_sec"));
        row(&format!("{name}: p50 (µs)"), 0, &|r| find(r, "p50_us"));
        row(&format!("{name}: p99 (µs)"), 0, &|r| find(r, "p99_us"));
        row(&format!("{name}: errors"), 0, &|r| find(r, "errors"));
        row(&format!("{name}: server CPU/exchange (µs)"), 1, &|r| {
            find(r, "server_cpu_us_per_exchange")
        });
    }
    let arm = |r: &Results, arm: &str, key: &str| -> Option<f64> {
        r.udp.as_ref()?.get(arm)?.get(key)?.as_f64()
    };
    row("udp direct (datagrams/s)", 0, &|r| {
        arm(r, "direct", "datagrams_per_sec")
    });
    row("udp proxied (datagrams/s)", 0, &|r| {
        arm(r, "proxied", "datagrams_per_sec")
    });
    row("udp proxied (MiB/s)", 1, &|r| {
        arm(r, "proxied", "mib_per_sec")
    });
    row("udp proxied/direct", 3, &|r| get(&r.udp, "ratio"));
    row("udp proxied lost", 0, &|r| arm(r, "proxied", "lost"));
    row("udp server CPU/datagram (µs)", 2, &|r| {
        get(&r.udp, "server_cpu_us_per_datagram")
    });
    row("admin req/s (pipelined)", 0, &|r| get(&r.admin, "per_sec"));

    let label_w = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.values
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    None => "-".to_string(),
                    Some(v) => {
                        let abs = format!("{v:.p$}", p = row.prec);
                        match row.values[base] {
                            Some(b) if i != base && b != 0.0 => {
                                format!("{abs} ({:.2}x)", v / b)
                            }
                            _ => abs,
                        }
                    }
                })
                .collect()
        })
        .collect();
    let col_w: Vec<usize> = (0..all.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain(std::iter::once(all[i].name.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut header = format!("| {:label_w$} |", "metric");
    for (i, r) in all.iter().enumerate() {
        header += &format!(" {:>w$} |", r.name, w = col_w[i]);
    }
    println!("{header}");
    let mut sep = format!("|{}|", "-".repeat(label_w + 2));
    for w in &col_w {
        sep += &format!("{}:|", "-".repeat(w + 1));
    }
    println!("{sep}");
    for (row, c) in rows.iter().zip(&cells) {
        let mut line = format!("| {:label_w$} |", row.label);
        for (i, cell) in c.iter().enumerate() {
            line += &format!(" {:>w$} |", cell, w = col_w[i]);
        }
        println!("{line}");
    }
    println!("(ratios in parentheses are relative to {})", all[base].name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rr_keys() {
        assert_eq!(size(1024), "1K");
        assert_eq!(size(256 << 10), "256K");
        assert_eq!(size(3 << 20), "3M");
        assert_eq!(size(1000), "1000");
        let v = serde_json::json!({"request_bytes": 1024, "response_bytes": 16384});
        assert_eq!(rr_key(&v), Some((1024, 16384)));
        assert_eq!(rr_key(&serde_json::json!({"request_bytes": 1})), None);
    }
}
