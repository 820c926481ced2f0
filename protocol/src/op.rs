//! Text operations with the semantics and JSON shape of ShareDB's `text-unicode` type.
//!
//! An [`Op`] is a list of [`Component`]s walked over a document of Unicode scalar values:
//! `Retain(n)` skips `n` characters, `Insert(s)` inserts `s` at the cursor, `Delete(n)` removes
//! `n` characters. On the wire an op is `[3, "hi", {"d": 2}]`.
//!
//! Invariants:
//! - Every `Op` value is canonical: no zero-length components, no two adjacent components of the
//!   same kind, no trailing retain. Only [`Op::from_components`] (validating) and [`OpBuilder`]
//!   (normalizing) construct one, so the invariant cannot be broken from outside.
//! - An op does not have to span the whole document: characters after its last component are
//!   retained implicitly. It must not reach past the end ([`Op::check_fits`]).
//! - `transform` and `compose` follow the reference algorithm step by step (take / append /
//!   trim), so results match the reference implementation component for component.
//! - Nothing here panics on any input: every mismatch is an [`OtError`].

use compact_str::CompactString;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;
use std::fmt;

use crate::error::OtError;

/// Largest count accepted in a single retain or delete component.
pub const MAX_COMPONENT_COUNT: usize = u32::MAX as usize;

/// Number of components stored inline before an op spills to the heap.
const INLINE_COMPONENTS: usize = 2;

/// Number of Unicode scalar values in `s`.
#[inline]
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Byte offset of the `n`-th character of `s`, or `None` when `s` has `n` characters or fewer.
#[inline]
fn byte_offset_of_char(s: &str, n: usize) -> Option<usize> {
    if n == 0 {
        return Some(0);
    }
    s.char_indices().nth(n).map(|(b, _)| b)
}

/// Which of two concurrent ops wins when both insert at the same position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The op being transformed goes first.
    Left,
    /// The other op goes first.
    Right,
}

/// One step of an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// Skip this many characters.
    Retain(usize),
    /// Insert this text at the cursor.
    Insert(CompactString),
    /// Delete this many characters at the cursor.
    Delete(usize),
}

impl Component {
    /// Span of the component: characters skipped, inserted or deleted.
    pub fn len(&self) -> usize {
        match self {
            Component::Retain(n) | Component::Delete(n) => *n,
            Component::Insert(s) => char_len(s),
        }
    }

    /// True for zero-length components, which no canonical op contains.
    pub fn is_empty(&self) -> bool {
        match self {
            Component::Retain(n) | Component::Delete(n) => *n == 0,
            Component::Insert(s) => s.is_empty(),
        }
    }
}

/// A borrowed piece of a component, produced while walking an op.
#[derive(Clone, Copy, Debug)]
enum Piece<'a> {
    Retain(usize),
    Insert(&'a str),
    Delete(usize),
}

/// A canonical text operation. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Op {
    comps: SmallVec<[Component; INLINE_COMPONENTS]>,
}

/// Builds a canonical op by appending components, merging and dropping as the reference `append`
/// does: zero-length pieces are ignored, adjacent pieces of one kind are merged, and a trailing
/// retain is trimmed by [`OpBuilder::build`].
#[derive(Clone, Debug, Default)]
pub struct OpBuilder {
    comps: SmallVec<[Component; INLINE_COMPONENTS]>,
}

impl OpBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Skip `n` characters.
    pub fn retain(&mut self, n: usize) -> &mut Self {
        if n > 0 {
            match self.comps.last_mut() {
                Some(Component::Retain(m)) => *m += n,
                _ => self.comps.push(Component::Retain(n)),
            }
        }
        self
    }

    /// Insert `s`.
    pub fn insert(&mut self, s: &str) -> &mut Self {
        if !s.is_empty() {
            match self.comps.last_mut() {
                Some(Component::Insert(t)) => t.push_str(s),
                _ => self.comps.push(Component::Insert(CompactString::from(s))),
            }
        }
        self
    }

    /// Delete `n` characters.
    pub fn delete(&mut self, n: usize) -> &mut Self {
        if n > 0 {
            match self.comps.last_mut() {
                Some(Component::Delete(m)) => *m += n,
                _ => self.comps.push(Component::Delete(n)),
            }
        }
        self
    }

    fn piece(&mut self, p: Piece<'_>) {
        match p {
            Piece::Retain(n) => self.retain(n),
            Piece::Insert(s) => self.insert(s),
            Piece::Delete(n) => self.delete(n),
        };
    }

    /// Finish: trims the trailing retain and returns the canonical op.
    pub fn build(mut self) -> Op {
        if let Some(Component::Retain(_)) = self.comps.last() {
            self.comps.pop();
        }
        Op { comps: self.comps }
    }
}

/// Which kind of component a [`Take`] must hand out whole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Indivisible {
    Insert,
    Delete,
}

/// Walks an op, handing out pieces of at most a requested length (the reference `makeTake`).
struct Take<'a> {
    comps: &'a [Component],
    idx: usize,
    /// Characters consumed of a retain or delete; bytes consumed of an insert.
    offset: usize,
}

impl<'a> Take<'a> {
    fn new(op: &'a Op) -> Self {
        Take {
            comps: &op.comps,
            idx: 0,
            offset: 0,
        }
    }

    fn peek_is_insert(&self) -> bool {
        matches!(self.comps.get(self.idx), Some(Component::Insert(_)))
    }

    /// The next whole (remaining) component, or `None` at the end.
    fn take_all(&mut self) -> Option<Piece<'a>> {
        let c = self.comps.get(self.idx)?;
        let off = self.offset;
        self.idx += 1;
        self.offset = 0;
        Some(match c {
            Component::Retain(n) => Piece::Retain(n - off),
            Component::Delete(n) => Piece::Delete(n - off),
            Component::Insert(s) => Piece::Insert(&s[off..]),
        })
    }

    /// Up to `n` characters of the next component; past the end the op retains forever.
    /// Components of the `whole` kind are never split.
    fn take(&mut self, n: usize, whole: Indivisible) -> Piece<'a> {
        let Some(c) = self.comps.get(self.idx) else {
            return Piece::Retain(n);
        };
        match c {
            Component::Retain(len) | Component::Delete(len) => {
                let is_delete = matches!(c, Component::Delete(_));
                let rest = len - self.offset;
                let part = if rest <= n || (is_delete && whole == Indivisible::Delete) {
                    self.idx += 1;
                    self.offset = 0;
                    rest
                } else {
                    self.offset += n;
                    n
                };
                if is_delete {
                    Piece::Delete(part)
                } else {
                    Piece::Retain(part)
                }
            }
            Component::Insert(s) => {
                let rest = &s[self.offset..];
                match byte_offset_of_char(rest, n) {
                    Some(b) if whole != Indivisible::Insert && b < rest.len() => {
                        self.offset += b;
                        Piece::Insert(&rest[..b])
                    }
                    _ => {
                        self.idx += 1;
                        self.offset = 0;
                        Piece::Insert(rest)
                    }
                }
            }
        }
    }
}

impl Op {
    /// The empty (identity) op.
    pub fn noop() -> Op {
        Op::default()
    }

    /// Builds an op from components, rejecting zero-length or empty components and counts above
    /// [`MAX_COMPONENT_COUNT`], and normalizing the rest (adjacent components of one kind merge,
    /// a trailing retain is dropped).
    pub fn from_components<I>(components: I) -> Result<Op, OtError>
    where
        I: IntoIterator<Item = Component>,
    {
        let mut b = OpBuilder::new();
        for (index, c) in components.into_iter().enumerate() {
            match &c {
                Component::Retain(0) => return Err(OtError::EmptyComponent { index }),
                Component::Delete(0) => return Err(OtError::EmptyComponent { index }),
                Component::Insert(s) if s.is_empty() => {
                    return Err(OtError::EmptyComponent { index })
                }
                Component::Retain(n) | Component::Delete(n) if *n > MAX_COMPONENT_COUNT => {
                    return Err(OtError::CountOverflow { index })
                }
                _ => {}
            }
            match c {
                Component::Retain(n) => b.retain(n),
                Component::Delete(n) => b.delete(n),
                Component::Insert(s) => {
                    if let Some(Component::Insert(t)) = b.comps.last_mut() {
                        t.push_str(&s);
                    } else {
                        b.comps.push(Component::Insert(s));
                    }
                    &mut b
                }
            };
        }
        Ok(b.build())
    }

    /// Parses the JSON shape `[3, "hi", {"d": 2}]`.
    pub fn from_json(json: &str) -> Result<Op, OtError> {
        let comps: Vec<Component> =
            serde_json::from_str(json).map_err(|e| OtError::Malformed(e.to_string()))?;
        Op::from_components(comps)
    }

    /// The op as JSON, in the reference shape.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("[]"))
    }

    /// An op inserting `text` at character position `pos`.
    pub fn insert_at(pos: usize, text: &str) -> Op {
        let mut b = OpBuilder::new();
        b.retain(pos).insert(text);
        b.build()
    }

    /// An op deleting `n` characters at character position `pos`.
    pub fn delete_at(pos: usize, n: usize) -> Op {
        let mut b = OpBuilder::new();
        b.retain(pos).delete(n);
        b.build()
    }

    /// A splice as in JavaScript: at `pos`, delete `del` characters, then insert `ins`.
    pub fn splice(pos: usize, del: usize, ins: &str) -> Op {
        let mut b = OpBuilder::new();
        b.retain(pos).delete(del).insert(ins);
        b.build()
    }

    /// The canonical components.
    pub fn components(&self) -> &[Component] {
        &self.comps
    }

    /// True for the identity op.
    pub fn is_noop(&self) -> bool {
        self.comps.is_empty()
    }

    /// Characters of the original document the op walks over (retains + deletes): the smallest
    /// document length it applies to.
    pub fn base_len(&self) -> usize {
        self.comps
            .iter()
            .map(|c| match c {
                Component::Retain(n) | Component::Delete(n) => *n,
                Component::Insert(_) => 0,
            })
            .sum()
    }

    /// Length of the document after applying the op to one of `doc_len` characters. The caller
    /// must have checked [`Op::check_fits`].
    pub fn target_len(&self, doc_len: usize) -> usize {
        let mut len = doc_len;
        for c in &self.comps {
            match c {
                Component::Retain(_) => {}
                Component::Insert(s) => len += char_len(s),
                Component::Delete(n) => len -= n,
            }
        }
        len
    }

    /// Characters inserted minus characters deleted.
    pub fn len_delta(&self) -> isize {
        self.comps.iter().fold(0isize, |acc, c| match c {
            Component::Retain(_) => acc,
            Component::Insert(s) => acc + char_len(s) as isize,
            Component::Delete(n) => acc - *n as isize,
        })
    }

    /// Checks that the op fits a document of `doc_len` characters.
    pub fn check_fits(&self, doc_len: usize) -> Result<(), OtError> {
        self.fit_len(doc_len).map(|_| ())
    }

    /// Checks that the op fits a document of `doc_len` characters and returns the length of the
    /// result, in one pass.
    pub fn fit_len(&self, doc_len: usize) -> Result<usize, OtError> {
        let mut pos = 0usize;
        let mut len = doc_len;
        for c in &self.comps {
            match c {
                Component::Retain(n) => {
                    pos += n;
                    if pos > doc_len {
                        return Err(OtError::RetainPastEnd {
                            end: pos,
                            len: doc_len,
                        });
                    }
                }
                Component::Delete(n) => {
                    pos += n;
                    if pos > doc_len {
                        return Err(OtError::DeletePastEnd {
                            end: pos,
                            len: doc_len,
                        });
                    }
                    len -= n;
                }
                Component::Insert(s) => len += char_len(s),
            }
        }
        Ok(len)
    }

    /// Applies the op to a string.
    pub fn apply_str(&self, doc: &str) -> Result<String, OtError> {
        self.check_fits(char_len(doc))?;
        let mut out = String::with_capacity(doc.len() + 16);
        let mut rest = doc;
        for c in &self.comps {
            match c {
                Component::Retain(n) | Component::Delete(n) => {
                    let b = byte_offset_of_char(rest, *n).unwrap_or(rest.len());
                    if matches!(c, Component::Retain(_)) {
                        out.push_str(&rest[..b]);
                    }
                    rest = &rest[b..];
                }
                Component::Insert(s) => out.push_str(s),
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Applies the op to a rope in place. The rope is unchanged if the op does not fit.
    pub fn apply_rope(&self, rope: &mut jumprope::JumpRope) -> Result<(), OtError> {
        self.check_fits(rope.len_chars())?;
        self.apply_rope_unchecked(rope);
        Ok(())
    }

    /// Applies an op already checked with [`Op::fit_len`] against the rope's length.
    pub(crate) fn apply_rope_unchecked(&self, rope: &mut jumprope::JumpRope) {
        let mut pos = 0usize;
        for c in &self.comps {
            match c {
                Component::Retain(n) => pos += n,
                Component::Insert(s) => {
                    rope.insert(pos, s);
                    pos += char_len(s);
                }
                Component::Delete(n) => rope.remove(pos..pos + n),
            }
        }
    }

    /// The op that undoes this one, given the document it was applied to.
    pub fn invert(&self, doc_before: &str) -> Result<Op, OtError> {
        self.check_fits(char_len(doc_before))?;
        let mut b = OpBuilder::new();
        let mut rest = doc_before;
        for c in &self.comps {
            match c {
                Component::Retain(n) | Component::Delete(n) => {
                    let at = byte_offset_of_char(rest, *n).unwrap_or(rest.len());
                    if matches!(c, Component::Retain(_)) {
                        b.retain(*n);
                    } else {
                        b.insert(&rest[..at]);
                    }
                    rest = &rest[at..];
                }
                Component::Insert(s) => {
                    b.delete(char_len(s));
                }
            }
        }
        Ok(b.build())
    }

    /// Transforms this op against the concurrent `other` (both apply to the same document), so
    /// that it applies after `other`. On equal insert positions, `Side::Left` goes first.
    pub fn transform(&self, other: &Op, side: Side) -> Op {
        let mut out = OpBuilder::new();
        let mut t = Take::new(self);
        for c2 in &other.comps {
            match c2 {
                Component::Retain(n) => {
                    let mut len = *n;
                    while len > 0 {
                        let p = t.take(len, Indivisible::Insert);
                        out.piece(p);
                        match p {
                            Piece::Retain(m) | Piece::Delete(m) => len -= m,
                            Piece::Insert(_) => {}
                        }
                    }
                }
                Component::Insert(s) => {
                    if side == Side::Left && t.peek_is_insert() {
                        if let Some(p) = t.take_all() {
                            out.piece(p);
                        }
                    }
                    out.retain(char_len(s));
                }
                Component::Delete(n) => {
                    let mut len = *n;
                    while len > 0 {
                        match t.take(len, Indivisible::Insert) {
                            Piece::Retain(m) | Piece::Delete(m) => len -= m,
                            Piece::Insert(s) => {
                                out.insert(s);
                            }
                        }
                    }
                }
            }
        }
        while let Some(p) = t.take_all() {
            out.piece(p);
        }
        out.build()
    }

    /// Composes this op with `next` (which applies to this op's result) into one op with the
    /// same effect as applying both in order.
    pub fn compose(&self, next: &Op) -> Op {
        let mut out = OpBuilder::new();
        let mut t = Take::new(self);
        for c2 in &next.comps {
            match c2 {
                Component::Retain(n) => {
                    let mut len = *n;
                    while len > 0 {
                        let p = t.take(len, Indivisible::Delete);
                        out.piece(p);
                        match p {
                            Piece::Retain(m) => len -= m,
                            Piece::Insert(s) => len -= char_len(s),
                            Piece::Delete(_) => {}
                        }
                    }
                }
                Component::Insert(s) => {
                    out.insert(s);
                }
                Component::Delete(n) => {
                    let mut len = *n;
                    while len > 0 {
                        match t.take(len, Indivisible::Delete) {
                            Piece::Retain(m) => {
                                out.delete(m);
                                len -= m;
                            }
                            Piece::Insert(s) => len -= char_len(s),
                            Piece::Delete(m) => {
                                out.delete(m);
                            }
                        }
                    }
                }
            }
        }
        while let Some(p) = t.take_all() {
            out.piece(p);
        }
        out.build()
    }
}

/// Moves a cursor position through `op` (reference `transformPosition`): text inserted before
/// the cursor shifts it right, text inserted exactly at the cursor stays after it, and a delete
/// spanning the cursor moves it to the start of the deleted range.
pub fn transform_position(cursor: usize, op: &Op) -> usize {
    let mut cursor = cursor;
    let mut pos = 0usize;
    for c in &op.comps {
        if cursor <= pos {
            break;
        }
        match c {
            Component::Retain(n) => pos += n,
            Component::Insert(s) => {
                let n = char_len(s);
                pos += n;
                cursor += n;
            }
            Component::Delete(n) => cursor -= (*n).min(cursor - pos),
        }
    }
    cursor
}

/// A selection `[anchor, head]` in characters; `anchor == head` is a caret. `head` may precede
/// `anchor`.
pub type Selection = (u64, u64);

/// Moves a selection through `op`: each end as [`transform_position`].
pub fn transform_selection(sel: Selection, op: &Op) -> Selection {
    let t = |p: u64| transform_position(p as usize, op) as u64;
    (t(sel.0), t(sel.1))
}

impl Serialize for Component {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Component::Retain(n) => s.serialize_u64(*n as u64),
            Component::Insert(text) => s.serialize_str(text),
            Component::Delete(n) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("d", &(*n as u64))?;
                m.end()
            }
        }
    }
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.comps.len()))?;
        for c in &self.comps {
            seq.serialize_element(c)?;
        }
        seq.end()
    }
}

fn count_from_u64<E: de::Error>(v: u64) -> Result<usize, E> {
    if v > MAX_COMPONENT_COUNT as u64 {
        Err(E::custom(format_args!(
            "count {v} exceeds the maximum {MAX_COMPONENT_COUNT}"
        )))
    } else {
        Ok(v as usize)
    }
}

fn count_from_i64<E: de::Error>(v: i64) -> Result<usize, E> {
    if v < 0 {
        Err(E::custom(format_args!("negative count {v}")))
    } else {
        count_from_u64(v as u64)
    }
}

/// Reads the count of a `{"d": n}` delete.
struct DeleteCount(usize);

impl<'de> Deserialize<'de> for DeleteCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DeleteCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative delete count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeleteCount, E> {
                count_from_u64(v).map(DeleteCount)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeleteCount, E> {
                count_from_i64(v).map(DeleteCount)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Component {
    /// Accepts a non-negative integer (retain), a string (insert) or `{"d": n}` (delete).
    /// Zero-length components are accepted here and rejected by [`Op::from_components`], so
    /// that they get their own error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Component;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an op component: a retain count, an insert string or {\"d\": count}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Component, E> {
                count_from_u64(v).map(Component::Retain)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Component, E> {
                count_from_i64(v).map(Component::Retain)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Component, E> {
                Ok(Component::Insert(CompactString::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Component, A::Error> {
                let mut count = None;
                while let Some(key) = map.next_key::<CompactString>()? {
                    if key != "d" || count.is_some() {
                        return Err(de::Error::custom(format_args!(
                            "unexpected key {key:?} in a delete component"
                        )));
                    }
                    count = Some(map.next_value::<DeleteCount>()?.0);
                }
                count
                    .map(Component::Delete)
                    .ok_or_else(|| de::Error::missing_field("d"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Op {
    /// Strict: the op must validate ([`Op::from_components`]).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Op;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an op: a list of components")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Op, A::Error> {
                let mut comps: SmallVec<[Component; INLINE_COMPONENTS]> = SmallVec::new();
                while let Some(c) = seq.next_element::<Component>()? {
                    comps.push(c);
                }
                Op::from_components(comps).map_err(de::Error::custom)
            }
        }
        d.deserialize_seq(V)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(json: &str) -> Op {
        Op::from_json(json).unwrap()
    }

    #[test]
    fn json_round_trip_and_canonical_form() {
        let o = op(r#"[3, "hi", {"d": 2}]"#);
        assert_eq!(o.to_json(), r#"[3,"hi",{"d":2}]"#);
        assert_eq!(op(r#"[1, 2, "a", "b", 4]"#).to_json(), r#"[3,"ab"]"#);
        assert_eq!(op(r#"[{"d":1},{"d":2}]"#).to_json(), r#"[{"d":3}]"#);
        assert!(op("[5]").is_noop());
    }

    #[test]
    fn malformed_components_are_typed_errors() {
        assert_eq!(
            Op::from_json("[0]"),
            Err(OtError::EmptyComponent { index: 0 })
        );
        assert_eq!(
            Op::from_json(r#"[1, ""]"#),
            Err(OtError::EmptyComponent { index: 1 })
        );
        assert_eq!(
            Op::from_json(r#"[{"d":0}]"#),
            Err(OtError::EmptyComponent { index: 0 })
        );
        for bad in [
            "[-1]",
            "[1.5]",
            r#"[{"x":1}]"#,
            r#"[{"d":-3}]"#,
            r#"[{"d":1,"d":2}]"#,
            "[99999999999]",
            "[true]",
            "{}",
            "[",
        ] {
            assert!(
                matches!(Op::from_json(bad), Err(OtError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn apply_checks_bounds_and_counts_scalar_values() {
        assert_eq!(op(r#"[1, "é"]"#).apply_str("😅x").unwrap(), "😅éx");
        assert_eq!(op(r#"[1, {"d":1}]"#).apply_str("a😅b").unwrap(), "ab");
        assert_eq!(
            op("[4, \"x\"]").apply_str("abc"),
            Err(OtError::RetainPastEnd { end: 4, len: 3 })
        );
        assert_eq!(
            op(r#"[2, {"d": 2}]"#).apply_str("abc"),
            Err(OtError::DeletePastEnd { end: 4, len: 3 })
        );
        let mut rope = jumprope::JumpRope::from("abc");
        assert!(op(r#"[2, {"d": 2}]"#).apply_rope(&mut rope).is_err());
        assert_eq!(rope.to_string(), "abc");
        op(r#"[1, "😅", {"d": 1}]"#).apply_rope(&mut rope).unwrap();
        assert_eq!(rope.to_string(), "a😅c");
    }

    #[test]
    fn invert_undoes() {
        let doc = "héllo wörld";
        let o = op(r#"[1, {"d": 3}, "EY", 3, "😅", {"d": 2}]"#);
        let after = o.apply_str(doc).unwrap();
        assert_eq!(o.invert(doc).unwrap().apply_str(&after).unwrap(), doc);
    }

    #[test]
    fn transform_position_follows_reference() {
        let o = op(r#"[2, "ab", 2, {"d": 3}]"#);
        assert_eq!(transform_position(0, &o), 0);
        assert_eq!(transform_position(2, &o), 2);
        assert_eq!(transform_position(3, &o), 5);
        assert_eq!(transform_position(5, &o), 6);
        assert_eq!(transform_position(7, &o), 6);
        assert_eq!(transform_position(9, &o), 8);
        assert_eq!(transform_selection((9, 3), &o), (8, 5));
    }

    #[test]
    fn lengths() {
        let o = op(r#"[2, "ab", 2, {"d": 3}]"#);
        assert_eq!(o.base_len(), 7);
        assert_eq!(o.target_len(10), 9);
        assert_eq!(o.len_delta(), -1);
    }
}
