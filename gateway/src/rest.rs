//! The REST table, one handler per route, each a translation of one controller RPC, and the
//! router that puts them together with the docs, metrics and grpc-web.
//!
//! | route | RPC |
//! |---|---|
//! | `GET /` | none: what this is and where things are |
//! | `GET /api/servers[?status=healthy]` | `ListServers` (`ETag`; `If-None-Match` gets a 304) |
//! | `GET /api/servers/{id}` | `GetServer` |
//! | `POST /api/servers/{id}/action` | `ServerAction` |
//! | `GET /api/health[?timeout_ms=1000]` | `CheckHealth` |
//! | `GET /api/metrics` | `GetMetrics` |
//! | `POST /api/load-test` | `RunLoadTest`, read to its final message |
//! | `POST /api/load-tests` | `StartLoadTest` |
//! | `GET /api/load-tests`, `GET /api/load-tests/{id}` | `ListLoadTests`, `GetLoadTest` |
//! | `POST /api/load-tests/{id}/stop` | `StopLoadTest` |
//! | `POST /api/scenarios` | `StartScenario` (202, with the run's links) |
//! | `GET /api/scenarios`, `GET /api/scenarios/{run_id}` | `ListScenarioRuns`, `GetScenarioRun` |
//! | `POST /api/scenarios/{run_id}/stop` | `StopScenario` |
//! | `POST /api/scenarios/check` | `CheckScenario` |
//! | `GET /api/runs[?page_size=20&page_token=&kind=load_test]` | `ListRuns` (the history's runs, newest first, paged) |
//! | `GET /api/runs/{run_id}` | `GetRun` |
//! | `GET /api/events[?after_seq=0&limit=100&server_id=3&newest=true]` | `ListEvents` |
//! | `GET /api/metrics/history[?server_id=3&from_ms=&to_ms=]` | `GetMetricHistory` |
//! | `POST /api/simulate-load` | `SimulateLoad` |
//! | `POST /api/broadcast` | `Broadcast` |
//! | `POST /api/scale` | `ScaleFarm` |
//! | `GET /api/faults` | `ListFaults` |
//! | `POST /api/faults`, `POST /api/faults/clear` | `SetFaults`, `ClearFaults` (by id, status, all, a share) |
//! | `GET`, `PUT`, `DELETE /api/servers/{id}/faults[?kind=latency]` | `GetServer`, `SetFaults`, `ClearFaults` for one server |
//! | `GET /metrics` | `ListServers` + `GetMetrics`, as Prometheus text |
//! | `GET /api/prometheus/targets` | `ListServers`, as Prometheus HTTP service discovery (one target group per node) |
//!
//! Every call has a deadline: the request timeout for ordinary calls, or the request's own
//! bound plus that timeout for calls that carry one (a health probe's `timeout_ms`, a load
//! test's duration, a broadcast's `timeout_ms`), or plus the time the controller may take
//! beyond it (a stopped scenario's faults being undone).

use std::time::Duration;

use aide::OperationOutput;
use aide::axum::routing::{get_with, post_with};
use aide::axum::{ApiRouter, IntoApiResponse};
use aide::generate::GenContext;
use aide::openapi::{OpenApi, Operation, Response as ApiResponse};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use farm_proto::v1 as pb;
use http::{HeaderValue, StatusCode, header};

use crate::AppState;
use crate::coalesce::{SharedJson, Versioned};
use crate::controller::within;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IfNoneMatch};
use crate::model::{
    ActionRequest, ActionResult, ApiInfo, BroadcastRequest, BroadcastResult, CheckScenarioRequest,
    ClearFaultsQuery, ClearFaultsRequest, EventList, EventsQuery, FarmMetrics, FaultList,
    FaultProfile, FaultTargets, FaultsResult, Health, HealthQuery, Links, LoadTestList,
    LoadTestPath, LoadTestRequest, LoadTestRun, MetricHistory, MetricHistoryQuery, Outcomes,
    RunDetail, RunList, RunPath, RunsQuery, ScaleRequest, ScaleResult, ScenarioCheckResult,
    ScenarioPath, ScenarioReport, ScenarioRunList, ScenarioStarted, ServerDetail, ServerFaults,
    ServerList, ServerPath, ServersQuery, SetFaultsRequest, SimulateLoadRequest,
    StartScenarioRequest,
};
use crate::{docs, grpc_web, metrics};

/// Extra time a lifecycle action may take past the request timeout: a stop waits for the
/// node to exit, a restart for it to come back.
const ACTION_GRACE: Duration = Duration::from_secs(30);
/// Extra time scaling may take past the request timeout: new servers are started.
const SCALE_GRACE: Duration = Duration::from_secs(60);
/// Extra time a simulated load may take past the request timeout (the controller gives
/// each agent 5 s to accept it).
const SIMULATE_GRACE: Duration = Duration::from_secs(5);
/// Extra time stopping a scenario may take past the request timeout: the controller waits
/// up to 15 s for the run's faults to be undone before it answers.
const SCENARIO_STOP_GRACE: Duration = Duration::from_secs(15);

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// A JSON answer with status 202: the work was started and goes on after the answer. It
/// documents itself as that one 202 response.
struct Accepted<T>(T);

impl<T: serde::Serialize> IntoResponse for Accepted<T> {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, axum::Json(self.0)).into_response()
    }
}

impl<T: schemars::JsonSchema> OperationOutput for Accepted<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<ApiResponse> {
        axum::Json::<T>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<u16>, ApiResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(Some(StatusCode::ACCEPTED.as_u16()), r)])
            .unwrap_or_default()
    }
}

/// Every route, the docs, grpc-web and the fallback, with their state; [`crate::router`]
/// puts the layers around them.
pub(crate) fn routes(state: AppState) -> Router {
    aide::generate::extract_schemas(true);
    let mut api = OpenApi::default();
    let app = api_routes().finish_api_with(&mut api, docs::describe);
    let openapi: Bytes = docs::render(api, state.config()).into();
    let page: Bytes = docs::page().into();
    app.route(
        "/openapi.json",
        get(move || async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                openapi.clone(),
            )
        }),
    )
    .route(
        "/docs",
        get(move || async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                page.clone(),
            )
        }),
    )
    .fallback(fallback)
    .with_state(state)
}

fn api_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/",
            get_with(info, |op| {
                op.id("info")
                    .tag("meta")
                    .summary("What this is, and links to everything else")
            }),
        )
        .api_route(
            "/api/servers",
            get_with(list_servers, |op| {
                op.id("listServers")
                    .tag("servers")
                    .summary("List the servers, ordered by id, optionally only one status")
            }),
        )
        .api_route(
            "/api/servers/{id}",
            get_with(get_server, |op| {
                op.id("getServer")
                    .tag("servers")
                    .summary("One server with its recent samples and events")
            }),
        )
        .api_route(
            "/api/servers/{id}/action",
            post_with(server_action, |op| {
                op.id("serverAction")
                    .tag("servers")
                    .summary("Start, stop, restart, kill, pause or unpause a server")
            }),
        )
        .api_route(
            "/api/health",
            get_with(health, |op| {
                op.id("checkHealth")
                    .tag("farm")
                    .summary("Probe every server's /health now")
            }),
        )
        .api_route(
            "/api/metrics",
            get_with(farm_metrics, |op| {
                op.id("getMetrics")
                    .tag("farm")
                    .summary("The farm's metrics, aggregated from every server's latest sample")
            }),
        )
        .api_route(
            "/api/load-test",
            post_with(run_load_test, |op| {
                op.id("runLoadTest").tag("load").summary(
                    "Run a load test against servers of this farm; answers when it ends",
                )
            }),
        )
        .api_route(
            "/api/load-tests",
            get_with(list_load_tests, |op| {
                op.id("listLoadTests")
                    .tag("load")
                    .summary("The finished load tests that are kept (the last 20)")
            })
            .post_with(start_load_test, |op| {
                op.id("startLoadTest").tag("load").summary(
                    "Start a load test that runs on its own; answers at once with its id (at most 4 at once)",
                )
            }),
        )
        .api_route(
            "/api/load-tests/{id}",
            get_with(get_load_test, |op| {
                op.id("getLoadTest")
                    .tag("load")
                    .summary("One load test: its progress while it runs, its result once done")
            }),
        )
        .api_route(
            "/api/load-tests/{id}/stop",
            post_with(stop_load_test, |op| {
                op.id("stopLoadTest")
                    .tag("load")
                    .summary("Stop a load test started with POST /api/load-tests; answers its final report (also for a run that has ended)")
            }),
        )
        .api_route(
            "/api/scenarios",
            get_with(list_scenario_runs, |op| {
                op.id("listScenarioRuns").tag("scenarios").summary(
                    "The running scenario runs and the kept finished ones (the last 20), without their per-second timelines",
                )
            })
            .post_with(start_scenario, |op| {
                op.id("startScenario")
                    .tag("scenarios")
                    .summary("Start a scenario file; answers at once with the run's id and links (at most 2 run at once)")
                    .description(
                        "The body carries the scenario file's text: YAML that gives the target, \
                         the steady-state checks before and after, the load's phases, the faults \
                         at their offsets, the SLO assertions and the abort conditions. Its \
                         format is described in `docs/scenarios.md` of the farm's source tree. \
                         A file that is not valid, or names servers this farm lacks, is a 400 \
                         whose message lists every problem with its line and field (as \
                         `POST /api/scenarios/check` does, without starting anything). Follow \
                         the run with `GET /api/scenarios/{run_id}`; it goes on by itself, \
                         changing the farm (faults, server actions) and loading it.",
                    )
            }),
        )
        .api_route(
            "/api/scenarios/check",
            post_with(check_scenario, |op| {
                op.id("checkScenario").tag("scenarios").summary(
                    "Check a scenario file against this farm without running it: every problem with its line and field",
                )
            }),
        )
        .api_route(
            "/api/scenarios/{run_id}",
            get_with(get_scenario_run, |op| {
                op.id("getScenarioRun").tag("scenarios").summary(
                    "One scenario run: its latest report while it runs (verdicts provisional), its final one once ended",
                )
            }),
        )
        .api_route(
            "/api/scenarios/{run_id}/stop",
            post_with(stop_scenario, |op| {
                op.id("stopScenario").tag("scenarios").summary(
                    "Abort a scenario run: its load stops, its faults are undone; answers its final report (also for a run that has ended)",
                )
            }),
        )
        .api_route(
            "/api/runs",
            get_with(list_runs, |op| {
                op.id("listRuns").tag("history").summary(
                    "The farm's load tests and scenario runs, running and past, newest first, a page at a time",
                )
                .description(
                    "The farm's history outlives its controller: runs are kept in its data \
                     directory (the oldest dropped first once there are many), so this lists \
                     runs from before a restart too, unlike `GET /api/load-tests` and \
                     `GET /api/scenarios`. A page that has a `next_page_token` is followed \
                     by the next (older) one: pass it as `page_token`. A farm started with \
                     `--no-history` keeps none: this route, `GET /api/events` and \
                     `GET /api/metrics/history` then answer 409.",
                )
            }),
        )
        .api_route(
            "/api/runs/{run_id}",
            get_with(get_run, |op| {
                op.id("getRun").tag("history").summary(
                    "One run of the history, whole: its summary and its load test's or scenario's last report",
                )
            }),
        )
        .api_route(
            "/api/events",
            get_with(list_events, |op| {
                op.id("listEvents").tag("history").summary(
                    "The farm's events from its history, oldest first: servers added and removed, status changes, faults, runs, controller starts",
                )
                .description(
                    "Events are numbered in the order they happened. Read on from where the \
                     last answer ended by passing its `last_seq` as `after_seq`; \
                     `newest=true` gives the latest `limit` events instead.",
                )
            }),
        )
        .api_route(
            "/api/metrics/history",
            get_with(metric_history, |op| {
                op.id("getMetricHistory").tag("history").summary(
                    "A server's or the farm's metrics over a span of at most a week: one point a second within the last hour, else one a minute",
                )
            }),
        )
        .api_route(
            "/api/simulate-load",
            post_with(simulate_load, |op| {
                op.id("simulateLoad")
                    .tag("load")
                    .summary("Make servers burn CPU and hold memory for a while")
            }),
        )
        .api_route(
            "/api/broadcast",
            post_with(broadcast, |op| {
                op.id("broadcast")
                    .tag("load")
                    .summary("Send one HTTP request to many servers at once")
            }),
        )
        .api_route(
            "/api/scale",
            post_with(scale, |op| {
                op.id("scaleFarm")
                    .tag("farm")
                    .summary("Add or remove servers")
            }),
        )
        .api_route(
            "/api/faults",
            get_with(list_faults, |op| {
                op.id("listFaults")
                    .tag("faults")
                    .summary("The servers that have faults, with their profiles")
            })
            .post_with(set_faults, |op| {
                op.id("setFaults").tag("faults").summary(
                    "Set faults on servers chosen by id, status or all, or a random share of them",
                )
            }),
        )
        .api_route(
            "/api/faults/clear",
            post_with(clear_faults, |op| {
                op.id("clearFaults")
                    .tag("faults")
                    .summary("Clear some kinds of fault, or all, on chosen servers")
            }),
        )
        .api_route(
            "/api/servers/{id}/faults",
            get_with(get_server_faults, |op| {
                op.id("getServerFaults")
                    .tag("faults")
                    .summary("One server's faults")
            })
            .put_with(set_server_faults, |op| {
                op.id("setServerFaults")
                    .tag("faults")
                    .summary("Set faults on one server: each kind given replaces that kind")
            })
            .delete_with(clear_server_faults, |op| {
                op.id("clearServerFaults")
                    .tag("faults")
                    .summary("Clear one kind of fault, or all, on one server")
            }),
        )
        .api_route(
            "/api/prometheus/targets",
            get_with(metrics::discovery::targets, |op| {
                op.id("prometheusTargets").tag("meta").summary(
                    "Every server's node as a Prometheus http_sd_configs target group, scraped on /metrics/prometheus",
                )
            }),
        )
        .api_route(
            "/metrics",
            get_with(metrics::exposition, |op| {
                op.id("prometheusMetrics").tag("meta").summary(
                    "Prometheus text exposition: per-server and farm metrics, and the gateway's own",
                )
            }),
        )
}

async fn info() -> impl IntoApiResponse {
    axum::Json(ApiInfo {
        name: "farm".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "A server farm simulator: REST for the controller's gRPC API.".into(),
        links: Links {
            docs: "/docs".into(),
            openapi: "/openapi.json".into(),
            metrics: "/metrics".into(),
            servers: "/api/servers".into(),
            health: "/api/health".into(),
            farm_metrics: "/api/metrics".into(),
            load_tests: "/api/load-tests".into(),
            scenarios: "/api/scenarios".into(),
            runs: "/api/runs".into(),
            events: "/api/events".into(),
            metric_history: "/api/metrics/history".into(),
            grpc_web: "/farm.v1.FarmService/".into(),
        },
    })
}

async fn list_servers(
    State(state): State<AppState>,
    if_none_match: IfNoneMatch,
    ApiQuery(query): ApiQuery<ServersQuery>,
) -> Result<SharedJson<ServerList>, ApiError> {
    let status = query
        .status
        .map_or(pb::ServerStatus::Unspecified, pb::ServerStatus::from);
    // The hottest read of dashboards and pollers: identical concurrent requests share one
    // controller call, and the JSON is encoded again only when the farm changed.
    let key = status.as_str_name();
    let state = &state;
    let read = |known_version| async move {
        let mut client = state.controller().client();
        let response = within(
            state.config().request_timeout,
            client.list_servers(pb::ListServersRequest {
                status: status as i32,
                known_version,
            }),
        )
        .await?
        .into_inner();
        if response.unchanged {
            return Ok(Versioned::Unchanged);
        }
        Ok(Versioned::Changed {
            version: response.version,
            value: ServerList {
                servers: response.servers.into_iter().map(Into::into).collect(),
            },
        })
    };
    let answer = state.reads().json(key, read).await?;
    Ok(SharedJson::new(answer, &if_none_match))
}

async fn get_server(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ServerPath>,
) -> ApiResult<ServerDetail> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.get_server(pb::GetServerRequest { server_id: path.id }),
    )
    .await?;
    Ok(axum::Json(response.into_inner().try_into()?))
}

async fn server_action(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ServerPath>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> ApiResult<ActionResult> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + ACTION_GRACE,
        client.server_action(pb::ServerActionRequest {
            server_ids: vec![path.id],
            action: pb::ServerActionKind::from(body.action) as i32,
        }),
    )
    .await?;
    let outcome = response
        .into_inner()
        .outcomes
        .into_iter()
        .find(|o| o.server_id == path.id)
        .ok_or_else(|| {
            tracing::warn!(
                id = path.id,
                "ServerAction answered without the server's outcome."
            );
            ApiError::BadGateway("the controller answered without the server's outcome".into())
        })?;
    Ok(axum::Json(ActionResult {
        server_id: outcome.server_id,
        action: body.action,
        ok: outcome.ok,
        message: outcome.message,
    }))
}

async fn list_faults(State(state): State<AppState>) -> ApiResult<FaultList> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.list_faults(pb::ListFaultsRequest {}),
    )
    .await?;
    Ok(axum::Json(FaultList {
        servers: response
            .into_inner()
            .servers
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

async fn set_faults(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SetFaultsRequest>,
) -> ApiResult<FaultsResult> {
    send_set_faults(&state, body.into_proto()?).await
}

async fn clear_faults(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ClearFaultsRequest>,
) -> ApiResult<FaultsResult> {
    send_clear_faults(&state, body.into_proto()?).await
}

async fn get_server_faults(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ServerPath>,
) -> ApiResult<ServerFaults> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.get_server(pb::GetServerRequest { server_id: path.id }),
    )
    .await?;
    let server = response
        .into_inner()
        .server
        .ok_or_else(|| ApiError::BadGateway("the controller answered without the server".into()))?;
    Ok(axum::Json(ServerFaults {
        server_id: server.id,
        faults: server.faults.unwrap_or_default().into(),
    }))
}

async fn set_server_faults(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ServerPath>,
    ApiJson(body): ApiJson<FaultProfile>,
) -> ApiResult<FaultsResult> {
    let request = pb::SetFaultsRequest {
        targets: Some(FaultTargets::one(path.id)),
        faults: Some(body.into()),
    };
    send_set_faults(&state, request).await
}

async fn clear_server_faults(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ServerPath>,
    ApiQuery(query): ApiQuery<ClearFaultsQuery>,
) -> ApiResult<FaultsResult> {
    let request = pb::ClearFaultsRequest {
        targets: Some(FaultTargets::one(path.id)),
        kinds: crate::model::kinds(query.kind.as_slice()),
    };
    send_clear_faults(&state, request).await
}

/// Sends a `SetFaults`; a change may cut a server off the network, which takes a moment.
async fn send_set_faults(
    state: &AppState,
    request: pb::SetFaultsRequest,
) -> ApiResult<FaultsResult> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + ACTION_GRACE,
        client.set_faults(request),
    )
    .await?
    .into_inner();
    Ok(axum::Json(FaultsResult::new(
        response.outcomes,
        response.servers,
    )))
}

/// Sends a `ClearFaults`, as [`send_set_faults`].
async fn send_clear_faults(
    state: &AppState,
    request: pb::ClearFaultsRequest,
) -> ApiResult<FaultsResult> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + ACTION_GRACE,
        client.clear_faults(request),
    )
    .await?
    .into_inner();
    Ok(axum::Json(FaultsResult::new(
        response.outcomes,
        response.servers,
    )))
}

async fn health(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HealthQuery>,
) -> ApiResult<Health> {
    query.validate()?;
    let timeout_ms = query.timeout_ms.unwrap_or(1000);
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + Duration::from_millis(u64::from(timeout_ms)),
        client.check_health(pb::CheckHealthRequest { timeout_ms }),
    )
    .await?;
    Ok(axum::Json(response.into_inner().into()))
}

async fn farm_metrics(State(state): State<AppState>) -> ApiResult<FarmMetrics> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.get_metrics(pb::GetMetricsRequest {}),
    )
    .await?;
    Ok(axum::Json(
        response.into_inner().metrics.unwrap_or_default().into(),
    ))
}

async fn run_load_test(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoadTestRequest>,
) -> ApiResult<LoadTestRun> {
    let spec = body.into_spec(state.config().max_load_test_seconds)?;
    // The run lasts at most its duration; in-flight requests then get their timeout.
    let deadline = Duration::from_secs(u64::from(spec.duration_seconds))
        + Duration::from_millis(u64::from(spec.timeout_ms))
        + state.config().request_timeout;
    let mut client = state.controller().client();
    // Dropping this future (client gone, deadline passed) cancels the call, and the
    // controller stops the run.
    let last = within(deadline, async move {
        let mut progress = client
            .run_load_test(pb::RunLoadTestRequest { spec: Some(spec) })
            .await?
            .into_inner();
        while let Some(report) = progress.message().await? {
            if report.done {
                return Ok(report);
            }
        }
        Err(tonic::Status::internal(
            "the load test stream ended without a final report",
        ))
    })
    .await?;
    Ok(axum::Json(last.into()))
}

async fn list_load_tests(State(state): State<AppState>) -> ApiResult<LoadTestList> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.list_load_tests(pb::ListLoadTestsRequest {}),
    )
    .await?;
    Ok(axum::Json(LoadTestList {
        runs: response
            .into_inner()
            .runs
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

async fn start_load_test(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoadTestRequest>,
) -> ApiResult<LoadTestRun> {
    let spec = body.into_spec(state.config().max_load_test_seconds)?;
    let mut client = state.controller().client();
    let started = within(
        state.config().request_timeout,
        client.start_load_test(pb::StartLoadTestRequest { spec: Some(spec) }),
    )
    .await?;
    Ok(axum::Json(LoadTestRun {
        id: started.into_inner().run_id,
        done: false,
        stopped_reason: None,
        result: None,
    }))
}

async fn stop_load_test(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<LoadTestPath>,
) -> ApiResult<LoadTestRun> {
    path.validate()?;
    let mut client = state.controller().client();
    let call = client.stop_load_test(pb::StopLoadTestRequest {
        run_id: path.id.clone(),
    });
    load_test_run(&state, &path, call, |r| r.run).await
}

async fn get_load_test(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<LoadTestPath>,
) -> ApiResult<LoadTestRun> {
    path.validate()?;
    let mut client = state.controller().client();
    let call = client.get_load_test(pb::GetLoadTestRequest {
        run_id: path.id.clone(),
    });
    load_test_run(&state, &path, call, |r| r.run).await
}

/// The run that `call` answers with (`run` takes it out of the answer), within the request's
/// deadline.
async fn load_test_run<T>(
    state: &AppState,
    path: &LoadTestPath,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    run: impl FnOnce(T) -> Option<pb::RunLoadTestResponse>,
) -> ApiResult<LoadTestRun> {
    let run = run(within(state.config().request_timeout, call)
        .await?
        .into_inner())
    .ok_or_else(|| ApiError::NotFound(format!("no load test {:?}", path.id)))?;
    Ok(axum::Json(run.into()))
}

async fn start_scenario(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<StartScenarioRequest>,
) -> Result<Accepted<ScenarioStarted>, ApiError> {
    let request = body.into_proto()?;
    let mut client = state.controller().client();
    let started = within(
        state.config().request_timeout,
        client.start_scenario(request),
    )
    .await?;
    Ok(Accepted(ScenarioStarted::new(started.into_inner().run_id)))
}

async fn check_scenario(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CheckScenarioRequest>,
) -> ApiResult<ScenarioCheckResult> {
    let request = body.into_proto()?;
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.check_scenario(request),
    )
    .await?;
    Ok(axum::Json(response.into_inner().into()))
}

async fn list_scenario_runs(State(state): State<AppState>) -> ApiResult<ScenarioRunList> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.list_scenario_runs(pb::ListScenarioRunsRequest {}),
    )
    .await?;
    Ok(axum::Json(ScenarioRunList {
        runs: response
            .into_inner()
            .runs
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

async fn get_scenario_run(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ScenarioPath>,
) -> ApiResult<ScenarioReport> {
    path.validate()?;
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.get_scenario_run(pb::GetScenarioRunRequest {
            run_id: path.run_id.clone(),
        }),
    )
    .await?;
    scenario_report(&path, response.into_inner().report)
}

async fn stop_scenario(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ScenarioPath>,
) -> ApiResult<ScenarioReport> {
    path.validate()?;
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + SCENARIO_STOP_GRACE,
        client.stop_scenario(pb::StopScenarioRequest {
            run_id: path.run_id.clone(),
        }),
    )
    .await?;
    scenario_report(&path, response.into_inner().report)
}

/// The report the controller answered with; it answers an unknown id with a not-found
/// status, so a missing report means the same.
fn scenario_report(
    path: &ScenarioPath,
    report: Option<pb::ScenarioReport>,
) -> ApiResult<ScenarioReport> {
    let report =
        report.ok_or_else(|| ApiError::NotFound(format!("no scenario run {:?}", path.run_id)))?;
    Ok(axum::Json(report.into()))
}

async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> ApiResult<RunList> {
    let request = query.into_proto()?;
    let mut client = state.controller().client();
    let response = within(state.config().request_timeout, client.list_runs(request)).await?;
    Ok(axum::Json(response.into_inner().into()))
}

async fn get_run(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<RunDetail> {
    path.validate()?;
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.get_run(pb::GetRunRequest {
            run_id: path.run_id.clone(),
        }),
    )
    .await?;
    Ok(axum::Json(RunDetail::new(&path, response.into_inner())?))
}

async fn list_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<EventList> {
    let request = query.into_proto()?;
    let mut client = state.controller().client();
    let response = within(state.config().request_timeout, client.list_events(request)).await?;
    Ok(axum::Json(response.into_inner().into()))
}

async fn metric_history(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<MetricHistoryQuery>,
) -> ApiResult<MetricHistory> {
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout,
        client.get_metric_history(query.into_proto()),
    )
    .await?;
    Ok(axum::Json(response.into_inner().into()))
}

async fn simulate_load(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SimulateLoadRequest>,
) -> ApiResult<Outcomes> {
    let request = body.into_proto()?;
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + SIMULATE_GRACE,
        client.simulate_load(request),
    )
    .await?;
    Ok(axum::Json(Outcomes {
        outcomes: response
            .into_inner()
            .outcomes
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

async fn broadcast(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BroadcastRequest>,
) -> ApiResult<BroadcastResult> {
    let request = body.into_proto()?;
    let deadline =
        state.config().request_timeout + Duration::from_millis(u64::from(request.timeout_ms));
    let mut client = state.controller().client();
    let response = within(deadline, client.broadcast(request)).await?;
    Ok(axum::Json(response.into_inner().into()))
}

async fn scale(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ScaleRequest>,
) -> ApiResult<ScaleResult> {
    let request = body.into_proto(state.config().max_servers)?;
    let mut client = state.controller().client();
    let response = within(
        state.config().request_timeout + SCALE_GRACE,
        client.scale_farm(request),
    )
    .await?;
    Ok(axum::Json(response.into_inner().into()))
}

/// Whatever no route matched: grpc-web calls go to the controller, the rest is a JSON 404.
async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    if grpc_web::is_grpc_web(request.headers()) {
        return grpc_web::proxy(&state, request).await;
    }
    ApiError::NotFound(format!(
        "no route {} {}; see /docs for the API",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}
