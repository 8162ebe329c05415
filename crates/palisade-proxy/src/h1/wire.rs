//! Writing HTTP/1 message text into a buffer: header lines and the numbers in them.
//! Shared by the upstream client (request heads), the own server (response heads and
//! chunk sizes) and the proxy's own answers (their header lines, encoded once).

/// Appends `name: value` and CRLF.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    push_digits(out, n, 10);
}

/// Appends `n` in lower-case hexadecimal (a chunk size).
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    push_digits(out, n, 16);
}

fn push_digits(out: &mut Vec<u8>, mut n: u64, base: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % base` is below 16.
        digits[at] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_lines_are_written_as_http_wants_them() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 255, 4096, u64::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            out.clear();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
        out.clear();
        push_header(&mut out, b"x-a", b"1");
        assert_eq!(out, b"x-a: 1\r\n");
    }
}
