//! Container states from the engine's event stream, never from polling. The engine treats
//! `docker kill` as a manual stop and does not restart such a container, so the farm does: a
//! container that dies without the farm asking is started again after a short delay, the
//! farm's restart policy on top of the engine's. A container removed from outside
//! (`docker rm -f`) while its server is still the farm's is made again.

use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as ApiError;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use farm_backoff::Backoff;
use tokio_stream::StreamExt;

use super::network::farm_filter;
use super::{LABEL_SERVER_ID, RESTART_DELAY, Shared, lock};
use crate::status::RuntimeState;

/// Follows the engine's events for the farm's containers until shutdown, reconnecting when
/// the stream breaks.
pub(super) fn follow(shared: &Arc<Shared>) {
    let shared = shared.clone();
    shared.tracker.clone().spawn(async move {
        let mut backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            Duration::from_secs(30),
        );
        let mut filters = farm_filter(&shared.config.prefix);
        filters.insert("type", vec!["container".into()]);
        loop {
            let mut events = shared.docker.events(Some(
                EventsOptionsBuilder::default().filters(&filters).build(),
            ));
            loop {
                let event = tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                match event {
                    Some(Ok(event)) => {
                        backoff.reset();
                        on_event(&event, &shared);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Docker event stream failed; following again.");
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    });
}

/// Turns one engine event into a server state, restarts a container that died without the
/// farm asking, and makes again one that was removed while its server is still the farm's.
fn on_event(event: &EventMessage, shared: &Arc<Shared>) {
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
        // Scaling down drops a server before removing its container, and shutdown cancels
        // first, so a server still owned here was removed from outside.
        shared.vanished(id, "its container was removed");
        return;
    }
    if shared.making.is_none() {
        // An adopted farm's servers are the containers docker-compose made, as they show up.
        lock(&shared.servers).insert(id);
    }
    let state = match action {
        "start" => {
            // Started by anyone: a later death is a crash again. The agent in the container
            // that just started is the server's, whatever stream still holds it.
            lock(&shared.stopping).remove(&id);
            lock(&shared.vanished).remove(&id);
            shared.registry.vouch(id);
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
                lock(&shared.stopping).insert(id);
            }
            return;
        }
        "stop" => {
            lock(&shared.stopping).insert(id);
            RuntimeState::Stopped
        }
        "die" => {
            if lock(&shared.stopping).contains(&id) {
                RuntimeState::Stopped
            } else {
                let code = attributes
                    .get("exitCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(-1);
                restart_later(shared, id);
                RuntimeState::Exited(code)
            }
        }
        _ => return,
    };
    shared.registry.set_runtime_state(id, state);
}

/// Starts server `id`'s container again after a death nobody asked for, unless a stop
/// turns out to have caused it; a container that is gone by then is made again.
fn restart_later(shared: &Arc<Shared>, id: u32) {
    let shared = shared.clone();
    shared.tracker.clone().spawn(async move {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {}
            // Long enough for the `stop` event that follows a `docker stop`.
            _ = tokio::time::sleep(RESTART_DELAY) => {
                if lock(&shared.stopping).contains(&id) {
                    return;
                }
                tracing::warn!(server_id = id, "Container died on its own; restarting it.");
                let name = shared.config.container_name(id);
                match shared.docker.start_container(&name, None).await {
                    Ok(()) => {}
                    Err(ApiError::DockerResponseServerError { status_code: 404, .. }) => {
                        shared.vanished(id, "the restart found no container");
                    }
                    Err(e) => {
                        tracing::warn!(server_id = id, error = %e, "Restart failed.");
                    }
                }
            }
        }
    });
}
