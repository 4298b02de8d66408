//! TLS on the controller's gRPC port: the controller serves it from a certificate and key
//! given as PEM files, and every client (agents, the gateway, the command line) reaches an
//! `https://` controller trusting the CA certificates given to it, and nothing else (no
//! system roots: a farm's certificate is its own).

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// The variable that names the CA file clients trust for an `https://` controller, read
/// where no `--tls-ca` is given.
pub const CA_ENV: &str = "FARM_TLS_CA";

/// The largest certificate, key or CA file read, in bytes.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// How long a client may take over its TLS handshake: one that says nothing holds a
/// connection slot no longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the PEM file at `path` (`what` names it in errors), at most [`MAX_PEM_BYTES`].
pub fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("{what} {}: {e}", path.display());
    let mut pem = Vec::new();
    // Bounded as it is read: a pipe or a /proc file says no size beforehand.
    std::fs::File::open(path)
        .map_err(failed)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(failed)?;
    if pem.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{what} {}: larger than {MAX_PEM_BYTES} bytes; a PEM file is far smaller",
            path.display()
        ));
    }
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{what} {}: not a PEM file", path.display()));
    }
    Ok(pem)
}

/// The controller's TLS from its certificate (chain) and private key (PEM), checked: a
/// certificate and key that do not make a server are refused here, not at the first
/// connection.
pub fn server_config(cert: &[u8], key: &[u8]) -> Result<ServerTlsConfig, String> {
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT);
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|e| format!("--tls-cert and --tls-key do not make a TLS server: {e}"))?;
    Ok(config)
}

/// An endpoint for the controller at `url`: plain for `http://`; for `https://`, TLS that
/// trusts the CA certificates `ca_pem` holds and checks that the certificate names the URL's
/// host.
pub fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{url} is not a valid controller URL ({e})"))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let ca = ca_pem.ok_or_else(|| {
        format!("{url} is https: name the CA that signed its certificate in {CA_ENV} (or --tls-ca where a command has it)")
    })?;
    endpoint
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .map_err(|e| format!("TLS to {url}: {e}"))
}

/// The CA file named by [`CA_ENV`], read; `None` when the variable is unset or empty.
pub fn ca_from_env() -> Result<Option<Vec<u8>>, String> {
    match std::env::var_os(CA_ENV).filter(|v| !v.is_empty()) {
        Some(path) => read_pem(Path::new(&path), CA_ENV).map(Some),
        None => Ok(None),
    }
}
