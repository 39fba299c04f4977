//! A server's record turned into what the SSH executor needs: its credentials opened, its host key pin read, its cache directory laid out.

use cronium_exec::remote::{CacheLayout, RemoteServer};
use cronium_ssh::{HostKeyPin, Target};
use cronium_store::Server;

use crate::secrets::Sealer;

/// Opens the record's sealed credentials and reads its pin. The error is a
/// sentence for a user (which server, what is wrong).
pub fn open_server(server: &Server, sealer: &Sealer) -> Result<RemoteServer, String> {
    let spec = &server.spec;
    let credentials = sealer
        .open_credentials(&spec.sealed_credentials)
        .map_err(|e| format!("cannot open the credentials of server {}: {e}", spec.name))?;
    let pin = spec
        .known_host
        .as_deref()
        .map(HostKeyPin::parse)
        .transpose()
        .map_err(|e| format!("server {}: {e}", spec.name))?;
    Ok(RemoteServer {
        id: server.id,
        name: spec.name.clone(),
        target: Target::new(spec.host.clone(), spec.port, spec.username.clone()),
        credentials,
        pin,
        cache: CacheLayout::new(spec.effective_cache_dir()),
    })
}
