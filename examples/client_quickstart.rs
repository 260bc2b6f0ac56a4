//! The README's first client example, as a program: `cargo run --release --example
//! client_quickstart -- 127.0.0.1:11211` (the nodes, comma-separated; default
//! 127.0.0.1:11211). `tests/suite/readme.rs` builds and runs it against a server and holds
//! the README's code block to this file.

use ferrocache::client::{Client, ClientConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:11211".to_string());
    let client = Client::new(ClientConfig::new(&servers)?)?;
    client.set(b"user:42", b"Ada", 0, 300)?;
    // Cache-aside: the loader runs only on a miss; "not found" is cached for 30 s.
    let name = client
        .cache_aside(300)
        .negative_ttl(30)
        .get_or_load(b"user:43", || {
            Ok::<_, std::io::Error>(None) // look it up in the database here
        })?;
    let stored = client.get(b"user:42")?.map(|item| item.value);
    println!(
        "user:42 = {:?}",
        stored.as_deref().map(String::from_utf8_lossy)
    );
    println!("user:43 = {name:?}");
    Ok(())
}
