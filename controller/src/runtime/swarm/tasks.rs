//! Following the farm's tasks. A swarm has no task events, so the runtime asks the manager
//! every [`POLL_INTERVAL`] for the farm's services, their tasks (by the services' label: the
//! poll costs what the farm has, not what the swarm runs) and the swarm's nodes, and
//! tells the registry what each server's current task is doing and where it runs. The engine
//! itself restarts, reschedules and moves tasks (a task that died, a node drained or lost);
//! the runtime only reports it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bollard::models::{Node, Task, TaskState};
use tokio::time::MissedTickBehavior;

use super::{POLL_INTERVAL, Shared, SwarmError, api, lock, network};
use crate::status::RuntimeState;

/// Where a server's current task runs, as the farm shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    /// The swarm node's id.
    pub node_id: String,
    /// The node's address in the swarm.
    pub node_addr: String,
    /// The node's hostname.
    pub hostname: String,
    /// The node port published on that node, once the task runs.
    pub published_port: Option<u16>,
}

impl Placement {
    /// Where the node is reached: the node's address and the published port, once both are
    /// known.
    fn published_address(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.node_addr.parse().ok()?;
        Some(SocketAddr::new(ip, self.published_port?))
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: String = self.node_id.chars().take(12).collect();
        match self.published_address() {
            Some(address) => write!(f, "{address}")?,
            None => write!(f, "{}", self.node_addr)?,
        }
        write!(f, " on node {} ({short})", self.hostname)
    }
}

/// What one poll found of a server.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// The server's current task.
    task_id: Option<String>,
    state: Option<RuntimeState>,
    placement: Option<Placement>,
    /// The engine's word on a task that does not run.
    note: Option<String>,
}

/// What one poll found: each owned server, and how each task that ended on its own ended.
#[derive(Debug, Default)]
struct Look {
    servers: HashMap<u32, Seen>,
    ended: HashMap<String, (RuntimeState, Option<String>)>,
}

/// Polls the farm's tasks until the runtime shuts down.
pub(super) fn follow(shared: &Arc<Shared>) {
    let shared = shared.clone();
    let tracker = shared.tracker.clone();
    tracker.spawn(async move {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seen: HashMap<u32, Seen> = HashMap::new();
        let mut failing = false;
        loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let polled = tokio::select! {
                () = shared.shutdown.cancelled() => return,
                polled = poll(&shared) => polled,
            };
            match polled {
                Ok(now) => {
                    if failing {
                        tracing::info!("The swarm's manager answers again.");
                        failing = false;
                    }
                    report(&shared, &mut seen, &now);
                }
                Err(error) if !failing => {
                    tracing::warn!(%error, "Cannot follow the farm's tasks; trying again each second.");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// Tells the registry what changed since the last poll. A server whose task ended on its own
/// (killed, crashed) since then shows as exited for one poll, even when the engine has
/// already started its next task, so that everyone following the farm sees the death (unless
/// the last poll showed it already). A new task's agent is vouched for, so that it takes the
/// server over from a stream its predecessor may still hold (a node cut off).
fn report(shared: &Shared, seen: &mut HashMap<u32, Seen>, now: &Look) {
    for (&id, current) in &now.servers {
        let before = seen.get(&id);
        if before == Some(current) {
            continue;
        }
        let replaced = before
            .and_then(|b| b.task_id.as_ref())
            .filter(|&task| current.task_id.as_ref() != Some(task));
        if replaced.is_some() && current.task_id.is_some() {
            shared.registry.vouch(id);
        }
        let already_shown =
            before.is_some_and(|b| matches!(b.state, Some(RuntimeState::Exited(_))));
        let death = replaced
            .filter(|_| !already_shown)
            .and_then(|task| now.ended.get(task));
        if let Some((death, note)) = death {
            tracing::info!(server_id = id, state = ?death, note, "A server's task ended; the engine starts another.");
            shared.registry.set_runtime_state(id, *death);
            if note.is_some() {
                shared.registry.set_runtime_note(id, note.clone());
            }
            seen.insert(
                id,
                Seen {
                    state: Some(*death),
                    ..current.clone()
                },
            );
            continue;
        }
        if let Some(state) = current.state {
            shared.registry.set_runtime_state(id, state);
        }
        // The engine's word stays until a task runs: the task after a refused one says
        // nothing while it is prepared.
        if current.note.is_some() || current.state == Some(RuntimeState::Running) {
            shared.registry.set_runtime_note(id, current.note.clone());
        }
        if let Some(placement) = &current.placement
            && let Some(published) = placement.published_address()
        {
            shared
                .registry
                .set_placement(id, placement.to_string(), published.to_string());
        }
        let moved_from = before.and_then(|b| b.placement.as_ref());
        match (moved_from, current.placement.as_ref()) {
            (Some(from), Some(to)) if from.node_id != to.node_id => {
                tracing::info!(server_id = id, %from, %to, "A server's task moved to another node.");
            }
            _ => {}
        }
        seen.insert(id, current.clone());
    }
}

/// One look at the farm: each owned server's state and placement.
async fn poll(shared: &Shared) -> Result<Look, SwarmError> {
    let docker = &shared.docker;
    // Service id -> (server id, replicas asked for).
    let mut by_service: HashMap<String, (u32, i64)> = HashMap::new();
    for service in network::farm_services(docker, &shared.config.prefix).await? {
        let Some(server) = network::server_id(&service) else {
            continue;
        };
        let replicas = service
            .spec
            .and_then(|s| s.mode)
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .unwrap_or(1);
        if let Some(id) = service.id {
            by_service.insert(id, (server, replicas));
        }
    }
    let tasks = network::farm_tasks(docker, &shared.config.prefix).await?;
    let nodes: HashMap<String, Node> = docker
        .list_nodes(None)
        .await
        .map_err(api("list nodes"))?
        .into_iter()
        .filter_map(|node| Some((node.id.clone()?, node)))
        .collect();

    let owned = lock(&shared.servers).clone();
    let mut current: HashMap<u32, &Task> = HashMap::new();
    for task in &tasks {
        let Some(&(id, _)) = task.service_id.as_ref().and_then(|s| by_service.get(s)) else {
            continue;
        };
        if !owned.contains(&id) {
            continue;
        }
        let newer = current.get(&id).is_none_or(|held| precedes(held, task));
        if newer {
            current.insert(id, task);
        }
    }
    let mut look = Look::default();
    for task in &tasks {
        let on_its_own = task.desired_state == Some(TaskState::RUNNING)
            || task.desired_state == Some(TaskState::SHUTDOWN);
        if let (true, Some(id), Some(RuntimeState::Exited(code))) =
            (on_its_own, task.id.as_ref(), state_of(task))
        {
            look.ended
                .insert(id.clone(), (RuntimeState::Exited(code), note_of(task)));
        }
    }
    for &(id, replicas) in by_service.values() {
        if !owned.contains(&id) {
            continue;
        }
        let task = current.get(&id).copied();
        let state = if replicas == 0 {
            Some(RuntimeState::Stopped)
        } else {
            task.and_then(state_of)
        };
        let placement = task.and_then(|t| placement_of(t, &nodes));
        let task_id = task.and_then(|t| t.id.clone());
        let note = task.and_then(note_of);
        look.servers.insert(
            id,
            Seen {
                task_id,
                state,
                placement,
                note,
            },
        );
    }
    Ok(look)
}

/// Whether task `held` comes before `other` as a server's current task: a task the engine
/// wants running wins over one it wants gone, then the newer one (higher version, then the
/// later creation: one change of the engine may write two tasks).
fn precedes(held: &Task, other: &Task) -> bool {
    let key = |t: &Task| {
        (
            t.desired_state == Some(TaskState::RUNNING),
            t.version.as_ref().and_then(|v| v.index).unwrap_or(0),
            t.created_at.clone().unwrap_or_default(),
        )
    };
    key(other) > key(held)
}

/// What a task's state means for its server, when it says something.
fn state_of(task: &Task) -> Option<RuntimeState> {
    let status = task.status.as_ref()?;
    match status.state? {
        TaskState::RUNNING => Some(RuntimeState::Running),
        // Refused before a container ran (no such image): no exit code to speak of.
        TaskState::REJECTED => Some(RuntimeState::Exited(-1)),
        TaskState::FAILED | TaskState::COMPLETE | TaskState::ORPHANED => {
            let code = status
                .container_status
                .as_ref()
                .and_then(|c| c.exit_code)
                .unwrap_or(-1);
            Some(RuntimeState::Exited(code))
        }
        // Being placed or started: nothing to say yet.
        _ => None,
    }
}

/// The longest engine message a server's status carries, in characters.
const MAX_NOTE_CHARS: usize = 200;

/// What the engine says is wrong with a task that does not run: its error (a pending task's
/// "no suitable node", a rejected one's missing image). Not an exit code, which the state
/// carries already.
fn note_of(task: &Task) -> Option<String> {
    let status = task.status.as_ref()?;
    if status.state == Some(TaskState::RUNNING) {
        return None;
    }
    let err = status.err.as_deref()?.trim();
    if err.is_empty() || err.starts_with("task: non-zero exit") {
        return None;
    }
    Some(err.chars().take(MAX_NOTE_CHARS).collect())
}

/// Where `task` runs, from its node and its published port.
fn placement_of(task: &Task, nodes: &HashMap<String, Node>) -> Option<Placement> {
    let node_id = task.node_id.clone()?;
    let node = nodes.get(&node_id);
    let published_port = task
        .status
        .as_ref()
        .and_then(|s| s.port_status.as_ref())
        .and_then(|p| p.ports.as_ref())
        .and_then(|ports| ports.iter().find_map(|p| p.published_port))
        .and_then(|p| u16::try_from(p).ok());
    Some(Placement {
        node_addr: node.and_then(node_addr).unwrap_or_default(),
        hostname: node
            .and_then(|n| n.description.as_ref())
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default(),
        node_id,
        published_port,
    })
}

/// The address of a swarm node. A manager may report 0.0.0.0 as its own address; its address
/// among the managers says where it is.
pub(super) fn node_addr(node: &Node) -> Option<String> {
    let status_addr = node
        .status
        .as_ref()
        .and_then(|s| s.addr.clone())
        .filter(|a| !a.is_empty() && a != "0.0.0.0");
    status_addr.or_else(|| {
        let addr = node.manager_status.as_ref()?.addr.as_ref()?;
        addr.parse::<SocketAddr>().ok().map(|a| a.ip().to_string())
    })
}
