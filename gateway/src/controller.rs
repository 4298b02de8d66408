//! The way to the controller: one lazily connected HTTP/2 channel, shared by every REST
//! request and every grpc-web call, and the one helper that bounds a call with a deadline.
//!
//! `connect_lazy` means the gateway starts (and answers `/`, `/docs`, `/metrics`) without a
//! controller, and that a controller restart needs no action: the channel notices the
//! broken connection and reconnects on the next call. While nothing listens, a call fails
//! within [`CONNECT_TIMEOUT`] with `Unavailable`, which the REST layer turns into a 503.

use std::time::Duration;

use farm_proto::v1::farm_service_client::FarmServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::{CONNECT_TIMEOUT, Config, ConfigError};
use crate::error::ApiError;

/// Largest message the gateway accepts from the controller (a watch snapshot or server
/// list of a large farm); the controller's own bound is the same.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The controller, as the gateway reaches it.
#[derive(Debug, Clone)]
pub struct Controller {
    channel: Channel,
    client: FarmServiceClient<InterceptedService<Channel, Authorize>>,
    authorization: Option<http::HeaderValue>,
}

/// Puts the farm's token on every call to the controller, which needs it for changes when it
/// listens beyond loopback: the gateway has already admitted the request by its own rules.
/// Also puts the trace context of the request's span there, so that the controller's span
/// joins the trace.
#[derive(Debug, Clone)]
pub struct Authorize(Option<MetadataValue<Ascii>>);

impl Interceptor for Authorize {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert(farm_proto::auth::AUTHORIZATION, value.clone());
        }
        farm_telemetry::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

impl Controller {
    /// A channel to `config.controller_url` that connects on first use. Needs a tokio
    /// runtime (the channel's worker task is spawned here).
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let endpoint =
            farm_proto::tls::endpoint(&config.controller_url, config.controller_ca.as_deref())
                .map_err(ConfigError::ControllerTls)?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                // Notice a controller that vanished without closing the connection (a killed
                // host, a dropped network) instead of waiting on a dead socket.
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        let metadata = config.token.as_ref().map(farm_proto::auth::Token::metadata);
        let authorization = config
            .token
            .as_ref()
            .and_then(|token| http::HeaderValue::from_str(&token.bearer()).ok());
        let client = FarmServiceClient::with_interceptor(channel.clone(), Authorize(metadata))
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            channel,
            client,
            authorization,
        })
    }

    /// The `authorization` value the gateway's own calls carry, for the grpc-web proxy.
    pub fn authorization(&self) -> Option<&http::HeaderValue> {
        self.authorization.as_ref()
    }

    /// The raw channel, for the grpc-web proxy.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A client on the shared channel (cheap: clones share the connection).
    pub fn client(&self) -> FarmServiceClient<InterceptedService<Channel, Authorize>> {
        self.client.clone()
    }
}

/// Runs `call` with `deadline`: the controller's error maps through
/// [`ApiError::from_grpc`], and a call still running at the deadline is dropped (which
/// cancels it on the controller) and answered with a 504.
pub async fn within<T, F>(deadline: Duration, call: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(status)) => Err(ApiError::from_grpc(&status)),
        Err(_) => Err(ApiError::Timeout(format!(
            "the controller did not answer within {} ms",
            deadline.as_millis()
        ))),
    }
}
