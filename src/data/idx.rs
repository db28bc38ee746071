//! IDX files (the MNIST family's format), gzipped or raw.

use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// One IDX array of unsigned bytes.
#[derive(Debug, Clone)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Row-major values.
    pub values: Vec<u8>,
}

/// Reads an IDX file of u8 values (type code 0x08) and `rank` dimensions, decompressing it
/// when it is gzipped.
pub fn read_idx(path: &Path, rank: usize) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::Data(format!(
                    "{}: corrupt or truncated gzip data ({e}); reinstall the data set \
                 (apt-get install --reinstall dataset-fashion-mnist) or point --data elsewhere",
                    path.display()
                ))
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, rank).map_err(|why| {
        Error::Data(format!(
            "{}: not a valid IDX file: {why}; reinstall the data set \
             (apt-get install --reinstall dataset-fashion-mnist) or point --data elsewhere",
            path.display()
        ))
    })
}

/// What an IDX file of `rank` dimensions holds, for messages.
fn described(rank: usize) -> String {
    match rank {
        1 => "a label file".into(),
        3 => "an image file".into(),
        _ => format!("a rank-{rank} array"),
    }
}

/// Parses the bytes of an uncompressed IDX file of `rank` dimensions.
pub fn parse_idx(bytes: &[u8], expected_rank: usize) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("{} bytes is too short for a header", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x}{:02x}{:02x}{:02x} (expected 0000080N)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x} is not unsigned bytes (0x08)",
            bytes[2]
        ));
    }
    let rank = bytes[3] as usize;
    if rank != expected_rank {
        return Err(format!(
            "magic number 000008{rank:02x} is that of {} (rank {rank}); {} has 000008{:02x}",
            described(rank),
            described(expected_rank),
            expected_rank
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err("truncated header".into());
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let at = 4 + 4 * i;
            u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("dimensions overflow")?;
    let body = &bytes[header..];
    if body.len() < count {
        return Err(format!(
            "truncated: header promises {count} values {dims:?}, file holds {}",
            body.len()
        ));
    }
    if body.len() > count {
        return Err(format!(
            "{} trailing bytes after the {count} values the header promises",
            body.len() - count
        ));
    }
    Ok(IdxArray {
        dims,
        values: on_huge_pages(body),
    })
}

/// A copy of `bytes` in memory backed by 2 MiB pages where the kernel allows it (Linux's
/// transparent huge pages on request, `madvise`). Why: batches read images at random from all
/// 47 MB of a training set, so with 4 KiB pages nearly every image costs a TLB miss, dear in a
/// virtual machine; a measured half of the time spent gathering batches.
pub(super) fn on_huge_pages(bytes: &[u8]) -> Vec<u8> {
    let mut values = Vec::with_capacity(bytes.len());
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 1 << 21;
        let start = values.as_mut_ptr() as usize;
        let (first, end) = (start.next_multiple_of(HUGE), start + bytes.len());
        if end >= first + HUGE {
            // SAFETY: the range lies inside the allocation just made and not yet touched;
            // the advice changes how its pages are backed, never their contents. Refused
            // advice (huge pages off) leaves ordinary pages, so the result is ignored.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    (end - first) / HUGE * HUGE,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    values.extend_from_slice(bytes);
    values
}

/// Encodes an array as an uncompressed IDX file (used by tests and tools that write data sets).
pub fn encode_idx(dims: &[usize], values: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(values);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let bytes = encode_idx(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let array = parse_idx(&bytes, 3).unwrap();
        assert_eq!(array.dims, vec![2, 2, 2]);
        assert_eq!(array.values, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(
            parse_idx(&bytes[..bytes.len() - 1], 3)
                .unwrap_err()
                .contains("truncated")
        );
        let mut bad = bytes.clone();
        bad[0] = 7;
        assert!(parse_idx(&bad, 3).unwrap_err().contains("magic"));
        assert!(parse_idx(&bytes[..6], 3).unwrap_err().contains("header"));
        // An image file whose header says "labels" is named as such, not as trailing bytes.
        let mut relabelled = bytes.clone();
        relabelled[3] = 1;
        let why = parse_idx(&relabelled, 3).unwrap_err();
        assert!(
            why.contains("00000801 is that of a label file")
                && why.contains("an image file has 00000803"),
            "{why}"
        );
    }
}
