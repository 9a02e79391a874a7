//! Timestamps as `palisadectl` prints them and the control plane's audit export writes
//! them: RFC 3339, UTC, milliseconds. Here, below both, so the two never differ.

/// RFC 3339 UTC time with milliseconds, from Unix nanoseconds.
pub fn rfc3339(unix_ns: i64) -> String {
    let (y, m, d, sod, ms) = civil(unix_ns);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// [`rfc3339`], appended to `out` (no allocation for years 0 to 9999).
pub fn write_rfc3339(out: &mut Vec<u8>, unix_ns: i64) {
    let (y, m, d, sod, ms) = civil(unix_ns);
    if !(0..=9999).contains(&y) {
        out.extend_from_slice(rfc3339(unix_ns).as_bytes());
        return;
    }
    let mut put = |n: i64, width: usize, then: u8| {
        let mut digits = [b'0'; 4];
        let mut n = n;
        for i in (0..width).rev() {
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&digits[..width]);
        out.push(then);
    };
    put(y, 4, b'-');
    put(m, 2, b'-');
    put(d, 2, b'T');
    put(sod / 3600, 2, b':');
    put(sod % 3600 / 60, 2, b':');
    put(sod % 60, 2, b'.');
    put(ms, 3, b'Z');
}

/// (year, month, day, second of the day, millisecond) of Unix nanoseconds, UTC.
fn civil(unix_ns: i64) -> (i64, i64, i64, i64, i64) {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let ms = unix_ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod, ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_339_141_123_000_000),
            "2026-11-22T09:19:01.123Z"
        );
    }

    #[test]
    fn the_writer_writes_what_the_formatter_formats() {
        let mut x: u64 = 99;
        // i64 nanoseconds span the years 1677 to 2262.
        let mut cases = vec![0, -1, 999_999, i64::MIN, i64::MAX];
        for _ in 0..10_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            cases.push(x as i64);
        }
        for ns in cases {
            let mut out = Vec::new();
            write_rfc3339(&mut out, ns);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339(ns), "{ns}");
        }
    }
}
