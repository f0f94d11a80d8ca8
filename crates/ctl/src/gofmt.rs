//! The small pieces of Go's formatting and parsing that etcdctl's output and errors are made of
//! (`%q`, `time.Duration`, `strconv` errors, go-humanize sizes), so ours match byte for byte.

use std::time::Duration;

/// A line of Go's standard `log` package as etcdctl prints it (capnslog's format, UTC):
/// `2006-01-02 15:04:05.000000 I | message`.
pub fn go_log(message: &str) -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06} I | {message}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Go's `strconv.Quote` / `%q` of a byte string.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (ch, len) = match std::str::from_utf8(&rest[..rest.len().min(4)]) {
            Ok(s) => match s.chars().next() {
                Some(c) => (Some(c), c.len_utf8()),
                None => (None, 1),
            },
            Err(e) if e.valid_up_to() > 0 => {
                let s = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                let c = s.chars().next();
                (c, c.map(char::len_utf8).unwrap_or(1))
            }
            Err(_) => (None, 1),
        };
        match ch {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\u{7}') => out.push_str("\\a"),
            Some('\u{8}') => out.push_str("\\b"),
            Some('\u{c}') => out.push_str("\\f"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some('\u{b}') => out.push_str("\\v"),
            Some(c) if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            Some(c) if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            Some(c) => out.push(c),
            None => out.push_str(&format!("\\x{:02x}", rest[0])),
        }
        rest = &rest[len..];
    }
    out.push('"');
    out
}

/// Go's `strconv.Unquote` for a double-quoted or back-quoted literal; `None` if malformed.
pub fn unquote(s: &str) -> Option<String> {
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        return Some(s[1..s.len() - 1].to_string());
    }
    if s.len() < 2 || !s.starts_with('"') || !s.ends_with('"') {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => {
                let e = chars.next()?;
                match e {
                    'a' => out.push(7),
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'v' => out.push(11),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    '\'' => out.push(b'\''),
                    'x' => {
                        let h: String = chars.by_ref().take(2).collect();
                        out.push(u8::from_str_radix(&h, 16).ok()?);
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let h: String = chars.by_ref().take(n).collect();
                        let c = char::from_u32(u32::from_str_radix(&h, 16).ok()?)?;
                        out.extend_from_slice(c.to_string().as_bytes());
                    }
                    '0'..='7' => {
                        let mut o = String::from(e);
                        o.extend(chars.by_ref().take(2));
                        out.push(u8::from_str_radix(&o, 8).ok()?);
                    }
                    _ => return None,
                }
            }
            c => out.extend_from_slice(c.to_string().as_bytes()),
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `time.ParseDuration` ("5s", "1.5m", "300ms", "1h2m").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {}", quote(s.as_bytes()));
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {}", quote(s.as_bytes())))?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(u.as_bytes()),
                    quote(s.as_bytes())
                ))
            }
        };
        total += value * unit;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Go's `time.Duration.String()` ("1.234567ms", "2.5s", "1m0.5s").
pub fn duration_string(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    fn frac(value: u128, digits: u32) -> String {
        let scale = 10u128.pow(digits);
        let whole = value / scale;
        let part = value % scale;
        if part == 0 {
            return whole.to_string();
        }
        let mut p = format!("{:0width$}", part, width = digits as usize);
        while p.ends_with('0') {
            p.pop();
        }
        format!("{whole}.{p}")
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 6));
    }
    let secs_total = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = secs_total % 60;
    let secs = frac(s * 1_000_000_000 + sub, 9);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Go's `strconv.ParseInt(s, base, 64)` with its error text.
pub fn parse_int(s: &str, base: u32) -> Result<i64, String> {
    match i64::from_str_radix(s, base) {
        Ok(v) if !s.starts_with('+') || s.len() > 1 => Ok(v),
        Err(e)
            if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) =>
        {
            Err(format!(
                "strconv.ParseInt: parsing {}: value out of range",
                quote(s.as_bytes())
            ))
        }
        _ => Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            quote(s.as_bytes())
        )),
    }
}

/// Go's `strconv.ParseUint(s, base, 64)` with its error text.
pub fn parse_uint(s: &str, base: u32) -> Result<u64, String> {
    if s.starts_with('+') || s.starts_with('-') {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            quote(s.as_bytes())
        ));
    }
    u64::from_str_radix(s, base).map_err(|e| {
        let what = if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!("strconv.ParseUint: parsing {}: {what}", quote(s.as_bytes()))
    })
}

/// go-humanize's `Bytes` (SI units: "25 kB", "1.2 MB").
pub fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(sizes.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", sizes[e])
    } else {
        format!("{} {}", round_half_even(val), sizes[e])
    }
}

/// Go's `%.0f` rounds halves to even.
fn round_half_even(v: f64) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - v.signum()) as i64
    } else {
        r as i64
    }
}

/// etcdctl's `argify`: splits an interactive line into words, honouring "double" (Go escapes)
/// and 'single' quotes.
pub fn argify(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            let end = (i + 1).min(chars.len());
            let lit: String = chars[start..end].iter().collect();
            out.push(unquote(&lit).ok_or_else(|| "invalid syntax".to_string())?);
            i = end;
        } else if c == '\'' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            out.push(chars[start..i.min(chars.len())].iter().collect());
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_go() {
        assert_eq!(quote(b"abc"), "\"abc\"");
        assert_eq!(quote(b"a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(quote(b"\x00\xff"), "\"\\x00\\xff\"");
        assert_eq!(quote("é".as_bytes()), "\"é\"");
    }

    #[test]
    fn durations_as_go() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert!(parse_duration("5").is_err());
        assert_eq!(
            duration_string(Duration::from_nanos(2_518_562)),
            "2.518562ms"
        );
        assert_eq!(duration_string(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_string(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration_string(Duration::from_micros(12)), "12µs");
    }

    #[test]
    fn strconv_errors_as_go() {
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(
            parse_int("zz", 16).unwrap_err(),
            "strconv.ParseInt: parsing \"zz\": invalid syntax"
        );
        assert_eq!(
            parse_int("ffffffffffffffffff", 16).unwrap_err(),
            "strconv.ParseInt: parsing \"ffffffffffffffffff\": value out of range"
        );
    }

    #[test]
    fn sizes_as_humanize() {
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(25 * 1024), "26 kB");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
    }

    #[test]
    fn argify_as_etcdctl() {
        assert_eq!(
            argify(r#"put "a b" 'c d' e"#).unwrap(),
            vec!["put", "a b", "c d", "e"]
        );
        assert_eq!(argify(r#"value("k\"")"#).unwrap(), vec![r#"value("k\"")"#]);
    }
}
