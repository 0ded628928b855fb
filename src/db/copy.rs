//! Tuples out of the data of `COPY … TO STDOUT (FORMAT binary)`: a header,
//! then per tuple a 16-bit field count and each field as a 32-bit length
//! (-1 for NULL) and that many bytes, each in the type's binary form (what a
//! bound query returns too), then a count of -1. PostgreSQL sends a tuple
//! per CopyData message; a tuple split across messages is read all the same.

use bytes::{Bytes, BytesMut};

/// The format's signature, the header's first 11 bytes.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The data is not binary COPY data of the expected columns.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed binary COPY data: {0}")]
pub struct FormatError(&'static str);

impl FormatError {
    /// The data ended without its trailer.
    pub const TRUNCATED: FormatError = FormatError("the data ended without its trailer");
}

/// What [`Tuples::advance`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A tuple: its fields are [`Tuples::field`].
    Tuple,
    /// The data fed so far ends inside the header or a tuple, or after the
    /// trailer.
    NeedMore,
}

/// Reads tuples of `columns` fields out of the data fed, message by message.
#[derive(Debug)]
pub struct Tuples {
    columns: usize,
    header_read: bool,
    ended: bool,
    data: Bytes,
    at: usize,
    /// The current tuple's fields: where each lies in `data`, `None` for NULL.
    fields: Vec<Option<(usize, usize)>>,
}

impl Tuples {
    /// A reader of tuples of `columns` fields.
    pub fn new(columns: usize) -> Tuples {
        Tuples {
            columns,
            header_read: false,
            ended: false,
            data: Bytes::new(),
            at: 0,
            fields: Vec::with_capacity(columns),
        }
    }

    /// Adds the bytes of the next message, after what is left of earlier ones.
    pub fn feed(&mut self, data: Bytes) {
        if self.at >= self.data.len() {
            self.data = data;
        } else {
            let rest = &self.data[self.at..];
            let mut joined = BytesMut::with_capacity(rest.len() + data.len());
            joined.extend_from_slice(rest);
            joined.extend_from_slice(&data);
            self.data = joined.freeze();
        }
        self.at = 0;
    }

    /// Whether the trailer was read (the data is complete).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads the next tuple out of the data fed so far.
    pub fn advance(&mut self) -> Result<Next, FormatError> {
        let data = &self.data[..];
        let mut at = self.at;
        if !self.header_read {
            let Some(header) = data.get(at..at + 19) else {
                return Ok(Next::NeedMore);
            };
            if &header[..11] != SIGNATURE {
                return Err(FormatError("no binary COPY signature"));
            }
            let extension = u32::from_be_bytes([header[15], header[16], header[17], header[18]]);
            let Some(end) = (at + 19).checked_add(extension as usize) else {
                return Err(FormatError("header extension too long"));
            };
            if data.len() < end {
                return Ok(Next::NeedMore);
            }
            at = end;
            self.at = at;
            self.header_read = true;
        }
        let Some(count) = data.get(at..at + 2) else {
            return Ok(Next::NeedMore);
        };
        if self.ended {
            return Err(FormatError("data after the trailer"));
        }
        let count = i16::from_be_bytes([count[0], count[1]]);
        at += 2;
        if count == -1 {
            self.ended = true;
            self.at = at;
            if at < data.len() {
                return Err(FormatError("data after the trailer"));
            }
            return Ok(Next::NeedMore);
        }
        if usize::try_from(count).ok() != Some(self.columns) {
            return Err(FormatError("a tuple has another number of fields"));
        }
        self.fields.clear();
        for _ in 0..self.columns {
            let Some(length) = data.get(at..at + 4) else {
                return Ok(Next::NeedMore);
            };
            let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
            at += 4;
            if length == -1 {
                self.fields.push(None);
                continue;
            }
            let Ok(length) = usize::try_from(length) else {
                return Err(FormatError("a negative field length"));
            };
            if data.len() - at < length {
                return Ok(Next::NeedMore);
            }
            self.fields.push(Some((at, at + length)));
            at += length;
        }
        self.at = at;
        Ok(Next::Tuple)
    }

    /// Field `i` of the tuple [`Tuples::advance`] read last; `None` for NULL.
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        let (start, end) = self.fields.get(i).copied().flatten()?;
        Some(&self.data[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(extension: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend((extension.len() as u32).to_be_bytes());
        out.extend(extension);
        out
    }

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = (fields.len() as i16).to_be_bytes().to_vec();
        for field in fields {
            match field {
                None => out.extend((-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend((bytes.len() as i32).to_be_bytes());
                    out.extend(*bytes);
                }
            }
        }
        out
    }

    const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

    fn read_all(tuples: &mut Tuples) -> Result<Vec<Vec<Option<Vec<u8>>>>, FormatError> {
        let mut out = Vec::new();
        while tuples.advance()? == Next::Tuple {
            out.push(
                (0..tuples.columns)
                    .map(|i| tuples.field(i).map(<[u8]>::to_vec))
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn reads_tuples_split_anywhere() {
        let mut data = header(b"ext");
        data.extend(tuple(&[Some(b"ab"), None]));
        data.extend(tuple(&[Some(b""), Some(b"xyz")]));
        data.extend(TRAILER);
        let expected = vec![
            vec![Some(b"ab".to_vec()), None],
            vec![Some(Vec::new()), Some(b"xyz".to_vec())],
        ];
        // Every way of cutting the data in two messages (and in one).
        for cut in 0..=data.len() {
            let mut tuples = Tuples::new(2);
            tuples.feed(Bytes::copy_from_slice(&data[..cut]));
            let mut got = read_all(&mut tuples).unwrap();
            tuples.feed(Bytes::copy_from_slice(&data[cut..]));
            got.extend(read_all(&mut tuples).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
            assert!(tuples.ended(), "cut at {cut}");
        }
        // Byte by byte.
        let mut tuples = Tuples::new(2);
        let mut got = Vec::new();
        for byte in &data {
            tuples.feed(Bytes::copy_from_slice(&[*byte]));
            got.extend(read_all(&mut tuples).unwrap());
        }
        assert_eq!(got, expected);
        assert!(tuples.ended());
    }

    #[test]
    fn an_incomplete_stream_has_not_ended() {
        let mut data = header(b"");
        data.extend(tuple(&[Some(b"a")]));
        let mut tuples = Tuples::new(1);
        tuples.feed(Bytes::from(data));
        assert_eq!(read_all(&mut tuples).unwrap().len(), 1);
        assert!(!tuples.ended());
    }

    #[test]
    fn malformed_data_is_an_error() {
        let check = |data: Vec<u8>, columns: usize, error: &str| {
            let mut tuples = Tuples::new(columns);
            tuples.feed(Bytes::from(data));
            assert_eq!(read_all(&mut tuples).unwrap_err().0, error);
        };
        let mut bad = header(b"");
        bad[0] = b'X';
        check(bad, 1, "no binary COPY signature");
        let mut other = header(b"");
        other.extend(tuple(&[Some(b"a"), Some(b"b")]));
        check(other, 1, "a tuple has another number of fields");
        let mut negative = header(b"");
        negative.extend(1i16.to_be_bytes());
        negative.extend((-2i32).to_be_bytes());
        check(negative, 1, "a negative field length");
        let mut after = header(b"");
        after.extend(TRAILER);
        after.extend(tuple(&[Some(b"a")]));
        check(after, 1, "data after the trailer");
    }
}
