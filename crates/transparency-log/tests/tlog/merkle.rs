use std::collections::HashMap;

use proptest::prelude::*;
use transparency_log::{
    verify_consistency, verify_inclusion, Error, Frontier, Hash, NodeId, ProofPlan,
};

/// The leaves of the RFC 6962 reference test data (as in Google's and Go's implementations).
const RFC_LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

/// Their roots for sizes 1 to 8.
const RFC_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// A log kept the way the audit writer keeps it: a frontier and the table of perfect nodes.
struct Log {
    frontier: Frontier,
    nodes: HashMap<NodeId, Hash>,
    leaves: Vec<Hash>,
}

impl Log {
    fn with_leaves(leaves: Vec<Hash>) -> Self {
        let mut log = Log {
            frontier: Frontier::new(),
            nodes: HashMap::new(),
            leaves: Vec::new(),
        };
        for leaf in leaves {
            log.nodes.extend(log.frontier.append(leaf));
            log.leaves.push(leaf);
        }
        log
    }

    fn of_size(size: u64) -> Self {
        Self::with_leaves((0..size).map(|i| Hash::leaf(&i.to_be_bytes())).collect())
    }

    fn lookup(&self) -> impl Fn(NodeId) -> Option<Hash> + '_ {
        |id| self.nodes.get(&id).copied()
    }

    fn root(&self, size: u64) -> Hash {
        let hashes = ProofPlan::root(size).assemble(self.lookup()).unwrap();
        hashes.first().copied().unwrap_or_else(Hash::empty)
    }

    fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        ProofPlan::inclusion(index, size)
            .unwrap()
            .assemble(self.lookup())
            .unwrap()
    }

    fn consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        ProofPlan::consistency(old, new)
            .unwrap()
            .assemble(self.lookup())
            .unwrap()
    }
}

/// RFC 6962 section 2.1 written as literally as possible, to check the real one against.
mod naive {
    use transparency_log::Hash;

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    pub fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Hash::empty(),
            1 => d[0],
            n => {
                let k = split(n);
                Hash::node(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    pub fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }
}

fn hex(hash: &Hash) -> String {
    hash.to_hex()
}

#[test]
fn roots_of_the_rfc_test_data_are_the_published_ones() {
    let log = Log::with_leaves(RFC_LEAVES.iter().map(|d| Hash::leaf(d)).collect());
    for (size, expected) in (1..=8).zip(RFC_ROOTS) {
        assert_eq!(hex(&log.root(size)), expected, "size {size}");
    }
    assert_eq!(hex(&log.frontier.root()), RFC_ROOTS[7]);
    assert_eq!(
        hex(&Hash::empty()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn every_root_and_proof_up_to_64_leaves_matches_the_rfc_definition() {
    let log = Log::of_size(64);
    for size in 1..=64u64 {
        let d = &log.leaves[..size as usize];
        let root = naive::mth(d);
        assert_eq!(log.root(size), root, "root of {size}");
        assert_eq!(Log::with_leaves(d.to_vec()).frontier.root(), root);
        for index in 0..size {
            let proof = log.inclusion(index, size);
            assert_eq!(
                proof,
                naive::path(index as usize, d),
                "path {index} of {size}"
            );
            verify_inclusion(&d[index as usize], index, size, &proof, &root).unwrap();
        }
        for old in 1..=size {
            let proof = log.consistency(old, size);
            let expected = naive::subproof(old as usize, d, true);
            assert_eq!(proof, expected, "consistency {old} to {size}");
            verify_consistency(old, size, &proof, &log.root(old), &root).unwrap();
        }
    }
}

#[test]
fn the_frontier_survives_persisting_and_rebuilding_from_the_node_store() {
    let log = Log::of_size(45);
    let stored = Frontier::from_parts(45, log.frontier.hashes().to_vec()).unwrap();
    assert_eq!(stored, log.frontier);
    assert_eq!(
        Frontier::from_nodes(45, log.lookup()).unwrap(),
        log.frontier
    );
    assert_eq!(
        Frontier::from_parts(45, vec![]),
        Err(Error::FrontierShape { size: 45, count: 0 })
    );
    // The node table holds each perfect subtree once: 2n - popcount(n) rows.
    assert_eq!(log.nodes.len(), 2 * 45 - 45u32.count_ones() as usize);
}

#[test]
fn a_missing_stored_node_is_an_error_not_a_wrong_proof() {
    let mut log = Log::of_size(10);
    log.nodes.remove(&NodeId { level: 1, index: 4 });
    let plan = ProofPlan::inclusion(0, 10).unwrap();
    assert_eq!(
        plan.assemble(log.lookup()),
        Err(Error::MissingNode { level: 1, index: 4 })
    );
}

#[test]
fn malformed_requests_are_refused() {
    assert!(matches!(
        ProofPlan::inclusion(5, 5),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        ProofPlan::consistency(6, 5),
        Err(Error::SizesOutOfOrder { .. })
    ));
    let log = Log::of_size(8);
    let root = log.root(8);
    assert_eq!(
        verify_inclusion(&log.leaves[0], 8, 8, &[], &root),
        Err(Error::IndexOutOfRange { index: 8, size: 8 })
    );
    // Equal sizes need no proof, and the empty tree is a prefix of every tree.
    verify_consistency(8, 8, &[], &root, &root).unwrap();
    verify_consistency(0, 8, &[], &Hash::empty(), &root).unwrap();
    assert_eq!(
        verify_consistency(8, 8, &[], &root, &log.root(7)),
        Err(Error::RootMismatch)
    );
    assert!(verify_consistency(3, 8, &[], &log.root(3), &root).is_err());
}

fn flip(hashes: &mut [Hash], which: usize, bit: u8) {
    hashes[which].0[usize::from(bit) % 32] ^= 1 << (bit % 8);
}

proptest! {
    #[test]
    fn inclusion_proofs_verify_and_any_change_breaks_them(
        size in 1u64..600, pick in any::<u64>(), which in any::<usize>(), bit in any::<u8>()
    ) {
        let log = Log::of_size(size);
        let index = pick % size;
        let root = log.root(size);
        let leaf = log.leaves[index as usize];
        let mut proof = log.inclusion(index, size);
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());
        if !proof.is_empty() {
            let short = &proof[..proof.len() - 1];
            prop_assert!(verify_inclusion(&leaf, index, size, short, &root).is_err());
            let which = which % proof.len();
            flip(&mut proof, which, bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_err());
        }
        let other = Hash::leaf(b"not in the log");
        prop_assert!(verify_inclusion(&other, index, size, &log.inclusion(index, size), &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_any_change_breaks_them(
        new in 2u64..600, pick in any::<u64>(), which in any::<usize>(), bit in any::<u8>()
    ) {
        let log = Log::of_size(new);
        let old = 1 + pick % (new - 1);
        let (old_root, new_root) = (log.root(old), log.root(new));
        let mut proof = log.consistency(old, new);
        prop_assert!(verify_consistency(old, new, &proof, &old_root, &new_root).is_ok());
        let which = which % proof.len();
        flip(&mut proof, which, bit);
        prop_assert!(verify_consistency(old, new, &proof, &old_root, &new_root).is_err());
        // A fork: the same size with a different history is not consistent.
        let mut forked = log.leaves.clone();
        forked[(pick % old) as usize] = Hash::leaf(b"rewritten");
        let fork = Log::with_leaves(forked);
        prop_assert!(
            verify_consistency(old, new, &fork.consistency(old, new), &old_root, &fork.root(new)).is_err()
        );
    }
}
