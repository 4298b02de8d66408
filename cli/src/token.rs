//! The farm's token and where the farm keeps it.
//!
//! A token given with `--token` or `FARM_TOKEN` is used as it is. Otherwise the controller (or
//! `farm up`) reads `<data dir>/token`, and writes a new random one there (mode 0600) the first
//! time, so that a restarted controller, agents started by hand on this machine and containers
//! given the token all agree. An agent without a given token reads the same file.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use farm_proto::auth::Token;

/// The file in a farm's data directory that holds its token.
const TOKEN_FILE: &str = "token";

/// Random bytes in a generated token (48 hexadecimal characters).
const TOKEN_BYTES: usize = 24;

/// The farm's data directory when none is given: `$XDG_DATA_HOME/farm`, else
/// `$HOME/.local/share/farm`, else `.farm` in the working directory.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("farm");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".local/share/farm");
    }
    PathBuf::from(".farm")
}

/// The token a controller uses: the one given, else the farm's kept one, made on first use.
pub(crate) fn for_controller(given: Option<&str>, data_dir: &Path) -> anyhow::Result<Token> {
    if let Some(text) = given {
        return Token::new(text)
            .map_err(anyhow::Error::msg)
            .context("--token");
    }
    let path = data_dir.join(TOKEN_FILE);
    if let Some(token) = read(&path)? {
        return Ok(token);
    }
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "cannot create the farm's data directory {}",
            data_dir.display()
        )
    })?;
    let made = generate()?;
    // create_new: when two controllers start at once, one writes and both read its token.
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            file.write_all(made.as_str().as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write the farm's token to {}", path.display()))?;
            Ok(made)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(&path)?.with_context(|| {
                format!(
                    "{} is being written by another farm; try again",
                    path.display()
                )
            })
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The token an agent sends: the one given, else the farm's kept one if this machine has it.
pub(crate) fn for_agent(given: Option<&str>, data_dir: &Path) -> anyhow::Result<Option<Token>> {
    match given {
        Some(text) => Ok(Some(
            Token::new(text)
                .map_err(anyhow::Error::msg)
                .context("--token")?,
        )),
        None => read(&data_dir.join(TOKEN_FILE)),
    }
}

/// The token kept at `path`, if there is one; a file that holds no usable token is an error
/// that names it, never silently replaced.
fn read(path: &Path) -> anyhow::Result<Option<Token>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => Token::new(&text)
            .map(Some)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("the farm's token in {} is unusable", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the farm's token from {}", path.display()))
        }
    }
}

/// A new random token, from the kernel's random source.
fn generate() -> anyhow::Result<Token> {
    use std::io::Read as _;
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom to make the farm's token")?;
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Token::new(&text).map_err(anyhow::Error::msg)
}
