//! The `ferrocache` server binary.
fn main() {}
