//! Reading a fixed-size header or record: the spool's segments, the store's partitions
//! and their side files.

use std::io::{self, ErrorKind, Read};

/// Reads until `buf` is full or the input ends; how many bytes were read. Unlike
/// `read_exact`, a short file is not an error: the caller tells a truncated record from
/// an empty file by the count.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
