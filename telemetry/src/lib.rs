//! `farm-telemetry`: traces for every farm process, and the W3C trace context that ties them
//! into one trace across HTTP, gRPC and the agent stream.
//!
//! # Off by default
//! Tracing starts only when an OTLP endpoint is given: `--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`. Then each process
//! exports its spans over OTLP/gRPC, named by `OTEL_SERVICE_NAME` (or its role: `farm-gateway`,
//! `farm-controller`, `farm-agent`, `farm-node`, `farm` for `farm up`) with the attributes of
//! `OTEL_RESOURCE_ATTRIBUTES`. A malformed endpoint or attribute list is refused at start-up
//! with the variable named ([`Settings::from_env`]).
//!
//! # Costs nothing when the collector is away
//! Spans go through a batch processor with a bounded queue ([`MAX_QUEUED_SPANS`]): when the
//! collector is down or slow, new spans are dropped once the queue is full, exports time out
//! after [`EXPORT_TIMEOUT`], and one warning is logged when the collector stops answering (one
//! line when it answers again); nothing waits for it. The batch processor
//! runs on a thread and Tokio runtime of its own (`TokioCurrentThread`), so it works the same
//! under the one-thread runtimes of agents and nodes and the many-thread one of the
//! controller; only the exporters' gRPC channels run on the process's own runtime, off its
//! request paths.
//!
//! # Sampling follows the parent
//! Every process samples as its parent did. Without a parent, the gateway and the controller
//! start a trace (a REST call is the root of its trace); agents and nodes never do: a node
//! makes a span only for a request that carries a sampled `traceparent`
//! ([`is_sampled`]), so an untraced load costs it one header lookup.
//!
//! # Carrying the context
//! [`extract`] and [`inject`] read and write `traceparent`/`tracestate` in an HTTP header map
//! (REST, grpc-web, the node's requests, gRPC metadata, which is HTTP/2 headers), and
//! [`context_map`]/[`from_context_map`] in the string map an agent command carries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Most finished spans a process holds for export; past it new spans are dropped.
pub const MAX_QUEUED_SPANS: usize = 2048;
/// Longest one export may take before it is given up.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest shutdown waits to send the last spans.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `OTEL_RESOURCE_ATTRIBUTES`, in bytes.
pub const MAX_RESOURCE_ATTRIBUTES_LEN: usize = 4096;
/// The tracing targets of the farm's exported spans, one per component: each component's
/// OpenTelemetry layer takes its own target only, whatever the log filter says, and the log
/// filter leaves them out. `farm up` runs the controller and the gateway in one process and
/// still names each by its own `service.name`.
pub mod target {
    /// The gateway's spans.
    pub const GATEWAY: &str = "farm::trace::gateway";
    /// The controller's spans.
    pub const CONTROLLER: &str = "farm::trace::controller";
    /// The agent's spans.
    pub const AGENT: &str = "farm::trace::agent";
    /// The node's spans.
    pub const NODE: &str = "farm::trace::node";
    /// The prefix of them all.
    pub const ALL: &str = "farm::trace";
}

/// A part of the farm that makes spans, with its target and default `service.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The gateway (REST, grpc-web).
    Gateway,
    /// The controller (`FarmService`, agent commands, load tests).
    Controller,
    /// An agent.
    Agent,
    /// A node.
    Node,
}

impl Component {
    /// Its spans' target.
    pub fn target(self) -> &'static str {
        match self {
            Self::Gateway => target::GATEWAY,
            Self::Controller => target::CONTROLLER,
            Self::Agent => target::AGENT,
            Self::Node => target::NODE,
        }
    }

    /// Its `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Gateway => "farm-gateway",
            Self::Controller => "farm-controller",
            Self::Agent => "farm-agent",
            Self::Node => "farm-node",
        }
    }

    /// Whether it starts traces of its own, or only follows a sampled parent.
    fn roots(self) -> Roots {
        match self {
            Self::Gateway | Self::Controller => Roots::Start,
            Self::Agent | Self::Node => Roots::FollowOnly,
        }
    }
}

/// Whether a component may start a trace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Roots {
    /// A request without a parent starts a trace (the gateway, the controller).
    Start,
    /// Only requests with a sampled parent are traced (agents and nodes).
    FollowOnly,
}

/// How a process exports its traces.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// `service.name` from `OTEL_SERVICE_NAME`, for every component of the process; each
    /// component's own name otherwise.
    pub service_name: Option<String>,
    /// Further resource attributes.
    pub attributes: Vec<(String, String)>,
}

impl Settings {
    /// The settings from `flag` (`--otlp-endpoint`) or the standard environment, read
    /// through `env`; `None` when no endpoint is given (tracing off). The error names the
    /// variable (or the flag) and what is wrong with it.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        flag: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let given = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (source, endpoint) = match flag {
            Some(flag) if !flag.is_empty() => ("--otlp-endpoint", flag.to_string()),
            _ => match given("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(v) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v),
                None => match given("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(v) => ("OTEL_EXPORTER_OTLP_ENDPOINT", v),
                    None => return Ok(None),
                },
            },
        };
        let endpoint = endpoint.trim().to_string();
        check_endpoint(&endpoint).map_err(|why| format!("{source}: {why}, got {endpoint:?}"))?;
        let service_name = given("OTEL_SERVICE_NAME");
        let attributes = match given("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => {
                parse_attributes(&raw).map_err(|why| format!("OTEL_RESOURCE_ATTRIBUTES: {why}"))?
            }
            None => Vec::new(),
        };
        Ok(Some(Self {
            endpoint,
            service_name,
            attributes,
        }))
    }

    /// The environment a child process (an agent, a node, a container) needs to export to
    /// the same collector: the endpoint, and the resource attributes. Its service name is
    /// its own.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            self.endpoint.clone(),
        )];
        if !self.attributes.is_empty() {
            let joined: Vec<String> = self
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                .collect();
            env.push(("OTEL_RESOURCE_ATTRIBUTES".into(), joined.join(",")));
        }
        env
    }
}

/// An OTLP/gRPC endpoint: `http://` or `https://`, a host, a port if any, no path.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    let authority = uri.authority().ok_or("has no host")?;
    if authority.host().is_empty() {
        return Err("has no host".into());
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("must not carry a path (OTLP/gRPC needs none)".into());
    }
    Ok(())
}

/// `key1=value1,key2=value2` (values may be percent-encoded, as the specification allows).
fn parse_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    if raw.len() > MAX_RESOURCE_ATTRIBUTES_LEN {
        return Err(format!("longer than {MAX_RESOURCE_ATTRIBUTES_LEN} bytes"));
    }
    raw.split(',')
        .enumerate()
        .filter(|(_, item)| !item.trim().is_empty())
        .map(|(i, item)| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("item {} ({item:?}) is not key=value", i + 1))?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!(
                    "item {} ({item:?}) needs a key of visible ASCII characters",
                    i + 1
                ));
            }
            let value = percent_decode(value.trim())
                .ok_or_else(|| format!("item {} ({item:?}) has a bad percent-encoding", i + 1))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

/// Encodes what would break a `key=value,...` list: `%`, `,`, `=`, and anything not visible
/// ASCII.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b'%' | b',' | b'=') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The settings this process exports with, once [`Telemetry::start`] ran.
static IN_FORCE: OnceLock<Settings> = OnceLock::new();

/// Variables a child process must not inherit when this process exports: the child's
/// endpoint is the one [`child_env`] gives, and its service name is its own.
pub const CHILD_ENV_REMOVED: [&str; 2] =
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"];

/// The environment a child process (an agent and its node, a container) needs to export its
/// traces to the collector this process exports to; empty while tracing is off. With
/// `loopback_as`, a loopback endpoint is rewritten to that address: a container's loopback is
/// its own, and it reaches the host at the farm network's gateway.
pub fn child_env(loopback_as: Option<IpAddr>) -> Vec<(String, String)> {
    let Some(settings) = IN_FORCE.get() else {
        return Vec::new();
    };
    let mut env = settings.child_env();
    if let Some(host) = loopback_as {
        for (name, value) in &mut env {
            if name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
                *value = rehost_loopback(value, host);
            }
        }
    }
    env
}

/// `endpoint` with a loopback host (an IP or `localhost`) replaced by `host`; as it was
/// otherwise.
fn rehost_loopback(endpoint: &str, host: IpAddr) -> String {
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return endpoint.to_string();
    };
    let Some(authority) = uri.authority() else {
        return endpoint.to_string();
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return endpoint.to_string();
    }
    let host = match host {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let port = authority
        .port_u16()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!("{}://{host}{port}", uri.scheme_str().unwrap_or("http"))
}

/// One OpenTelemetry layer of the subscriber, boxed.
pub type BoxedLayer<S> = Box<dyn tracing_subscriber::Layer<S> + Send + Sync>;

/// Running exporters, one per component of the process; [`Telemetry::shutdown`] sends what
/// is left.
#[derive(Debug)]
pub struct Telemetry {
    providers: Vec<SdkTracerProvider>,
}

impl Telemetry {
    /// Starts exporting the spans of `components` with `settings`; needs a Tokio runtime
    /// (each exporter's channel is made here, connecting on first use). Returns the layers to
    /// add to the subscriber: each takes its component's target only.
    pub fn start<S>(
        settings: &Settings,
        components: &[Component],
    ) -> Result<(Self, Vec<BoxedLayer<S>>), String>
    where
        S: tracing::Subscriber
            + for<'span> tracing_subscriber::registry::LookupSpan<'span>
            + Send
            + Sync,
    {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let _ = IN_FORCE.set(settings.clone());
        let mut providers = Vec::new();
        let mut layers = Vec::new();
        for &component in components {
            let provider = provider(settings, component)?;
            layers.push(layer(&provider, component));
            providers.push(provider);
        }
        Ok((Self { providers }, layers))
    }

    /// Sends the spans still queued, waiting [`SHUTDOWN_TIMEOUT`] at most.
    pub fn shutdown(self) {
        let providers = self.providers;
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for provider in providers {
                let _ = provider.shutdown();
            }
            let _ = done.send(());
        });
        let _ = wait.recv_timeout(SHUTDOWN_TIMEOUT);
    }
}

/// An exporter that says, once, when the collector stops answering, and once when it answers
/// again, instead of an error per failed batch.
#[derive(Debug)]
struct Warned<E> {
    inner: E,
    endpoint: String,
    failing: std::sync::atomic::AtomicBool,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Warned<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        use std::sync::atomic::Ordering;
        let result = self.inner.export(batch).await;
        match &result {
            Err(error) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                endpoint = %self.endpoint,
                %error,
                "Traces cannot reach the collector; spans are dropped until it answers."
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.endpoint, "Traces reach the collector again.");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The layer that hands `component`'s spans to `provider`.
fn layer<S>(provider: &SdkTracerProvider, component: Component) -> BoxedLayer<S>
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    use tracing_subscriber::Layer as _;
    let target = component.target();
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("farm"))
        .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
            meta.target() == target
        }))
        .boxed()
}

/// An exporter and its batch processor for `component`.
fn provider(settings: &Settings, component: Component) -> Result<SdkTracerProvider, String> {
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("the OTLP exporter for {}: {e}", settings.endpoint))?;
        let exporter = Warned {
            inner: exporter,
            endpoint: settings.endpoint.clone(),
            failing: std::sync::atomic::AtomicBool::new(false),
        };
        let batch = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::TokioCurrentThread,
        )
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUED_SPANS)
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
        let root = match component.roots() {
            Roots::Start => Sampler::AlwaysOn,
            Roots::FollowOnly => Sampler::AlwaysOff,
        };
        let resource = Resource::builder()
            .with_service_name(
                settings
                    .service_name
                    .clone()
                    .unwrap_or_else(|| component.service_name().into()),
            )
            .with_attributes(
                settings
                    .attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_sampler(Sampler::ParentBased(Box::new(root)))
            .with_resource(resource)
            .build())
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The trace context `headers` carry (empty when none, or when tracing is off).
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// The current span's context, when it belongs to a trace (never when tracing is off).
fn current() -> Option<Context> {
    use opentelemetry::trace::TraceContextExt as _;
    let context = tracing::Span::current().context();
    context.span().span_context().is_valid().then_some(context)
}

/// Writes the context of the current span into `headers` (nothing when tracing is off).
pub fn inject(headers: &mut http::HeaderMap) {
    if let Some(context) = current() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeaderInjector(headers));
        });
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Writes the context of the current span into gRPC `metadata` (nothing when tracing is off).
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(context) = current() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MetadataInjector(metadata));
        });
    }
}

/// The context of the current span as a string map, for an agent command (empty when
/// tracing is off).
pub fn context_map() -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(context) = current() {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut map));
    }
    map
}

/// The context an agent command carried.
pub fn from_context_map(map: &HashMap<String, String>) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(map))
}

/// Makes `parent` the parent of `span` (a remote parent: another process's span).
pub fn set_parent(span: &tracing::Span, parent: Context) {
    let _ = span.set_parent(parent);
}

/// Whether a `traceparent` value asks for its request to be traced: version `00`, a trace id,
/// a span id, and the sampled flag set. Cheap: no allocation, no propagator.
pub fn is_sampled(traceparent: &[u8]) -> bool {
    // 00-<32 hex>-<16 hex>-<2 hex flags>
    traceparent.len() >= 55
        && traceparent[2] == b'-'
        && traceparent[35] == b'-'
        && traceparent[52] == b'-'
        && std::str::from_utf8(&traceparent[53..55])
            .ok()
            .and_then(|f| u8::from_str_radix(f, 16).ok())
            .is_some_and(|flags| flags & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        assert_eq!(Settings::from_env(env(&[]), None), Ok(None));
        assert_eq!(
            Settings::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None),
            Ok(None)
        );
    }

    #[test]
    fn the_standard_variables_are_read_and_checked_by_name() {
        let settings = Settings::from_env(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_SERVICE_NAME", "edge"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=lab,team=a%20b",
                ),
            ]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.endpoint, "http://127.0.0.1:4317");
        assert_eq!(settings.service_name.as_deref(), Some("edge"));
        assert_eq!(
            settings.attributes,
            [
                ("deployment.environment".to_string(), "lab".to_string()),
                ("team".to_string(), "a b".to_string())
            ]
        );
        for (name, value, why) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317", "http://"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "not a url",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "ftp://x:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://x:1/v1/traces",
                "path",
            ),
        ] {
            let e = Settings::from_env(env(&[(name, value)]), None).unwrap_err();
            assert!(e.contains(why), "{value}: {e}");
        }
        let e = Settings::from_env(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_RESOURCE_ATTRIBUTES", "a=1,broken"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(
            e.starts_with("OTEL_RESOURCE_ATTRIBUTES") && e.contains("item 2"),
            "{e}"
        );
        let e = Settings::from_env(env(&[]), Some("nope")).unwrap_err();
        assert!(e.starts_with("--otlp-endpoint"), "{e}");
    }

    #[test]
    fn a_context_carried_in_headers_metadata_and_commands_parents_the_next_span() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        use tracing_subscriber::prelude::*;
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let subscriber =
            tracing_subscriber::registry().with(layer(&provider, Component::Controller));
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!(target: target::CONTROLLER, "parent");
            let (headers, metadata, map) = parent.in_scope(|| {
                let mut headers = http::HeaderMap::new();
                inject(&mut headers);
                let mut metadata = tonic::metadata::MetadataMap::new();
                inject_metadata(&mut metadata);
                (headers, metadata, context_map())
            });
            assert!(headers.contains_key("traceparent"), "{headers:?}");
            for (name, carried) in [
                ("from headers", extract(&headers)),
                ("from metadata", extract(&metadata.into_headers())),
                ("from a command", from_context_map(&map)),
            ] {
                let child = tracing::info_span!(target: target::CONTROLLER, "child", name);
                set_parent(&child, carried);
                drop(child);
            }
            // Outside any span there is nothing to carry.
            let mut empty = http::HeaderMap::new();
            inject(&mut empty);
            assert!(empty.is_empty());
            assert!(context_map().is_empty());
        });
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        let parent = spans
            .iter()
            .find(|s| s.name == "parent")
            .expect("the parent");
        let children: Vec<_> = spans.iter().filter(|s| s.name == "child").collect();
        assert_eq!(children.len(), 3, "{spans:#?}");
        for child in children {
            assert_eq!(child.parent_span_id, parent.span_context.span_id());
            assert_eq!(
                child.span_context.trace_id(),
                parent.span_context.trace_id()
            );
        }
    }

    #[test]
    fn only_a_sampled_traceparent_asks_for_a_span() {
        let sampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(is_sampled(sampled));
        assert!(!is_sampled(unsampled));
        assert!(!is_sampled(b"garbage"));
        assert!(!is_sampled(b""));
    }

    #[test]
    fn a_loopback_collector_is_reached_from_containers_at_the_given_address() {
        let gateway: IpAddr = "172.18.0.1".parse().unwrap();
        assert_eq!(
            rehost_loopback("http://127.0.0.1:4317", gateway),
            "http://172.18.0.1:4317"
        );
        assert_eq!(
            rehost_loopback("https://localhost:4317", gateway),
            "https://172.18.0.1:4317"
        );
        assert_eq!(
            rehost_loopback("http://collector.lab:4317", gateway),
            "http://collector.lab:4317"
        );
    }

    #[test]
    fn the_child_environment_carries_the_endpoint_and_attributes() {
        let settings = Settings {
            endpoint: "http://10.0.0.1:4317".into(),
            service_name: None,
            attributes: vec![("k".into(), "v,=%".into())],
        };
        assert_eq!(
            settings.child_env(),
            [
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                    "http://10.0.0.1:4317".to_string()
                ),
                (
                    "OTEL_RESOURCE_ATTRIBUTES".to_string(),
                    "k=v%2C%3D%25".to_string()
                )
            ]
        );
    }
}
