//! The API itself: what `GET /` tells a client.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where to find things.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Links {
    /// Interactive API documentation (works offline).
    pub docs: String,
    /// The OpenAPI 3.1 document.
    pub openapi: String,
    /// Prometheus metrics.
    pub metrics: String,
    /// The servers.
    pub servers: String,
    /// The farm's health.
    pub health: String,
    /// The farm's aggregated metrics.
    pub farm_metrics: String,
    /// The kept load tests.
    pub load_tests: String,
    /// The scenario runs.
    pub scenarios: String,
    /// The history's runs, load tests and scenario runs, including those from before the
    /// controller's last restart.
    pub runs: String,
    /// The history's events.
    pub events: String,
    /// The farm's metrics over time (`?server_id=` for one server's).
    pub metric_history: String,
    /// grpc-web base URL for `farm.v1.FarmService` (POST `/farm.v1.FarmService/<Method>`).
    pub grpc_web: String,
}

/// `GET /`: what this is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ApiInfo {
    /// `farm`.
    pub name: String,
    /// The gateway's version.
    pub version: String,
    /// One line on what this is.
    pub description: String,
    /// Where to find things.
    pub links: Links,
}
