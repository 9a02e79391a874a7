//! The segment files' frames. A segment is a sequence of frames:
//!
//! ```text
//! frame := body_len u32 LE | crc32(body) u32 LE | body
//! body  := 1 | next_id | marks            the head: every stream's mark when the segment began
//!        | 2 | marks | n | (len | AuditEvent protobuf)*n     one batch
//! marks := n | (key_len | key | seq)*n    varints; key = node \0 stream
//! ```
//!
//! A frame that is short or fails its checksum ends the readable part of a segment: after
//! a crash, that is the torn tail of a write nobody was told was durable.

use prost::encoding::{decode_varint, encode_varint};

pub const HEAD: u8 = 1;
pub const BATCH: u8 = 2;
pub const HEADER: usize = 8;
/// No frame is larger (a batch of 64 MiB is far beyond what a node sends).
pub const MAX_BODY: usize = 64 << 20;

/// Appends one frame whose body `fill` writes to `out`.
pub fn put(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    fill(out);
    let body = &out[start + HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn put_marks<'a>(out: &mut Vec<u8>, marks: impl ExactSizeIterator<Item = (&'a str, u64)>) {
    encode_varint(marks.len() as u64, out);
    for (key, seq) in marks {
        encode_varint(key.len() as u64, out);
        out.extend_from_slice(key.as_bytes());
        encode_varint(seq, out);
    }
}

/// The frame at the start of `buf`: its body and total length; `Err` says why there is
/// none (too short, too long, bad checksum).
pub fn next(buf: &[u8]) -> Result<(&[u8], usize), &'static str> {
    if buf.len() < HEADER {
        return Err("a partial frame header");
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > MAX_BODY {
        return Err("a frame length beyond any batch");
    }
    let Some(body) = buf.get(HEADER..HEADER + len) else {
        return Err("a partial frame");
    };
    if crc32fast::hash(body) != crc {
        return Err("a frame whose checksum does not match");
    }
    Ok((body, HEADER + len))
}

/// Reads a varint from the front of `b`.
pub fn varint(b: &mut &[u8]) -> Result<u64, &'static str> {
    decode_varint(b).map_err(|_| "a bad number")
}

pub fn marks(b: &mut &[u8]) -> Result<Vec<(String, u64)>, &'static str> {
    let n = varint(b)? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let len = varint(b)? as usize;
        if b.len() < len {
            return Err("a stream name past the frame's end");
        }
        let key = String::from_utf8_lossy(&b[..len]).into_owned();
        *b = &b[len..];
        out.push((key, varint(b)?));
    }
    Ok(out)
}

/// The events' encoded bytes in a batch body (after its marks).
pub fn events<'a>(b: &mut &'a [u8]) -> Result<Vec<&'a [u8]>, &'static str> {
    let n = varint(b)? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let len = varint(b)? as usize;
        if b.len() < len {
            return Err("an event past the frame's end");
        }
        let (e, rest) = b.split_at(len);
        out.push(e);
        *b = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_any_damage_is_caught() {
        let mut out = Vec::new();
        put(&mut out, |b| {
            b.push(BATCH);
            put_marks(b, [("n\0s", 7u64)].into_iter());
            encode_varint(1, b);
            encode_varint(3, b);
            b.extend_from_slice(b"abc");
        });
        let (body, len) = next(&out).unwrap();
        assert_eq!(len, out.len());
        assert_eq!(body[0], BATCH);
        let mut rest = &body[1..];
        assert_eq!(marks(&mut rest).unwrap(), [("n\0s".to_string(), 7)]);
        assert_eq!(events(&mut rest).unwrap(), [b"abc".as_slice()]);
        for cut in 0..out.len() {
            assert!(
                next(&out[..cut]).is_err(),
                "a frame cut at {cut} is refused"
            );
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(next(&bad).is_err(), "a flipped bit at byte {i} is caught");
        }
    }
}
