//! The audit log: an append-only chain of events in the store's `audit` tree, each record
//! carrying the SM3 hash of the one before it, with SM2-signed checkpoints of the chain head.
//!
//! Record: key = sequence number (u64 BE, from 1); value = `[format u8 = 1][MessagePack of
//! AuditRecord, named fields]`. `prev` is the SM3 hash of the previous record's whole value
//! (32 zero bytes for record 1). A checkpoint record signs, with the server's SM2 key,
//! `CHECKPOINT_DOMAIN ‖ seq (u64 BE) ‖ time_ms (u64 BE) ‖ prev`: it vouches for every record
//! before it and for itself.
//!
//! Invariants:
//! - Only the store's writer appends (one at a time), so sequence numbers are consecutive and
//!   every `prev` links to the record before it.
//! - Records never hold document text: an op is recorded by revision, author and the SM3 hash
//!   of its encoding.
//! - `verify` names the first bad position: a record whose bytes changed (the next link or a
//!   checkpoint no longer matches), a missing record, records out of order, or a checkpoint
//!   whose signature does not verify. A chain cut short is found by what is kept outside the
//!   store: the anchored checkpoints ([`crate::security::anchor`]) and the audit length in the manifest
//!   ([`crate::storage::manifest`]); the server refuses to continue a chain shorter than either.
//! - Sequence numbers never repeat: after an operator accepts a loss (`coedit recover
//!   --accept-loss`), a [`AuditEvent::Gap`] record at `lost_to + 1` links to the last surviving
//!   record and names the lost range; `verify` accepts exactly that jump and reports it.

use serde::{Deserialize, Serialize};

use crate::security::anchor::{Anchor, ANCHOR_FORMAT};
use crate::security::crypto::{sm3, Sm2Signer, Sm2Verifier, DIGEST_LEN};
use crate::storage::{Store, StoreError};

/// Version of the audit record format.
pub const AUDIT_FORMAT: u8 = 1;
/// Domain separation for checkpoint signatures.
const CHECKPOINT_DOMAIN: &[u8] = b"coedit/audit-checkpoint/v1\0";

/// One audited event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The server started.
    ServerStart {
        /// Server version.
        version: String,
        /// Whether records are encrypted at rest.
        encrypted: bool,
        /// Authentication mode.
        auth: String,
    },
    /// The server stopped cleanly.
    ServerStop,
    /// A WebSocket session said hello and was authenticated.
    SessionOpen {
        /// Session id.
        session: u64,
        /// Client id.
        client: String,
        /// Token subject.
        subject: Option<String>,
        /// Token tenant.
        tenant: Option<String>,
        /// The peer's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// A session presented a new token (`auth`) and goes on with it.
    TokenRefresh {
        /// Session id.
        session: u64,
        /// Token subject.
        subject: String,
        /// The new token's expiry, Unix seconds.
        exp: u64,
    },
    /// A session ended.
    SessionClose {
        /// Session id.
        session: u64,
    },
    /// A session joined a document.
    Join {
        /// Session id.
        session: u64,
        /// Document (internal id, tenant-qualified).
        doc: String,
        /// The role the token grants on it.
        role: Option<String>,
    },
    /// A session left a document.
    Leave {
        /// Session id.
        session: u64,
        /// Document.
        doc: String,
    },
    /// An op was applied.
    Op {
        /// Document.
        doc: String,
        /// Revision it produced.
        rev: u64,
        /// Author's client id.
        client: String,
        /// Author's sequence number.
        seq: u64,
        /// SM3 of the op's MessagePack encoding (hex).
        op_sm3: String,
        /// The author's token subject (authentication on).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// Cluster mode: another node ordered `doc` first; the ops this node applied to it from
    /// revision `from_rev` on (recorded above as `op`) were refused by the store and are not
    /// in the document's log. This node stopped ordering the document.
    Fenced {
        /// Document.
        doc: String,
        /// This node's first revision the store refused.
        from_rev: u64,
    },
    /// A change event's delivery to a sink ended (`delivered`, `dead`), or a sink was
    /// `disabled` (it answered 410) or `enabled` again.
    Delivery {
        /// The sink's name.
        sink: String,
        /// The event's id (empty for enabling).
        event: String,
        /// What happened.
        outcome: String,
        /// Attempts made.
        attempts: u32,
        /// The sink's last HTTP status, if it answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// A request was refused by authentication or authorization.
    Refused {
        /// Session id (WebSocket), if any.
        session: Option<u64>,
        /// Token subject, if the token was valid.
        subject: Option<String>,
        /// What was attempted (`hello`, `join`, `op`, `presence`, `GET /api/docs/…`…).
        action: String,
        /// Document, if any.
        doc: Option<String>,
        /// Error code sent.
        code: u16,
        /// Why (clipped: see [`crate::security::refusals::clip`]).
        reason: String,
        /// The peer's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// Refusals that were counted, not recorded one by one (see [`crate::security::refusals`]).
    RefusalsCounted {
        /// Start of the counting window, ms since the Unix epoch.
        from_ms: u64,
        /// End of the window.
        to_ms: u64,
        /// Refusals counted and not recorded individually.
        counted: u64,
        /// The busiest sources.
        sources: Vec<SourceCount>,
        /// Counted refusals of sources not listed.
        other_sources: u64,
    },
    /// An administrative action.
    Admin {
        /// Token subject, or `cli` for offline tools.
        subject: String,
        /// What was done.
        action: String,
        /// On what.
        target: String,
        /// Result.
        outcome: String,
    },
    /// Records `lost_from..=lost_to` were lost (the store's files were damaged) and the
    /// operator accepted it; this record takes sequence number `lost_to + 1` and links to
    /// record `lost_from - 1`.
    Gap {
        /// First lost record.
        lost_from: u64,
        /// Last lost record.
        lost_to: u64,
        /// Who accepted it and why.
        reason: String,
    },
    /// A signed checkpoint of the chain.
    Checkpoint {
        /// SM3 fingerprint of the signing public key (hex).
        signer: String,
        /// SM2 signature `r ‖ s` (hex).
        sig: String,
    },
}

/// Refusals of one source in a counting window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    /// The peer's address.
    pub source: String,
    /// Refusals in the window.
    pub refused: u64,
    /// Of which recorded individually.
    pub recorded: u64,
}

/// One record of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// SM3 of the previous record's value (hex).
    pub prev: String,
    /// What happened.
    pub event: AuditEvent,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn checkpoint_message(seq: u64, time_ms: u64, prev: &str) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    m.extend_from_slice(prev.as_bytes());
    m
}

fn encode(record: &AuditRecord) -> Result<Vec<u8>, StoreError> {
    let mut v = vec![AUDIT_FORMAT];
    rmp_serde::encode::write_named(&mut v, record)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(v)
}

/// Why a stored audit value is not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditDecodeError {
    /// The value is empty.
    #[error("empty record")]
    Empty,
    /// The format byte is not one this build reads.
    #[error("unknown audit format {0}")]
    UnknownFormat(u8),
    /// The MessagePack body does not decode.
    #[error("{0}")]
    Body(String),
}

/// Decodes a record value.
pub fn decode(value: &[u8]) -> Result<AuditRecord, AuditDecodeError> {
    match value.split_first() {
        Some((&AUDIT_FORMAT, body)) => {
            rmp_serde::from_slice(body).map_err(|e| AuditDecodeError::Body(e.to_string()))
        }
        Some((f, _)) => Err(AuditDecodeError::UnknownFormat(*f)),
        None => Err(AuditDecodeError::Empty),
    }
}

/// The writer's end of the chain: the next sequence number and the hash it links to.
#[derive(Debug)]
pub struct AuditChain {
    next_seq: u64,
    prev: [u8; DIGEST_LEN],
}

impl AuditChain {
    /// Continues the chain stored in `store` (or starts one).
    pub fn resume(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(match store.audit_last()? {
            Some((seq, value)) => AuditChain {
                next_seq: seq + 1,
                prev: sm3(&value),
            },
            None => AuditChain {
                next_seq: 1,
                prev: [0; DIGEST_LEN],
            },
        })
    }

    /// The last sequence number written (the chain's length, lost records included).
    pub fn len(&self) -> u64 {
        self.next_seq - 1
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 1
    }

    /// Appends an event (buffered: durable with the store's next flush). Returns its sequence
    /// number.
    pub fn append(&mut self, store: &dyn Store, event: AuditEvent) -> Result<u64, StoreError> {
        let record = AuditRecord {
            seq: self.next_seq,
            time_ms: now_ms(),
            prev: hex::encode(self.prev),
            event,
        };
        self.write(store, &record)
    }

    /// Appends a checkpoint signed by `signer`; returns its anchor (to be written outside the
    /// store once the checkpoint is durable).
    pub fn checkpoint(
        &mut self,
        store: &dyn Store,
        signer: &Sm2Signer,
    ) -> Result<Anchor, StoreError> {
        let (seq, time_ms, prev) = (self.next_seq, now_ms(), hex::encode(self.prev));
        let sig = hex::encode(signer.sign(&checkpoint_message(seq, time_ms, &prev)));
        let fingerprint = hex::encode(signer.verifier().fingerprint());
        let record = AuditRecord {
            seq,
            time_ms,
            prev,
            event: AuditEvent::Checkpoint {
                signer: fingerprint.clone(),
                sig: sig.clone(),
            },
        };
        self.write(store, &record)?;
        Ok(Anchor {
            v: ANCHOR_FORMAT,
            seq,
            time_ms,
            hash: hex::encode(self.prev),
            signer: fingerprint,
            sig,
        })
    }

    /// Continues the chain stored in `store`, refusing a chain shorter than `expected` (the
    /// length the manifest or the anchors say was durable): its records were lost.
    pub fn resume_checked(store: &dyn Store, expected: u64) -> Result<Self, StoreError> {
        let chain = Self::resume(store)?;
        if chain.len() < expected {
            return Err(StoreError::AuditLost {
                have: chain.len(),
                expected,
            });
        }
        Ok(chain)
    }

    /// Records that records `len() + 1 ..= lost_to` were lost and the loss accepted: writes a
    /// [`AuditEvent::Gap`] record at `lost_to + 1` (buffered). Does nothing if nothing is lost.
    pub fn accept_loss(
        &mut self,
        store: &dyn Store,
        lost_to: u64,
        reason: &str,
    ) -> Result<Option<u64>, StoreError> {
        if lost_to < self.next_seq {
            return Ok(None);
        }
        let record = AuditRecord {
            seq: lost_to + 1,
            time_ms: now_ms(),
            prev: hex::encode(self.prev),
            event: AuditEvent::Gap {
                lost_from: self.next_seq,
                lost_to,
                reason: reason.to_string(),
            },
        };
        self.next_seq = lost_to + 1;
        self.write(store, &record).map(Some)
    }

    fn write(&mut self, store: &dyn Store, record: &AuditRecord) -> Result<u64, StoreError> {
        let value = encode(record)?;
        store.audit_put(record.seq, &value)?;
        self.prev = sm3(&value);
        self.next_seq += 1;
        Ok(record.seq)
    }
}

/// What a successful verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// The last sequence number (records held plus records declared lost).
    pub records: u64,
    /// Checkpoint records.
    pub checkpoints: u64,
    /// Checkpoints whose signature was verified (0 without a public key).
    pub verified_checkpoints: u64,
    /// Sequence number of the last checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Records after the last checkpoint (protected by the hash chain and the manifest only).
    pub unsigned_tail: u64,
    /// Ranges of records lost and accepted by an operator (`Gap` records).
    pub gaps: Vec<(u64, u64)>,
    /// Anchored checkpoints found in the chain with the same hash.
    pub anchors_matched: u64,
    /// Anchored checkpoints inside an accepted gap.
    pub anchors_in_gaps: u64,
}

/// The first bad position found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit record {position}: {reason}")]
pub struct AuditFault {
    /// Sequence number (position in the chain) of the first bad record.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

/// What the chain is checked against besides itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expectations<'a> {
    /// The public key whose signatures every checkpoint must carry.
    pub verifier: Option<&'a Sm2Verifier>,
    /// Checkpoints anchored outside the store ([`crate::security::anchor`]).
    pub anchors: &'a [Anchor],
    /// The chain length recorded as durable (the manifest's), if known.
    pub min_len: Option<u64>,
}

/// Walks the chain (`(key seq, value)` in key order) and reports the first bad record: with a
/// verifier, every checkpoint must carry its fingerprint and a valid signature; every anchored
/// checkpoint must be in the chain with the same hash (or inside an accepted gap); the chain
/// must be at least `min_len` long.
pub fn verify(
    records: &[(u64, Vec<u8>)],
    expect: Expectations<'_>,
) -> Result<AuditReport, AuditFault> {
    let fault = |position: u64, reason: String| AuditFault { position, reason };
    let verifier = expect.verifier;
    let mut report = AuditReport::default();
    let mut prev = [0u8; DIGEST_LEN];
    let mut expected = 1u64;
    let mut hashes: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let fingerprint = verifier.map(|v| hex::encode(v.fingerprint()));
    for (i, (key_seq, value)) in records.iter().enumerate() {
        let record = decode(value).map_err(|e| {
            fault(
                expected,
                format!("undecodable ({e}): the record was altered"),
            )
        });
        if *key_seq != expected {
            // Only an accepted gap may skip sequence numbers, exactly the ones it names.
            let gap = match &record {
                Ok(AuditRecord {
                    seq,
                    event:
                        AuditEvent::Gap {
                            lost_from, lost_to, ..
                        },
                    ..
                }) if *seq == *key_seq && *lost_from == expected && *lost_to + 1 == *key_seq => {
                    Some((*lost_from, *lost_to))
                }
                _ => None,
            };
            match gap {
                Some(g) => {
                    report.gaps.push(g);
                    expected = *key_seq;
                }
                None => {
                    return Err(fault(
                        expected,
                        format!("missing (the next stored record is {key_seq})"),
                    ))
                }
            }
        }
        let record = record?;
        if record.seq != expected {
            return Err(fault(
                expected,
                format!(
                    "holds record {} (records were moved or reordered)",
                    record.seq
                ),
            ));
        }
        if record.prev != hex::encode(prev) {
            // The link into this record is broken: either the record before it changed, or
            // this one did (then its own outgoing link is broken too).
            let next_links_here = records
                .get(i + 1)
                .and_then(|(_, v)| decode(v).ok())
                .is_some_and(|next| next.prev == hex::encode(sm3(value)));
            return Err(if expected > 1 && next_links_here {
                fault(
                    expected - 1,
                    format!(
                        "altered: its SM3 hash no longer matches the link stored in record \
                         {expected}"
                    ),
                )
            } else {
                fault(
                    expected,
                    "altered: its link to the previous record does not match".into(),
                )
            });
        }
        if let AuditEvent::Checkpoint { signer, sig } = &record.event {
            report.checkpoints += 1;
            report.last_checkpoint = Some(expected);
            hashes.insert(expected, hex::encode(sm3(value)));
            if let (Some(v), Some(fp)) = (verifier, &fingerprint) {
                if signer != fp {
                    return Err(fault(
                        expected,
                        format!("checkpoint signed by key {signer}, not by the given key {fp}"),
                    ));
                }
                let sig = hex::decode(sig).unwrap_or_default();
                v.verify(
                    &checkpoint_message(record.seq, record.time_ms, &record.prev),
                    &sig,
                )
                .map_err(|_| {
                    fault(
                        expected,
                        "checkpoint signature does not verify (the checkpoint was altered \
                             or forged)"
                            .into(),
                    )
                })?;
                report.verified_checkpoints += 1;
            }
        }
        prev = sm3(value);
        report.records = expected;
        expected += 1;
    }
    report.unsigned_tail = report.records - report.last_checkpoint.unwrap_or(0);
    for a in expect.anchors {
        if report
            .gaps
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&a.seq))
        {
            report.anchors_in_gaps += 1;
            continue;
        }
        match hashes.get(&a.seq) {
            Some(h) if *h == a.hash => report.anchors_matched += 1,
            Some(_) => {
                return Err(fault(
                    a.seq,
                    "differs from the checkpoint anchored outside the store: the chain was \
                     rewritten"
                        .into(),
                ))
            }
            None if a.seq > report.records => {
                return Err(fault(
                    report.records + 1,
                    format!(
                        "missing: the chain ends at record {} but checkpoint {} was anchored \
                         outside the store: the chain was cut short",
                        report.records, a.seq
                    ),
                ))
            }
            None => {
                return Err(fault(
                    a.seq,
                    "is not the checkpoint anchored at this position outside the store: the \
                     chain was rewritten"
                        .into(),
                ))
            }
        }
    }
    if let Some(min) = expect.min_len.filter(|&m| m > report.records) {
        return Err(fault(
            report.records + 1,
            format!(
                "missing: the chain ends at record {} but the manifest records {min} as \
                 durable: the chain was cut short",
                report.records
            ),
        ));
    }
    Ok(report)
}

/// One exported line: the record with its own hash.
#[derive(Serialize)]
struct ExportLine<'a> {
    #[serde(flatten)]
    record: &'a AuditRecord,
    hash: String,
}

/// Writes the chain as JSON lines (one record per line, with its SM3 hash). Undecodable
/// records are written as `{"seq":…,"undecodable":"…"}`. Returns the number of lines.
pub fn export(records: &[(u64, Vec<u8>)], out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    for (seq, value) in records {
        let line = match decode(value) {
            Ok(record) => serde_json::to_string(&ExportLine {
                record: &record,
                hash: hex::encode(sm3(value)),
            })?,
            Err(e) => serde_json::json!({ "seq": seq, "undecodable": e.to_string() }).to_string(),
        };
        writeln!(out, "{line}")?;
    }
    Ok(records.len() as u64)
}

#[cfg(test)]
mod tests;
