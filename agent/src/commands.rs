//! Carries out the controller's commands and answers each with a result carrying its id.
//!
//! Commands that take time (a node restart, a simulated load) run in their own task so that
//! the link keeps sampling and forwarding meanwhile; the sample interval is the link's own
//! state, so that one is applied by the link and answered at once.

use std::time::Duration;

use farm_node_api::client::NodeClient;
use farm_proto::limits::{MAX_SAMPLE_INTERVAL_MS, MIN_SAMPLE_INTERVAL_MS};
use farm_proto::v1::{Command, CommandResult, LoadSpec, NodeAction, command};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::sampler::Sampler;
use crate::supervisor::{Action, Supervisor};

/// How long the node may take to accept a simulated load.
const LOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most trace-context entries a command may carry, and the longest value: more is ignored.
const MAX_TRACE_ENTRIES: usize = 8;
const MAX_TRACE_VALUE_LEN: usize = 512;

/// The span of carrying out `command`, in the caller's trace when the command carries a
/// context within bounds; no span otherwise, and none while tracing is off.
fn command_span(command: &Command) -> tracing::Span {
    let context = &command.trace_context;
    let within_bounds = context.len() <= MAX_TRACE_ENTRIES
        && context.values().all(|v| v.len() <= MAX_TRACE_VALUE_LEN);
    if context.is_empty() || !within_bounds {
        return tracing::Span::none();
    }
    let name = command
        .action
        .as_ref()
        .map_or("unknown", command::Action::name);
    let span = tracing::info_span!(
        target: farm_telemetry::target::AGENT,
        "command",
        otel.name = %format!("handle {name}"),
        otel.kind = "server",
        farm.command.id = command.id,
    );
    if !span.is_disabled() {
        farm_telemetry::set_parent(&span, farm_telemetry::from_context_map(context));
    }
    span
}

/// A sample interval within bounds, or `None`.
pub(crate) fn sample_interval(ms: u32) -> Option<Duration> {
    (MIN_SAMPLE_INTERVAL_MS..=MAX_SAMPLE_INTERVAL_MS)
        .contains(&ms)
        .then(|| Duration::from_millis(u64::from(ms)))
}

/// Starts carrying out `command`; returns a new sample interval when the command set one.
pub(crate) fn handle(
    command: Command,
    supervisor: &Supervisor,
    sampler: &Sampler,
    results: &mpsc::Sender<CommandResult>,
) -> Option<Duration> {
    let id = command.id;
    let answer = move |ok: bool, message: String| CommandResult { id, ok, message };
    let span = command_span(&command);
    match command.action {
        Some(command::Action::SetSampleIntervalMs(ms)) => {
            let interval = sample_interval(ms);
            let result = match interval {
                Some(_) => answer(true, format!("sample interval set to {ms} ms")),
                None => answer(
                    false,
                    format!(
                        "sample interval {ms} ms is outside {MIN_SAMPLE_INTERVAL_MS} to {MAX_SAMPLE_INTERVAL_MS} ms"
                    ),
                ),
            };
            let _ = results.try_send(result);
            interval
        }
        Some(command::Action::NodeAction(raw)) => {
            let action = match NodeAction::try_from(raw) {
                Ok(NodeAction::Start) => Some(Action::Start),
                Ok(NodeAction::Stop) => Some(Action::Stop),
                Ok(NodeAction::Restart) => Some(Action::Restart),
                Ok(NodeAction::Kill) => Some(Action::Kill),
                Ok(NodeAction::Pause) => Some(Action::Pause),
                Ok(NodeAction::Unpause) => Some(Action::Unpause),
                _ => None,
            };
            let supervisor = supervisor.clone();
            let results = results.clone();
            tokio::spawn(
                async move {
                    let result = match action {
                        Some(action) => match supervisor.act(action).await {
                            Ok(message) => answer(true, message),
                            Err(message) => answer(false, message),
                        },
                        None => answer(false, format!("unknown node action {raw}")),
                    };
                    let _ = results.send(result).await;
                }
                .instrument(span),
            );
            None
        }
        Some(command::Action::SetFaults(set)) => {
            let action = Action::SetFaults(Box::new(set.profile.unwrap_or_default()), set.version);
            let supervisor = supervisor.clone();
            let results = results.clone();
            tokio::spawn(
                async move {
                    let result = match supervisor.act(action).await {
                        Ok(message) => answer(true, message),
                        Err(message) => answer(false, message),
                    };
                    let _ = results.send(result).await;
                }
                .instrument(span),
            );
            None
        }
        Some(command::Action::SimulateLoad(load)) => {
            let client = sampler.client().clone();
            let address = sampler.node_address().to_string();
            let results = results.clone();
            // The request to the node carries this span's context (see NodeClient).
            tokio::spawn(
                async move {
                    let result = match simulate_load(&client, &address, &load).await {
                        Ok(message) => answer(true, message),
                        Err(message) => answer(false, message),
                    };
                    let _ = results.send(result).await;
                }
                .instrument(span),
            );
            None
        }
        None => {
            let _ = results.try_send(answer(
                false,
                "this agent does not know that command".into(),
            ));
            None
        }
    }
}

/// Asks the node to apply `load`; the node validates it and answers with what it started.
async fn simulate_load(
    client: &NodeClient,
    address: &str,
    load: &LoadSpec,
) -> Result<String, String> {
    let body = format!(
        r#"{{"cpu_percent":{},"memory_mb":{},"duration_seconds":{}}}"#,
        load.cpu_percent, load.memory_mb, load.duration_seconds
    );
    let reply = client
        .request(
            http::Method::POST,
            address,
            "/simulate-load",
            Some(body.into()),
            LOAD_REQUEST_TIMEOUT,
            4096,
        )
        .await
        .map_err(|e| format!("node did not answer: {e}"))?;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    if reply.status == 202 {
        Ok(text)
    } else {
        Err(format!("node refused ({}): {text}", reply.status))
    }
}
