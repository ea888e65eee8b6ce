//! Proof verification exactly as RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2
//! (consistency) write it, so that it can be checked line by line against the RFC.

use crate::{Error, Hash};

/// Checks that `leaf` (a [`Hash::leaf`]) is leaf `index` of the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(Error::ProofLength(proof.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = Hash::node(p, &r);
            (fn_, sn) = shift_while_even(fn_, sn);
        } else {
            r = Hash::node(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(Error::ProofLength(proof.len()));
    }
    if r != *root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` with `old_root` is a prefix of the tree of `new_size`
/// with `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), Error> {
    if old_size > new_size {
        return Err(Error::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size || old_size == 0 {
        // Every tree extends the empty one; equal sizes must have equal roots.
        if !proof.is_empty() {
            return Err(Error::ProofLength(proof.len()));
        }
        if old_size == new_size && old_root != new_root {
            return Err(Error::RootMismatch);
        }
        return Ok(());
    }
    let path: Vec<Hash> = if old_size.is_power_of_two() {
        std::iter::once(*old_root)
            .chain(proof.iter().copied())
            .collect()
    } else {
        proof.to_vec()
    };
    let Some((first, rest)) = path.split_first() else {
        return Err(Error::ProofLength(0));
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(Error::ProofLength(proof.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = Hash::node(c, &fr);
            sr = Hash::node(c, &sr);
            (fn_, sn) = shift_while_even(fn_, sn);
        } else {
            sr = Hash::node(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(Error::ProofLength(proof.len()));
    }
    if fr != *old_root || sr != *new_root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

/// "If LSB(fn) is not set, right-shift both fn and sn equally until either LSB(fn) is set or
/// fn is 0."
fn shift_while_even(mut fn_: u64, mut sn: u64) -> (u64, u64) {
    while fn_ & 1 == 0 && fn_ != 0 {
        fn_ >>= 1;
        sn >>= 1;
    }
    (fn_, sn)
}
