//! The responses the comparison is fed: lines of every kind, joined with CRLF or bare
//! LF ends, bodies framed every way.

use super::*;

pub(super) fn line_ends() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => Just(0u32),
        1 => Just(u32::MAX),
        2 => any::<u32>(),
    ]
}

/// `lines` joined, each ended as `ends` says (an empty line ends a head).
pub(super) fn join(lines: &[&[u8]], ends: u32) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        wire.extend_from_slice(line);
        let lf = i < 32 && ends & (1 << i) != 0;
        wire.extend_from_slice(if lf { b"\n" } else { b"\r\n" });
    }
    wire
}

/// Interim answers, their heads without the empty line that ends them.
const INTERIM: &[&[u8]] = &[
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>",
    b"HTTP/1.1 102 Processing",
    b"HTTP/1.1 199 Odd",
    b"HTTP/1.0 100 Continue",
    b"HTTP/1.1 100 Continue\r\nContent-Length: 5",
    b"HTTP/1.1 100 Continue\r\nContent-Length: x",
    b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked",
    b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: gzip",
    b"HTTP/1.0 100 Continue\r\nTransfer-Encoding: chunked",
];

/// Final status lines a reader may take.
const STATUS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.0 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.0 304 Not Modified",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 600 Odd",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 200 \xffOK",
];

/// Odd final status lines: an upgrade, bad versions, codes and characters.
const ODD_STATUS: &[&[u8]] = &[
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 200\tOK",
    b"HTTP/1.1 200 O\x01K",
    b"HTTP/1.2 200 OK",
    b"HTTP/2 200 OK",
    b"HTTP/01.1 200 OK",
    b"http/1.1 200 OK",
    b" HTTP/1.1 200 OK",
    b"HTTP/1.1  200 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 20x OK",
    b"HTTP/1.1 99 Low",
    b"HTTP/1.1 000 Zero",
];

/// The plain framing header lines, most often met.
const PLAIN_FRAMING: &[&[u8]] = &[b"Transfer-Encoding: chunked", b"Content-Length: 5"];

/// Header lines that frame a body.
const FRAMING: &[&[u8]] = &[
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 5, 5",
    b"Content-Length: 5,5",
    b"Content-Length: 5, 3",
    b"Content-Length: 5,",
    b"Content-Length: ,5",
    b"Content-Length: +5",
    b"Content-Length: -5",
    b"Content-Length: 0x5",
    b"Content-Length: 5.0",
    b"Content-Length: 5 5",
    b"Content-Length:5",
    b"Content-Length:  5  ",
    b"Content-Length:\t5",
    b"Content-Length: 005",
    b"Content-Length: 00000000000000000005",
    b"Content-Length: 18446744073709551615",
    b"Content-Length: 18446744073709551616",
    b"Content-Length: 99999999999999999999",
    b"Content-Length:",
    b"Content-Length : 5",
    b"content-length: 5",
    b"Transfer-Encoding: CHUNKED",
    b"transfer-encoding: chunked",
    b"Transfer-Encoding:  chunked  ",
    b"Transfer-Encoding:\tchunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding: identity",
    b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: chunked,",
    b"Transfer-Encoding: , chunked",
    b"Transfer-Encoding:",
    b"Transfer-Encoding: \"chunked\"",
    b"Transfer-Encoding: xchunked",
    b"Transfer-Encoding: chunked;q=1",
    b"Transfer-Encoding: chunked\xff",
    b"Transfer-Encoding : chunked",
    b"Transfer_Encoding: chunked",
];

/// Other header lines.
const OTHER: &[&[u8]] = &[
    b"Connection: close",
    b"Connection: keep-alive",
    b"X-A: b",
    b"Date: Thu, 01 Jan 1970 00:00:00 GMT",
    b"Retry-After: 1",
    b"Keep-Alive: timeout=5",
    b"Trailer: x-t",
    b"X-Empty:",
    b"X-Obs: a\xffb",
];

/// Malformed header lines: folded, bad names, control characters, no colon.
pub(super) const MALFORMED: &[&[u8]] = &[
    b" folded",
    b"\tfolded",
    b"Bad Name: x",
    b"X-Ctl: a\x01b",
    b"X-Cr: a\rb",
    b"NoColon",
    b": empty-name",
];

/// Whole bodies, chunked or not.
const BODIES: &[&[u8]] = &[
    b"",
    b"hello",
    b"hel",
    b"hello world",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
];

/// A chunked body built chunk by chunk: each part mostly right, sometimes spelt another
/// way or wrong (sizes in every spelling, extensions, line ends, trailers).
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    /// Mostly `right`, else one of `other`.
    fn mostly(right: &'static [u8], other: &[&'static [u8]]) -> BoxedStrategy<&'static [u8]> {
        prop_oneof![6 => Just(right), 1 => prop::sample::select(other.to_vec())].boxed()
    }
    let data = prop::sample::select(vec!["hello", "a", "0123456789abcdef"]);
    // How a chunk's size is written: 0 right, else a spelling of it or a wrong one.
    let size = prop_oneof![4 => Just(0u8), 1 => 1..14u8];
    let ext = || {
        mostly(
            b"",
            &[
                b";a",
                b";a=b",
                b";a=\"x;y\"",
                b" ;a",
                b";",
                b";a\x01",
                b";a\rb",
            ],
        )
    };
    let end = || mostly(b"\r\n", &[b"\n", b"\r\r\n"]);
    let data_end = mostly(b"\r\n", &[b"\n", b"", b"X\r\n"]);
    let last = mostly(b"0", &[b"00", b"0;a", b"000000000000000000", b"0 "]);
    let trailer = prop::sample::select(vec![
        &b"x-t: 1"[..],
        b"x-t:1",
        b"content-length: 5",
        b"bad line",
        b" folded",
        b"x-t: a\x01",
    ]);
    let chunk = (data, size, ext(), end(), data_end);
    (
        prop::collection::vec(chunk, 0..3),
        last,
        ext(),
        end(),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((trailer, end()), 1..3),
        ],
        mostly(b"\r\n", &[b"\n", b""]),
        mostly(b"", &[b"junk"]),
    )
        .prop_map(
            |(chunks, last, last_ext, last_end, trailers, final_end, after)| {
                let mut body = Vec::new();
                for (data, size, ext, end, data_end) in chunks {
                    let n = data.len();
                    let size = match size {
                        0 | 1 => format!("{n:x}"),
                        2 => format!("{n:X}"),
                        3 => format!("{n:06x}"),
                        4 => format!("{n:016x}"),
                        5 => format!("{:x}", n + 1),
                        6 => format!("{:x}", n - 1),
                        7 => format!("0x{n:x}"),
                        8 => format!("+{n:x}"),
                        9 => format!(" {n:x}"),
                        10 => format!("{n:x} \t"),
                        11 => format!("\x0c{n:x}"),
                        12 => String::new(),
                        _ => "fffffffffffffffff".to_owned(),
                    };
                    body.extend_from_slice(size.as_bytes());
                    body.extend_from_slice(ext);
                    body.extend_from_slice(end);
                    body.extend_from_slice(data.as_bytes());
                    body.extend_from_slice(data_end);
                }
                body.extend_from_slice(last);
                body.extend_from_slice(last_ext);
                body.extend_from_slice(last_end);
                for (line, end) in trailers {
                    body.extend_from_slice(line);
                    body.extend_from_slice(end);
                }
                body.extend_from_slice(final_end);
                body.extend_from_slice(after);
                body
            },
        )
}

/// A response: interim answers, a final head, a body, as the answer to a `GET` or a
/// `HEAD`.
pub(super) fn response() -> impl Strategy<Value = (Method, Vec<u8>)> {
    let pick = |list: &[&'static [u8]]| prop::sample::select(list.to_vec());
    let body = prop_oneof![
        1 => pick(BODIES).prop_map(<[u8]>::to_vec),
        2 => chunked_body(),
    ];
    let status = prop_oneof![6 => pick(STATUS), 1 => pick(ODD_STATUS)];
    let other = prop_oneof![6 => pick(OTHER), 1 => pick(MALFORMED)];
    let framing = prop_oneof![2 => pick(PLAIN_FRAMING), 3 => pick(FRAMING)];
    (
        prop_oneof![4 => Just(Method::GET), 1 => Just(Method::HEAD)],
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(pick(INTERIM), 1..3)],
        status,
        prop::collection::vec(other, 0..2),
        prop::collection::vec(framing, 0..3),
        body,
        line_ends(),
    )
        .prop_map(|(method, interim, status, other, framing, body, ends)| {
            let mut lines: Vec<&[u8]> = Vec::new();
            for head in interim {
                lines.extend(head.split(|&b| b == b'\n').map(|l| l.trim_ascii_end()));
                lines.push(b"");
            }
            lines.push(status);
            lines.extend(other);
            lines.extend(framing);
            lines.push(b"");
            let mut wire = join(&lines, ends);
            wire.extend_from_slice(&body);
            (method, wire)
        })
}
