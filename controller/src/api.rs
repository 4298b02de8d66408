//! `FarmService`: the public API, a thin layer that validates each request (every bound
//! checked, every bad field named, nothing changed on error) and hands it to the registry,
//! the agents, the health check, the load-test engine or the broadcaster.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use farm_node_api::client::NodeClient;
use farm_proto::limits::{
    DEFAULT_EVENTS_LIMIT, DEFAULT_RUNS_PAGE_SIZE, MAX_EVENTS_LIMIT, MAX_HEALTH_TIMEOUT_MS,
    MAX_LOAD_CPU_PERCENT, MAX_LOAD_DURATION_SECONDS, MAX_LOAD_MEMORY_MB, MAX_RUNS_PAGE_SIZE,
    MAX_SERVERS, MAX_WATCH_INTERVAL_MS, MIN_WATCH_INTERVAL_MS,
};
use farm_proto::v1::farm_service_server::FarmService;
use farm_proto::v1::{
    self as pb, BroadcastRequest, BroadcastResponse, CheckHealthRequest, CheckHealthResponse,
    CommandOutcome, GetLoadTestRequest, GetLoadTestResponse, GetMetricsRequest, GetMetricsResponse,
    GetServerRequest, GetServerResponse, ListLoadTestsRequest, ListLoadTestsResponse,
    ListServersRequest, ListServersResponse, LoadSpec, RunLoadTestRequest, RunLoadTestResponse,
    ScaleFarmRequest, ScaleFarmResponse, ServerActionKind, ServerActionRequest,
    ServerActionResponse, SimulateLoadRequest, SimulateLoadResponse, StartLoadTestRequest,
    StartLoadTestResponse, StopLoadTestRequest, StopLoadTestResponse, WatchRequest, WatchResponse,
    command,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::faults::{self, now_ms};
use crate::loadtest::{self, LoadTests};
use crate::registry::Registry;
use crate::runtime::{self, Runtime};
use crate::status::Status as ServerStatus;
use crate::{agents, aggregate, broadcast, health, targets};

/// How long a server may take to accept a simulated load.
const LOAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long after a failover drill's end its health fault clears itself, should the drill not
/// clear it (the drill clears it on time).
const DRILL_FAULT_MARGIN_SECONDS: u32 = 10;
/// The watch's heartbeat: a message at least this often, changed or not.
const WATCH_HEARTBEAT: Duration = Duration::from_secs(1);

/// The farm service, sharing the controller's registry and engines.
#[derive(Debug, Clone)]
pub struct Farm {
    registry: Registry,
    runtime: Option<Arc<dyn Runtime>>,
    client: NodeClient,
    load_tests: LoadTests,
    scenarios: crate::scenario::Scenarios,
    history: Option<farm_history::History>,
    access: crate::Access,
    shutdown: CancellationToken,
}

impl Farm {
    /// The service over `registry`; streams end on `shutdown`.
    pub fn new(
        registry: Registry,
        runtime: Option<Arc<dyn Runtime>>,
        load_tests: LoadTests,
        history: Option<farm_history::History>,
        access: crate::Access,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            registry,
            runtime,
            client: NodeClient::new(),
            load_tests,
            scenarios: crate::scenario::Scenarios::new(history.clone()),
            history,
            access,
            shutdown,
        }
    }

    /// Checks and starts a scenario run.
    fn start_scenario_run(
        &self,
        source: &str,
        seed: Option<u64>,
    ) -> std::result::Result<(String, tokio::sync::watch::Receiver<pb::ScenarioReport>), Status>
    {
        if source.len() > farm_scenario::MAX_SOURCE_BYTES {
            return Err(Status::invalid_argument(format!(
                "source must be at most {} bytes, got {}",
                farm_scenario::MAX_SOURCE_BYTES,
                source.len()
            )));
        }
        self.scenarios
            .start(self, source, seed, &self.shutdown)
            .map_err(|e| match e {
                crate::scenario::StartError::Invalid(_) => Status::invalid_argument(e.to_string()),
                crate::scenario::StartError::TooMany(_) => {
                    Status::resource_exhausted(e.to_string())
                }
            })
    }

    /// Runs `read` on the history on the blocking pool.
    async fn in_history<T: Send + 'static>(
        &self,
        read: impl FnOnce(&farm_history::History) -> farm_history::Result<T> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        let history = self
            .history
            .clone()
            .ok_or_else(|| Status::failed_precondition("this controller keeps no history"))?;
        tokio::task::spawn_blocking(move || read(&history))
            .await
            .map_err(|e| Status::internal(format!("reading the history: {e}")))?
            .map_err(|e| {
                tracing::warn!(error = %e, "Could not read the farm's history.");
                Status::unavailable(e.to_string())
            })
    }

    /// A run of the history, whole.
    async fn stored_run(
        &self,
        run_id: &str,
    ) -> std::result::Result<Option<pb::GetRunResponse>, Status> {
        use prost::Message;
        if self.history.is_none() {
            return Ok(None);
        }
        if run_id.len() > farm_proto::limits::MAX_RUN_ID_LEN {
            return Err(Status::invalid_argument(format!(
                "run_id must be at most {} bytes",
                farm_proto::limits::MAX_RUN_ID_LEN
            )));
        }
        let id = run_id.to_string();
        let Some(stored) = self.in_history(move |h| h.run(&id)).await? else {
            return Ok(None);
        };
        let run = match pb::RunKind::try_from(stored.summary.kind) {
            Ok(pb::RunKind::Scenario) => pb::ScenarioReport::decode(stored.report.as_slice())
                .ok()
                .map(pb::get_run_response::Run::Scenario),
            _ => pb::RunLoadTestResponse::decode(stored.report.as_slice())
                .ok()
                .map(pb::get_run_response::Run::LoadTest),
        };
        Ok(Some(pb::GetRunResponse {
            summary: Some(stored.summary),
            run,
        }))
    }

    /// The farm's registry.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The load-test engine.
    pub(crate) fn load_tests(&self) -> &LoadTests {
        &self.load_tests
    }

    /// Whether the farm's runtime can cut a server off (partition faults).
    pub(crate) fn can_partition(&self) -> bool {
        self.runtime.as_ref().is_some_and(|r| r.can_partition())
    }

    /// Sets `profile`'s faults on `ids` (stamped now, merged into their profiles): one
    /// outcome per server.
    pub(crate) async fn set_faults_on(
        &self,
        ids: &[u32],
        profile: pb::FaultProfile,
    ) -> std::result::Result<Vec<CommandOutcome>, String> {
        let given =
            faults::stamp(profile, now_ms(), self.can_partition()).map_err(|e| e.to_string())?;
        Ok(self
            .change_faults(ids, |p| faults::merge(p, &given))
            .await
            .0)
    }

    /// Clears faults of `kind` on `ids`: one outcome per server.
    pub(crate) async fn clear_faults_on(
        &self,
        ids: &[u32],
        kind: pb::FaultKind,
    ) -> Vec<CommandOutcome> {
        self.change_faults(ids, |p| faults::clear(p, &[kind]))
            .await
            .0
    }

    /// Applies a lifecycle action to every server of `ids` at once: one outcome per server.
    pub(crate) async fn act_on(
        &self,
        ids: &[u32],
        action: ServerActionKind,
    ) -> Vec<CommandOutcome> {
        fan_out(ids, |id| {
            let farm = self.clone();
            async move { farm.act(id, action).await }
        })
        .await
    }

    /// The plan of a load test's `spec`, checked against the farm; a front may be on the
    /// runtime's own networks, and a failover drill is carried out by this service.
    pub(crate) async fn load_test_plan(
        &self,
        spec: Option<pb::LoadTestSpec>,
    ) -> std::result::Result<loadtest::Plan, Status> {
        let spec = spec.ok_or_else(|| Status::invalid_argument("spec is required"))?;
        let networks = match (&self.runtime, spec.front_url.is_empty()) {
            (Some(runtime), false) => runtime.networks().await,
            _ => Vec::new(),
        };
        Ok(loadtest::Plan::new(&spec, &self.registry, &networks)?
            .with_drills(Arc::new(self.clone())))
    }

    /// Applies a lifecycle action to server `id`: through its runtime, or its agent.
    async fn act(
        &self,
        id: u32,
        action: ServerActionKind,
    ) -> std::result::Result<String, runtime::RuntimeError> {
        match &self.runtime {
            Some(runtime) => runtime.act(id, action).await,
            None => runtime::act_through_agent(&self.registry, id, action).await,
        }
    }

    /// A failover drill's lifecycle action on server `id`; Err says why it failed.
    async fn drill_act(
        &self,
        id: u32,
        action: ServerActionKind,
    ) -> std::result::Result<(), String> {
        self.act(id, action)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Changes one server's fault profile with `change`; Err says why it did not take.
    async fn change_one_server_faults(
        &self,
        id: u32,
        change: impl Fn(&mut pb::FaultProfile),
    ) -> std::result::Result<(), String> {
        let (outcomes, _) = self.change_faults(&[id], change).await;
        match outcomes.into_iter().next() {
            Some(outcome) if outcome.ok => Ok(()),
            Some(outcome) => Err(outcome.message),
            None => Err(format!("server {id} left the farm")),
        }
    }

    /// Refuses a change without the farm's token where the access rules ask for it.
    fn check_change<T>(&self, request: &Request<T>) -> std::result::Result<(), Status> {
        if !self.access.guard_changes {
            return Ok(());
        }
        let given = request
            .metadata()
            .get(farm_proto::auth::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if self.access.token.as_ref().is_some_and(|t| t.admits(given)) {
            return Ok(());
        }
        Err(Status::unauthenticated(
            "this controller listens beyond loopback: a change needs the farm's token, as `authorization: Bearer <token>` metadata",
        ))
    }

    /// Changes the fault profile of every server of `ids` with `change`, and hands each
    /// changed profile to its agent and runtime: one outcome and one profile per server.
    async fn change_faults(
        &self,
        ids: &[u32],
        change: impl Fn(&mut pb::FaultProfile),
    ) -> (Vec<CommandOutcome>, Vec<pb::ServerFaults>) {
        let mut handoffs = std::collections::BTreeMap::new();
        for &id in ids {
            if let Some(handoff) = self.registry.change_faults(id, &change) {
                handoffs.insert(id, handoff);
            }
        }
        let servers = ids
            .iter()
            .filter_map(|id| handoffs.get(id))
            .map(|h| pb::ServerFaults {
                server_id: h.id,
                faults: Some(h.profile.clone()),
            })
            .collect();
        let outcomes = fan_out(ids, |id| {
            let handoff = handoffs.get(&id).cloned();
            let runtime = self.runtime.clone();
            async move {
                match handoff {
                    Some(handoff) => faults::hand_over(handoff, runtime).await,
                    None => Err(format!("server {id} left the farm")),
                }
            }
        })
        .await;
        (outcomes, servers)
    }

    fn metrics(&self) -> pb::FarmMetrics {
        let mut metrics = self
            .registry
            .read(|entries| aggregate::farm_metrics(entries, now_ms()));
        metrics.agent_streams_refused = self.registry.refused_agents();
        metrics
    }
}

/// A failover drill uses the farm's own actions: a lifecycle action, or a health fault.
#[tonic::async_trait]
impl loadtest::front::Drills for Farm {
    async fn take_down(
        &self,
        id: u32,
        action: pb::FailoverAction,
        down_ms: u32,
    ) -> std::result::Result<(), String> {
        let kind = match action {
            pb::FailoverAction::Kill => {
                // A crash that stays down until the drill brings it back. An agent's stop is
                // itself a SIGKILL of its node that holds it down, in one step, so no restart
                // can slip in. A container is killed, then stopped: the docker runtime waits
                // before it restarts a container that died, and a stop in that time holds it.
                if self.runtime.as_ref().is_some_and(|r| r.name() == "docker") {
                    self.drill_act(id, ServerActionKind::Kill).await?;
                }
                ServerActionKind::Stop
            }
            pb::FailoverAction::Stop => ServerActionKind::Stop,
            pb::FailoverAction::Pause => ServerActionKind::Pause,
            pb::FailoverAction::Health => {
                let can_partition = self.runtime.as_ref().is_some_and(|r| r.can_partition());
                // It also clears itself a little after the drill's end, should the drill never
                // bring the server back (a controller killed meanwhile).
                let failing = pb::FaultProfile {
                    health: Some(pb::HealthFault {
                        when: Some(pb::FaultWhen {
                            duration_seconds: down_ms.div_ceil(1000) + DRILL_FAULT_MARGIN_SECONDS,
                            ..pb::FaultWhen::default()
                        }),
                        status: 503,
                    }),
                    ..pb::FaultProfile::default()
                };
                let given =
                    faults::stamp(failing, now_ms(), can_partition).map_err(|e| e.to_string())?;
                return self
                    .change_one_server_faults(id, |profile| faults::merge(profile, &given))
                    .await;
            }
            pb::FailoverAction::Unspecified => return Err("no action given".into()),
        };
        self.drill_act(id, kind).await
    }

    async fn bring_back(
        &self,
        id: u32,
        action: pb::FailoverAction,
    ) -> std::result::Result<(), String> {
        let kind = match action {
            pb::FailoverAction::Kill | pb::FailoverAction::Stop => ServerActionKind::Start,
            pb::FailoverAction::Pause => ServerActionKind::Unpause,
            pb::FailoverAction::Health => {
                return self
                    .change_one_server_faults(id, |profile| {
                        faults::clear(profile, &[pb::FaultKind::Health]);
                    })
                    .await;
            }
            pb::FailoverAction::Unspecified => return Err("no action given".into()),
        };
        self.drill_act(id, kind).await
    }
}

fn scenario_not_found(run_id: &str) -> Status {
    Status::not_found(format!(
        "no scenario run {run_id:?} is running, nor among the last {} finished",
        crate::scenario::KEPT_RUNS
    ))
}

/// Runs `task` for every server of `ids` at once; one outcome per id, in the order given.
async fn fan_out<F, Fut, E>(ids: &[u32], task: F) -> Vec<CommandOutcome>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = std::result::Result<String, E>> + Send + 'static,
    E: std::fmt::Display,
{
    let mut tasks = JoinSet::new();
    for (index, &id) in ids.iter().enumerate() {
        let work = task(id);
        // Each task stays in the caller's span, so that its agent commands join the trace.
        let span = tracing::Span::current();
        tasks.spawn(tracing::Instrument::instrument(
            async move {
                let (ok, message) = match work.await {
                    Ok(message) => (true, message),
                    Err(error) => (false, error.to_string()),
                };
                (
                    index,
                    CommandOutcome {
                        server_id: id,
                        ok,
                        message,
                    },
                )
            },
            span,
        ));
    }
    let mut outcomes = vec![CommandOutcome::default(); ids.len()];
    while let Some(Ok((index, outcome))) = tasks.join_next().await {
        outcomes[index] = outcome;
    }
    outcomes
}

/// A simulated load within bounds; 0 s means 10 s.
fn load_spec(load: Option<LoadSpec>) -> Result<LoadSpec> {
    let mut load = load.ok_or_else(|| Error::InvalidArgument("load is required".into()))?;
    if !load.cpu_percent.is_finite() || !(0.0..=MAX_LOAD_CPU_PERCENT).contains(&load.cpu_percent) {
        return Err(Error::InvalidArgument(format!(
            "load.cpu_percent must be 0 to {MAX_LOAD_CPU_PERCENT}, got {}",
            load.cpu_percent
        )));
    }
    if load.memory_mb > MAX_LOAD_MEMORY_MB {
        return Err(Error::InvalidArgument(format!(
            "load.memory_mb must be at most {MAX_LOAD_MEMORY_MB}, got {}",
            load.memory_mb
        )));
    }
    if load.duration_seconds == 0 {
        load.duration_seconds = farm_proto::limits::DEFAULT_LOAD_DURATION_SECONDS;
    }
    if load.duration_seconds > MAX_LOAD_DURATION_SECONDS {
        return Err(Error::InvalidArgument(format!(
            "load.duration_seconds must be 1 to {MAX_LOAD_DURATION_SECONDS}, got {}",
            load.duration_seconds
        )));
    }
    if load.cpu_percent == 0.0 && load.memory_mb == 0 {
        return Err(Error::InvalidArgument(
            "load asks for nothing: set load.cpu_percent or load.memory_mb".into(),
        ));
    }
    Ok(load)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FarmService for Farm {
    async fn list_servers(
        &self,
        request: Request<ListServersRequest>,
    ) -> std::result::Result<Response<ListServersResponse>, Status> {
        let ListServersRequest {
            status: wanted,
            known_version,
        } = request.into_inner();
        let wanted = match pb::ServerStatus::try_from(wanted) {
            Ok(pb::ServerStatus::Unspecified) => None,
            Ok(status) => ServerStatus::try_from(status).ok(),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "status {wanted} is not a server status"
                )));
            }
        };
        let (version, servers) = self.registry.read_unless_at(known_version, |entries| {
            entries
                .filter(|e| wanted.is_none_or(|w| e.status == w))
                .map(|e| e.to_proto())
                .collect()
        });
        Ok(Response::new(ListServersResponse {
            unchanged: servers.is_none(),
            servers: servers.unwrap_or_default(),
            version,
        }))
    }

    async fn get_server(
        &self,
        request: Request<GetServerRequest>,
    ) -> std::result::Result<Response<GetServerResponse>, Status> {
        let id = request.into_inner().server_id;
        let entry = self
            .registry
            .get(id)
            .ok_or_else(|| Status::not_found(format!("server {id} is not part of this farm")))?;
        Ok(Response::new(GetServerResponse {
            server: Some(entry.to_proto()),
            history: entry.history.iter().cloned().collect(),
            events: entry.events.iter().cloned().collect(),
        }))
    }

    async fn server_action(
        &self,
        request: Request<ServerActionRequest>,
    ) -> std::result::Result<Response<ServerActionResponse>, Status> {
        self.check_change(&request)?;
        let ServerActionRequest { server_ids, action } = request.into_inner();
        let action = match ServerActionKind::try_from(action) {
            Ok(ServerActionKind::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "action must be START, STOP, RESTART, KILL, PAUSE or UNPAUSE, got {action}"
                )));
            }
            Ok(kind) => kind,
        };
        if server_ids.is_empty() {
            return Err(Status::invalid_argument(
                "server_ids must list at least one server",
            ));
        }
        let ids: Vec<u32> = targets::resolve(&self.registry, &server_ids, "server_ids")?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let outcomes = fan_out(&ids, |id| {
            let farm = self.clone();
            async move { farm.act(id, action).await }
        })
        .await;
        Ok(Response::new(ServerActionResponse { outcomes }))
    }

    async fn check_health(
        &self,
        request: Request<CheckHealthRequest>,
    ) -> std::result::Result<Response<CheckHealthResponse>, Status> {
        let timeout = targets::millis(
            request.into_inner().timeout_ms,
            farm_proto::limits::DEFAULT_HEALTH_TIMEOUT_MS,
            MAX_HEALTH_TIMEOUT_MS,
            "timeout_ms",
        )?;
        Ok(Response::new(
            health::check(&self.registry, &self.client, timeout).await,
        ))
    }

    async fn get_metrics(
        &self,
        _request: Request<GetMetricsRequest>,
    ) -> std::result::Result<Response<GetMetricsResponse>, Status> {
        Ok(Response::new(GetMetricsResponse {
            metrics: Some(self.metrics()),
        }))
    }

    type RunLoadTestStream = BoxStream<RunLoadTestResponse>;

    async fn run_load_test(
        &self,
        request: Request<RunLoadTestRequest>,
    ) -> std::result::Result<Response<Self::RunLoadTestStream>, Status> {
        self.check_change(&request)?;
        let plan = self.load_test_plan(request.into_inner().spec).await?;
        let (_, progress) = self.load_tests.start(plan, &self.shutdown);
        let stream = tokio_stream::StreamExt::map(ReceiverStream::new(progress), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn simulate_load(
        &self,
        request: Request<SimulateLoadRequest>,
    ) -> std::result::Result<Response<SimulateLoadResponse>, Status> {
        self.check_change(&request)?;
        let SimulateLoadRequest { server_ids, load } = request.into_inner();
        let load = load_spec(load)?;
        let ids: Vec<u32> = targets::resolve(&self.registry, &server_ids, "server_ids")?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let outcomes = fan_out(&ids, |id| {
            let registry = self.registry.clone();
            async move {
                match agents::command(
                    &registry,
                    id,
                    command::Action::SimulateLoad(load),
                    LOAD_DEADLINE,
                )
                .await
                {
                    Ok(result) if result.ok => Ok(result.message),
                    Ok(result) => Err(result.message),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        Ok(Response::new(SimulateLoadResponse { outcomes }))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> std::result::Result<Response<BroadcastResponse>, Status> {
        self.check_change(&request)?;
        let plan = broadcast::Plan::new(request.get_ref(), &self.registry)?;
        Ok(Response::new(broadcast::run(plan, &self.client).await))
    }

    async fn get_load_test(
        &self,
        request: Request<GetLoadTestRequest>,
    ) -> std::result::Result<Response<GetLoadTestResponse>, Status> {
        let run_id = request.into_inner().run_id;
        if let Some(run) = self.load_tests.get(&run_id) {
            return Ok(Response::new(GetLoadTestResponse { run: Some(run) }));
        }
        match self.stored_run(&run_id).await?.and_then(|r| r.run) {
            Some(pb::get_run_response::Run::LoadTest(run)) => {
                Ok(Response::new(GetLoadTestResponse { run: Some(run) }))
            }
            _ => Err(Status::not_found(format!(
                "no load test {run_id:?} is running, nor among the last {} finished, nor in the farm's history",
                loadtest::KEPT_RUNS
            ))),
        }
    }

    async fn start_load_test(
        &self,
        request: Request<StartLoadTestRequest>,
    ) -> std::result::Result<Response<StartLoadTestResponse>, Status> {
        self.check_change(&request)?;
        let plan = self.load_test_plan(request.into_inner().spec).await?;
        let run_id = self
            .load_tests
            .start_detached(plan, &self.shutdown)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        Ok(Response::new(StartLoadTestResponse { run_id }))
    }

    async fn stop_load_test(
        &self,
        request: Request<StopLoadTestRequest>,
    ) -> std::result::Result<Response<StopLoadTestResponse>, Status> {
        self.check_change(&request)?;
        let run_id = request.into_inner().run_id;
        if let Err(not_running) = self.load_tests.stop(&run_id) {
            // A run that has already ended is stopped: its final report is the answer.
            return match self.load_tests.get(&run_id) {
                Some(run) => Ok(Response::new(StopLoadTestResponse { run: Some(run) })),
                None => Err(Status::not_found(not_running.to_string())),
            };
        }
        // The run ends within its request timeout; its final report is then kept.
        let deadline = tokio::time::Instant::now() + loadtest::STOP_WAIT;
        loop {
            if let Some(run) = self.load_tests.get(&run_id).filter(|r| r.done) {
                return Ok(Response::new(StopLoadTestResponse { run: Some(run) }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "load test {run_id:?} is stopping; fetch it with GetLoadTest"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn list_load_tests(
        &self,
        _request: Request<ListLoadTestsRequest>,
    ) -> std::result::Result<Response<ListLoadTestsResponse>, Status> {
        Ok(Response::new(ListLoadTestsResponse {
            runs: self.load_tests.list(),
        }))
    }

    async fn scale_farm(
        &self,
        request: Request<ScaleFarmRequest>,
    ) -> std::result::Result<Response<ScaleFarmResponse>, Status> {
        self.check_change(&request)?;
        let servers = request.into_inner().servers;
        let max = self.registry.max_servers().min(MAX_SERVERS);
        if servers > max {
            return Err(Status::invalid_argument(format!(
                "servers must be at most {max} (this farm's bound), got {servers}"
            )));
        }
        let runtime = self.runtime.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this controller runs no runtime (started with `farm controller`); scale with `farm up`",
            )
        })?;
        let scaled = runtime.scale(servers).await?;
        Ok(Response::new(ScaleFarmResponse {
            added: scaled.added,
            removed: scaled.removed,
            servers: u32::try_from(self.registry.ids().len()).unwrap_or(u32::MAX),
        }))
    }

    async fn set_faults(
        &self,
        request: Request<pb::SetFaultsRequest>,
    ) -> std::result::Result<Response<pb::SetFaultsResponse>, Status> {
        self.check_change(&request)?;
        let pb::SetFaultsRequest { targets, faults } = request.into_inner();
        let faults = faults.ok_or_else(|| Status::invalid_argument("faults is required"))?;
        let can_partition = self.runtime.as_ref().is_some_and(|r| r.can_partition());
        let given = faults::stamp(faults, now_ms(), can_partition)?;
        let ids = faults::select(&self.registry, targets.as_ref())?;
        let (outcomes, servers) = self
            .change_faults(&ids, |profile| faults::merge(profile, &given))
            .await;
        Ok(Response::new(pb::SetFaultsResponse { outcomes, servers }))
    }

    async fn clear_faults(
        &self,
        request: Request<pb::ClearFaultsRequest>,
    ) -> std::result::Result<Response<pb::ClearFaultsResponse>, Status> {
        self.check_change(&request)?;
        let pb::ClearFaultsRequest { targets, kinds } = request.into_inner();
        let kinds = faults::kinds(&kinds)?;
        let ids = faults::select(&self.registry, targets.as_ref())?;
        let (outcomes, servers) = self
            .change_faults(&ids, |profile| faults::clear(profile, &kinds))
            .await;
        Ok(Response::new(pb::ClearFaultsResponse { outcomes, servers }))
    }

    async fn list_faults(
        &self,
        _request: Request<pb::ListFaultsRequest>,
    ) -> std::result::Result<Response<pb::ListFaultsResponse>, Status> {
        let servers = self.registry.read(|entries| {
            entries
                .filter(|e| !faults::is_empty(&e.faults))
                .map(|e| pb::ServerFaults {
                    server_id: e.id,
                    faults: Some(e.faults.clone()),
                })
                .collect()
        });
        Ok(Response::new(pb::ListFaultsResponse { servers }))
    }

    type RunScenarioStream = BoxStream<pb::RunScenarioResponse>;

    async fn run_scenario(
        &self,
        request: Request<pb::RunScenarioRequest>,
    ) -> std::result::Result<Response<Self::RunScenarioStream>, Status> {
        self.check_change(&request)?;
        let pb::RunScenarioRequest { source, seed } = request.into_inner();
        let (run_id, mut reports) = self.start_scenario_run(&source, seed)?;
        let (tx, rx) = mpsc::channel(4);
        let scenarios = self.scenarios.clone();
        tokio::spawn(async move {
            loop {
                let report = reports.borrow_and_update().clone();
                let done = report.state != pb::ScenarioState::Running as i32;
                let progress = pb::RunScenarioResponse {
                    report: Some(report),
                    done,
                };
                if tx.send(Ok(progress)).await.is_err() {
                    // The caller left: the run is aborted, as a load test's would be.
                    scenarios.stop(&run_id);
                    return;
                }
                if done {
                    return;
                }
                tokio::select! {
                    changed = reports.changed() => if changed.is_err() { return },
                    () = tx.closed() => {
                        scenarios.stop(&run_id);
                        return;
                    }
                }
                // At most four reports a second; the runner changes it more often.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn start_scenario(
        &self,
        request: Request<pb::StartScenarioRequest>,
    ) -> std::result::Result<Response<pb::StartScenarioResponse>, Status> {
        self.check_change(&request)?;
        let pb::StartScenarioRequest { source, seed } = request.into_inner();
        let (run_id, _) = self.start_scenario_run(&source, seed)?;
        Ok(Response::new(pb::StartScenarioResponse { run_id }))
    }

    async fn get_scenario_run(
        &self,
        request: Request<pb::GetScenarioRunRequest>,
    ) -> std::result::Result<Response<pb::GetScenarioRunResponse>, Status> {
        let run_id = request.into_inner().run_id;
        if let Some(report) = self.scenarios.get(&run_id) {
            return Ok(Response::new(pb::GetScenarioRunResponse {
                report: Some(report),
            }));
        }
        match self.stored_run(&run_id).await?.and_then(|r| r.run) {
            Some(pb::get_run_response::Run::Scenario(report)) => {
                Ok(Response::new(pb::GetScenarioRunResponse {
                    report: Some(report),
                }))
            }
            _ => Err(scenario_not_found(&run_id)),
        }
    }

    async fn list_scenario_runs(
        &self,
        _request: Request<pb::ListScenarioRunsRequest>,
    ) -> std::result::Result<Response<pb::ListScenarioRunsResponse>, Status> {
        Ok(Response::new(pb::ListScenarioRunsResponse {
            runs: self.scenarios.list(),
        }))
    }

    async fn stop_scenario(
        &self,
        request: Request<pb::StopScenarioRequest>,
    ) -> std::result::Result<Response<pb::StopScenarioResponse>, Status> {
        self.check_change(&request)?;
        let run_id = request.into_inner().run_id;
        let mut reports = self
            .scenarios
            .follow(&run_id)
            .ok_or_else(|| scenario_not_found(&run_id))?;
        self.scenarios.stop(&run_id);
        // The load stops at once; undoing the faults takes a moment.
        let ended = tokio::time::timeout(
            crate::scenario::STOP_WAIT,
            reports.wait_for(|r| r.state != pb::ScenarioState::Running as i32),
        )
        .await;
        match ended {
            Ok(Ok(report)) => Ok(Response::new(pb::StopScenarioResponse {
                report: Some(report.clone()),
            })),
            _ => Err(Status::deadline_exceeded(format!(
                "scenario {run_id:?} is stopping; fetch it with GetScenarioRun"
            ))),
        }
    }

    async fn check_scenario(
        &self,
        request: Request<pb::CheckScenarioRequest>,
    ) -> std::result::Result<Response<pb::CheckScenarioResponse>, Status> {
        let source = request.into_inner().source;
        let problems = match crate::scenario::check(self, &source) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        Ok(Response::new(pb::CheckScenarioResponse {
            valid: problems.is_empty(),
            problems: problems
                .into_iter()
                .map(|p| pb::ScenarioProblem {
                    line: p.line,
                    field: p.field,
                    message: p.message,
                })
                .collect(),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> std::result::Result<Response<pb::ListRunsResponse>, Status> {
        let pb::ListRunsRequest {
            page_size,
            page_token,
            kind,
        } = request.into_inner();
        let page_size = match page_size {
            0 => DEFAULT_RUNS_PAGE_SIZE,
            n if n > MAX_RUNS_PAGE_SIZE => {
                return Err(Status::invalid_argument(format!(
                    "page_size must be 1 to {MAX_RUNS_PAGE_SIZE}, got {n}"
                )));
            }
            n => n,
        };
        let kind = pb::RunKind::try_from(kind)
            .map_err(|_| Status::invalid_argument(format!("kind {kind} is not a run kind")))?;
        if page_token.len() > farm_proto::limits::MAX_PAGE_TOKEN_LEN {
            return Err(Status::invalid_argument(
                "page_token is not one this farm gave",
            ));
        }
        let page = self
            .in_history(move |h| h.runs(page_size, &page_token, kind))
            .await?
            .ok_or_else(|| Status::invalid_argument("page_token is not one this farm gave"))?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: page.runs,
            next_page_token: page.next.unwrap_or_default(),
            total: page.total,
        }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> std::result::Result<Response<pb::GetRunResponse>, Status> {
        let run_id = request.into_inner().run_id;
        let found = self
            .stored_run(&run_id)
            .await?
            .ok_or_else(|| Status::not_found(format!("no run {run_id:?} in the farm's history")))?;
        Ok(Response::new(found))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> std::result::Result<Response<pb::ListEventsResponse>, Status> {
        let pb::ListEventsRequest {
            after_seq,
            limit,
            server_id,
            newest,
        } = request.into_inner();
        let limit = match limit {
            0 => DEFAULT_EVENTS_LIMIT,
            n if n > MAX_EVENTS_LIMIT => {
                return Err(Status::invalid_argument(format!(
                    "limit must be 1 to {MAX_EVENTS_LIMIT}, got {n}"
                )));
            }
            n => n,
        };
        let (events, last_seq) = self
            .in_history(move |h| h.events(after_seq, limit, server_id, newest))
            .await?;
        Ok(Response::new(pb::ListEventsResponse { events, last_seq }))
    }

    async fn get_metric_history(
        &self,
        request: Request<pb::GetMetricHistoryRequest>,
    ) -> std::result::Result<Response<pb::GetMetricHistoryResponse>, Status> {
        let pb::GetMetricHistoryRequest {
            server_id,
            from_ms,
            to_ms,
        } = request.into_inner();
        let now = now_ms();
        let to_ms = if to_ms == 0 { now } else { to_ms };
        let from_ms = if from_ms == 0 {
            to_ms.saturating_sub(farm_history::FINE_KEPT_SECONDS * 1000)
        } else {
            from_ms
        };
        if from_ms > to_ms {
            return Err(Status::invalid_argument(format!(
                "from_ms ({from_ms}) must not be after to_ms ({to_ms})"
            )));
        }
        if to_ms - from_ms > farm_history::MAX_SPAN_MS {
            return Err(Status::invalid_argument(format!(
                "from_ms to to_ms may span at most a week ({} ms), got {} ms",
                farm_history::MAX_SPAN_MS,
                to_ms - from_ms
            )));
        }
        let (points, resolution_seconds) = self
            .in_history(move |h| h.points(server_id, from_ms, to_ms, now))
            .await?;
        Ok(Response::new(pb::GetMetricHistoryResponse {
            points,
            resolution_seconds,
        }))
    }

    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> std::result::Result<Response<Self::WatchStream>, Status> {
        let raw = request.into_inner().min_interval_ms;
        let min_interval = match raw {
            0 => Duration::from_millis(250),
            MIN_WATCH_INTERVAL_MS..=MAX_WATCH_INTERVAL_MS => Duration::from_millis(u64::from(raw)),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "min_interval_ms must be {MIN_WATCH_INTERVAL_MS} to {MAX_WATCH_INTERVAL_MS}, got {raw}"
                )));
            }
        };
        let (tx, rx) = mpsc::channel(4);
        let farm = self.clone();
        tokio::spawn(async move {
            let mut changed = farm.registry.subscribe();
            let mut since = 0;
            loop {
                changed.borrow_and_update();
                let changes = farm.registry.changes_since(since);
                since = changes.version;
                let message = WatchResponse {
                    full: changes.full,
                    servers: changes.servers,
                    removed_server_ids: changes.removed,
                    metrics: Some(farm.metrics()),
                    version: changes.version,
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                // Coalesce: at most one message per min_interval, then wait for a change
                // or the heartbeat, whichever comes first.
                tokio::select! {
                    _ = farm.shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(min_interval) => {}
                }
                tokio::select! {
                    _ = farm.shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(WATCH_HEARTBEAT.saturating_sub(min_interval)) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_bounds_are_enforced_with_the_field_named() {
        let ok = LoadSpec {
            cpu_percent: 50.0,
            memory_mb: 0,
            duration_seconds: 0,
        };
        assert_eq!(load_spec(Some(ok)).unwrap().duration_seconds, 10);
        for (bad, field) in [
            (
                LoadSpec {
                    cpu_percent: f64::NAN,
                    ..ok
                },
                "cpu_percent",
            ),
            (
                LoadSpec {
                    cpu_percent: -1.0,
                    ..ok
                },
                "cpu_percent",
            ),
            (
                LoadSpec {
                    memory_mb: 5000,
                    ..ok
                },
                "memory_mb",
            ),
            (
                LoadSpec {
                    duration_seconds: 301,
                    ..ok
                },
                "duration_seconds",
            ),
            (
                LoadSpec {
                    cpu_percent: 0.0,
                    ..ok
                },
                "asks for nothing",
            ),
        ] {
            let e = load_spec(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        assert!(load_spec(None).is_err());
    }
}
