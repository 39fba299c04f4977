//! `cronium node list` against a real `cronium serve`: the server lists itself, alive, with its address and version.

mod common;

use std::time::Duration;

use common::{Server, wait_for};

#[test]
fn node_list_shows_this_server_alive() {
    let server = Server::start();
    let listed = wait_for("the first heartbeat", Duration::from_secs(10), || {
        let out = server.cronium(&["node", "list"]).ok().stdout();
        (out.lines().count() == 2).then_some(out)
    });
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("HEARTBEAT") && lines[0].contains("CLOCK"),
        "{listed}"
    );
    let address = server.url.trim_start_matches("http://");
    assert!(
        lines[1].contains(address)
            && lines[1].contains(" alive ")
            && lines[1].contains(env!("CARGO_PKG_VERSION")),
        "{listed}"
    );
    let json = server.cronium(&["node", "list", "--json"]).ok().json();
    assert_eq!(json["items"][0]["address"], address);
}
