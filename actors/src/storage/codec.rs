//! The record codec: every op and snapshot value is a versioned record with a 6-byte header,
//! `[format u8][kind u8][4 format-specific bytes]`, then its body: plaintext
//! (`FORMAT_PLAIN`, the 4 bytes a CRC-32 of the MessagePack body, little-endian) or sealed
//! (`FORMAT_SEALED`, the 4 bytes the data key's generation, big-endian; then SM4-GCM
//! `nonce ‖ ciphertext ‖ tag` authenticated together with the header and the record's key).
//!
//! Invariants: one header parser (`parse_header`) checks both formats (format, length,
//! kind), so the two decoders cannot drift apart; an encrypted store accepts sealed records
//! only; every failure is `StoreError::Corrupt` naming the document and revision.

use super::*;

/// Record format of a plaintext, checksummed record.
pub(super) const FORMAT_PLAIN: u8 = 1;
/// Record format of a record sealed with SM4-GCM.
pub(super) const FORMAT_SEALED: u8 = 2;

/// Checks a record's header against the format and kind expected, and that the record holds
/// at least `min_len` bytes; returns the header's 4 format-specific bytes.
fn parse_header(
    doc: &str,
    rev: u64,
    value: &[u8],
    format: u8,
    kind: u8,
    min_len: usize,
) -> Result<[u8; 4], StoreError> {
    if let Some(&f) = value.first().filter(|&&f| f != format) {
        let why = if format == FORMAT_SEALED {
            format!("record format {f} in an encrypted store (only sealed records are accepted)")
        } else {
            format!("unknown record format {f}")
        };
        return Err(corrupt(doc, rev, why));
    }
    if value.len() < min_len.max(HEADER_LEN) {
        return Err(corrupt(
            doc,
            rev,
            format!("truncated record of {} bytes", value.len()),
        ));
    }
    if value[1] != kind {
        return Err(corrupt(
            doc,
            rev,
            format!("record kind {} where {kind} was expected", value[1]),
        ));
    }
    Ok([value[2], value[3], value[4], value[5]])
}

/// Encodes a record: header, then the MessagePack body.
pub fn encode_record<T: Serialize>(kind: u8, body: &T) -> Result<Vec<u8>, StoreError> {
    let body = rmp_serde::to_vec(body).map_err(backend)?;
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.push(FORMAT_PLAIN);
    v.push(kind);
    v.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    v.extend_from_slice(&body);
    Ok(v)
}

/// Decodes and verifies a record stored under revision `rev` of `doc`.
pub(super) fn decode_record<T: for<'de> Deserialize<'de>>(
    doc: &str,
    rev: u64,
    kind: u8,
    value: &[u8],
) -> Result<T, StoreError> {
    let crc = u32::from_le_bytes(parse_header(
        doc,
        rev,
        value,
        FORMAT_PLAIN,
        kind,
        HEADER_LEN,
    )?);
    let body = &value[HEADER_LEN..];
    if crc32fast::hash(body) != crc {
        return Err(corrupt(doc, rev, "checksum mismatch"));
    }
    rmp_serde::from_slice(body).map_err(|e| corrupt(doc, rev, format!("undecodable record: {e}")))
}

impl<K: Kv> RecordStore<K> {
    /// Encodes a record for `key` of `doc`: plaintext with a checksum, or sealed under the
    /// document's data key in an encrypted store.
    pub(super) fn encode<T: Serialize>(
        &self,
        doc: &str,
        key: &[u8],
        kind: u8,
        body: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(keys) = &self.keys else {
            return encode_record(kind, body);
        };
        let plain = zeroize::Zeroizing::new(rmp_serde::to_vec(body).map_err(backend)?);
        let dk = keys.for_writing(&self.kv, doc)?;
        let mut v = Vec::with_capacity(HEADER_LEN + plain.len() + SEAL_OVERHEAD);
        v.push(FORMAT_SEALED);
        v.push(kind);
        v.extend_from_slice(&dk.generation.to_be_bytes());
        let aad = [v.as_slice(), key].concat();
        let sealed = dk
            .key
            .seal(&aad, &plain)
            .map_err(|source| StoreError::Crypto {
                doc: doc.to_string(),
                source,
            })?;
        v.extend_from_slice(&sealed);
        Ok(v)
    }

    /// Decodes and verifies (or opens) a record stored under `key`, revision `rev` of `doc`.
    pub(super) fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        doc: &str,
        rev: u64,
        key: &[u8],
        kind: u8,
        value: &[u8],
    ) -> Result<T, StoreError> {
        let Some(keys) = &self.keys else {
            return decode_record(doc, rev, kind, value);
        };
        let min_len = HEADER_LEN + SEAL_OVERHEAD;
        let generation =
            u32::from_be_bytes(parse_header(doc, rev, value, FORMAT_SEALED, kind, min_len)?);
        let dk = keys
            .for_reading(&self.kv, doc, generation)
            .map_err(|e| corrupt(doc, rev, e.to_string()))?;
        let (header, sealed) = value.split_at(HEADER_LEN);
        let aad = [header, key].concat();
        let plain = zeroize::Zeroizing::new(
            dk.key
                .open("record", &aad, sealed)
                .map_err(|e| corrupt(doc, rev, e.to_string()))?,
        );
        rmp_serde::from_slice(&plain)
            .map_err(|e| corrupt(doc, rev, format!("undecodable record: {e}")))
    }

    /// Decodes the record under `key` (a log record if `log`, else a snapshot) of kind `kind`,
    /// checking the revision it says it holds (`rev_of`) against its key's.
    pub(super) fn decode_keyed<T: for<'de> Deserialize<'de>>(
        &self,
        doc: &str,
        key: &[u8],
        value: &[u8],
        kind: u8,
        log: bool,
        rev_of: impl Fn(&T) -> u64,
    ) -> Result<T, StoreError> {
        let what = if log { "record" } else { "snapshot" };
        let rev = key_rev(doc, key).ok_or_else(|| {
            corrupt(
                doc,
                0,
                if log {
                    "malformed op key"
                } else {
                    "malformed snapshot key"
                },
            )
        })?;
        let r: T = self.decode(doc, rev, key, kind, value)?;
        if rev_of(&r) != rev {
            return Err(corrupt(
                doc,
                rev,
                format!("{what} says revision {}", rev_of(&r)),
            ));
        }
        Ok(r)
    }

    pub(super) fn decode_op(
        &self,
        doc: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<LogRecord, StoreError> {
        self.decode_keyed(doc, key, value, KIND_OP, true, |r: &LogRecord| r.rev)
    }

    pub(super) fn decode_snapshot(
        &self,
        doc: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<DocumentSnapshot, StoreError> {
        self.decode_keyed(
            doc,
            key,
            value,
            KIND_SNAPSHOT,
            false,
            |s: &DocumentSnapshot| s.rev,
        )
    }
}

/// Checks that `ops` continue `after` without gaps.
pub(super) fn check_contiguous(doc: &str, after: u64, ops: &[LogRecord]) -> Result<(), StoreError> {
    for (i, r) in ops.iter().enumerate() {
        let want = after + 1 + i as u64;
        if r.rev != want {
            return Err(corrupt(
                doc,
                want,
                format!("missing op (next stored is {})", r.rev),
            ));
        }
    }
    Ok(())
}
