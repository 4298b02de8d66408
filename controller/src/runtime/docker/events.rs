//! Container states from the engine's event stream, never from polling. The engine treats
//! `docker kill` as a manual stop and does not restart such a container, so the farm does: a
//! container that dies without the farm asking is started again after a short delay, the
//! farm's restart policy on top of the engine's.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use farm_backoff::Backoff;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::network::farm_filter;
use super::{DockerRuntime, LABEL_SERVER_ID, RESTART_DELAY, lock};
use crate::registry::Registry;
use crate::status::RuntimeState;

impl DockerRuntime {
    /// Follows the engine's events for this farm's containers until shutdown, reconnecting
    /// when the stream breaks.
    pub(super) fn follow_events(&self) {
        let (docker, registry, servers, stopping, prefix, shutdown) = (
            self.docker.clone(),
            self.registry.clone(),
            self.servers.clone(),
            self.stopping.clone(),
            self.config.prefix.clone(),
            self.shutdown.clone(),
        );
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5), Duration::from_secs(30));
            let mut filters = farm_filter(&prefix);
            filters.insert("type", vec!["container".into()]);
            loop {
                let mut events = docker.events(Some(EventsOptionsBuilder::default().filters(&filters).build()));
                loop {
                    let event = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        event = events.next() => event,
                    };
                    match event {
                        Some(Ok(event)) => {
                            backoff.reset();
                            on_event(&event, &registry, &servers, &stopping, &docker, &tracker, &shutdown, &prefix);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Docker event stream failed; following again.");
                            break;
                        }
                        None => break,
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        });
    }
}

/// Turns one engine event into a server state, and restarts a container that died without
/// the farm asking.
#[allow(clippy::too_many_arguments)]
fn on_event(
    event: &EventMessage,
    registry: &Registry,
    servers: &Mutex<BTreeSet<u32>>,
    stopping: &Arc<Mutex<HashSet<u32>>>,
    docker: &Docker,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    prefix: &str,
) {
    let Some(attributes) = event.actor.as_ref().and_then(|a| a.attributes.as_ref()) else {
        return;
    };
    let Some(id) = attributes
        .get(LABEL_SERVER_ID)
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    let action = event.action.as_deref().unwrap_or_default();
    if action == "destroy" {
        return;
    }
    lock(servers).insert(id);
    let state = match action {
        "start" => {
            // Started by anyone: a later death is a crash again. The agent in the container
            // that just started is the server's, whatever stream still holds it.
            lock(stopping).remove(&id);
            registry.vouch(id);
            RuntimeState::Running
        }
        "unpause" | "restart" => RuntimeState::Running,
        "pause" => RuntimeState::Paused,
        // `docker stop`, from anyone (this farm, the CLI, docker-compose), begins with a
        // kill by SIGTERM; `docker kill` sends SIGKILL. A graceful stop is a deliberate one:
        // remember it, so that the death that follows is not restarted.
        "kill" => {
            let signal = attributes
                .get("signal")
                .map(String::as_str)
                .unwrap_or_default();
            if !matches!(signal, "9" | "SIGKILL" | "KILL") {
                lock(stopping).insert(id);
            }
            return;
        }
        "stop" => {
            lock(stopping).insert(id);
            RuntimeState::Stopped
        }
        "die" => {
            if lock(stopping).contains(&id) {
                RuntimeState::Stopped
            } else {
                let code = attributes
                    .get("exitCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(-1);
                let name = format!("{prefix}-server-{id}");
                let (docker, shutdown, stopping) =
                    (docker.clone(), shutdown.clone(), stopping.clone());
                tracker.spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        // Long enough for the `stop` event that follows a `docker stop`.
                        _ = tokio::time::sleep(RESTART_DELAY) => {
                            if lock(&stopping).contains(&id) {
                                return;
                            }
                            tracing::warn!(server_id = id, "Container died on its own; restarting it.");
                            if let Err(e) = docker.start_container(&name, None).await {
                                tracing::warn!(server_id = id, error = %e, "Restart failed.");
                            }
                        }
                    }
                });
                RuntimeState::Exited(code)
            }
        }
        _ => return,
    };
    registry.set_runtime_state(id, state);
}
