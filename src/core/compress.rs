//! Compressing streamed bodies: gzip (flate2 on the zlib-rs backend) and
//! zstd, at configured levels, a chunk at a time on the thread that encodes
//! the rows. Every chunk is flushed (a deflate sync flush, a zstd block end)
//! so a client receives each chunk as soon as it is encoded, whatever the
//! compressor buffers.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;

/// A content coding the service compresses streams with itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

impl Coding {
    /// The coding named by [`crate::core::negotiate::fastest_coding`], if
    /// the service compresses streams with it (see [`STREAMED_UNCOMPRESSED`]
    /// for `br`; other codings are left to the HTTP layer).
    pub fn from_name(name: &str) -> Option<Coding> {
        match name {
            "gzip" => Some(Coding::Gzip),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    /// The `Content-Encoding` value.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }
}

/// Default gzip level (`ACCTSTREAM_GZIP_LEVEL`), chosen with
/// `bench/stream.sh` on the week of events (CSV, 2 cores, compressed beside
/// the encoder): level 2 streams at 0.62–0.70× COPY compressing 4.1:1. Level 1
/// (zlib-rs's quick strategy, static Huffman codes) is faster but
/// compresses only 2.7:1: it spends 8 bits on each hex digit of a pseudonym.
/// Clients that accept zstd get zstd, which is faster and smaller.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;
/// Default zstd level (`ACCTSTREAM_ZSTD_LEVEL`), chosen the same way:
/// level 1 streams at 0.84× COPY compressing 5.4:1 (level 2: 0.77×, 6.3:1;
/// level 3: 0.68×, 6.6:1).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// Codings a streamed body is never compressed with: it goes uncompressed
/// to a client whose fastest acceptable coding is one of these. brotli at
/// its fastest qualities (0 and 1, 1 MiB window) streamed the week of events
/// at 0.67–0.71× `COPY` (the compressor alone: 211–267 MB/s on one core),
/// below the 0.8× a download must keep; a client offering brotli offers gzip
/// or zstd too (browsers, curl `--compressed`), and one offering brotli
/// alone gets the rows at full speed rather than at brotli's.
pub const STREAMED_UNCOMPRESSED: [&str; 1] = ["br"];

/// The levels of each coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    /// 1 (fastest) to 9 (smallest).
    pub gzip: u32,
    /// 1 (fastest) to 19 (smallest).
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            gzip: DEFAULT_GZIP_LEVEL,
            zstd: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// A level out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} must be an integer from {min} to {max}, got {value:?}")]
pub struct BadLevel {
    /// The setting.
    pub name: &'static str,
    /// Its smallest value.
    pub min: i32,
    /// Its largest value.
    pub max: i32,
    /// What was given.
    pub value: String,
}

impl Levels {
    /// Parses `ACCTSTREAM_GZIP_LEVEL` (1–9) and `ACCTSTREAM_ZSTD_LEVEL` (1–19).
    pub fn parse(gzip: &str, zstd: &str) -> Result<Levels, BadLevel> {
        let level = |name: &'static str, value: &str, min: i32, max: i32| {
            value
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| BadLevel {
                    name,
                    min,
                    max,
                    value: value.to_owned(),
                })
        };
        Ok(Levels {
            gzip: level("ACCTSTREAM_GZIP_LEVEL", gzip, 1, 9)? as u32,
            zstd: level("ACCTSTREAM_ZSTD_LEVEL", zstd, 1, 19)?,
        })
    }
}

enum Inner {
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// The compressor of one body.
pub struct Compressor {
    inner: Inner,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
    }
}

impl Compressor {
    /// A compressor of `coding` at its level of `levels`.
    pub fn new(coding: Coding, levels: Levels) -> std::io::Result<Compressor> {
        let buffer = Vec::with_capacity(64 * 1024);
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(GzEncoder::new(
                buffer,
                flate2::Compression::new(levels.gzip),
            )),
            Coding::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(buffer, levels.zstd)?),
        };
        Ok(Compressor { inner })
    }

    /// Compresses one chunk and flushes: the bytes to send now.
    pub fn push(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        match &mut self.inner {
            Inner::Gzip(encoder) => {
                encoder.write_all(chunk)?;
                encoder.flush()?;
                Ok(Bytes::from(std::mem::take(encoder.get_mut())))
            }
            Inner::Zstd(encoder) => {
                encoder.write_all(chunk)?;
                encoder.flush()?;
                Ok(Bytes::from(std::mem::take(encoder.get_mut())))
            }
        }
    }

    /// Ends the compressed stream: its last bytes.
    pub fn finish(self) -> std::io::Result<Bytes> {
        match self.inner {
            Inner::Gzip(encoder) => Ok(Bytes::from(encoder.finish()?)),
            Inner::Zstd(encoder) => Ok(Bytes::from(encoder.finish()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn body() -> Vec<u8> {
        (0..20_000)
            .map(|i| {
                format!(
                    "2026-10-08T00:00:{:02},PASSWORD,password.1,app-{},user{}\r\n",
                    i % 60,
                    i % 50,
                    i % 997
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn chunks_decode_to_the_body_for_each_coding() {
        let body = body();
        for coding in [Coding::Gzip, Coding::Zstd] {
            let mut c = Compressor::new(coding, Levels::default()).unwrap();
            let mut wire = Vec::new();
            for chunk in body.chunks(32 * 1024) {
                let out = c.push(chunk).unwrap();
                assert!(!out.is_empty(), "{coding:?}: every chunk is sent at once");
                wire.extend_from_slice(&out);
            }
            wire.extend_from_slice(&c.finish().unwrap());
            let mut decoded = Vec::new();
            match coding {
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&wire[..])
                        .read_to_end(&mut decoded)
                        .unwrap();
                }
                Coding::Zstd => {
                    decoded = zstd::stream::decode_all(&wire[..]).unwrap();
                }
            }
            assert_eq!(decoded, body, "{coding:?}");
            assert!(wire.len() * 3 < body.len(), "{coding:?}: at least 3:1");
        }
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(Levels::parse("2", "1").unwrap(), Levels::default());
        assert_eq!(
            Levels::parse("9", "19").unwrap(),
            Levels { gzip: 9, zstd: 19 }
        );
        assert!(Levels::parse("0", "1").is_err());
        assert!(Levels::parse("1", "20").is_err());
        assert_eq!(
            Levels::parse("x", "1").unwrap_err().name,
            "ACCTSTREAM_GZIP_LEVEL"
        );
        assert_eq!(Coding::from_name("br"), None);
        assert_eq!(Coding::from_name("deflate"), None);
        assert_eq!(Coding::from_name("zstd").map(Coding::name), Some("zstd"));
    }
}
