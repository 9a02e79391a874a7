//! Converting script values (strings, integers, arrays of them) into Rust values, reporting
//! every bad element instead of stopping at the first.

use super::Collector;
use crate::diagnostic::Span;
use rhai::{Array, Dynamic};

/// A value or an array of values, as a list.
pub(crate) fn items(v: Dynamic) -> Vec<Dynamic> {
    if v.is_array() {
        v.cast::<Array>()
    } else {
        vec![v]
    }
}

/// A string or an array of strings. Non-strings are reported and skipped; `Err` when any was
/// bad.
pub(crate) fn strings(
    c: &mut Collector,
    span: &Span,
    v: Dynamic,
    what: &str,
    example: &str,
) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    let mut bad = false;
    for item in items(v) {
        match item.into_immutable_string() {
            Ok(s) => out.push(s.to_string()),
            Err(ty) => {
                bad = true;
                c.error(
                    span.clone(),
                    format!("expected {what} as a string, found a {ty}"),
                    format!("write it as a string: {example}"),
                );
            }
        }
    }
    if bad { Err(()) } else { Ok(out) }
}

/// An integer or an array of integers, each within `range`.
pub(crate) fn ints(
    c: &mut Collector,
    span: &Span,
    v: Dynamic,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Vec<i64>, ()> {
    let mut out = Vec::new();
    let mut bad = false;
    for item in items(v) {
        match item.as_int() {
            Ok(n) if range.contains(&n) => out.push(n),
            Ok(n) => {
                bad = true;
                c.error(
                    span.clone(),
                    format!("{what} {n} is out of range"),
                    format!("{what} must be {}..={}", range.start(), range.end()),
                );
            }
            Err(ty) => {
                bad = true;
                c.error(
                    span.clone(),
                    format!("expected {what} as an integer, found a {ty}"),
                    format!("write a number, e.g. {}", range.start()),
                );
            }
        }
    }
    if bad { Err(()) } else { Ok(out) }
}

/// A uid or a list of uids.
pub(crate) fn uids(c: &mut Collector, span: &Span, v: Dynamic) -> Result<Vec<u32>, ()> {
    ints(c, span, v, "uid", 0..=i64::from(u32::MAX - 1))
        .map(|v| v.into_iter().map(|n| n as u32).collect())
}

/// Checks and normalises an absolute path. Returns the path without a trailing `/` (except
/// for `/` itself) and whether it had one (the path must then be a directory).
pub(crate) fn abs_path(
    c: &mut Collector,
    span: &Span,
    text: &str,
    what: &str,
) -> Result<(String, bool), ()> {
    if text.is_empty() {
        c.error(
            span.clone(),
            format!("{what} is empty"),
            "write an absolute path such as \"/etc/shadow\"",
        );
        return Err(());
    }
    if !text.starts_with('/') {
        c.error(
            span.clone(),
            format!("{what} {text:?} is a relative path"),
            format!("paths must be absolute: did you mean \"/{text}\"?"),
        );
        return Err(());
    }
    if text.len() > 4095 {
        c.error(
            span.clone(),
            format!("{what} is longer than PATH_MAX (4095 bytes)"),
            "use a shorter path",
        );
        return Err(());
    }
    if text.contains('\0') {
        c.error(
            span.clone(),
            format!("{what} {text:?} contains a NUL byte"),
            "paths cannot contain NUL",
        );
        return Err(());
    }
    let directory = text.len() > 1 && text.ends_with('/');
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" => {}
            "." | ".." => {
                c.error(
                    span.clone(),
                    format!("{what} {text:?} contains {part:?}"),
                    "write the path without '.' or '..' components: the kernel checks the resolved path",
                );
                return Err(());
            }
            p => parts.push(p),
        }
    }
    Ok((format!("/{}", parts.join("/")), directory))
}

/// Like [`abs_path`] for paths that name a binary (not a directory).
pub(crate) fn binary_path(
    c: &mut Collector,
    span: &Span,
    text: &str,
    what: &str,
) -> Result<String, ()> {
    let (p, dir) = abs_path(c, span, text, what)?;
    if dir || p == "/" {
        c.error(
            span.clone(),
            format!("{what} {text:?} names a directory"),
            "name the binary itself, e.g. \"/usr/bin/curl\"",
        );
        return Err(());
    }
    Ok(p)
}

/// A list of binary paths.
pub(crate) fn binaries(
    c: &mut Collector,
    span: &Span,
    v: Dynamic,
    what: &str,
) -> Result<Vec<String>, ()> {
    let list = strings(c, span, v, what, "\"/usr/bin/curl\"")?;
    let mut out = Vec::new();
    let mut bad = false;
    for s in list {
        match binary_path(c, span, &s, what) {
            Ok(p) => out.push(p),
            Err(()) => bad = true,
        }
    }
    if bad { Err(()) } else { Ok(out) }
}
