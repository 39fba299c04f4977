//! Rebuilds the crate when a migration is added or changed, since `sqlx::migrate!` embeds them at compile time.

fn main() {
    // Without this, cargo only looks at the Rust sources and a new
    // migration file would not reach the binary until something else changed.
    println!("cargo:rerun-if-changed=migrations");
}
