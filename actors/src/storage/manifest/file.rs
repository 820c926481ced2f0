//! The manifest file's record format: encoding one record, finding the valid records of a
//! file (a torn last record tolerated, any other damage named with its offset), and reading a
//! file into its folded state. See `manifest.rs` for the layout.

use super::*;

/// Encodes one record placed at `offset`.
pub(super) fn encode(e: &Entry, offset: u64) -> Vec<u8> {
    let payload = rmp_serde::to_vec_named(e).expect("manifest entries serialize");
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&MAGIC);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&v[..14]);
    crc.update(&payload);
    v.extend_from_slice(&crc.finalize().to_le_bytes());
    v.extend_from_slice(&payload);
    v
}

/// Why no valid manifest record starts at an offset (or the file as a whole is wrong).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordDefect {
    /// Fewer bytes than a header.
    #[error("incomplete header")]
    IncompleteHeader,
    /// The header does not start with the record magic.
    #[error("no record magic")]
    NoMagic,
    /// The header names another offset (a record copied or shifted).
    #[error("record says it is at byte {0}")]
    WrongOffset(u64),
    /// A length above [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes")]
    TooLarge(usize),
    /// Fewer bytes than the header announces.
    #[error("incomplete record")]
    IncompleteRecord,
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload does not decode.
    #[error("undecodable record: {0}")]
    Undecodable(String),
    /// The file does not start with a base record.
    #[error("the first record is not a base record")]
    NoBase,
    /// A base record of a format this build does not read.
    #[error("unknown manifest format {0}")]
    UnknownFormat(u8),
    /// No record at all.
    #[error("empty manifest")]
    Empty,
}

/// The record at `at`, if a complete and valid one starts there.
fn record_at(bytes: &[u8], at: usize) -> Result<(Entry, usize), RecordDefect> {
    let h = bytes
        .get(at..at + HEADER_LEN)
        .ok_or(RecordDefect::IncompleteHeader)?;
    if h[..2] != MAGIC {
        return Err(RecordDefect::NoMagic);
    }
    let len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
    let offset = u64::from_le_bytes(h[6..14].try_into().expect("8 bytes"));
    if offset != at as u64 {
        return Err(RecordDefect::WrongOffset(offset));
    }
    if len > MAX_RECORD_BYTES {
        return Err(RecordDefect::TooLarge(len));
    }
    let payload = bytes
        .get(at + HEADER_LEN..at + HEADER_LEN + len)
        .ok_or(RecordDefect::IncompleteRecord)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..14]);
    crc.update(payload);
    if crc.finalize() != u32::from_le_bytes([h[14], h[15], h[16], h[17]]) {
        return Err(RecordDefect::Checksum);
    }
    let e: Entry =
        rmp_serde::from_slice(payload).map_err(|e| RecordDefect::Undecodable(e.to_string()))?;
    Ok((e, at + HEADER_LEN + len))
}

/// Parses a whole file: the entries, and the length of its valid prefix (a torn last record is
/// left out). Any other damage is an error naming its offset.
pub fn parse(bytes: &[u8]) -> Result<(Vec<Entry>, u64), (u64, RecordDefect)> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok((e, next)) => {
                if entries.is_empty() && !matches!(e, Entry::Base { .. }) {
                    return Err((0, RecordDefect::NoBase));
                }
                if let Entry::Base { format, .. } = &e {
                    if *format != MANIFEST_FORMAT {
                        return Err((at as u64, RecordDefect::UnknownFormat(*format)));
                    }
                }
                entries.push(e);
                at = next;
            }
            Err(reason) => {
                // A torn last record has no valid record after it; anything else is damage.
                let later = (at + 1..bytes.len().saturating_sub(HEADER_LEN - 1))
                    .any(|p| bytes[p..].starts_with(&MAGIC) && record_at(bytes, p).is_ok());
                if later || entries.is_empty() {
                    return Err((at as u64, reason));
                }
                return Ok((entries, at as u64));
            }
        }
    }
    if entries.is_empty() {
        return Err((0, RecordDefect::Empty));
    }
    Ok((entries, at as u64))
}

/// Reads and folds the manifest file at `path`: the state, the id, and the valid length.
pub fn read(path: &Path) -> Result<(ManifestState, String, u64), ManifestError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let (entries, valid) = parse(&bytes).map_err(|(offset, reason)| ManifestError::Damaged {
        path: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    })?;
    let mut state = ManifestState::default();
    let mut id = String::new();
    for e in &entries {
        if let Entry::Base { id: i, .. } = e {
            id = i.clone();
        }
        state.apply(e);
    }
    Ok((state, id, valid))
}
