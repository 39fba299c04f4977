//! Uploading files over SFTP.

use russh_sftp::client::SftpSession;
use tokio::io::AsyncWriteExt;

use crate::{Session, SshError};

impl Session {
    /// Writes `data` to `path` on the server (relative paths are under the
    /// user's home), creating or truncating it. The caller makes it
    /// atomic: upload to a temporary name, verify, rename.
    pub async fn upload(&self, path: &str, data: &[u8]) -> Result<(), SshError> {
        let error = |reason: String| SshError::Upload {
            address: self.target().address(),
            path: path.to_string(),
            reason,
        };
        let channel = self.open_channel().await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| error(format!("cannot start the sftp subsystem: {e}")))?;
        let sftp = SftpSession::new(channel.into_stream())
            .await
            .map_err(|e| error(format!("sftp: {e}")))?;
        let result = async {
            let mut file = sftp
                .create(path)
                .await
                .map_err(|e| error(format!("cannot create: {e}")))?;
            file.write_all(data)
                .await
                .map_err(|e| error(format!("write failed: {e}")))?;
            file.shutdown()
                .await
                .map_err(|e| error(format!("close failed: {e}")))
        }
        .await;
        let _ = sftp.close().await;
        result
    }
}
