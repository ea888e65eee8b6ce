//! One test binary for the crate: the tree against the RFC and a naive implementation, the note
//! formats against Go's published examples, and the download against the Python verifier.

mod download;
mod merkle;
mod note;
