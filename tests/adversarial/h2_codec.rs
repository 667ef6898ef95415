//! HTTP/2 written by hand, for what no client library sends: HPACK
//! header blocks (literal fields, no table), frames, and one request sent
//! over a fresh connection with the answer read back ([`raw_h2`]).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::driver::*;

/// An HPACK integer with an `n`-bit prefix after `flags` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | u8::try_from(value).unwrap());
        return;
    }
    out.push(flags | u8::try_from(max).unwrap());
    let mut rest = value - max;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap() | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap());
}

/// A header block of literal fields with new names, never indexed and
/// never Huffman-coded, in the order given: pseudo-headers included, byte
/// for byte (RFC 7541 §6.2.3).
fn header_block(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x10);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// An HTTP/2 frame (RFC 9113 §4.1).
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a hand-written HTTP/2 request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Answer {
    /// An answer with this status.
    Status(u16),
    /// No answer: the stream was reset, the connection ended (GOAWAY or
    /// closed) before one.
    Reset,
}

/// The `:status` of a response header block as pingora's HTTP/2 server
/// writes it first: an indexed static entry (RFC 7541 Appendix A) or a
/// literal under the static `:status` name, plain or Huffman-coded.
fn status_of(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    if first & 0x80 != 0 {
        return STATIC
            .get(usize::from(first & 0x7f).checked_sub(8)?)
            .copied();
    }
    let index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&index) {
        return None;
    }
    let length = *block.get(1)?;
    let value = block.get(2..2 + usize::from(length & 0x7f))?;
    let text = if length & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of digits (RFC 7541 Appendix B: `0`–`2`
/// are 5-bit codes 0–2, `3`–`9` are 6-bit codes 0x19–0x1f).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let value = |from: usize, n: usize| bits[from..from + n].iter().fold(0u8, |v, b| v << 1 | b);
    let (mut at, mut out) = (0, String::new());
    while bits.len() - at >= 5 {
        if bits[at..].iter().all(|&b| b == 1) && bits.len() - at < 8 {
            break; // padding
        }
        match value(at, 5) {
            v @ 0..=2 => {
                out.push(char::from(b'0' + v));
                at += 5;
            }
            _ if bits.len() - at >= 6 && (0x19..=0x1f).contains(&value(at, 6)) => {
                out.push(char::from(b'3' + value(at, 6) - 0x19));
                at += 6;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Sends one request as hand-written frames (HEADERS with `fields`, then
/// DATA with `body`) on a new HTTP/2 connection; returns the status of the
/// answer or the reset.
pub async fn raw_h2(
    mut stream: Box<dyn Stream>,
    fields: &[(&str, &[u8])],
    body: &[u8],
) -> H2Answer {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS
    let end_stream = if body.is_empty() { 0x1 } else { 0 };
    out.extend(frame(1, 0x4 | end_stream, 1, &header_block(fields))); // HEADERS
    if !body.is_empty() {
        out.extend(frame(0, 0x1, 1, body)); // DATA, END_STREAM
    }
    if stream.write_all(&out).await.is_err() {
        return H2Answer::Reset;
    }
    let _ = stream.flush().await;
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return H2Answer::Reset;
            }
            let length =
                usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; length];
            if stream.read_exact(&mut payload).await.is_err() {
                return H2Answer::Reset;
            }
            match kind {
                // SETTINGS from the server: acknowledged
                4 if flags & 0x1 == 0 => {
                    let _ = stream.write_all(&frame(4, 0x1, 0, &[])).await;
                    let _ = stream.flush().await;
                }
                1 if id == 1 => {
                    return status_of(&payload).map_or(H2Answer::Reset, H2Answer::Status);
                }
                3 if id == 1 => return H2Answer::Reset, // RST_STREAM
                7 => return H2Answer::Reset,            // GOAWAY
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(H2Answer::Reset)
}

/// Header fields of a hand-written HTTP/2 request, pseudo-headers included.
pub type Fields = Vec<(&'static str, Vec<u8>)>;
