//! Message framing (RFC 9112 §6), both ways: how an outgoing body is framed
//! ([`Framing`]: none, a length, or chunks), and how an incoming one is read to its end
//! ([`Decoder`]). The client frames requests and decodes responses; the own server frames
//! responses; one set of rules for both.

use bytes::{Bytes, BytesMut};

use super::wire::{push_decimal, push_hex};

/// How an outgoing body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body, and no header saying so (`GET`, `HEAD` answers, 204, 304).
    None,
    /// Exactly this many bytes, as `Content-Length` says.
    Length(u64),
    /// `Transfer-Encoding: chunked`: a length not known in advance.
    Chunked,
}

/// Why an incoming body cannot be read to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    /// Its framing is broken.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// The connection closed before its end.
    #[error("the body ended before its framing said")]
    Incomplete,
}

/// The last chunk and the end of an empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl Framing {
    /// Appends the header line that declares this framing (none for [`Framing::None`]).
    pub(crate) fn push_header(self, out: &mut Vec<u8>) {
        match self {
            Framing::None => {}
            Framing::Length(n) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    }
}

/// Appends the size line of a chunk of `len` bytes; the chunk's data and its CRLF follow.
pub(crate) fn push_chunk_size(out: &mut Vec<u8>, len: usize) {
    push_hex(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// How an incoming body ends, and where its reading stands: the decoder of a message's
/// framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// After this many more bytes.
    Length(u64),
    /// With the last chunk, and its trailers.
    Chunked(Chunk),
    /// When the server closes the connection.
    Eof,
}

/// Where a chunked body's decoder stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines, up to an empty one.
    Trailers,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// A trailer line after the last chunk (not empty, without its line end).
    Trailer(BytesMut),
    /// The body has ended.
    End,
    /// More bytes must be read first.
    More,
}

impl Decoder {
    /// A chunked body, before its first chunk.
    pub(crate) fn chunked() -> Self {
        Decoder::Chunked(Chunk::Size)
    }

    /// The body has ended.
    pub(crate) fn is_done(&self) -> bool {
        *self == Decoder::Length(0)
    }

    /// Takes what `buf` holds of the body. `eof`: the server has closed its side, so
    /// `buf` is all there will be.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Decoded, Invalid> {
        loop {
            match self {
                Decoder::Length(0) => return Ok(Decoded::End),
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return if eof {
                            Err(Invalid::Incomplete)
                        } else {
                            Ok(Decoded::More)
                        };
                    }
                    let n = take(buf.len(), *left);
                    *left -= n as u64;
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Decoder::Eof => {
                    if !buf.is_empty() {
                        return Ok(Decoded::Data(buf.split().freeze()));
                    }
                    if eof {
                        *self = Decoder::Length(0);
                        return Ok(Decoded::End);
                    }
                    return Ok(Decoded::More);
                }
                Decoder::Chunked(chunk) => match *chunk {
                    Chunk::Size => {
                        let Some(line) = line(buf)? else {
                            return more(eof);
                        };
                        let size = chunk_size(&line)?;
                        *chunk = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return more(eof);
                        }
                        let n = take(buf.len(), left);
                        let left = left - n as u64;
                        *chunk = if left == 0 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left)
                        };
                        return Ok(Decoded::Data(buf.split_to(n).freeze()));
                    }
                    Chunk::DataEnd => {
                        let Some(line) = line(buf)? else {
                            return more(eof);
                        };
                        if !line.is_empty() {
                            return Err(Invalid::Malformed("chunk data longer than its size"));
                        }
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        let Some(line) = line(buf)? else {
                            return more(eof);
                        };
                        if line.is_empty() {
                            *self = Decoder::Length(0);
                        } else {
                            return Ok(Decoded::Trailer(line));
                        }
                    }
                },
            }
        }
    }

    /// Body bytes still to come, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            _ => None,
        }
    }
}

fn more(eof: bool) -> Result<Decoded, Invalid> {
    if eof {
        Err(Invalid::Incomplete)
    } else {
        Ok(Decoded::More)
    }
}

/// `have` capped at `left`.
pub(crate) fn take(have: usize, left: u64) -> usize {
    usize::try_from(left).map_or(have, |left| have.min(left))
}

/// The next chunk-size or trailer line of `buf` without its CRLF, split off it, if `buf`
/// holds it whole. Such a line ends in CRLF and holds no other CR (RFC 9112 §7.1): a
/// bare LF or a stray CR is refused, never read one way here and another by the next hop.
fn line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Invalid> {
    match memchr::memchr(b'\n', buf) {
        Some(at) => {
            if at == 0 || buf[at - 1] != b'\r' {
                return Err(Invalid::Malformed("chunk line not ended by CRLF"));
            }
            if memchr::memchr(b'\r', &buf[..at - 1]).is_some() {
                return Err(Invalid::Malformed("CR inside a chunk line"));
            }
            let mut line = buf.split_to(at + 1);
            line.truncate(at - 1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(Invalid::Malformed("chunk line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line: hex digits first, then optional spaces or tabs and extensions
/// after `;` (RFC 9112 §7.1); nothing before the digits.
fn chunk_size(line: &[u8]) -> Result<u64, Invalid> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(line);
    let mut digits = digits;
    while let [rest @ .., b' ' | b'\t'] = digits {
        digits = rest;
    }
    if digits.is_empty() || digits.len() > 15 {
        return Err(Invalid::Malformed("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(Invalid::Malformed("invalid chunk size")),
        };
        Ok(n * 16 + u64::from(v))
    })
}
