//! The offline checker (`coedit check`): verifies every record of a document.

use std::collections::BTreeMap;

use super::*;

/// Verifies a whole document offline (a Yjs document: see [`ystore::check_yjs_document`]): every record decodes, revisions are contiguous from the
/// oldest retained point, every op replays, and every snapshot equals the replay at its
/// revision. Returns the number of ops and snapshots checked.
pub fn check_document<K: Kv>(
    store: &RecordStore<K>,
    doc: &str,
) -> Result<(usize, usize), StoreError> {
    if store.stored_kind(doc)? == Some(DocKind::Yjs) {
        return ystore::check_yjs_document(store, doc);
    }
    let (p, end) = (prefix(doc), RecordStore::<K>::end(doc));
    let snapshots = store
        .kv
        .range(Tree::Snapshots, &p, &end)?
        .iter()
        .map(|(k, v)| store.decode_snapshot(doc, k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let first_op = store.first_op_rev(doc)?.unwrap_or(1);
    // Replay starts at the snapshot just before the first retained op (or from empty).
    let start = snapshots
        .iter()
        .rev()
        .find(|s| s.rev + 1 >= first_op && s.rev < first_op)
        .cloned();
    let base = match &start {
        Some(s) => s.rev,
        None if first_op == 1 => 0,
        None => {
            return Err(corrupt(
                doc,
                first_op,
                "no snapshot before the first retained op",
            ))
        }
    };
    let ops = store.ops(doc, base, u64::MAX)?;
    let mut text = start.map(|s| s.text).unwrap_or_default();
    let mut rev = base;
    let by_rev: BTreeMap<u64, &DocumentSnapshot> = snapshots.iter().map(|s| (s.rev, s)).collect();
    for r in &ops {
        text =
            r.op.apply_str(&text)
                .map_err(|e| corrupt(doc, r.rev, format!("op does not replay: {e}")))?;
        rev = r.rev;
        if let Some(s) = by_rev.get(&rev) {
            if s.text != text {
                return Err(corrupt(
                    doc,
                    rev,
                    "snapshot differs from the replay of the log",
                ));
            }
        }
    }
    if let Some((&last, _)) = by_rev.iter().next_back() {
        if last > rev {
            return Err(corrupt(
                doc,
                rev + 1,
                format!("snapshot at {last} is past the last op"),
            ));
        }
    }
    Ok((ops.len(), snapshots.len()))
}
