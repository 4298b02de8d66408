//! How a caller proves it belongs to the farm: a farm's token, sent as a standard bearer token
//! in the `authorization` metadata of every gRPC call that needs one (an agent's `Link` stream
//! always; a mutating `FarmService` call when the controller listens beyond loopback), and in
//! the `Authorization` header of a mutating REST call when the gateway does.
//!
//! The token belongs to the farm, not to one process: it is given (`FARM_TOKEN`) or generated
//! once and kept with the farm's data, so that a restarted controller and containers that
//! outlive it still agree.

use crate::limits::{MAX_TOKEN_LEN, MIN_TOKEN_LEN};

/// The metadata key (gRPC) and header (HTTP) that carry the token.
pub const AUTHORIZATION: &str = "authorization";

/// The environment variable that gives the farm's token to every role.
pub const TOKEN_ENV: &str = "FARM_TOKEN";

/// The `FarmService` calls that change the farm or put load on it, by their gRPC paths: the
/// calls that need the farm's token where the controller (or the gateway in front of it)
/// listens beyond loopback. Every other call only reads.
pub const CHANGING_CALLS: [&str; 12] = [
    "/farm.v1.FarmService/ServerAction",
    "/farm.v1.FarmService/SimulateLoad",
    "/farm.v1.FarmService/ScaleFarm",
    "/farm.v1.FarmService/Broadcast",
    "/farm.v1.FarmService/RunLoadTest",
    "/farm.v1.FarmService/StartLoadTest",
    "/farm.v1.FarmService/StopLoadTest",
    "/farm.v1.FarmService/SetFaults",
    "/farm.v1.FarmService/ClearFaults",
    "/farm.v1.FarmService/RunScenario",
    "/farm.v1.FarmService/StartScenario",
    "/farm.v1.FarmService/StopScenario",
];

/// A farm's token, checked to be usable on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Logs and panics never show the secret.
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its text: [`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] visible ASCII characters,
    /// so that it fits in a header as it is.
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len()) {
            return Err(format!(
                "a farm token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters, got {}",
                text.len()
            ));
        }
        if !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err("a farm token may hold only visible ASCII characters".into());
        }
        Ok(Self(text.to_string()))
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of the `authorization` header that carries this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// The `authorization` metadata value that carries this token.
    pub fn metadata(&self) -> tonic::metadata::AsciiMetadataValue {
        // `new` let only visible ASCII through, which metadata always takes.
        self.bearer()
            .parse()
            .expect("a token's bearer value is visible ASCII")
    }

    /// Puts this token on `request` as its bearer token.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) {
        request
            .metadata_mut()
            .insert(AUTHORIZATION, self.metadata());
    }

    /// Whether an `authorization` value carries this token. The comparison takes the same
    /// time wherever the first difference is, so that timing tells an attacker nothing.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_compared_whole() {
        let token = Token::new("0123456789abcdef0123").unwrap();
        assert!(token.admits(Some("Bearer 0123456789abcdef0123")));
        assert!(!token.admits(Some("Bearer 0123456789abcdef0124")));
        assert!(!token.admits(Some("Bearer 0123456789abcdef012")));
        assert!(!token.admits(Some("0123456789abcdef0123")));
        assert!(!token.admits(None));
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it, sadly").is_err());
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}
