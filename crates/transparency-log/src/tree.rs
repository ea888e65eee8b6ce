//! The growing tree as the audit writer keeps it, and which stored hashes a root or a proof needs.
//!
//! Storage model: every *perfect* subtree (2^level leaves starting at `index << level`) gets its
//! hash computed exactly once, when its last leaf is appended, and never changes. That makes an
//! append-only SQL table `(level, index) -> hash` with about 2n rows the cheap thing to store:
//! [`Frontier::append`] hands back the rows to insert, and any root or proof for any size needs
//! O(log n) point lookups of those rows ([`ProofPlan::nodes`]). Storing only leaf hashes would
//! make every proof read O(n) rows.
//!
//! A proof is produced in two steps so that async storage fits: [`ProofPlan`] names the nodes,
//! the store fetches them in one query, [`ProofPlan::assemble`] combines them.

use std::ops::Range;

use crate::{Error, Hash};

/// A perfect subtree: the 2^`level` leaves from `index << level` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

/// The compact range of a tree of `size` leaves: the roots of its perfect subtrees from the
/// largest (leftmost) to the smallest, one per set bit of `size`, so at most 64 hashes. It is
/// all the writer needs to extend the tree and compute the root; persist it as the size and the
/// concatenated hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a persisted frontier; the hashes are [`Frontier::hashes`] as they were stored.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, Error> {
        if hashes.len() != size.count_ones() as usize {
            return Err(Error::FrontierShape {
                size,
                count: hashes.len(),
            });
        }
        Ok(Frontier { size, hashes })
    }

    /// The hashes concatenated, for one BLOB/BYTEA column beside the size.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|hash| hash.0).collect()
    }

    /// Reads back [`Frontier::to_bytes`].
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() % 32 != 0 {
            return Err(Error::HashLength(bytes.len() % 32));
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(Hash::from_slice)
            .collect::<Result<_, _>>()?;
        Self::from_parts(size, hashes)
    }

    /// Rebuilds the frontier of `size` from the node store, e.g. after losing the persisted one.
    pub fn from_nodes(size: u64, lookup: impl Fn(NodeId) -> Option<Hash>) -> Result<Self, Error> {
        let hashes = perfect_nodes(0..size)
            .map(|id| {
                lookup(id).ok_or(Error::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Frontier { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf (its [`Hash::leaf`]) and returns the perfect subtrees it completed, the
    /// leaf itself first: exactly the rows the node store gains.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut completed = vec![(
            NodeId {
                level: 0,
                index: self.size,
            },
            leaf,
        )];
        let mut hash = leaf;
        let mut level = 0u8;
        while (self.size >> level) & 1 == 1 {
            let Some(left) = self.hashes.pop() else { break };
            hash = Hash::node(&left, &hash);
            level += 1;
            completed.push((
                NodeId {
                    level,
                    index: self.size >> level,
                },
                hash,
            ));
        }
        self.hashes.push(hash);
        self.size += 1;
        completed
    }

    pub fn root(&self) -> Hash {
        fold_right(&self.hashes).unwrap_or_else(Hash::empty)
    }
}

/// MTH of a range: its perfect subtrees combined from the right, as RFC 6962 splits at the
/// largest power of two.
fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| Hash::node(left, &acc)),
    )
}

/// The perfect subtrees that make up a range of a proof, left to right. Every range in an RFC
/// 6962 proof starts at a multiple of a power of two at least its length, so the greedy split
/// is the RFC's split.
fn perfect_nodes(range: Range<u64>) -> impl Iterator<Item = NodeId> {
    let mut start = range.start;
    std::iter::from_fn(move || {
        if start >= range.end {
            return None;
        }
        let remaining = range.end - start;
        let mut level = 63 - remaining.leading_zeros();
        if start != 0 {
            level = level.min(start.trailing_zeros());
        }
        let id = NodeId {
            level: level as u8,
            index: start >> level,
        };
        start += 1 << level;
        Some(id)
    })
}

/// Largest power of two strictly below `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The subtree hashes (as leaf ranges) that make up a root, an inclusion proof or a
/// consistency proof, in the order the proof lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    ranges: Vec<Range<u64>>,
}

impl ProofPlan {
    /// The root of the tree of `size` leaves (a plan of one range, or none for the empty tree).
    pub fn root(size: u64) -> Self {
        let ranges = (size > 0).then_some(0..size).into_iter().collect();
        ProofPlan { ranges }
    }

    /// `PATH(index, D[0:size])` of RFC 6962 section 2.1.1.
    pub fn inclusion(index: u64, size: u64) -> Result<Self, Error> {
        if index >= size {
            return Err(Error::IndexOutOfRange { index, size });
        }
        let mut ranges = Vec::new();
        path(index, 0..size, &mut ranges);
        Ok(ProofPlan { ranges })
    }

    /// `PROOF(old, D[0:new])` of RFC 6962 section 2.1.2; empty when old is 0 or equals new.
    pub fn consistency(old: u64, new: u64) -> Result<Self, Error> {
        if old > new {
            return Err(Error::SizesOutOfOrder { old, new });
        }
        let mut ranges = Vec::new();
        if old != 0 && old != new {
            subproof(old, 0..new, true, &mut ranges);
        }
        Ok(ProofPlan { ranges })
    }

    /// The stored nodes to fetch, without repeats, in no particular order.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .ranges
            .iter()
            .flat_map(|range| perfect_nodes(range.clone()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Combines the fetched nodes into the proof's hashes (for [`ProofPlan::root`], the root).
    pub fn assemble(&self, lookup: impl Fn(NodeId) -> Option<Hash>) -> Result<Vec<Hash>, Error> {
        self.ranges
            .iter()
            .map(|range| {
                let hashes = perfect_nodes(range.clone())
                    .map(|id| {
                        lookup(id).ok_or(Error::MissingNode {
                            level: id.level,
                            index: id.index,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(fold_right(&hashes).unwrap_or_else(Hash::empty))
            })
            .collect()
    }
}

fn path(index: u64, range: Range<u64>, out: &mut Vec<Range<u64>>) {
    let n = range.end - range.start;
    if n <= 1 {
        return;
    }
    let mid = range.start + split_point(n);
    if index < mid {
        path(index, range.start..mid, out);
        out.push(mid..range.end);
    } else {
        path(index, mid..range.end, out);
        out.push(range.start..mid);
    }
}

/// SUBPROOF(m, D[range], complete); `m` counts leaves from `range.start`.
fn subproof(m: u64, range: Range<u64>, complete: bool, out: &mut Vec<Range<u64>>) {
    let n = range.end - range.start;
    if m == n {
        if !complete {
            out.push(range);
        }
        return;
    }
    let mid = range.start + split_point(n);
    if m <= mid - range.start {
        subproof(m, range.start..mid, complete, out);
        out.push(mid..range.end);
    } else {
        subproof(m - (mid - range.start), mid..range.end, false, out);
        out.push(range.start..mid);
    }
}
