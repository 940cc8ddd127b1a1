//! How a backup's members are compressed: the one place that knows each
//! codec's artifact name, its levels, its encoder and its decoder. The dump
//! engine compresses with it; the readers (restore, verify, list, prune)
//! name the artifact and decompress with it.
//!
//! Every member is compressed whole, as one buffer: a data member is at most
//! a chunk of SQL (about 4 MiB) plus one statement, so a whole-buffer codec
//! costs one chunk of memory per worker and keeps no streaming state.
//!
//! gzip is compressed with libdeflate (the `libdeflater` crate), not with
//! zlib-rs through flate2: on the same 4 MiB members of sysbench SQL its
//! level 1 writes output within 1.01x of `gzip -6` (zlib-rs's level 1 is
//! 1.57x, its level 3, the default before, 1.00x) in half the CPU of
//! zlib-rs's level 3, and deflate is what bounds the dump on two cores
//! (docs/benchmarks.md, "Choosing the codecs and the default level").
//! libdeflate only compresses whole buffers, which is exactly what a gzip
//! member per chunk is. Its C builds with `cc` alone (ISA-L,
//! the other fast deflate, needs `nasm` in every builder, and its fastest
//! levels compress worse than `gzip -6`). Each member is one complete gzip
//! member, so `dump.sql.gz` stays a concatenation of members that `gunzip
//! -c` reads as one stream. Reading stays with flate2 (streaming, with a
//! bound on the output).
//!
//! zstd writes one frame per member, with its content size and checksum, so
//! `zstd -dc dump.sql.zst` reads the file as one stream too.

use std::io::Read;

pub use keeper_crds::instance::Compression;

/// The dump's file name inside a backup folder for `compression`: the one
/// rule for the artifact's name.
pub const fn dump_file(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "dump.sql.gz",
        Compression::Zstd => "dump.sql.zst",
        Compression::None => "dump.sql",
    }
}

/// Every name a dump file may have, for readers that look at folders.
pub fn dump_files() -> impl Iterator<Item = &'static str> {
    Compression::ALL.into_iter().map(dump_file)
}

/// The level used when none is given, for both codecs (measured: see
/// [`keeper_crds::instance::DEFAULT_COMPRESSION_LEVEL`]).
pub const DEFAULT_LEVEL: u32 = keeper_crds::instance::DEFAULT_COMPRESSION_LEVEL;

/// A codec and its level: what every member of one dump is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub compression: Compression,
    pub level: u32,
}

impl Codec {
    /// The agent's default: gzip at [`DEFAULT_LEVEL`].
    pub const DEFAULT: Codec = Codec {
        compression: Compression::Gzip,
        level: DEFAULT_LEVEL,
    };

    /// An encoder for this codec (checks the level).
    pub fn encoder(self) -> Result<Encoder, CompressionError> {
        Encoder::new(self.compression, self.level)
    }
}

/// Why a member cannot be compressed or decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The level is outside the codec's range.
    #[error("{compression} takes levels {min} to {max}, not {level}")]
    Level {
        compression: Compression,
        level: u32,
        min: u32,
        max: u32,
    },
    /// The codec failed (out of memory, or output that does not fit).
    #[error("{compression} failed: {detail}")]
    Codec {
        compression: Compression,
        detail: String,
    },
}

/// Checks `level` against `compression`'s range (`none` ignores it, but an
/// out-of-range one is still refused, so a typo is not silently kept).
pub fn check_level(compression: Compression, level: u32) -> Result<(), CompressionError> {
    let levels = compression.levels();
    if levels.contains(&level) {
        Ok(())
    } else {
        Err(CompressionError::Level {
            compression,
            level,
            min: *levels.start(),
            max: *levels.end(),
        })
    }
}

/// Compresses whole members with one codec at one level.
pub struct Encoder {
    inner: Inner,
    /// Where members are compressed, kept from member to member: a new
    /// buffer of the codec's bound per member was a fresh mapping each time
    /// (larger than glibc's mmap threshold), so every page of every output
    /// faulted in (98k page faults on 4x1M sysbench rows). The member gets
    /// an exact-size copy, which the heap recycles.
    out: Vec<u8>,
}

enum Inner {
    Gzip(Box<libdeflater::Compressor>),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
    None,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Gzip(_) => "Encoder(gzip)",
            Inner::Zstd(_) => "Encoder(zstd)",
            Inner::None => "Encoder(none)",
        })
    }
}

impl Encoder {
    pub fn new(compression: Compression, level: u32) -> Result<Encoder, CompressionError> {
        check_level(compression, level)?;
        let codec = |detail: String| CompressionError::Codec {
            compression,
            detail,
        };
        let inner = match compression {
            Compression::Gzip => {
                // Checked above: 1..=9 converts.
                let lvl = i32::try_from(level)
                    .ok()
                    .and_then(|l| libdeflater::CompressionLvl::new(l).ok())
                    .ok_or_else(|| codec(format!("level {level}")))?;
                Inner::Gzip(Box::new(libdeflater::Compressor::new(lvl)))
            }
            Compression::Zstd => {
                let level = i32::try_from(level).map_err(|e| codec(e.to_string()))?;
                let mut z = zstd::bulk::Compressor::new(level).map_err(|e| codec(e.to_string()))?;
                // The frame says how long it is and carries a checksum of
                // its content, so `zstd -dc` alone checks what it reads
                // (as gunzip checks a gzip member's CRC).
                z.include_contentsize(true)
                    .and_then(|()| z.include_checksum(true))
                    .map_err(|e| codec(e.to_string()))?;
                Inner::Zstd(Box::new(z))
            }
            Compression::None => Inner::None,
        };
        Ok(Encoder {
            inner,
            out: Vec::new(),
        })
    }

    /// Whether members are written as they are (`none`): a caller that owns
    /// the text can then hand it over instead of having it copied.
    pub fn is_identity(&self) -> bool {
        matches!(self.inner, Inner::None)
    }

    /// One complete member (a gzip member, a zstd frame, or the text as it
    /// is) of exactly `data`, allocated to its size.
    pub fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
        match &mut self.inner {
            Inner::Gzip(c) => {
                let bound = c.gzip_compress_bound(data.len());
                if self.out.len() < bound {
                    // Zeroed memory straight from the allocator: its pages
                    // are only touched as the codec writes them.
                    self.out = vec![0; bound];
                }
                let n =
                    c.gzip_compress(data, &mut self.out)
                        .map_err(|e| CompressionError::Codec {
                            compression: Compression::Gzip,
                            detail: format!("{e:?}"),
                        })?;
                Ok(self.out[..n].to_vec())
            }
            Inner::Zstd(z) => {
                self.out.clear();
                self.out
                    .reserve(zstd::zstd_safe::compress_bound(data.len()));
                let n = z.compress_to_buffer(data, &mut self.out).map_err(|e| {
                    CompressionError::Codec {
                        compression: Compression::Zstd,
                        detail: e.to_string(),
                    }
                })?;
                Ok(self.out[..n].to_vec())
            }
            Inner::None => Ok(data.to_vec()),
        }
    }
}

/// Why a member's bytes do not give back its text.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("it does not decompress: {0}")]
    Corrupt(String),
    #[error("it decompresses to more bytes, the manifest says {expected}")]
    Longer { expected: u64 },
    #[error("it decompresses to {found} bytes, the manifest says {expected}")]
    Length { found: u64, expected: u64 },
    #[error("{0} bytes follow its compressed stream inside its range")]
    Trailing(usize),
}

/// Decompresses exactly one member of `compression` that the manifest says
/// holds `expected` bytes of SQL. Memory is bounded by `expected` (plus one
/// byte, to notice a member longer than it claims), never by what the bytes
/// say of themselves.
pub fn decompress(
    compression: Compression,
    compressed: &[u8],
    expected: u64,
) -> Result<Vec<u8>, DecompressError> {
    let capacity = usize::try_from(expected.min(64 << 20)).unwrap_or(0);
    let out = match compression {
        Compression::Gzip => {
            let mut out = Vec::with_capacity(capacity);
            let mut decoder = flate2::bufread::GzDecoder::new(compressed);
            (&mut decoder)
                .take(expected.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
            check_length(&out, expected)?;
            // The bufread decoder stops exactly at the end of one gzip
            // member: trailing bytes mean the range holds more than it.
            let rest = decoder.into_inner();
            if !rest.is_empty() {
                return Err(DecompressError::Trailing(rest.len()));
            }
            out
        }
        Compression::Zstd => {
            // Exactly one frame: a second one in the range would be read
            // as more SQL than the member holds.
            let frame = zstd::zstd_safe::find_frame_compressed_size(compressed)
                .map_err(|code| DecompressError::Corrupt(zstd_error(code)))?;
            if frame < compressed.len() {
                return Err(DecompressError::Trailing(compressed.len() - frame));
            }
            let mut out = Vec::with_capacity(capacity);
            let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|e| DecompressError::Corrupt(e.to_string()))?
                .single_frame();
            (&mut decoder)
                .take(expected.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
            check_length(&out, expected)?;
            out
        }
        Compression::None => {
            check_length(compressed, expected)?;
            compressed.to_vec()
        }
    };
    Ok(out)
}

fn check_length(out: &[u8], expected: u64) -> Result<(), DecompressError> {
    let found = out.len() as u64;
    if found > expected {
        Err(DecompressError::Longer { expected })
    } else if found < expected {
        Err(DecompressError::Length { found, expected })
    } else {
        Ok(())
    }
}

fn zstd_error(code: usize) -> String {
    zstd::zstd_safe::get_error_name(code).to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SQL: &[u8] = b"INSERT INTO `t` (`a`) VALUES (1),(2),(3),(1),(2),(3);\n";

    #[test]
    fn every_codec_round_trips_one_member_with_its_own_name() {
        for c in Compression::ALL {
            let mut enc = Encoder::new(c, DEFAULT_LEVEL).unwrap();
            let bytes = enc.compress(SQL).unwrap();
            assert_eq!(decompress(c, &bytes, SQL.len() as u64).unwrap(), SQL, "{c}");
        }
        let names: Vec<_> = dump_files().collect();
        assert_eq!(names, ["dump.sql.gz", "dump.sql.zst", "dump.sql"]);
    }

    #[test]
    fn members_concatenate_into_what_the_tools_read_as_one_stream() {
        // gunzip and zstd -dc read concatenated members/frames as one
        // stream: so do the Rust readers of each format.
        let mut gz = Encoder::new(Compression::Gzip, 3).unwrap();
        let mut file = gz.compress(b"a;\n").unwrap();
        file.extend(gz.compress(b"b;\n").unwrap());
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&file[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a;\nb;\n");

        let mut zs = Encoder::new(Compression::Zstd, 3).unwrap();
        let mut file = zs.compress(b"a;\n").unwrap();
        file.extend(zs.compress(b"b;\n").unwrap());
        assert_eq!(zstd::decode_all(&file[..]).unwrap(), b"a;\nb;\n");
    }

    #[test]
    fn levels_are_checked_per_codec() {
        assert!(Encoder::new(Compression::Gzip, 9).is_ok());
        assert_eq!(
            Encoder::new(Compression::Gzip, 10).unwrap_err().to_string(),
            "gzip takes levels 1 to 9, not 10"
        );
        assert!(Encoder::new(Compression::Zstd, 19).is_ok());
        assert!(Encoder::new(Compression::Zstd, 20).is_err());
        assert!(Encoder::new(Compression::Zstd, 0).is_err());
        assert!(Encoder::new(Compression::None, 3).is_ok());
    }

    #[test]
    fn a_member_that_is_longer_shorter_or_followed_by_more_is_refused() {
        for c in Compression::ALL {
            let mut enc = Encoder::new(c, DEFAULT_LEVEL).unwrap();
            let bytes = enc.compress(SQL).unwrap();
            let n = SQL.len() as u64;
            assert!(
                matches!(
                    decompress(c, &bytes, n - 1),
                    Err(DecompressError::Longer { .. })
                ),
                "{c}"
            );
            assert!(
                matches!(
                    decompress(c, &bytes, n + 1),
                    Err(DecompressError::Length { .. })
                ),
                "{c}"
            );
            if c != Compression::None {
                let mut twice = bytes.clone();
                twice.extend_from_slice(&bytes);
                assert!(
                    matches!(decompress(c, &twice, n), Err(DecompressError::Trailing(_))),
                    "{c}"
                );
                let mut bad = bytes.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0xff;
                assert!(decompress(c, &bad, n).is_err(), "{c}");
            }
        }
    }
}
