//! One conformance suite for every `Store` backend: each case runs on SQLite (a fresh file) and on PostgreSQL (a fresh database in a throwaway cluster).
//!
//! The payload writer is a recording test double: the store is what is under
//! test here, and the real writer (files on disk) has its own tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cronium_core::{
    AuthKind, EventId, EventName, EventSpec, EventStatus, JobId, JobStatus, MisfirePolicy,
    OverlapPolicy, Role, RunLocation, RunPolicy, Schedule, SealedSecrets, ServerId, ServerName,
    ServerSpec, Tag, TokenHash, Trigger, UserId, ValidationError, VariableKey,
};
use cronium_core::{Expect, NodeId, NodeStatus, RunStatus, WorkflowId, WorkflowName};
use cronium_payload::{EnvKey, Interpreter};
use cronium_store::testing::{TestPostgres, sqlite_url};
use cronium_store::{
    Applied, AuditEntry, Claim, Event, EventFilter, EventOrder, Fence, Fire, Job, JobFilter,
    JobOutcome, JobRetention, LogLine, LogStream, NewJob, NewToken, NewWorkflowRun, PageRequest,
    PayloadFile, PayloadWriter, PgStore, RunTrigger, ScheduleState, SqliteStore, Store, StoreError,
    StoredValue, VariableSealer, VariableWrite,
};
use serde_json::json;

/// A store on a fresh database, and what keeps that database alive.
struct Backend {
    store: Arc<dyn Store>,
    raw: Raw,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The same store, for SQL the trait does not offer (damaging rows on purpose).
enum Raw {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Backend {
    /// The second store on the same database, through the trait.
    fn raw_store(&self) -> &dyn Store {
        match &self.raw {
            Raw::Sqlite(s) => s,
            Raw::Postgres(s) => s,
        }
    }

    /// Closes the second store's pool: the database is fine, but this
    /// handle on it can no longer reach it.
    async fn close_raw(&self) {
        match &self.raw {
            Raw::Sqlite(s) => s.pool().close().await,
            Raw::Postgres(s) => s.pool().close().await,
        }
    }

    async fn execute(&self, sql: &'static str) {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(drop),
            Raw::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.map(drop),
        }
        .unwrap();
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let store = cronium_store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    Backend {
        store,
        raw: Raw::Sqlite(SqliteStore::connect(&url).await.unwrap()),
        url,
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = tokio::task::spawn_blocking(TestPostgres::fresh_database)
        .await
        .unwrap();
    let store = cronium_store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    Backend {
        store,
        raw: Raw::Postgres(PgStore::connect(&url).await.unwrap()),
        url,
        _dir: None,
    }
}

/// Runs every listed case once per backend, as `sqlite::CASE` and `postgres::CASE`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::postgres().await).await;
                }
            )*
        }
    };
}

conformance!(
    users_have_password_hashes_and_the_last_admin_stays,
    a_new_role_revokes_stronger_tokens_and_keeps_an_admin,
    sessions_are_found_by_hash_until_idle_expired_or_ended,
    creating_a_script_event_makes_payload_v1,
    a_content_change_makes_the_next_version_the_only_active_one,
    renames_schedules_and_tags_keep_the_payload,
    a_refused_update_changes_nothing,
    a_duplicate_name_is_a_conflict_and_leaves_nothing_behind,
    a_failing_writer_commits_nothing,
    concurrent_updates_get_distinct_versions_and_lose_nothing,
    pruning_keeps_the_newest_and_the_active,
    deleting_an_event_returns_its_payloads,
    events_are_filtered_and_paginated_in_the_database,
    event_names_are_read_for_a_set_of_ids_at_once,
    tokens_are_found_by_hash_until_revoked,
    servers_have_unique_names_and_cannot_vanish_under_an_event,
    a_servers_cache_dir_round_trips_and_defaults_to_none,
    a_servers_last_check_is_kept_without_changing_the_server,
    server_tags_round_trip_and_events_target_them,
    every_mutation_is_audited_newest_first,
    timestamps_and_values_round_trip_exactly,
    a_corrupt_row_is_an_error_naming_the_column,
    an_http_event_round_trips_its_request_and_sealed_headers_without_a_payload,
    channels_have_unique_names_and_cannot_vanish_under_an_action,
    a_slack_and_a_discord_channel_round_trip_with_their_urls_sealed,
    an_email_channel_round_trips_with_its_settings_and_sealed_password,
    a_final_result_queues_one_delivery_per_firing_action_and_a_retried_attempt_none,
    a_recovered_job_that_fails_for_good_queues_its_failure_deliveries,
    a_success_runs_the_chained_event_whose_job_names_the_one_that_started_it,
    a_chain_that_loops_stops_at_the_depth_limit_with_the_reason_recorded,
    an_event_another_event_runs_cannot_be_deleted_until_that_action_goes,
    a_start_action_owes_one_delivery_when_the_first_attempt_starts,
    a_job_running_past_the_threshold_owes_one_duration_exceeded_delivery,
    deliveries_are_leased_once_retried_when_due_and_settled_by_their_holder_only,
    ping_answers_until_the_pool_is_closed,
    use_token_records_last_used_at_at_most_once_a_minute,
    a_missing_target_server_is_invalid_not_a_backend_error,
    prune_writes_the_callers_audit_entry_and_never_reads_the_clock,
    the_run_policy_round_trips,
    schedule_state_follows_create_update_pause_and_resume,
    due_schedules_are_active_and_soonest_first,
    two_schedulers_recording_the_same_fire_make_one_job,
    a_fire_already_recorded_is_not_recorded_twice,
    missed_fires_are_recorded_but_never_run,
    overlap_forbid_records_a_skipped_run_with_the_reason,
    overlap_queue_makes_the_next_run_wait_for_the_one_before,
    overlap_replace_cancels_queued_runs_and_asks_running_ones_to_stop,
    allow_with_max_concurrent_two_never_runs_more_than_two,
    concurrent_claimers_take_each_job_exactly_once,
    a_stale_worker_is_fenced_out_after_recovery,
    a_job_handed_back_at_shutdown_is_retried_at_once_or_fails_saying_why,
    failures_retry_with_a_raised_attempt_then_fail_for_good,
    recovery_retries_or_fails_with_the_reason,
    cancel_ends_queued_runs_flags_running_ones_and_refuses_finished_ones,
    logs_continue_without_gaps_and_page_by_seq,
    log_lines_keep_the_server_they_came_from,
    jobs_are_filtered_newest_first_and_paginated,
    jobs_pin_the_active_payload_and_the_manual_input,
    pruning_keeps_unfinished_jobs_and_the_newest_of_each_event,
    deleting_an_event_removes_its_jobs_logs_and_schedule,
    events_without_a_schedule_state_get_one_when_the_store_opens,
    a_corrupt_job_row_is_an_error_naming_the_column,
    variables_are_per_owner_versioned_and_audited_by_key_only,
    secret_variables_are_stored_sealed_and_keep_their_secrecy,
    compare_and_set_holds_or_conflicts_and_limits_are_refused,
    concurrent_compare_and_set_increments_lose_nothing,
    an_attempt_writes_output_condition_and_variables_under_its_fence,
    a_retry_starts_with_no_output_and_a_false_condition,
    workflows_are_versioned_only_when_the_definition_changes,
    an_event_a_workflow_runs_cannot_be_deleted_until_the_workflow_goes,
    a_run_advances_as_its_jobs_end_and_the_reconciler_repairs_what_it_missed,
    a_run_keeps_at_most_16_mib_of_outputs_and_ended_runs_are_pruned,
    payload_bytes_are_kept_by_checksum_until_no_version_names_them,
);

// --- fixtures -------------------------------------------------------------

/// A payload writer that writes nothing and remembers what it was asked for.
#[derive(Default, Clone)]
struct Recorder {
    calls: Arc<Mutex<Vec<(EventId, u64, String)>>>,
    fail: bool,
}

impl Recorder {
    fn failing() -> Recorder {
        Recorder {
            fail: true,
            ..Recorder::default()
        }
    }

    fn calls(&self) -> Vec<(EventId, u64)> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|(e, v, _)| (*e, *v)).collect()
    }
}

impl PayloadWriter for Recorder {
    fn write(
        &mut self,
        event: EventId,
        version: u64,
        spec: &EventSpec,
        _created_at: DateTime<Utc>,
    ) -> Result<PayloadFile, String> {
        if self.fail {
            return Err("disk full".into());
        }
        self.calls
            .lock()
            .unwrap()
            .push((event, version, spec.content.clone()));
        Ok(PayloadFile {
            payload_path: format!("payloads/{event}/v{version}.tar.gz"),
            checksum_path: format!("payloads/{event}/v{version}.tar.gz.sha256"),
            payload_size: spec.content.len() as u64,
            checksum: format!("{:064x}", event.0 * 1000 + version as i64),
            bytes: spec.content.as_bytes().to_vec(),
        })
    }
}

fn spec(name: &str) -> EventSpec {
    EventSpec {
        name: EventName::new(name).unwrap(),
        description: String::new(),
        kind: cronium_core::EventKind::Script,
        interpreter: Some(Interpreter::Bash),
        content: "echo hello\n".into(),
        env: [(EnvKey::new("GREETING").unwrap(), "hi".into())].into(),
        secret_env: SealedSecrets::default(),
        schedule: Schedule::Manual,
        status: EventStatus::Active,
        run_location: RunLocation::Local,
        target_servers: vec![],
        target_tags: BTreeSet::new(),
        timeout: Duration::from_secs(60),
        retries: 0,
        tags: BTreeSet::new(),
        policy: cronium_core::RunPolicy::default(),
        http: None,
    }
}

fn server(name: &str) -> ServerSpec {
    ServerSpec {
        name: ServerName::new(name).unwrap(),
        host: "127.0.0.1".into(),
        port: 22,
        username: "deploy".into(),
        auth_kind: AuthKind::Key,
        sealed_credentials: vec![7, 7, 7],
        known_host: None,
        cache_dir: None,
        tags: BTreeSet::new(),
    }
}

fn tags(names: &[&str]) -> BTreeSet<Tag> {
    names.iter().map(|t| Tag::new(t).unwrap()).collect()
}

fn audit(action: &str, target_type: &str) -> AuditEntry {
    AuditEntry {
        at: Utc::now(),
        actor: None,
        action: action.into(),
        target_type: target_type.into(),
        target_id: None,
        detail: json!({}),
    }
}

fn all() -> PageRequest {
    PageRequest {
        limit: PageRequest::MAX_LIMIT,
        offset: 0,
    }
}

async fn admin(store: &dyn Store) -> UserId {
    store.ensure_admin(Utc::now()).await.unwrap().id
}

async fn create(store: &dyn Store, owner: UserId, spec: EventSpec) -> cronium_store::Event {
    store
        .create_event(
            owner,
            spec,
            &mut Recorder::default(),
            Utc::now(),
            &audit("event.create", "event"),
        )
        .await
        .unwrap()
}

/// Replaces the script, which always needs a new payload.
async fn set_content(
    store: &dyn Store,
    id: EventId,
    content: &str,
) -> (cronium_store::Event, Option<cronium_store::PayloadRecord>) {
    let content = content.to_string();
    store
        .update_event(
            id,
            &move |e| {
                Ok(EventSpec {
                    content: content.clone(),
                    ..e.spec.clone()
                })
            },
            &mut Recorder::default(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap()
}

/// Prunes as the system would, keeping `keep` versions.
async fn prune(
    store: &dyn Store,
    event: EventId,
    keep: usize,
) -> Result<Vec<cronium_store::PayloadRecord>, StoreError> {
    store
        .prune_payloads(event, keep, &audit("payload.prune", "event"))
        .await
}

fn versions(payloads: &[cronium_store::PayloadRecord]) -> Vec<(u64, bool)> {
    payloads
        .iter()
        .map(|p| (p.event_version, p.is_active))
        .collect()
}

fn field(err: StoreError) -> String {
    match err {
        StoreError::Conflict { field, .. } => format!("conflict:{field}"),
        StoreError::Invalid(e) => format!("invalid:{}", e.field),
        StoreError::NotFound { what } => format!("not found:{what}"),
        StoreError::Payload(_) => "payload".into(),
        StoreError::Fenced { .. } => "fenced".into(),
        StoreError::DeliveryLost { .. } => "delivery lost".into(),
        StoreError::Backend(m) => panic!("unexpected backend error: {m}"),
    }
}

// --- cases ------------------------------------------------------------------

async fn creating_a_script_event_makes_payload_v1(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let writer = Recorder::default();
    let event = store
        .create_event(
            owner,
            spec("backup"),
            &mut writer.clone(),
            Utc::now(),
            &audit("event.create", "event"),
        )
        .await
        .unwrap();

    assert_eq!(event.payload_version, Some(1));
    assert_eq!(writer.calls(), vec![(event.id, 1)]);
    assert_eq!(store.get_event(event.id).await.unwrap(), event);
    assert_eq!(
        store.find_event_by_name(owner, "backup").await.unwrap(),
        Some(event.clone())
    );

    let payloads = store.list_payloads(event.id).await.unwrap();
    assert_eq!(versions(&payloads), vec![(1, true)]);
    let v1 = &payloads[0];
    assert_eq!(v1.event_id, event.id);
    assert_eq!(v1.payload_path, format!("payloads/{}/v1.tar.gz", event.id));
    assert_eq!(v1.checksum_path, format!("{}.sha256", v1.payload_path));
    assert_eq!(v1.payload_size, "echo hello\n".len() as u64);
    assert_eq!(v1.created_at, event.created_at);
    assert_eq!(store.get_payload(event.id, 1).await.unwrap(), *v1);
    assert_eq!(store.all_payloads().await.unwrap(), payloads);
}

async fn a_content_change_makes_the_next_version_the_only_active_one(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;

    let writer = Recorder::default();
    let (updated, payload) = store
        .update_event(
            event.id,
            &|e| {
                Ok(EventSpec {
                    content: "echo v2\n".into(),
                    ..e.spec.clone()
                })
            },
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap();
    let payload = payload.expect("a content change makes a payload");
    assert_eq!(writer.calls(), vec![(event.id, 2)]);
    assert_eq!((payload.event_version, payload.is_active), (2, true));
    assert_eq!(updated.payload_version, Some(2));
    assert_eq!(updated.spec.content, "echo v2\n");
    assert_eq!(store.get_event(event.id).await.unwrap(), updated);
    assert_eq!(
        versions(&store.list_payloads(event.id).await.unwrap()),
        vec![(2, true), (1, false)]
    );

    // The interpreter and the plain environment go into the payload too.
    let (_, p3) = store
        .update_event(
            event.id,
            &|e| {
                let mut s = e.spec.clone();
                s.env
                    .insert(EnvKey::new("GREETING").unwrap(), "hello".into());
                Ok(s)
            },
            &mut Recorder::default(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap();
    let (_, p4) = store
        .update_event(
            event.id,
            &|e| {
                Ok(EventSpec {
                    interpreter: Some(Interpreter::Python),
                    content: "print('hi')\n".into(),
                    ..e.spec.clone()
                })
            },
            &mut Recorder::default(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap();
    assert_eq!(p3.map(|p| p.event_version), Some(3));
    assert_eq!(p4.map(|p| p.event_version), Some(4));
    assert_eq!(
        versions(&store.list_payloads(event.id).await.unwrap()),
        vec![(4, true), (3, false), (2, false), (1, false)]
    );
}

async fn renames_schedules_and_tags_keep_the_payload(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;

    let writer = Recorder::default();
    let (updated, payload) = store
        .update_event(
            event.id,
            &|e| {
                Ok(EventSpec {
                    name: EventName::new("nightly backup").unwrap(),
                    description: "copies /srv".into(),
                    schedule: Schedule::cron("0 3 * * *", "Europe/Berlin").unwrap(),
                    tags: [Tag::new("prod").unwrap(), Tag::new("db").unwrap()].into(),
                    status: EventStatus::Paused,
                    retries: 3,
                    secret_env: SealedSecrets {
                        names: [EnvKey::new("TOKEN").unwrap()].into(),
                        sealed: vec![1, 2, 3],
                    },
                    ..e.spec.clone()
                })
            },
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap();

    assert_eq!(payload, None);
    assert!(writer.calls().is_empty(), "the writer was not called");
    assert_eq!(updated.payload_version, Some(1));
    assert_eq!(updated.spec.name.as_str(), "nightly backup");
    assert_eq!(store.get_event(event.id).await.unwrap(), updated);
    assert_eq!(
        versions(&store.list_payloads(event.id).await.unwrap()),
        vec![(1, true)]
    );
    assert_eq!(
        store.find_event_by_name(owner, "backup").await.unwrap(),
        None
    );
}

async fn a_refused_update_changes_nothing(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;
    let audit_before = store.list_audit(all()).await.unwrap().total;

    // The update function refuses...
    let writer = Recorder::default();
    let err = store
        .update_event(
            event.id,
            &|_| Err(ValidationError::new("content", "no")),
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "invalid:content");

    // ...or returns a spec that breaks a rule the store checks itself.
    let err = store
        .update_event(
            event.id,
            &|e| {
                Ok(EventSpec {
                    content: "  ".into(),
                    ..e.spec.clone()
                })
            },
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "invalid:content");

    assert!(writer.calls().is_empty());
    assert_eq!(store.get_event(event.id).await.unwrap(), event);
    assert_eq!(store.list_payloads(event.id).await.unwrap().len(), 1);
    assert_eq!(store.list_audit(all()).await.unwrap().total, audit_before);

    let missing = store
        .update_event(
            EventId(event.id.0 + 1000),
            &|e| Ok(e.spec.clone()),
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(missing), "not found:event");
}

async fn a_duplicate_name_is_a_conflict_and_leaves_nothing_behind(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let first = create(store, owner, spec("backup")).await;
    let other = create(store, owner, spec("report")).await;
    let audit_before = store.list_audit(all()).await.unwrap().total;

    let writer = Recorder::default();
    let err = store
        .create_event(
            owner,
            // Names are trimmed, so this is the same name.
            spec("  backup "),
            &mut writer.clone(),
            Utc::now(),
            &audit("event.create", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "conflict:name");
    assert!(writer.calls().is_empty(), "no payload for a refused event");

    // Renaming onto a taken name is refused the same way.
    let err = store
        .update_event(
            other.id,
            &|e| {
                Ok(EventSpec {
                    name: EventName::new("backup").unwrap(),
                    content: "echo renamed and changed\n".into(),
                    ..e.spec.clone()
                })
            },
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "conflict:name");

    let page = store
        .list_events(&EventFilter::default(), all())
        .await
        .unwrap();
    assert_eq!(page.items, vec![first, other.clone()]);
    assert_eq!(
        versions(&store.all_payloads().await.unwrap()),
        vec![(1, true), (1, true)]
    );
    assert_eq!(store.get_event(other.id).await.unwrap(), other);
    assert_eq!(store.list_audit(all()).await.unwrap().total, audit_before);
}

async fn a_failing_writer_commits_nothing(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let audit_before = store.list_audit(all()).await.unwrap().total;

    let err = store
        .create_event(
            owner,
            spec("backup"),
            &mut Recorder::failing(),
            Utc::now(),
            &audit("event.create", "event"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Payload(m) if m.contains("disk full")),
        "{err}"
    );
    assert_eq!(
        store.find_event_by_name(owner, "backup").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .list_events(&EventFilter::default(), all())
            .await
            .unwrap()
            .total,
        0
    );
    assert!(store.all_payloads().await.unwrap().is_empty());
    assert_eq!(store.list_audit(all()).await.unwrap().total, audit_before);

    // The name is free again: nothing half-written holds it.
    let event = create(store, owner, spec("backup")).await;
    let err = store
        .update_event(
            event.id,
            &|e| {
                Ok(EventSpec {
                    content: "echo v2\n".into(),
                    ..e.spec.clone()
                })
            },
            &mut Recorder::failing(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Payload(_)));
    assert_eq!(store.get_event(event.id).await.unwrap(), event);
    assert_eq!(
        versions(&store.list_payloads(event.id).await.unwrap()),
        vec![(1, true)]
    );

    // The failed attempt burned no version number.
    let (_, payload) = set_content(store, event.id, "echo v2\n").await;
    assert_eq!(payload.map(|p| p.event_version), Some(2));
}

async fn concurrent_updates_get_distinct_versions_and_lose_nothing(b: Backend) {
    let owner = admin(&*b.store).await;
    let event = create(&*b.store, owner, spec("backup")).await;

    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = b.store.clone();
            tokio::spawn(async move {
                // Each update appends to what it finds: a lost update would
                // show as a missing line.
                let (updated, payload) = store
                    .update_event(
                        event.id,
                        &move |e| {
                            Ok(EventSpec {
                                content: format!("{}echo {i}\n", e.spec.content),
                                ..e.spec.clone()
                            })
                        },
                        &mut Recorder::default(),
                        Utc::now(),
                        &audit("event.update", "event"),
                    )
                    .await
                    .unwrap();
                (updated, payload.unwrap().event_version)
            })
        })
        .collect();
    let mut made = Vec::new();
    for task in tasks {
        let (updated, version) = task.await.unwrap();
        assert_eq!(updated.payload_version, Some(version));
        made.push(version);
    }
    made.sort();
    assert_eq!(made, (2..=9).collect::<Vec<u64>>());

    let payloads = b.store.list_payloads(event.id).await.unwrap();
    let recorded: Vec<u64> = payloads.iter().map(|p| p.event_version).collect();
    assert_eq!(recorded, (1..=9).rev().collect::<Vec<u64>>());
    let active: Vec<u64> = payloads
        .iter()
        .filter(|p| p.is_active)
        .map(|p| p.event_version)
        .collect();
    assert_eq!(active, vec![9]);

    let last = b.store.get_event(event.id).await.unwrap();
    assert_eq!(last.payload_version, Some(9));
    for i in 0..8 {
        assert!(
            last.spec.content.contains(&format!("echo {i}\n")),
            "update {i} was lost: {:?}",
            last.spec.content
        );
    }
}

async fn pruning_keeps_the_newest_and_the_active(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;
    for v in 2..=6 {
        set_content(store, event.id, &format!("echo {v}\n")).await;
    }

    let pruned = prune(store, event.id, 2).await.unwrap();
    assert_eq!(
        versions(&pruned),
        vec![(4, false), (3, false), (2, false), (1, false)]
    );
    assert_eq!(
        versions(&store.list_payloads(event.id).await.unwrap()),
        vec![(6, true), (5, false)]
    );
    assert!(prune(store, event.id, 2).await.unwrap().is_empty());

    // Keeping none still keeps the active payload.
    let pruned = prune(store, event.id, 0).await.unwrap();
    assert_eq!(versions(&pruned), vec![(5, false)]);
    assert_eq!(
        versions(&store.list_payloads(event.id).await.unwrap()),
        vec![(6, true)]
    );

    // Version numbers are never reused, even once their rows are gone.
    let (_, payload) = set_content(store, event.id, "echo 7\n").await;
    assert_eq!(payload.map(|p| p.event_version), Some(7));

    let missing = prune(store, EventId(event.id.0 + 1000), 1).await;
    assert_eq!(field(missing.unwrap_err()), "not found:event");
}

/// What a page of jobs asks: the names of the events its jobs belong to.
async fn event_names_are_read_for_a_set_of_ids_at_once(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let mut ids = Vec::new();
    for name in ["Nightly Backup", "report <weekly>", "ÜBER cleanup"] {
        ids.push(create(store, owner, spec(name)).await.id);
    }
    let gone = create(store, owner, spec("gone")).await.id;
    store
        .delete_event(gone, &audit("event.delete", "event"))
        .await
        .unwrap();
    let want: BTreeMap<EventId, String> = [
        (ids[0], "Nightly Backup".to_string()),
        (ids[1], "report <weekly>".to_string()),
        (ids[2], "ÜBER cleanup".to_string()),
    ]
    .into();
    let names = |found: std::collections::HashMap<EventId, String>| -> BTreeMap<_, _> {
        found.into_iter().collect()
    };

    // Repeats, a deleted event and one that never was: each known one once.
    let asked = [
        ids[1],
        ids[0],
        ids[1],
        gone,
        EventId(i64::MAX),
        ids[2],
        ids[0],
    ];
    assert_eq!(names(store.event_names(&asked).await.unwrap()), want);
    assert_eq!(
        names(store.event_names(&[ids[2]]).await.unwrap()),
        BTreeMap::from([(ids[2], "ÜBER cleanup".to_string())])
    );
    assert!(store.event_names(&[]).await.unwrap().is_empty());
    // More ids than one SQLite statement binds (32,766): still one answer.
    let many: Vec<EventId> = (1..=40_000).map(EventId).collect();
    assert_eq!(names(store.event_names(&many).await.unwrap()), want);
}

async fn deleting_an_event_returns_its_payloads(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;
    let kept = create(store, owner, spec("report")).await;
    set_content(store, event.id, "echo 2\n").await;
    set_content(store, event.id, "echo 3\n").await;

    let deleted = store
        .delete_event(event.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    assert_eq!(versions(&deleted), vec![(3, true), (2, false), (1, false)]);
    assert!(deleted.iter().all(|p| p.event_id == event.id));

    assert_eq!(
        field(store.get_event(event.id).await.unwrap_err()),
        "not found:event"
    );
    assert_eq!(
        field(store.list_payloads(event.id).await.unwrap_err()),
        "not found:event"
    );
    assert_eq!(
        field(store.get_payload(event.id, 1).await.unwrap_err()),
        "not found:payload"
    );
    let left = store.all_payloads().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, kept.id);
    let again = store
        .delete_event(event.id, &audit("event.delete", "event"))
        .await;
    assert_eq!(field(again.unwrap_err()), "not found:event");

    // A new event never takes the deleted one's id (payload dirs are named by id).
    let next = create(store, owner, spec("backup")).await;
    assert!(next.id.0 > kept.id.0);
}

async fn events_are_filtered_and_paginated_in_the_database(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let tag = |t: &str| Tag::new(t).unwrap();
    let rows = [
        ("Nightly Backup", EventStatus::Active, vec!["prod", "db"]),
        ("backup-staging", EventStatus::Paused, vec!["staging", "db"]),
        ("Report", EventStatus::Active, vec!["prod"]),
        ("ÜBER cleanup", EventStatus::Draft, vec![]),
        ("rotate logs", EventStatus::Active, vec!["prod"]),
        ("old backup", EventStatus::Archived, vec![]),
        ("100% done_ok", EventStatus::Active, vec![]),
    ];
    let mut ids = Vec::new();
    for (name, status, tags) in rows {
        let event = create(
            store,
            owner,
            EventSpec {
                status,
                tags: tags.into_iter().map(tag).collect(),
                ..spec(name)
            },
        )
        .await;
        ids.push(event.id);
    }
    let names = |page: &cronium_store::Page<cronium_store::Event>| -> Vec<String> {
        page.items
            .iter()
            .map(|e| e.spec.name.as_str().to_string())
            .collect()
    };
    let list = |filter: EventFilter, limit: u32, offset: u64| async move {
        store
            .list_events(&filter, PageRequest { limit, offset })
            .await
            .unwrap()
    };

    let backups = list(
        EventFilter {
            name_contains: Some("BACKUP".into()),
            ..EventFilter::default()
        },
        10,
        0,
    )
    .await;
    assert_eq!(
        names(&backups),
        ["Nightly Backup", "backup-staging", "old backup"]
    );
    assert_eq!(backups.total, 3);
    let by_name = list(
        EventFilter {
            name_contains: Some("BACKUP".into()),
            order: EventOrder::Name,
            ..EventFilter::default()
        },
        10,
        0,
    )
    .await;
    assert_eq!(
        names(&by_name),
        ["backup-staging", "Nightly Backup", "old backup"]
    );

    // Case folding is Unicode-aware, and LIKE wildcards are plain characters.
    let umlaut = EventFilter {
        name_contains: Some("über".into()),
        ..EventFilter::default()
    };
    assert_eq!(names(&list(umlaut, 10, 0).await), ["ÜBER cleanup"]);
    let percent = EventFilter {
        name_contains: Some("0% done_".into()),
        ..EventFilter::default()
    };
    assert_eq!(names(&list(percent, 10, 0).await), ["100% done_ok"]);
    let underscore = EventFilter {
        name_contains: Some("_".into()),
        ..EventFilter::default()
    };
    assert_eq!(list(underscore, 10, 0).await.total, 1);

    let prod_active = EventFilter {
        status: Some(EventStatus::Active),
        tag: Some(tag("prod")),
        owner: Some(owner),
        ..EventFilter::default()
    };
    assert_eq!(
        names(&list(prod_active, 10, 0).await),
        ["Nightly Backup", "Report", "rotate logs"]
    );
    let db_paused = EventFilter {
        status: Some(EventStatus::Paused),
        tag: Some(tag("db")),
        ..EventFilter::default()
    };
    assert_eq!(names(&list(db_paused, 10, 0).await), ["backup-staging"]);
    let nobody = EventFilter {
        owner: Some(UserId(owner.0 + 1000)),
        ..EventFilter::default()
    };
    let empty = list(nobody, 10, 0).await;
    assert_eq!((empty.items.len(), empty.total), (0, 0));

    // Pages in id order, each with the total of all matches.
    let mut seen = Vec::new();
    for (offset, size) in [(0, 3), (3, 3), (6, 1), (9, 0)] {
        let page = list(EventFilter::default(), 3, offset).await;
        assert_eq!(page.total, 7);
        assert_eq!(page.items.len(), size, "page at {offset}");
        seen.extend(page.items.iter().map(|e| e.id));
    }
    assert_eq!(seen, ids);
    let counted = list(EventFilter::default(), 0, 0).await;
    assert_eq!((counted.items.len(), counted.total), (0, 7));
    let capped = list(EventFilter::default(), u32::MAX, 0).await;
    assert_eq!(capped.items.len(), 7);
}

async fn tokens_are_found_by_hash_until_revoked(b: Backend) {
    let store = &*b.store;
    let admin_user = store.ensure_admin(Utc::now()).await.unwrap();
    assert_eq!(admin_user.role, Role::Admin);
    assert_eq!(
        store.ensure_admin(Utc::now()).await.unwrap(),
        admin_user,
        "one admin, however often it is ensured"
    );
    assert_eq!(store.get_user(admin_user.id).await.unwrap(), admin_user);

    let created_at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let hash = TokenHash([0xab; 32]);
    let token = store
        .create_token(
            NewToken {
                user_id: admin_user.id,
                name: "ci".into(),
                role: Role::Editor,
                hash,
            },
            created_at,
            &audit("token.create", "token"),
        )
        .await
        .unwrap();
    assert_eq!((token.name.as_str(), token.role), ("ci", Role::Editor));
    assert_eq!((token.last_used_at, token.revoked_at), (None, None));

    let duplicate = store
        .create_token(
            NewToken {
                user_id: admin_user.id,
                name: "again".into(),
                role: Role::Viewer,
                hash,
            },
            created_at,
            &audit("token.create", "token"),
        )
        .await;
    assert!(matches!(duplicate, Err(StoreError::Conflict { .. })));

    let used_at = created_at + chrono::Duration::minutes(5);
    let found = store.use_token(&hash, used_at).await.unwrap().unwrap();
    assert_eq!(found.id, token.id);
    assert_eq!(found.last_used_at, Some(used_at));
    assert_eq!(store.list_tokens().await.unwrap(), vec![found.clone()]);
    assert_eq!(
        store
            .use_token(&TokenHash([0xcd; 32]), used_at)
            .await
            .unwrap(),
        None
    );

    let revoked_at = used_at + chrono::Duration::minutes(1);
    let revoked = store
        .revoke_token(token.id, revoked_at, &audit("token.revoke", "token"))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(revoked_at));
    assert_eq!(store.use_token(&hash, revoked_at).await.unwrap(), None);
    // A second revocation keeps the time access actually ended.
    let again = store
        .revoke_token(
            token.id,
            revoked_at + chrono::Duration::hours(1),
            &audit("token.revoke", "token"),
        )
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(revoked_at));
    assert_eq!(
        store.list_tokens().await.unwrap()[0].last_used_at,
        Some(used_at),
        "a refused use is not recorded"
    );

    let missing = store
        .revoke_token(
            cronium_core::TokenId(token.id.0 + 1000),
            revoked_at,
            &audit("token.revoke", "token"),
        )
        .await;
    assert_eq!(field(missing.unwrap_err()), "not found:token");
    let no_user = store
        .create_token(
            NewToken {
                user_id: UserId(admin_user.id.0 + 1000),
                name: "x".into(),
                role: Role::Viewer,
                hash: TokenHash([1; 32]),
            },
            created_at,
            &audit("token.create", "token"),
        )
        .await;
    assert_eq!(field(no_user.unwrap_err()), "not found:user");
}

async fn servers_have_unique_names_and_cannot_vanish_under_an_event(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let now = Utc::now();
    let mut ids = Vec::new();
    for name in ["web-1", "web-2", "db-1"] {
        let s = store
            .create_server(server(name), now, &audit("server.create", "server"))
            .await
            .unwrap();
        assert_eq!(store.get_server(s.id).await.unwrap(), s);
        ids.push(s.id);
    }
    let listed: Vec<String> = store
        .list_servers()
        .await
        .unwrap()
        .iter()
        .map(|s| s.spec.name.to_string())
        .collect();
    assert_eq!(listed, ["db-1", "web-1", "web-2"]);

    let dup = store
        .create_server(server("web-1"), now, &audit("server.create", "server"))
        .await;
    assert_eq!(field(dup.unwrap_err()), "conflict:name");
    let rename_onto = store
        .update_server(
            ids[1],
            &|s| {
                Ok(ServerSpec {
                    name: ServerName::new("web-1").unwrap(),
                    ..s.spec.clone()
                })
            },
            now,
            &audit("server.update", "server"),
        )
        .await;
    assert_eq!(field(rename_onto.unwrap_err()), "conflict:name");

    let later = now + chrono::Duration::seconds(10);
    let updated = store
        .update_server(
            ids[0],
            &|s| {
                Ok(ServerSpec {
                    name: ServerName::new("web-01").unwrap(),
                    port: 2222,
                    known_host: Some("[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nza".into()),
                    ..s.spec.clone()
                })
            },
            later,
            &audit("server.update", "server"),
        )
        .await
        .unwrap();
    assert_eq!(updated.spec.port, 2222);
    assert_eq!(updated.updated_at, cronium_store_truncate(later));
    assert_eq!(store.get_server(ids[0]).await.unwrap(), updated);
    assert_eq!(store.find_server_by_name("web-1").await.unwrap(), None);
    assert_eq!(
        store.find_server_by_name("web-01").await.unwrap(),
        Some(updated)
    );

    // Target servers keep the order the user gave.
    let targets = vec![ids[2], ids[0], ids[1]];
    let remote = create(
        store,
        owner,
        EventSpec {
            run_location: RunLocation::Remote,
            target_servers: targets.clone(),
            ..spec("deploy")
        },
    )
    .await;
    assert_eq!(
        store
            .get_event(remote.id)
            .await
            .unwrap()
            .spec
            .target_servers,
        targets
    );

    let refused = store
        .delete_server(ids[2], &audit("server.delete", "server"))
        .await
        .unwrap_err();
    assert_eq!(field(refused), "conflict:targetServers");
    assert!(store.get_server(ids[2]).await.is_ok());

    let unknown = store
        .create_event(
            owner,
            EventSpec {
                run_location: RunLocation::Remote,
                target_servers: vec![ServerId(ids[2].0 + 1000)],
                ..spec("nowhere")
            },
            &mut Recorder::default(),
            now,
            &audit("event.create", "event"),
        )
        .await;
    assert_eq!(field(unknown.unwrap_err()), "invalid:targetServers");
    assert_eq!(
        store.find_event_by_name(owner, "nowhere").await.unwrap(),
        None
    );

    store
        .delete_event(remote.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    store
        .delete_server(ids[2], &audit("server.delete", "server"))
        .await
        .unwrap();
    assert_eq!(
        field(store.get_server(ids[2]).await.unwrap_err()),
        "not found:server"
    );
    let again = store
        .delete_server(ids[2], &audit("server.delete", "server"))
        .await;
    assert_eq!(field(again.unwrap_err()), "not found:server");
}

async fn server_tags_round_trip_and_events_target_them(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let now = Utc::now();
    let web = store
        .create_server(
            ServerSpec {
                tags: tags(&["web", "prod"]),
                ..server("web-1")
            },
            now,
            &audit("server.create", "server"),
        )
        .await
        .unwrap();
    assert_eq!(web.spec.tags, tags(&["prod", "web"]));
    assert_eq!(store.get_server(web.id).await.unwrap(), web);
    let bare = store
        .create_server(server("db-1"), now, &audit("server.create", "server"))
        .await
        .unwrap();
    let listed: Vec<(String, BTreeSet<Tag>)> = store
        .list_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.spec.name.to_string(), s.spec.tags))
        .collect();
    assert_eq!(
        listed,
        [
            ("db-1".to_string(), BTreeSet::new()),
            ("web-1".to_string(), tags(&["prod", "web"]))
        ]
    );

    // An update replaces the whole set; a refused one keeps the old.
    let retagged = store
        .update_server(
            web.id,
            &|s| {
                Ok(ServerSpec {
                    tags: tags(&["web", "eu"]),
                    ..s.spec.clone()
                })
            },
            now,
            &audit("server.update", "server"),
        )
        .await
        .unwrap();
    assert_eq!(retagged.spec.tags, tags(&["eu", "web"]));
    let refused = store
        .update_server(
            web.id,
            &|s| {
                Ok(ServerSpec {
                    tags: tags(&["x"]),
                    port: 0,
                    ..s.spec.clone()
                })
            },
            now,
            &audit("server.update", "server"),
        )
        .await;
    assert_eq!(field(refused.unwrap_err()), "invalid:port");
    assert_eq!(
        store.find_server_by_name("web-1").await.unwrap().unwrap(),
        retagged
    );

    // An event may target by tag alone, or by servers and tags together; a
    // tag no server holds is allowed (it is resolved when a job starts).
    let by_tag = create(
        store,
        owner,
        EventSpec {
            run_location: RunLocation::Remote,
            target_tags: tags(&["web", "nowhere"]),
            ..spec("by-tag")
        },
    )
    .await;
    let read = store.get_event(by_tag.id).await.unwrap();
    assert_eq!(read.spec.target_tags, tags(&["nowhere", "web"]));
    assert!(read.spec.target_servers.is_empty());
    let both = create(
        store,
        owner,
        EventSpec {
            run_location: RunLocation::Remote,
            target_servers: vec![bare.id],
            target_tags: tags(&["web"]),
            ..spec("both")
        },
    )
    .await;
    assert_eq!(store.get_event(both.id).await.unwrap(), both);
    assert_eq!(both.spec.target_tags, tags(&["web"]));
    let (updated, _) = store
        .update_event(
            by_tag.id,
            &|e| {
                Ok(EventSpec {
                    target_tags: tags(&["eu"]),
                    ..e.spec.clone()
                })
            },
            &mut Recorder::default(),
            now,
            &audit("event.update", "event"),
        )
        .await
        .unwrap();
    assert_eq!(updated.spec.target_tags, tags(&["eu"]));
    assert_eq!(store.get_event(by_tag.id).await.unwrap(), updated);

    // A server targeted only by tag may go; its tags go with it.
    store
        .delete_server(web.id, &audit("server.delete", "server"))
        .await
        .unwrap();
    let recreated = store
        .create_server(server("web-1"), now, &audit("server.create", "server"))
        .await
        .unwrap();
    assert!(recreated.spec.tags.is_empty(), "no tag outlives its server");
    assert_eq!(
        store.get_event(both.id).await.unwrap().spec.target_tags,
        tags(&["web"])
    );
}

async fn every_mutation_is_audited_newest_first(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;
    set_content(store, event.id, "echo 2\n").await;
    let srv = store
        .create_server(
            server("web-1"),
            Utc::now(),
            &audit("server.create", "server"),
        )
        .await
        .unwrap();
    let token = store
        .create_token(
            NewToken {
                user_id: owner,
                name: "ci".into(),
                role: Role::Viewer,
                hash: TokenHash([3; 32]),
            },
            Utc::now(),
            &audit("token.create", "token"),
        )
        .await
        .unwrap();
    store
        .delete_event(
            event.id,
            &AuditEntry {
                actor: Some(cronium_store::Actor::Token(token.id)),
                detail: json!({ "name": "backup" }),
                ..audit("event.delete", "event")
            },
        )
        .await
        .unwrap();

    let log = store.list_audit(all()).await.unwrap();
    let actions: Vec<(&str, Option<i64>)> = log
        .items
        .iter()
        .map(|r| (r.entry.action.as_str(), r.entry.target_id))
        .collect();
    assert_eq!(
        actions,
        [
            ("event.delete", Some(event.id.0)),
            ("token.create", Some(token.id.0)),
            ("server.create", Some(srv.id.0)),
            ("event.update", Some(event.id.0)),
            ("event.create", Some(event.id.0)),
            ("user.create", Some(owner.0)),
        ]
    );
    assert_eq!(log.total, 6);
    assert!(log.items.windows(2).all(|w| w[0].id > w[1].id));
    let newest = &log.items[0].entry;
    assert_eq!(newest.actor, Some(cronium_store::Actor::Token(token.id)));
    assert_eq!(newest.detail, json!({ "name": "backup" }));
    // The store adds the version it made, which the caller could not know.
    assert_eq!(log.items[3].entry.detail, json!({ "payloadVersion": 2 }));

    let page = store
        .list_audit(PageRequest {
            limit: 2,
            offset: 4,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 6);
    assert_eq!(page.items, log.items[4..].to_vec());
}

async fn timestamps_and_values_round_trip_exactly(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    // Nanoseconds are beyond what either database stores: the store keeps
    // microseconds, and what it returns is what it will read back later.
    let now = Utc.with_ymd_and_hms(2026, 11, 28, 23, 59, 58).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let micros = Utc.with_ymd_and_hms(2026, 11, 28, 23, 59, 58).unwrap()
        + chrono::Duration::microseconds(123_456);
    let full = EventSpec {
        description: "line one\nline two — ünïcode ✓".into(),
        content: "#!/bin/bash\nprintf '%s\\n' \"$GREETING\" 'quotes \" and \\\\'\n".into(),
        env: BTreeMap::from([
            (EnvKey::new("A").unwrap(), "1".into()),
            (EnvKey::new("EMPTY").unwrap(), String::new()),
            (EnvKey::new("JSONISH").unwrap(), "{\"x\": [1, 2]}".into()),
        ]),
        secret_env: SealedSecrets {
            names: [
                EnvKey::new("DB_PASSWORD").unwrap(),
                EnvKey::new("TOKEN").unwrap(),
            ]
            .into(),
            sealed: (0..=255).collect(),
        },
        schedule: Schedule::At { at: micros },
        timeout: Duration::from_secs(7 * 86_400),
        retries: 10,
        tags: [Tag::new("a:b").unwrap(), Tag::new("z.y_x-w").unwrap()].into(),
        ..spec("everything")
    };
    let event = store
        .create_event(
            owner,
            full.clone(),
            &mut Recorder::default(),
            now,
            &AuditEntry {
                at: now,
                ..audit("event.create", "event")
            },
        )
        .await
        .unwrap();
    assert_eq!(event.spec, full);
    assert_eq!(event.created_at, micros);
    assert_eq!(event.updated_at, micros);
    let read = store.get_event(event.id).await.unwrap();
    assert_eq!(read, event);
    assert_eq!(
        store.get_payload(event.id, 1).await.unwrap().created_at,
        micros
    );
    assert_eq!(
        store.list_audit(all()).await.unwrap().items[0].entry.at,
        micros
    );

    for schedule in [
        Schedule::cron("*/5 * * * * *", "America/New_York").unwrap(),
        Schedule::every("1h30m").unwrap(),
        Schedule::Manual,
    ] {
        let s = schedule.clone();
        let (updated, _) = store
            .update_event(
                event.id,
                &move |e| {
                    Ok(EventSpec {
                        schedule: s.clone(),
                        ..e.spec.clone()
                    })
                },
                &mut Recorder::default(),
                now,
                &audit("event.update", "event"),
            )
            .await
            .unwrap();
        assert_eq!(updated.spec.schedule, schedule);
        assert_eq!(store.get_event(event.id).await.unwrap(), updated);
    }

    // Times before 2000 (PostgreSQL's epoch) and before 1970 (Unix's) too.
    for at in [
        Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap() + chrono::Duration::microseconds(1),
        Utc.with_ymd_and_hms(1969, 7, 20, 20, 17, 40).unwrap()
            + chrono::Duration::microseconds(999_999),
    ] {
        let s = store
            .create_server(
                server(&format!("s{}", at.timestamp())),
                at,
                &audit("server.create", "server"),
            )
            .await
            .unwrap();
        assert_eq!(s.created_at, at);
        assert_eq!(store.get_server(s.id).await.unwrap().created_at, at);
    }
}

fn http_spec(name: &str) -> EventSpec {
    let header = |n: &str| cronium_core::HeaderName::new(n, "http.headers").unwrap();
    EventSpec {
        kind: cronium_core::EventKind::Http,
        interpreter: None,
        content: String::new(),
        env: BTreeMap::new(),
        http: Some(cronium_core::HttpSpec {
            method: cronium_core::HttpMethod::Post,
            url: "https://hooks.example.com/deploy?x=1".into(),
            headers: [(header("Content-Type"), "application/json".into())].into(),
            secret_headers: cronium_core::SealedHeaders {
                names: [header("Authorization")].into(),
                sealed: vec![1, 2, 3, 4],
            },
            body: Some("{\"ref\": \"main\"}".into()),
            expect_status: vec![200, 202],
        }),
        ..spec(name)
    }
}

async fn an_http_event_round_trips_its_request_and_sealed_headers_without_a_payload(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let writer = Recorder::default();
    let event = store
        .create_event(
            owner,
            http_spec("deploy hook"),
            &mut writer.clone(),
            Utc::now(),
            &audit("event.create", "event"),
        )
        .await
        .unwrap();
    assert_eq!(event.payload_version, None);
    assert!(writer.calls().is_empty(), "an http event has no payload");
    assert_eq!(store.get_event(event.id).await.unwrap(), event);

    // A changed request is stored; still no payload.
    let (updated, payload) = store
        .update_event(
            event.id,
            &|e| {
                let mut spec = e.spec.clone();
                spec.http.as_mut().unwrap().expect_status = vec![];
                spec.http.as_mut().unwrap().secret_headers = Default::default();
                Ok(spec)
            },
            &mut writer.clone(),
            Utc::now(),
            &audit("event.update", "event"),
        )
        .await
        .unwrap();
    assert_eq!(payload, None);
    assert!(writer.calls().is_empty());
    let read = store.get_event(event.id).await.unwrap();
    assert_eq!(read, updated);
    let http = read.spec.http.unwrap();
    assert!(http.expect_status.is_empty() && http.secret_headers.names.is_empty());

    // A request damaged behind the store's back is an error naming the column.
    b.execute("UPDATE events SET http = '{\"method\":\"GET\",\"url\":\"ftp://x/\",\"headers\":{},\"body\":null,\"expectStatus\":[],\"secretHeaderNames\":[]}'")
        .await;
    let StoreError::Backend(message) = store.get_event(event.id).await.unwrap_err() else {
        panic!("expected a backend error");
    };
    assert!(message.contains("column http"), "{message}");
}

fn channel(name: &str) -> cronium_core::ChannelSpec {
    cronium_core::ChannelSpec {
        name: cronium_core::ChannelName::new(name).unwrap(),
        kind: cronium_core::ChannelKind::Webhook,
        url: format!("https://hooks.example.com/{name}"),
        sealed_secret: vec![9, 9, 9],
        email: None,
    }
}

async fn an_email_channel_round_trips_with_its_settings_and_sealed_password(b: Backend) {
    use cronium_core::{
        ChannelKind, ChannelName, ChannelSpec, EmailAddress, EmailSettings, SmtpTls,
    };
    let store = &*b.store;
    let address = |a: &str| EmailAddress::new(a, "to").unwrap();
    let settings = |username: Option<&str>, ca: Option<&str>| EmailSettings {
        to: vec![address("ops@example.com"), address("oncall@example.org")],
        from: address("cronium@example.com"),
        host: "mail.example.com".into(),
        port: 465,
        tls: SmtpTls::Tls,
        username: username.map(str::to_string),
        ca_cert: ca.map(str::to_string),
    };
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for (name, email, sealed) in [
        (
            "mail",
            settings(Some("bot@example.com"), Some(pem)),
            vec![7, 7],
        ),
        // No authentication: nothing sealed.
        ("open-relay", settings(None, None), vec![]),
    ] {
        let spec = ChannelSpec {
            name: ChannelName::new(name).unwrap(),
            kind: ChannelKind::Email,
            url: email.relay_url(),
            sealed_secret: sealed,
            email: Some(email),
        };
        let saved = store
            .create_channel(spec.clone(), t(0), &audit("channel.create", "channel"))
            .await
            .unwrap();
        assert_eq!(saved.spec, spec);
        assert_eq!(store.get_channel(saved.id).await.unwrap().spec, spec);
    }
    assert_eq!(
        store.list_channels().await.unwrap()[0].spec.url,
        "smtp://mail.example.com:465"
    );
    // A webhook keeps no settings.
    let hook = store
        .create_channel(channel("hook"), t(0), &audit("channel.create", "channel"))
        .await
        .unwrap();
    assert_eq!(store.get_channel(hook.id).await.unwrap().spec.email, None);
    // The store checks what it is given, like every spec: a password over
    // plain SMTP is refused.
    let mut clear = settings(Some("bot"), None);
    clear.tls = SmtpTls::None;
    clear.port = 25;
    let refused = store
        .create_channel(
            ChannelSpec {
                name: ChannelName::new("clear").unwrap(),
                kind: ChannelKind::Email,
                url: clear.relay_url(),
                sealed_secret: vec![1],
                email: Some(clear),
            },
            t(0),
            &audit("channel.create", "channel"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Invalid(ref e) if e.field == "email.password"),
        "{refused:?}"
    );
}

async fn a_slack_and_a_discord_channel_round_trip_with_their_urls_sealed(b: Backend) {
    use cronium_core::{ChannelKind, ChannelName, ChannelSpec};
    let store = &*b.store;
    // The store sees only the redacted URL and the sealed bytes the server made.
    for (name, kind, shown) in [
        (
            "chat",
            ChannelKind::Slack,
            "https://hooks.slack.com/services/…",
        ),
        (
            "talk",
            ChannelKind::Discord,
            "https://discord.com/api/webhooks/…",
        ),
    ] {
        let spec = ChannelSpec {
            name: ChannelName::new(name).unwrap(),
            kind,
            url: shown.into(),
            sealed_secret: vec![1, 2, 3, 4],
            email: None,
        };
        let saved = store
            .create_channel(spec.clone(), t(0), &audit("channel.create", "channel"))
            .await
            .unwrap();
        assert_eq!(saved.spec, spec);
        let read = store.get_channel(saved.id).await.unwrap();
        assert_eq!(read.spec.kind, kind);
        assert_eq!(read.spec.url, shown);
        assert_eq!(read.spec.sealed_secret, vec![1, 2, 3, 4]);
    }
    let kinds: Vec<_> = store
        .list_channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.spec.kind)
        .collect();
    assert_eq!(kinds, [ChannelKind::Slack, ChannelKind::Discord]);
}

async fn channels_have_unique_names_and_cannot_vanish_under_an_action(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("noisy")).await;
    let ops = store
        .create_channel(channel("ops"), t(0), &audit("channel.create", "channel"))
        .await
        .unwrap();
    assert_eq!(store.get_channel(ops.id).await.unwrap(), ops);
    assert_eq!(
        store.find_channel_by_name("ops").await.unwrap(),
        Some(ops.clone())
    );
    let twice = store
        .create_channel(channel("ops"), t(0), &audit("channel.create", "channel"))
        .await
        .unwrap_err();
    assert_eq!(field(twice), "conflict:name");

    let action = store
        .add_action(
            event.id,
            notify(cronium_core::When::Failure, ops.id),
            t(1),
            &audit("action.add", "event"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.list_actions(event.id).await.unwrap(),
        vec![action.clone()]
    );
    let gone = cronium_core::ChannelId(ops.id.0 + 100);
    let missing = store
        .add_action(
            event.id,
            notify(cronium_core::When::Always, gone),
            t(1),
            &audit("action.add", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(missing), "not found:channel");
    let in_use = store
        .delete_channel(ops.id, &audit("channel.delete", "channel"))
        .await
        .unwrap_err();
    assert_eq!(field(in_use), "conflict:channel");
    assert_eq!(store.list_channels().await.unwrap(), vec![ops.clone()]);

    store
        .remove_action(event.id, action.id, &audit("action.remove", "event"))
        .await
        .unwrap();
    assert!(store.list_actions(event.id).await.unwrap().is_empty());
    store
        .delete_channel(ops.id, &audit("channel.delete", "channel"))
        .await
        .unwrap();
    assert!(store.list_channels().await.unwrap().is_empty());
    // Deleting an event takes its actions with it.
    let other = store
        .create_channel(channel("other"), t(2), &audit("channel.create", "channel"))
        .await
        .unwrap();
    store
        .add_action(
            event.id,
            notify(cronium_core::When::Always, other.id),
            t(2),
            &audit("action.add", "event"),
        )
        .await
        .unwrap();
    store
        .delete_event(event.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    store
        .delete_channel(other.id, &audit("channel.delete", "channel"))
        .await
        .unwrap();
}

fn notify(when: cronium_core::When, channel: cronium_core::ChannelId) -> cronium_core::ActionSpec {
    let target = cronium_core::ActionTarget::Notify(channel);
    cronium_core::ActionSpec::new(when, None, target).unwrap()
}

fn run_event(when: cronium_core::When, event: EventId) -> cronium_core::ActionSpec {
    let target = cronium_core::ActionTarget::RunEvent(event);
    cronium_core::ActionSpec::new(when, None, target).unwrap()
}

/// An event with `retries` and one action per `when` on channel `ops`.
async fn notifying_event(
    store: &dyn Store,
    retries: u32,
    whens: &[cronium_core::When],
) -> (cronium_store::Event, cronium_store::Channel) {
    let event = create_at(
        store,
        EventSpec {
            retries,
            ..spec("notifying")
        },
        t(0),
    )
    .await;
    let ops = store
        .create_channel(channel("ops"), t(0), &audit("channel.create", "channel"))
        .await
        .unwrap();
    for when in whens {
        store
            .add_action(
                event.id,
                notify(*when, ops.id),
                t(0),
                &audit("action.add", "event"),
            )
            .await
            .unwrap();
    }
    (event, ops)
}

async fn a_final_result_queues_one_delivery_per_firing_action_and_a_retried_attempt_none(
    b: Backend,
) {
    use cronium_core::When::*;
    let store = &*b.store;
    let (event, ops) = notifying_event(store, 1, &[Success, Failure, Always]).await;
    let job = run(store, event.id, t(1)).await;
    let first = claim(store, "w", t(1)).await.unwrap();
    let retried = finish(store, &first, JobStatus::Failed, t(2)).await;
    assert_eq!(retried.status, JobStatus::Queued);
    assert!(
        store.job_deliveries(job.id).await.unwrap().is_empty(),
        "an attempt that will be retried notifies nobody"
    );
    let second = claim(store, "w", t(20)).await.unwrap();
    let done = finish(store, &second, JobStatus::Failed, t(21)).await;
    assert_eq!(done.status, JobStatus::Failed);
    let deliveries = store.job_deliveries(job.id).await.unwrap();
    // failure and always fire; success does not.
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    for d in &deliveries {
        assert_eq!(
            (d.channel_id, d.status, d.attempts, d.next_attempt_at),
            (ops.id, cronium_store::DeliveryStatus::Pending, 0, t(21))
        );
    }
    let actions = store.list_actions(event.id).await.unwrap();
    let fired: Vec<_> = deliveries.iter().map(|d| d.action_id).collect();
    assert_eq!(fired, vec![Some(actions[1].id), Some(actions[2].id)]);

    // A success fires success and always.
    let ok = run(store, event.id, t(30)).await;
    let c = claim(store, "w", t(30)).await.unwrap();
    finish(store, &c, JobStatus::Succeeded, t(31)).await;
    let fired: Vec<_> = store
        .job_deliveries(ok.id)
        .await
        .unwrap()
        .iter()
        .map(|d| d.action_id)
        .collect();
    assert_eq!(fired, vec![Some(actions[0].id), Some(actions[2].id)]);
    // Removing an action later keeps what it already caused.
    store
        .remove_action(event.id, actions[0].id, &audit("action.remove", "event"))
        .await
        .unwrap();
    let kept = store.job_deliveries(ok.id).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].action_id, None);
}

async fn a_success_runs_the_chained_event_whose_job_names_the_one_that_started_it(b: Backend) {
    use cronium_core::When::Success;
    let store = &*b.store;
    let owner = admin(store).await;
    let a = create(store, owner, spec("extract")).await;
    let next = create(store, owner, spec("load")).await;
    let action = store
        .add_action(
            a.id,
            run_event(Success, next.id),
            t(0),
            &audit("action.add", "event"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.list_actions(a.id).await.unwrap(),
        vec![action.clone()]
    );

    // A failure of A starts nothing.
    let failed = run(store, a.id, t(1)).await;
    let c = claim(store, "w", t(1)).await.unwrap();
    let failed_done = finish(store, &c, JobStatus::Failed, t(2)).await;
    assert_eq!(failed_done.metadata.get("chained"), None);
    assert_eq!(store.get_job(failed.id).await.unwrap(), failed_done);
    assert!(claim(store, "w", t(3)).await.is_none());

    // A success of A queues B's job, in the transaction that recorded A's result.
    let ok = run(store, a.id, t(10)).await;
    let c = claim(store, "w", t(10)).await.unwrap();
    let done = finish(store, &c, JobStatus::Succeeded, t(11)).await;
    let chained = done.metadata["chained"].as_array().unwrap().clone();
    assert_eq!(chained.len(), 1, "{chained:?}");
    assert_eq!(chained[0]["event"], json!(next.id.0));
    assert_eq!(chained[0]["action"], json!(action.id.0));
    assert_eq!(chained[0]["status"], json!("queued"));
    let b_job = store
        .get_job(JobId(chained[0]["job"].as_i64().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (
            b_job.event_id,
            b_job.trigger,
            b_job.status,
            b_job.scheduled_at
        ),
        (next.id, Trigger::Action, JobStatus::Queued, t(11))
    );
    let by = cronium_store::StartedBy::of(&b_job).expect("the context names what started it");
    assert_eq!(
        by,
        cronium_store::StartedBy {
            job: ok.id,
            event: a.id,
            action: action.id,
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            depth: 1,
        }
    );
    // It pins B's payload like any run, and runs.
    assert_eq!(b_job.payload_version, next.payload_version);
    let c = claim(store, "w", t(12)).await.unwrap();
    assert_eq!(c.job.id, b_job.id);
}

async fn a_chain_that_loops_stops_at_the_depth_limit_with_the_reason_recorded(b: Backend) {
    use cronium_core::When::Always;
    let store = &*b.store;
    let owner = admin(store).await;
    let ping = create(store, owner, spec("ping")).await;
    let pong = create(store, owner, spec("pong")).await;
    for (from, to) in [(ping.id, pong.id), (pong.id, ping.id)] {
        store
            .add_action(
                from,
                run_event(Always, to),
                t(0),
                &audit("action.add", "event"),
            )
            .await
            .unwrap();
    }
    run(store, ping.id, t(1)).await;
    let mut ran = Vec::new();
    let mut at = t(1);
    while let Some(c) = claim(store, "w", at).await {
        at += chrono::Duration::seconds(1);
        let done = finish(store, &c, JobStatus::Failed, at).await;
        ran.push(done);
        assert!(ran.len() <= 20, "the chain did not stop");
    }
    let limit = cronium_store::MAX_CHAIN_DEPTH;
    assert_eq!(ran.len(), limit as usize + 1, "depth 0 to {limit}");
    let events: Vec<EventId> = ran.iter().map(|j| j.event_id).collect();
    assert_eq!(events[..4], [ping.id, pong.id, ping.id, pong.id]);
    let depths: Vec<u32> = ran.iter().map(cronium_store::StartedBy::depth_of).collect();
    assert_eq!(depths, (0..=limit).collect::<Vec<_>>());
    let last = ran.last().unwrap();
    let stopped = &last.metadata["chained"][0];
    assert_eq!(stopped.get("job"), None, "{stopped}");
    let why = stopped["notStarted"].as_str().unwrap();
    assert!(why.contains("chain depth limit"), "{why}");
    assert!(why.contains(&format!("the limit is {limit}")), "{why}");
    // The record is kept with the job.
    assert_eq!(
        store.get_job(last.id).await.unwrap().metadata,
        last.metadata
    );
}

async fn an_event_another_event_runs_cannot_be_deleted_until_that_action_goes(b: Backend) {
    use cronium_core::When::Success;
    let store = &*b.store;
    let owner = admin(store).await;
    let first = create(store, owner, spec("first")).await;
    let then = create(store, owner, spec("then")).await;
    let missing = store
        .add_action(
            first.id,
            run_event(Success, EventId(then.id.0 + 100)),
            t(0),
            &audit("action.add", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(missing), "not found:target event");
    let action = store
        .add_action(
            first.id,
            run_event(Success, then.id),
            t(0),
            &audit("action.add", "event"),
        )
        .await
        .unwrap();
    let refused = store
        .delete_event(then.id, &audit("event.delete", "event"))
        .await
        .unwrap_err();
    let StoreError::Conflict { field, message } = refused else {
        panic!("expected a conflict, got {refused:?}");
    };
    assert_eq!(field, "event");
    assert!(message.contains(&first.id.to_string()), "{message}");
    assert!(store.get_event(then.id).await.is_ok());
    // An event that runs itself can still be deleted.
    store
        .add_action(
            then.id,
            run_event(Success, then.id),
            t(0),
            &audit("action.add", "event"),
        )
        .await
        .unwrap();
    store
        .remove_action(first.id, action.id, &audit("action.remove", "event"))
        .await
        .unwrap();
    store
        .delete_event(then.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    // So can one that runs others: its actions go with it.
    store
        .add_action(
            first.id,
            run_event(Success, first.id),
            t(0),
            &audit("action.add", "event"),
        )
        .await
        .unwrap();
    store
        .delete_event(first.id, &audit("event.delete", "event"))
        .await
        .unwrap();
}

async fn a_start_action_owes_one_delivery_when_the_first_attempt_starts(b: Backend) {
    use cronium_core::When::Start;
    let store = &*b.store;
    let (event, ops) = notifying_event(store, 1, &[Start]).await;
    let job = run(store, event.id, t(1)).await;
    assert!(store.job_deliveries(job.id).await.unwrap().is_empty());
    let first = claim(store, "w", t(2)).await.unwrap();
    assert!(first.owes_deliveries);
    let deliveries = store.job_deliveries(job.id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (
            deliveries[0].reason,
            deliveries[0].channel_id,
            deliveries[0].created_at
        ),
        (cronium_store::DeliveryReason::Start, ops.id, t(2))
    );
    // The retry is the same job, already started: nothing more.
    finish(store, &first, JobStatus::Failed, t(3)).await;
    let second = claim(store, "w", t(20)).await.unwrap();
    assert_eq!(second.job.attempt, 2);
    assert!(!second.owes_deliveries);
    finish(store, &second, JobStatus::Failed, t(21)).await;
    assert_eq!(store.job_deliveries(job.id).await.unwrap().len(), 1);
}

async fn a_job_running_past_the_threshold_owes_one_duration_exceeded_delivery(b: Backend) {
    use cronium_core::When::DurationExceeded;
    let store = &*b.store;
    let event = create_at(store, spec("slow"), t(0)).await;
    let ops = store
        .create_channel(channel("ops"), t(0), &audit("channel.create", "channel"))
        .await
        .unwrap();
    let target = cronium_core::ActionTarget::Notify(ops.id);
    let late = cronium_core::ActionSpec::new(DurationExceeded, Some(60), target).unwrap();
    let action = store
        .add_action(event.id, late, t(0), &audit("action.add", "event"))
        .await
        .unwrap();
    assert_eq!(action.spec.after_secs, Some(60));

    let job = run(store, event.id, t(1)).await;
    // Queued for long is not running long.
    assert_eq!(store.enqueue_overdue(t(100)).await.unwrap(), 0);
    let c = claim(store, "w", t(100)).await.unwrap();
    assert_eq!(store.enqueue_overdue(t(159)).await.unwrap(), 0);
    assert_eq!(store.enqueue_overdue(t(160)).await.unwrap(), 1);
    // Once per job, however often the sweep runs.
    assert_eq!(store.enqueue_overdue(t(161)).await.unwrap(), 0);
    assert_eq!(store.enqueue_overdue(t(500)).await.unwrap(), 0);
    let deliveries = store.job_deliveries(job.id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].reason, deliveries[0].action_id),
        (
            cronium_store::DeliveryReason::DurationExceeded,
            Some(action.id)
        )
    );
    // A job that ended before its threshold owes nothing.
    finish(store, &c, JobStatus::Succeeded, t(501)).await;
    let quick = run(store, event.id, t(600)).await;
    let c = claim(store, "w", t(600)).await.unwrap();
    finish(store, &c, JobStatus::Succeeded, t(601)).await;
    assert_eq!(store.enqueue_overdue(t(1000)).await.unwrap(), 0);
    assert!(store.job_deliveries(quick.id).await.unwrap().is_empty());
}

async fn a_recovered_job_that_fails_for_good_queues_its_failure_deliveries(b: Backend) {
    use cronium_core::When::*;
    let store = &*b.store;
    let (event, _) = notifying_event(store, 0, &[Failure]).await;
    let job = run(store, event.id, t(1)).await;
    claim(store, "lost", t(1)).await.unwrap();
    let recovered = store
        .recover_expired_leases(
            t(1) + chrono::Duration::from_std(LEASE).unwrap() + chrono::Duration::seconds(1),
            t(100),
        )
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1);
    assert!(!recovered[0].retried);
    let deliveries = store.job_deliveries(job.id).await.unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
}

async fn deliveries_are_leased_once_retried_when_due_and_settled_by_their_holder_only(b: Backend) {
    use cronium_core::When::*;
    use cronium_store::{DeliveryStatus, SendResult};
    let store = &*b.store;
    let (event, _) = notifying_event(store, 0, &[Always]).await;
    let job = run(store, event.id, t(1)).await;
    let c = claim(store, "w", t(1)).await.unwrap();
    finish(store, &c, JobStatus::Succeeded, t(2)).await;
    let lease = Duration::from_secs(30);

    let taken = store.claim_deliveries("a", t(2), lease, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    let id = taken[0].id;
    assert!(
        store
            .claim_deliveries("b", t(3), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased to a"
    );
    let lost = store
        .finish_delivery(id, "b", SendResult::Delivered { status: 200 }, t(3))
        .await
        .unwrap_err();
    assert_eq!(field(lost), "delivery lost");

    let retry = store
        .finish_delivery(
            id,
            "a",
            SendResult::Retry {
                at: t(60),
                status: Some(503),
                error: "503 Service Unavailable".into(),
            },
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            retry.status,
            retry.attempts,
            retry.next_attempt_at,
            retry.last_status
        ),
        (DeliveryStatus::Pending, 1, t(60), Some(503))
    );
    assert!(
        store
            .claim_deliveries("b", t(59), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let again = store.claim_deliveries("b", t(60), lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].webhook_id(),
        taken[0].webhook_id(),
        "one id for every try"
    );
    // A lease that expired (the sender died) is taken over.
    let taken_over = store
        .claim_deliveries("c", t(60) + chrono::Duration::seconds(31), lease, 10)
        .await
        .unwrap();
    assert_eq!(taken_over.len(), 1);
    let done = store
        .finish_delivery(id, "c", SendResult::Delivered { status: 204 }, t(92))
        .await
        .unwrap();
    assert_eq!(
        (
            done.status,
            done.attempts,
            done.delivered_at,
            done.last_error
        ),
        (DeliveryStatus::Delivered, 2, Some(t(92)), None)
    );
    assert!(
        store
            .claim_deliveries("d", t(1000), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        field(
            store
                .finish_delivery(id, "c", SendResult::Delivered { status: 200 }, t(93))
                .await
                .unwrap_err()
        ),
        "delivery lost",
        "settled deliveries take no more reports"
    );

    // Giving up is final too.
    let job2 = run(store, event.id, t(100)).await;
    let c = claim(store, "w", t(100)).await.unwrap();
    finish(store, &c, JobStatus::Failed, t(101)).await;
    let d = store
        .claim_deliveries("a", t(101), lease, 10)
        .await
        .unwrap();
    assert_eq!(d[0].job_id, job2.id);
    let failed = store
        .finish_delivery(
            d[0].id,
            "a",
            SendResult::GiveUp {
                status: Some(404),
                error: "404 Not Found".into(),
            },
            t(102),
        )
        .await
        .unwrap();
    assert_eq!(
        (failed.status, failed.attempts),
        (DeliveryStatus::Failed, 1)
    );
    assert_eq!(store.job_deliveries(job2.id).await.unwrap(), vec![failed]);
    let _ = job;
}

async fn a_corrupt_row_is_an_error_naming_the_column(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;
    // Each damage is undone before the next, so each error has one cause.
    let damages: [(&str, &str); 6] = [
        (
            "UPDATE events SET schedule = '{\"type\":\"cron\",\"cron\":\"nope\",\"timezone\":\"UTC\"}'",
            "schedule",
        ),
        ("UPDATE events SET interpreter = 'cobol'", "interpreter"),
        ("UPDATE events SET env = '{\"1BAD\": \"x\"}'", "env"),
        (
            "UPDATE events SET secret_env_names = '[\"1X\"]'",
            "secret_env_names",
        ),
        ("UPDATE events SET name = ' '", "name"),
        ("UPDATE events SET env = 'not json'", "env"),
    ];
    for (sql, column) in damages {
        b.execute("UPDATE events SET schedule = '{\"type\":\"manual\"}', interpreter = 'bash', env = '{\"GREETING\":\"hi\"}', secret_env_names = '[]', name = 'backup'")
            .await;
        assert_eq!(store.get_event(event.id).await.unwrap(), event);
        b.execute(sql).await;
        for err in [
            store.get_event(event.id).await.unwrap_err(),
            store
                .list_events(&EventFilter::default(), all())
                .await
                .unwrap_err(),
        ] {
            let StoreError::Backend(message) = err else {
                panic!("{sql}: expected a backend error, got {err:?}");
            };
            assert!(
                message.contains("events")
                    && message.contains(&format!("id {}", event.id))
                    && message.contains(&format!("column {column}")),
                "{sql}: {message}"
            );
        }
    }

    b.execute("UPDATE runner_payloads SET checksum = 'NOT-HEX'")
        .await;
    let StoreError::Backend(message) = store.list_payloads(event.id).await.unwrap_err() else {
        panic!("expected a backend error");
    };
    assert!(
        message.contains("runner_payloads") && message.contains("column checksum"),
        "{message}"
    );
}

async fn ping_answers_until_the_pool_is_closed(b: Backend) {
    b.store.ping().await.unwrap();
    b.raw_store().ping().await.unwrap();
    b.close_raw().await;
    let StoreError::Backend(_) = b.raw_store().ping().await.unwrap_err() else {
        panic!("a closed pool is a backend error");
    };
    // Closing one handle's pool leaves the database and other handles alone.
    b.store.ping().await.unwrap();
}

async fn use_token_records_last_used_at_at_most_once_a_minute(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let hash = TokenHash([0x5a; 32]);
    let token = store
        .create_token(
            NewToken {
                user_id: owner,
                name: "reader".into(),
                role: Role::Viewer,
                hash,
            },
            t0 - chrono::Duration::hours(1),
            &audit("token.create", "token"),
        )
        .await
        .unwrap();
    let stored = || async { store.list_tokens().await.unwrap()[0].last_used_at };
    let seconds = chrono::Duration::seconds;

    // (when the request comes, what the stored use is afterwards)
    let table = [
        (t0, t0, "the first use is recorded"),
        (t0 + seconds(1), t0, "a second later: not written"),
        (t0 + seconds(59), t0, "within the minute: not written"),
        (t0 + seconds(60), t0, "exactly a minute: not yet"),
        (
            t0 + seconds(60) + chrono::Duration::microseconds(1),
            t0 + seconds(60) + chrono::Duration::microseconds(1),
            "just over a minute: recorded",
        ),
        (
            t0 + seconds(90),
            t0 + seconds(60) + chrono::Duration::microseconds(1),
            "within the new minute: not written",
        ),
        (
            t0 - chrono::Duration::hours(1),
            t0 + seconds(60) + chrono::Duration::microseconds(1),
            "a clock that is behind never moves it back",
        ),
        (t0 + seconds(600), t0 + seconds(600), "much later: recorded"),
    ];
    for (now, want, why) in table {
        let found = store.use_token(&hash, now).await.unwrap().unwrap();
        assert_eq!(found.id, token.id, "{why}");
        assert_eq!(found.last_used_at, Some(want), "{why}: returned");
        assert_eq!(stored().await, Some(want), "{why}: stored");
    }

    // However recent the recorded use, a revoked token is refused.
    let revoked_at = t0 + seconds(601);
    store
        .revoke_token(token.id, revoked_at, &audit("token.revoke", "token"))
        .await
        .unwrap();
    assert_eq!(store.use_token(&hash, revoked_at).await.unwrap(), None);
    assert_eq!(
        store
            .use_token(&hash, revoked_at + chrono::Duration::hours(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(stored().await, Some(t0 + seconds(600)));
}

async fn a_servers_last_check_is_kept_without_changing_the_server(b: Backend) {
    let store = &*b.store;
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let made = store
        .create_server(server("checked"), now, &audit("server.create", "server"))
        .await
        .unwrap();
    assert_eq!(made.last_check, None, "never checked");
    assert_eq!(store.get_server(made.id).await.unwrap().last_check, None);

    let failed = cronium_store::ServerCheck {
        at: now + chrono::TimeDelta::microseconds(1_000_001),
        ok: false,
        message: "auth: the server refused the key".into(),
        fingerprint: Some("SHA256:abc".into()),
    };
    store.record_server_check(made.id, &failed).await.unwrap();
    let read = store.get_server(made.id).await.unwrap();
    assert_eq!(read.last_check.as_ref(), Some(&failed));
    assert_eq!(read.updated_at, made.updated_at, "a check is not a change");
    assert_eq!(read.spec, made.spec);
    let listed = store.list_servers().await.unwrap();
    assert_eq!(listed[0].last_check.as_ref(), Some(&failed));

    // The next check replaces it; an update of the server keeps it.
    let passed = cronium_store::ServerCheck {
        at: now + chrono::TimeDelta::hours(1),
        ok: true,
        message: "Linux x86_64".into(),
        fingerprint: None,
    };
    store.record_server_check(made.id, &passed).await.unwrap();
    let renamed = store
        .update_server(
            made.id,
            &|s: &cronium_store::Server| -> Result<ServerSpec, ValidationError> {
                Ok(ServerSpec {
                    name: ServerName::new("renamed").unwrap(),
                    ..s.spec.clone()
                })
            },
            now,
            &audit("server.update", "server"),
        )
        .await
        .unwrap();
    assert_eq!(renamed.last_check.as_ref(), Some(&passed));
    assert_eq!(
        store.get_server(made.id).await.unwrap().last_check,
        Some(passed.clone())
    );

    // A server that is gone cannot be recorded.
    let err = store
        .record_server_check(ServerId(made.id.0 + 1000), &passed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "server" }),
        "{err:?}"
    );
}

async fn a_servers_cache_dir_round_trips_and_defaults_to_none(b: Backend) {
    let store = &*b.store;
    let now = Utc::now();
    let entry = audit("server.create", "server");
    let plain = store
        .create_server(server("plain"), now, &entry)
        .await
        .unwrap();
    assert_eq!(plain.spec.cache_dir, None);
    assert_eq!(
        store.get_server(plain.id).await.unwrap().spec.cache_dir,
        None
    );

    let relative = store
        .create_server(
            ServerSpec {
                cache_dir: Some("opt-cronium/cache".into()),
                ..server("relative")
            },
            now,
            &entry,
        )
        .await
        .unwrap();
    assert_eq!(store.get_server(relative.id).await.unwrap(), relative);
    assert_eq!(
        store.find_server_by_name("relative").await.unwrap(),
        Some(relative.clone())
    );
    let listed = store.list_servers().await.unwrap();
    let dirs: Vec<Option<&str>> = listed.iter().map(|s| s.spec.cache_dir.as_deref()).collect();
    assert_eq!(dirs, [None, Some("opt-cronium/cache")], "plain, relative");

    // Set, changed to an absolute path, and reset to the default.
    let update = |dir: Option<&'static str>| {
        move |s: &cronium_store::Server| -> Result<ServerSpec, ValidationError> {
            Ok(ServerSpec {
                cache_dir: dir.map(str::to_string),
                ..s.spec.clone()
            })
        }
    };
    let edit = audit("server.update", "server");
    for dir in [Some("/srv/cronium"), None, Some(".cache/cronium")] {
        let updated = store
            .update_server(plain.id, &update(dir), now, &edit)
            .await
            .unwrap();
        assert_eq!(updated.spec.cache_dir.as_deref(), dir);
        assert_eq!(store.get_server(plain.id).await.unwrap(), updated);
    }

    // The store validates too: nothing that could escape reaches a row.
    let bad = store
        .create_server(
            ServerSpec {
                cache_dir: Some("../elsewhere".into()),
                ..server("bad")
            },
            now,
            &entry,
        )
        .await;
    assert_eq!(field(bad.unwrap_err()), "invalid:cacheDir");
    assert_eq!(store.find_server_by_name("bad").await.unwrap(), None);
    let refused = store
        .update_server(relative.id, &update(Some("a; rm -rf ~")), now, &edit)
        .await;
    assert_eq!(field(refused.unwrap_err()), "invalid:cacheDir");
    assert_eq!(store.get_server(relative.id).await.unwrap(), relative);

    // A row damaged behind the store's back is an error naming the column,
    // never a path handed on to a shell.
    b.execute("UPDATE servers SET cache_dir = '../../etc' WHERE name = 'relative'")
        .await;
    for err in [
        store.get_server(relative.id).await.unwrap_err(),
        store.list_servers().await.unwrap_err(),
    ] {
        let StoreError::Backend(message) = err else {
            panic!("expected a backend error, got {err:?}");
        };
        assert!(
            message.contains("servers")
                && message.contains(&format!("id {}", relative.id))
                && message.contains("column cache_dir"),
            "{message}"
        );
    }
}

async fn a_missing_target_server_is_invalid_not_a_backend_error(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let now = Utc::now();
    let live = store
        .create_server(server("web-1"), now, &audit("server.create", "server"))
        .await
        .unwrap();
    // A server that existed and was deleted, as by a concurrent request
    // between the API's existence check and the insert.
    let gone = store
        .create_server(server("web-2"), now, &audit("server.create", "server"))
        .await
        .unwrap();
    store
        .delete_server(gone.id, &audit("server.delete", "server"))
        .await
        .unwrap();
    let never = ServerId(gone.id.0 + 1000);
    let audited = store.list_audit(all()).await.unwrap().total;

    for (targets, why) in [
        (vec![never], "never existed"),
        (vec![gone.id], "deleted"),
        (vec![live.id, never], "the second of two"),
    ] {
        let err = store
            .create_event(
                owner,
                EventSpec {
                    run_location: RunLocation::Remote,
                    target_servers: targets,
                    ..spec("remote")
                },
                &mut Recorder::default(),
                now,
                &audit("event.create", "event"),
            )
            .await
            .unwrap_err();
        assert_eq!(field(err), "invalid:targetServers", "{why}");
        assert_eq!(
            store.find_event_by_name(owner, "remote").await.unwrap(),
            None,
            "{why}: nothing left behind"
        );
    }

    // The same through an update, which must leave the event as it was.
    let event = create(
        store,
        owner,
        EventSpec {
            run_location: RunLocation::Remote,
            target_servers: vec![live.id],
            ..spec("deploy")
        },
    )
    .await;
    for targets in [vec![gone.id], vec![live.id, never]] {
        let err = store
            .update_event(
                event.id,
                &move |e| {
                    Ok(EventSpec {
                        target_servers: targets.clone(),
                        content: "echo changed\n".into(),
                        ..e.spec.clone()
                    })
                },
                &mut Recorder::default(),
                now,
                &audit("event.update", "event"),
            )
            .await
            .unwrap_err();
        assert_eq!(field(err), "invalid:targetServers");
        assert_eq!(store.get_event(event.id).await.unwrap(), event);
        assert_eq!(
            versions(&store.list_payloads(event.id).await.unwrap()),
            vec![(1, true)]
        );
    }
    // Only the successful create was audited.
    assert_eq!(store.list_audit(all()).await.unwrap().total, audited + 1);
}

async fn prune_writes_the_callers_audit_entry_and_never_reads_the_clock(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("backup")).await;
    for v in 2..=4 {
        set_content(store, event.id, &format!("echo {v}\n")).await;
    }
    // A time far from the real clock: if the store stamped the entry
    // itself, it would show.
    let at = Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let actor = cronium_store::Actor::Token(cronium_core::TokenId(42));
    let entry = AuditEntry {
        at,
        actor: Some(actor),
        action: "payload.prune".into(),
        target_type: "event".into(),
        target_id: Some(event.id.0),
        detail: json!({ "keep": 1 }),
    };
    let pruned = store.prune_payloads(event.id, 1, &entry).await.unwrap();
    assert_eq!(versions(&pruned), vec![(3, false), (2, false), (1, false)]);
    let log = store.list_audit(all()).await.unwrap();
    let newest = &log.items[0].entry;
    assert_eq!(
        *newest,
        AuditEntry {
            at: cronium_store_truncate(at),
            detail: json!({ "keep": 1, "versions": [3, 2, 1] }),
            ..entry.clone()
        }
    );

    // Nothing pruned, nothing audited.
    let before = log.total;
    assert!(
        store
            .prune_payloads(event.id, 1, &entry)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_audit(all()).await.unwrap().total, before);
}

fn cronium_store_truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

// --- users and sessions -------------------------------------------------------

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGg";

fn new_user(name: &str, role: Role) -> cronium_store::NewUser {
    cronium_store::NewUser {
        name: cronium_core::UserName::new(name).unwrap(),
        role,
        password_hash: Some(cronium_core::PasswordHash::new(HASH.into()).unwrap()),
    }
}

fn session(hash: u8, user: UserId, expires_at: DateTime<Utc>) -> cronium_store::NewSession {
    cronium_store::NewSession {
        hash: cronium_core::SessionHash([hash; 32]),
        user_id: user,
        csrf_token: format!("csrf-{hash}"),
        expires_at,
    }
}

async fn a_new_role_revokes_stronger_tokens_and_keeps_an_admin(b: Backend) {
    let store = b.store.as_ref();
    let admin = store.ensure_admin(t(0)).await.unwrap();
    // The last admin keeps the role.
    let err = store
        .set_role(admin.id, Role::Editor, t(1), &audit("user.role", "user"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { message, .. } if message.contains("last admin")),
        "{err}"
    );
    assert_eq!(store.get_user(admin.id).await.unwrap().role, Role::Admin);
    let ops = store
        .create_user(
            new_user("ops", Role::Admin),
            t(1),
            &audit("user.create", "user"),
        )
        .await
        .unwrap();
    for (byte, role) in [(1, Role::Admin), (2, Role::Editor), (3, Role::Viewer)] {
        store
            .create_token(
                NewToken {
                    user_id: ops.id,
                    name: format!("{role}"),
                    role,
                    hash: TokenHash([byte; 32]),
                },
                t(2),
                &audit("token.create", "token"),
            )
            .await
            .unwrap();
    }
    let live = |byte: u8| async move {
        store
            .use_token(&TokenHash([byte; 32]), t(4))
            .await
            .unwrap()
            .is_some()
    };
    // Editor: the admin token goes, the others stay.
    let changed = store
        .set_role(ops.id, Role::Editor, t(3), &audit("user.role", "user"))
        .await
        .unwrap();
    assert_eq!(changed.role, Role::Editor);
    assert!(!live(1).await && live(2).await && live(3).await);
    // With ops no longer admin, admin is the last one again.
    assert!(
        store
            .set_role(admin.id, Role::Viewer, t(3), &audit("user.role", "user"))
            .await
            .is_err()
    );
    // Viewer: the editor token goes too; the count is audited.
    store
        .set_role(ops.id, Role::Viewer, t(3), &audit("user.role", "user"))
        .await
        .unwrap();
    assert!(!live(2).await && live(3).await);
    let log = store.list_audit(all()).await.unwrap().items;
    assert_eq!(log[0].entry.action, "user.role");
    assert_eq!(log[0].entry.detail["tokensRevoked"], 1);
    // Back to admin revokes nothing, and then the first admin may step down.
    store
        .set_role(ops.id, Role::Admin, t(3), &audit("user.role", "user"))
        .await
        .unwrap();
    store
        .set_role(admin.id, Role::Viewer, t(3), &audit("user.role", "user"))
        .await
        .unwrap();
    assert_eq!(
        field(
            store
                .set_role(
                    UserId(ops.id.0 + 1000),
                    Role::Viewer,
                    t(3),
                    &audit("user.role", "user")
                )
                .await
                .unwrap_err()
        ),
        "not found:user"
    );
}

async fn users_have_password_hashes_and_the_last_admin_stays(b: Backend) {
    let store = b.store.as_ref();
    let admin = store.ensure_admin(t(0)).await.unwrap();
    assert!(!admin.has_password, "admin starts without a password");
    let found = store.credentials("admin").await.unwrap().unwrap();
    assert_eq!(found.password_hash, None);
    assert!(store.credentials("nobody").await.unwrap().is_none());

    // A new password ends the user's sessions, in the same transaction.
    store
        .create_session(
            session(1, admin.id, t(3600)),
            t(0),
            chrono::TimeDelta::minutes(30),
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    let hash = cronium_core::PasswordHash::new(HASH.into()).unwrap();
    let updated = store
        .set_password(admin.id, hash.clone(), &audit("user.passwd", "user"))
        .await
        .unwrap();
    assert!(updated.has_password);
    assert_eq!(
        store
            .credentials("admin")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        Some(hash)
    );
    assert!(store.list_sessions(admin.id).await.unwrap().is_empty());

    let ops = store
        .create_user(
            new_user("ops", Role::Editor),
            t(1),
            &audit("user.create", "user"),
        )
        .await
        .unwrap();
    assert_eq!(
        (ops.name.as_str(), ops.role, ops.has_password),
        ("ops", Role::Editor, true)
    );
    let err = store
        .create_user(
            new_user("ops", Role::Viewer),
            t(2),
            &audit("user.create", "user"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "conflict:name");
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["admin", "ops"]);

    // The last admin cannot go; a user who owns events neither.
    let err = store
        .remove_user(admin.id, &audit("user.delete", "user"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { message, .. } if message.contains("last admin")),
        "{err}"
    );
    create(store, ops.id, spec("owned")).await;
    let err = store
        .remove_user(ops.id, &audit("user.delete", "user"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { message, .. } if message.contains("owns 1 event")),
        "{err}"
    );

    // A second admin makes the first removable, with its tokens and sessions.
    let other = store
        .create_user(
            new_user("root2", Role::Admin),
            t(3),
            &audit("user.create", "user"),
        )
        .await
        .unwrap();
    store
        .create_token(
            NewToken {
                user_id: admin.id,
                name: "t".into(),
                role: Role::Admin,
                hash: TokenHash([7; 32]),
            },
            t(4),
            &audit("token.create", "token"),
        )
        .await
        .unwrap();
    store
        .create_session(
            session(2, admin.id, t(3600)),
            t(4),
            chrono::TimeDelta::minutes(30),
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    store
        .remove_user(admin.id, &audit("user.delete", "user"))
        .await
        .unwrap();
    assert!(
        store
            .use_token(&TokenHash([7; 32]), t(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_sessions(admin.id).await.unwrap().is_empty());
    assert_eq!(
        field(
            store
                .remove_user(admin.id, &audit("user.delete", "user"))
                .await
                .unwrap_err()
        ),
        "not found:user"
    );
    let err = store
        .remove_user(other.id, &audit("user.delete", "user"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { .. }),
        "root2 is now the last admin"
    );

    // Every change is audited; a UI user is recorded as the actor.
    let entry = AuditEntry {
        actor: Some(cronium_store::Actor::User(other.id)),
        ..audit("user.passwd", "user")
    };
    store
        .set_password(
            ops.id,
            cronium_core::PasswordHash::new(HASH.into()).unwrap(),
            &entry,
        )
        .await
        .unwrap();
    let log = store.list_audit(all()).await.unwrap().items;
    assert_eq!(
        log[0].entry.actor,
        Some(cronium_store::Actor::User(other.id))
    );
    assert_eq!(log[0].entry.detail["sessionsEnded"], 0);
    let actions: Vec<&str> = log.iter().map(|r| r.entry.action.as_str()).collect();
    for action in [
        "user.create",
        "user.passwd",
        "user.delete",
        "session.create",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

async fn sessions_are_found_by_hash_until_idle_expired_or_ended(b: Backend) {
    let store = b.store.as_ref();
    let admin = store.ensure_admin(t(0)).await.unwrap();
    let idle = chrono::TimeDelta::minutes(30);
    let created = store
        .create_session(
            session(1, admin.id, t(12 * 3600)),
            t(0),
            idle,
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    assert_eq!(
        (created.created_at, created.last_seen_at, created.expires_at),
        (t(0), t(0), t(12 * 3600))
    );
    let hash = cronium_core::SessionHash([1; 32]);
    let found = store
        .use_session(&hash, t(30), idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user.id, admin.id);
    assert_eq!(found.session.csrf_token, "csrf-1");
    assert_eq!(
        found.session.last_seen_at,
        t(0),
        "within a minute: nothing written"
    );
    let found = store
        .use_session(&hash, t(90), idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.session.last_seen_at,
        t(90),
        "over a minute: the use is recorded"
    );
    assert!(
        store
            .use_session(&cronium_core::SessionHash([9; 32]), t(90), idle)
            .await
            .unwrap()
            .is_none()
    );

    // Unused for the idle timeout: gone (and deleted).
    assert!(
        store
            .use_session(&hash, t(90) + idle, idle)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_sessions(admin.id).await.unwrap().is_empty());

    // Past its absolute end: gone, however recently used.
    store
        .create_session(
            session(2, admin.id, t(600)),
            t(0),
            idle,
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    let two = cronium_core::SessionHash([2; 32]);
    for at in (60..600).step_by(120) {
        assert!(
            store
                .use_session(&two, t(at), idle)
                .await
                .unwrap()
                .is_some(),
            "{at}"
        );
    }
    assert!(
        store
            .use_session(&two, t(600), idle)
            .await
            .unwrap()
            .is_none()
    );

    // Ended by signing out: once.
    store
        .create_session(
            session(3, admin.id, t(7200)),
            t(700),
            idle,
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    let three = cronium_core::SessionHash([3; 32]);
    assert!(
        store
            .delete_session(&three, &audit("session.delete", "user"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_session(&three, &audit("session.delete", "user"))
            .await
            .unwrap()
    );
    assert!(
        store
            .use_session(&three, t(701), idle)
            .await
            .unwrap()
            .is_none()
    );

    // A new session sweeps those that ended, whoever's they were.
    store
        .create_session(
            session(4, admin.id, t(7200)),
            t(700),
            idle,
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    store
        .create_session(
            session(5, admin.id, t(90_000)),
            t(10_000),
            idle,
            &audit("session.create", "user"),
        )
        .await
        .unwrap();
    let left: Vec<u8> = store
        .list_sessions(admin.id)
        .await
        .unwrap()
        .iter()
        .map(|s| s.hash.0[0])
        .collect();
    assert_eq!(left, [5]);
}

// --- schedules and jobs -------------------------------------------------------

/// A fixed clock for job stories: `t(s)` is `s` seconds after a Monday 10:00 UTC.
fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

const LEASE: Duration = Duration::from_secs(30);

fn with_policy(spec: EventSpec, overlap: OverlapPolicy, max_concurrent: Option<u32>) -> EventSpec {
    EventSpec {
        policy: RunPolicy {
            overlap,
            max_concurrent,
            ..RunPolicy::default()
        },
        ..spec
    }
}

fn every(spec: EventSpec, interval: &str) -> EventSpec {
    EventSpec {
        schedule: Schedule::every(interval).unwrap(),
        ..spec
    }
}

async fn create_at(store: &dyn Store, spec: EventSpec, now: DateTime<Utc>) -> Event {
    let owner = admin(store).await;
    store
        .create_event(
            owner,
            spec,
            &mut Recorder::default(),
            now,
            &audit("event.create", "event"),
        )
        .await
        .unwrap()
}

async fn update_at(
    store: &dyn Store,
    id: EventId,
    now: DateTime<Utc>,
    change: impl Fn(&mut EventSpec) + Send + Sync + 'static,
) -> Event {
    store
        .update_event(
            id,
            &move |e| {
                let mut spec = e.spec.clone();
                change(&mut spec);
                Ok(spec)
            },
            &mut Recorder::default(),
            now,
            &audit("event.update", "event"),
        )
        .await
        .unwrap()
        .0
}

/// A manual run requested at `at`.
async fn run(store: &dyn Store, event: EventId, at: DateTime<Utc>) -> Job {
    store
        .enqueue_job(
            NewJob {
                event_id: event,
                trigger: Trigger::Manual,
                scheduled_at: at,
                input: None,
            },
            at,
        )
        .await
        .unwrap()
}

async fn claim(store: &dyn Store, worker: &str, at: DateTime<Utc>) -> Option<Claim> {
    store.claim_job(worker, at, LEASE).await.unwrap()
}

fn ended(status: JobStatus) -> JobOutcome {
    JobOutcome {
        status,
        exit_code: Some(if status == JobStatus::Succeeded { 0 } else { 1 }),
        error: (status != JobStatus::Succeeded).then(|| format!("the script {status}")),
        metadata: json!({ "durationMs": 12 }),
    }
}

async fn finish(store: &dyn Store, claim: &Claim, status: JobStatus, at: DateTime<Utc>) -> Job {
    store
        .finish_job(
            &claim.fence,
            ended(status),
            at + chrono::Duration::seconds(10),
            at,
        )
        .await
        .unwrap()
}

fn fire(at: DateTime<Utc>) -> Fire {
    Fire { at, run: true }
}

fn line(seq: u64, stream: LogStream, data: &[u8]) -> LogLine {
    LogLine {
        seq,
        stream,
        at: t(seq as i64),
        data: data.to_vec(),
        server: None,
    }
}

fn labelled(seq: u64, stream: LogStream, data: &[u8], server: &str) -> LogLine {
    LogLine {
        server: Some(server.to_string()),
        ..line(seq, stream, data)
    }
}

async fn statuses(store: &dyn Store, event: EventId) -> Vec<(i64, JobStatus)> {
    let filter = JobFilter {
        event: Some(event),
        ..JobFilter::default()
    };
    let mut jobs: Vec<_> = store
        .list_jobs(&filter, all())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| (j.id.0, j.status))
        .collect();
    jobs.reverse();
    jobs
}

async fn the_run_policy_round_trips(b: Backend) {
    let store = &*b.store;
    let policy = RunPolicy {
        overlap: OverlapPolicy::Allow,
        misfire: MisfirePolicy::CatchUp,
        start_at: Some(t(3600) + chrono::Duration::nanoseconds(1_234_567)),
        max_executions: Some(7),
        max_concurrent: Some(3),
        retry_delay: Duration::from_secs(45),
    };
    let event = create_at(
        store,
        EventSpec {
            policy: policy.clone(),
            ..every(spec("policy"), "5m")
        },
        t(0),
    )
    .await;
    // Stored with microseconds, like every other time.
    let kept = RunPolicy {
        start_at: Some(t(3600) + chrono::Duration::microseconds(1_234)),
        ..policy
    };
    assert_eq!(event.spec.policy, kept);
    assert_eq!(store.get_event(event.id).await.unwrap(), event);
    let defaults = create_at(store, spec("defaults"), t(0)).await;
    assert_eq!(
        store.get_event(defaults.id).await.unwrap().spec.policy,
        RunPolicy::default()
    );

    let err = store
        .create_event(
            admin(store).await,
            EventSpec {
                policy: RunPolicy {
                    retry_delay: Duration::from_millis(1500),
                    ..RunPolicy::default()
                },
                ..spec("fractional")
            },
            &mut Recorder::default(),
            t(0),
            &audit("event.create", "event"),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "invalid:retryDelay");
}

async fn schedule_state_follows_create_update_pause_and_resume(b: Backend) {
    let store = &*b.store;
    let event = create_at(store, every(spec("tick"), "10m"), t(0)).await;
    let state = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!(
        state,
        ScheduleState {
            event_id: event.id,
            anchor: t(0),
            next_fire_at: Some(t(600)),
            fire_count: 0,
        }
    );

    // An edit that leaves the schedule alone leaves its state alone.
    update_at(store, event.id, t(100), |s| s.description = "edited".into()).await;
    assert_eq!(store.get_schedule_state(event.id).await.unwrap(), state);

    // One fire recorded, then paused: the schedule stops.
    store
        .record_fires(event.id, t(600), &[fire(t(600))], Some(t(1200)), t(601))
        .await
        .unwrap();
    update_at(store, event.id, t(700), |s| s.status = EventStatus::Paused).await;
    let paused = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!((paused.next_fire_at, paused.fire_count), (None, 1));
    assert!(store.due_schedules(t(5000), 10).await.unwrap().is_empty());

    // Resumed long after: it starts again from the resume, owing nothing.
    update_at(store, event.id, t(5000), |s| s.status = EventStatus::Active).await;
    let resumed = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!(
        (resumed.anchor, resumed.next_fire_at, resumed.fire_count),
        (t(5000), Some(t(5600)), 1)
    );

    // A new schedule restarts from the edit; the fire count is kept.
    update_at(store, event.id, t(6000), |s| {
        s.schedule = Schedule::every("1h").unwrap()
    })
    .await;
    let moved = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!(
        (moved.anchor, moved.next_fire_at, moved.fire_count),
        (t(6000), Some(t(9600)), 1)
    );

    // A start time in the future anchors the schedule and holds it back.
    update_at(store, event.id, t(6100), |s| {
        s.policy.start_at = Some(t(86_400))
    })
    .await;
    let later = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!(
        (later.anchor, later.next_fire_at),
        (t(86_400), Some(t(86_400)))
    );

    // Max executions already reached: nothing more to fire.
    update_at(store, event.id, t(6200), |s| {
        s.policy.max_executions = Some(1)
    })
    .await;
    assert_eq!(
        store
            .get_schedule_state(event.id)
            .await
            .unwrap()
            .next_fire_at,
        None
    );

    // Manual events and events created paused never come due.
    let manual = create_at(store, spec("by-hand"), t(0)).await;
    assert_eq!(
        store
            .get_schedule_state(manual.id)
            .await
            .unwrap()
            .next_fire_at,
        None
    );
    let draft = create_at(
        store,
        EventSpec {
            status: EventStatus::Paused,
            ..every(spec("later"), "1m")
        },
        t(0),
    )
    .await;
    let state = store.get_schedule_state(draft.id).await.unwrap();
    assert_eq!((state.anchor, state.next_fire_at), (t(0), None));
    assert_eq!(
        field(store.get_schedule_state(EventId(9999)).await.unwrap_err()),
        "not found:event"
    );
}

async fn due_schedules_are_active_and_soonest_first(b: Backend) {
    let store = &*b.store;
    let slow = create_at(store, every(spec("slow"), "10m"), t(0)).await;
    let fast = create_at(store, every(spec("fast"), "1m"), t(0)).await;
    let paused = create_at(store, every(spec("paused"), "1m"), t(0)).await;
    update_at(store, paused.id, t(1), |s| s.status = EventStatus::Paused).await;
    create_at(store, spec("manual"), t(0)).await;

    assert!(store.due_schedules(t(59), 10).await.unwrap().is_empty());
    let due = store.due_schedules(t(600), 10).await.unwrap();
    let ids: Vec<_> = due.iter().map(|(e, s)| (e.id, s.next_fire_at)).collect();
    assert_eq!(ids, vec![(fast.id, Some(t(60))), (slow.id, Some(t(600)))]);
    assert_eq!(due[0].0, store.get_event(fast.id).await.unwrap());
    assert_eq!(due[0].1, store.get_schedule_state(fast.id).await.unwrap());
    let first = store.due_schedules(t(600), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0.id, fast.id);
}

async fn two_schedulers_recording_the_same_fire_make_one_job(b: Backend) {
    let event = create_at(&*b.store, every(spec("tick"), "1m"), t(0)).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = b.store.clone();
            tokio::spawn(async move {
                store
                    .record_fires(event.id, t(60), &[fire(t(60))], Some(t(120)), t(61))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut recorded = Vec::new();
    for task in tasks {
        recorded.push(task.await.unwrap());
    }
    let winners: Vec<_> = recorded.iter().filter(|jobs| !jobs.is_empty()).collect();
    assert_eq!(winners.len(), 1, "exactly one scheduler wins: {recorded:?}");
    let job = &winners[0][0];
    assert_eq!(
        (job.trigger, job.status, job.scheduled_at, job.run_after),
        (Trigger::Schedule, JobStatus::Queued, t(60), t(60))
    );
    assert_eq!(
        statuses(&*b.store, event.id).await,
        vec![(job.id.0, JobStatus::Queued)]
    );
    let state = b.store.get_schedule_state(event.id).await.unwrap();
    assert_eq!((state.next_fire_at, state.fire_count), (Some(t(120)), 1));

    // A scheduler that saw the old state later records nothing either.
    let late = b
        .store
        .record_fires(event.id, t(60), &[fire(t(60))], Some(t(120)), t(62))
        .await
        .unwrap();
    assert!(late.is_empty());
}

async fn a_fire_already_recorded_is_not_recorded_twice(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        with_policy(every(spec("tick"), "1m"), OverlapPolicy::Allow, None),
        t(0),
    )
    .await;
    let first = store
        .record_fires(event.id, t(60), &[fire(t(60))], Some(t(60)), t(61))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // The step is taken again with the same fire in it: only the new fire
    // becomes a job, and only it counts.
    let second = store
        .record_fires(
            event.id,
            t(60),
            &[fire(t(60)), fire(t(120))],
            Some(t(180)),
            t(121),
        )
        .await
        .unwrap();
    let times: Vec<_> = second.iter().map(|j| j.scheduled_at).collect();
    assert_eq!(times, vec![t(120)]);
    let state = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!((state.next_fire_at, state.fire_count), (Some(t(180)), 2));

    // Nor through enqueue_job: one fire time, one job.
    let err = store
        .enqueue_job(
            NewJob {
                event_id: event.id,
                trigger: Trigger::Schedule,
                scheduled_at: t(60),
                input: None,
            },
            t(130),
        )
        .await
        .unwrap_err();
    assert_eq!(field(err), "conflict:scheduledAt");
    assert_eq!(statuses(store, event.id).await.len(), 2);
}

async fn missed_fires_are_recorded_but_never_run(b: Backend) {
    let store = &*b.store;
    let event = create_at(store, every(spec("tick"), "1m"), t(0)).await;
    let fires = [
        Fire {
            at: t(60),
            run: false,
        },
        Fire {
            at: t(120),
            run: false,
        },
        fire(t(180)),
    ];
    let jobs = store
        .record_fires(event.id, t(60), &fires, Some(t(240)), t(200))
        .await
        .unwrap();
    let got: Vec<_> = jobs.iter().map(|j| (j.scheduled_at, j.status)).collect();
    assert_eq!(
        got,
        vec![
            (t(60), JobStatus::Missed),
            (t(120), JobStatus::Missed),
            (t(180), JobStatus::Queued)
        ]
    );
    assert_eq!(jobs[0].finished_at, Some(t(200)));
    assert!(
        jobs[0].error.as_deref().unwrap().contains("missed"),
        "{:?}",
        jobs[0].error
    );
    assert_eq!(
        store.get_schedule_state(event.id).await.unwrap().fire_count,
        1
    );
    let claimed = claim(store, "w1", t(200)).await.unwrap();
    assert_eq!(claimed.job.id, jobs[2].id);
    assert!(claim(store, "w2", t(200)).await.is_none());
}

async fn overlap_forbid_records_a_skipped_run_with_the_reason(b: Backend) {
    let store = &*b.store;
    let event = create_at(store, every(spec("tick"), "1m"), t(0)).await;
    let first = run(store, event.id, t(1)).await;
    assert_eq!(first.status, JobStatus::Queued);
    let second = run(store, event.id, t(2)).await;
    assert_eq!(second.status, JobStatus::Skipped);
    assert_eq!(
        second.error.as_deref(),
        Some(
            format!(
                "skipped: job {} is still queued (overlap policy forbid)",
                first.id
            )
            .as_str()
        )
    );
    assert_eq!(second.finished_at, Some(t(2)));

    let running = claim(store, "w1", t(3)).await.unwrap();
    assert_eq!(running.job.id, first.id);
    // A fire while it runs is skipped too, and still counts as a fire.
    let fired = store
        .record_fires(event.id, t(60), &[fire(t(60))], Some(t(120)), t(60))
        .await
        .unwrap();
    assert_eq!(fired[0].status, JobStatus::Skipped);
    assert_eq!(
        fired[0].error.as_deref(),
        Some(
            format!(
                "skipped: job {} is still running (overlap policy forbid)",
                first.id
            )
            .as_str()
        )
    );
    assert_eq!(
        store.get_schedule_state(event.id).await.unwrap().fire_count,
        1
    );

    finish(store, &running, JobStatus::Succeeded, t(70)).await;
    assert_eq!(run(store, event.id, t(71)).await.status, JobStatus::Queued);
}

async fn overlap_queue_makes_the_next_run_wait_for_the_one_before(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        with_policy(spec("q"), OverlapPolicy::Queue, None),
        t(0),
    )
    .await;
    let first = run(store, event.id, t(1)).await;
    let second = run(store, event.id, t(2)).await;
    assert_eq!(
        (first.status, second.status),
        (JobStatus::Queued, JobStatus::Queued)
    );

    let running = claim(store, "w1", t(3)).await.unwrap();
    assert_eq!(running.job.id, first.id);
    assert!(claim(store, "w2", t(4)).await.is_none(), "the second waits");
    finish(store, &running, JobStatus::Failed, t(5)).await;
    let next = claim(store, "w2", t(6)).await.unwrap();
    assert_eq!(next.job.id, second.id);
}

async fn overlap_replace_cancels_queued_runs_and_asks_running_ones_to_stop(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        with_policy(spec("r"), OverlapPolicy::Replace, None),
        t(0),
    )
    .await;
    let first = run(store, event.id, t(1)).await;
    let running = claim(store, "w1", t(2)).await.unwrap();
    assert_eq!(running.job.id, first.id);
    let until = t(40);
    let beat = store.heartbeat(&running.fence, until).await.unwrap();
    assert!(!beat.cancel_requested);

    let second = run(store, event.id, t(3)).await;
    assert_eq!(second.status, JobStatus::Queued);
    let first_now = store.get_job(first.id).await.unwrap();
    assert_eq!(
        (first_now.status, first_now.cancel_requested),
        (JobStatus::Running, true)
    );
    assert!(
        store
            .heartbeat(&running.fence, until)
            .await
            .unwrap()
            .cancel_requested
    );

    let third = run(store, event.id, t(4)).await;
    let second_now = store.get_job(second.id).await.unwrap();
    assert_eq!(second_now.status, JobStatus::Cancelled);
    assert_eq!(
        second_now.error.as_deref(),
        Some(format!("replaced by job {}", third.id).as_str())
    );
    assert_eq!(second_now.finished_at, Some(t(4)));

    // The replaced run still holds the event's one slot until it stops.
    assert!(claim(store, "w2", t(5)).await.is_none());
    finish(store, &running, JobStatus::Cancelled, t(6)).await;
    assert_eq!(claim(store, "w2", t(7)).await.unwrap().job.id, third.id);
    assert_eq!(
        statuses(store, event.id).await,
        vec![
            (first.id.0, JobStatus::Cancelled),
            (second.id.0, JobStatus::Cancelled),
            (third.id.0, JobStatus::Running)
        ]
    );
}

async fn allow_with_max_concurrent_two_never_runs_more_than_two(b: Backend) {
    let event = create_at(
        &*b.store,
        with_policy(spec("wide"), OverlapPolicy::Allow, Some(2)),
        t(0),
    )
    .await;
    for i in 0..10 {
        run(&*b.store, event.id, t(i)).await;
    }
    let mut held = Vec::new();
    for round in 0..4 {
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let store = b.store.clone();
                tokio::spawn(async move {
                    store
                        .claim_job(&format!("w{w}"), t(100 + round), LEASE)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            if let Some(claim) = task.await.unwrap() {
                held.push(claim);
                won += 1;
            }
        }
        // Two at first; then each finished run makes room for exactly one.
        assert_eq!(won, if round == 0 { 2 } else { 1 }, "round {round}");
        let running = b
            .store
            .list_jobs(
                &JobFilter {
                    status: Some(JobStatus::Running),
                    ..JobFilter::default()
                },
                all(),
            )
            .await
            .unwrap()
            .total;
        assert_eq!(running, 2, "round {round}");
        let done = held.remove(0);
        finish(&*b.store, &done, JobStatus::Succeeded, t(100 + round)).await;
    }
}

async fn concurrent_claimers_take_each_job_exactly_once(b: Backend) {
    let store = &*b.store;
    let mut expected = Vec::new();
    for e in 0..2 {
        let event = create_at(
            store,
            with_policy(spec(&format!("bulk{e}")), OverlapPolicy::Allow, None),
            t(0),
        )
        .await;
        for i in 0..25 {
            expected.push(run(store, event.id, t(i)).await.id);
        }
    }
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let store = b.store.clone();
            tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    match store.claim_job(&worker, t(100), LEASE).await.unwrap() {
                        Some(claim) => {
                            assert_eq!(claim.fence.owner, worker);
                            mine.push(claim.job.id);
                        }
                        // Nothing claimable right now: done once nothing is queued.
                        None => {
                            let queued = store
                                .list_jobs(
                                    &JobFilter {
                                        status: Some(JobStatus::Queued),
                                        ..JobFilter::default()
                                    },
                                    all(),
                                )
                                .await
                                .unwrap()
                                .total;
                            if queued == 0 {
                                return mine;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    claimed.sort();
    expected.sort();
    assert_eq!(claimed, expected, "every job claimed, none twice");
}

async fn a_job_handed_back_at_shutdown_is_retried_at_once_or_fails_saying_why(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        EventSpec {
            retries: 1,
            ..spec("long")
        },
        t(0),
    )
    .await;
    let job = run(store, event.id, t(0)).await;
    let first = claim(store, "node-a", t(1)).await.unwrap();

    // Handed back long before its lease would expire: queued for another
    // attempt at once, the worker fenced out.
    let back = store.hand_back_job(&first.fence, t(5), t(5)).await.unwrap();
    assert!(back.retried);
    assert_eq!(
        (
            back.job.id,
            back.job.status,
            back.job.attempt,
            back.job.run_after
        ),
        (job.id, JobStatus::Queued, 2, t(5))
    );
    assert_eq!(
        back.job.error.as_deref(),
        Some("the server node-a shut down before the job finished and handed it back")
    );
    assert!(matches!(
        store.heartbeat(&first.fence, t(6)).await.unwrap_err(),
        StoreError::Fenced { attempt: 1, .. }
    ));
    // A second hand back of the same attempt is refused the same way.
    assert!(matches!(
        store
            .hand_back_job(&first.fence, t(6), t(6))
            .await
            .unwrap_err(),
        StoreError::Fenced { attempt: 1, .. }
    ));

    // The last attempt handed back fails, saying why.
    let second = claim(store, "node-b", t(7)).await.unwrap();
    let back = store
        .hand_back_job(&second.fence, t(8), t(8))
        .await
        .unwrap();
    assert!(!back.retried);
    assert_eq!(
        (back.job.status, back.job.finished_at),
        (JobStatus::Failed, Some(t(8)))
    );
    assert!(
        back.job
            .error
            .as_deref()
            .unwrap()
            .contains("node-b shut down"),
        "{:?}",
        back.job.error
    );
}

async fn a_stale_worker_is_fenced_out_after_recovery(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        EventSpec {
            retries: 1,
            ..spec("flaky")
        },
        t(0),
    )
    .await;
    let job = run(store, event.id, t(0)).await;
    let lost = claim(store, "node-a", t(1)).await.unwrap();
    store
        .append_logs(&lost.fence, &[line(1, LogStream::Stdout, b"started\n")])
        .await
        .unwrap();

    // Nothing to recover while the lease holds.
    assert!(
        store
            .recover_expired_leases(t(31), t(40))
            .await
            .unwrap()
            .is_empty()
    );
    let recovered = store.recover_expired_leases(t(32), t(40)).await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert!(recovered[0].retried);
    let after = recovered[0].job.clone();
    assert_eq!(
        (
            after.id,
            after.status,
            after.attempt,
            after.run_after,
            after.lease_owner.clone()
        ),
        (job.id, JobStatus::Queued, 2, t(40), None)
    );

    // The lost worker comes back: every report is refused and changes nothing.
    let fenced =
        |e: StoreError| matches!(e, StoreError::Fenced { job: j, attempt: 1 } if j == job.id);
    assert!(fenced(
        store.heartbeat(&lost.fence, t(60)).await.unwrap_err()
    ));
    assert!(fenced(
        store
            .finish_job(&lost.fence, ended(JobStatus::Succeeded), t(60), t(60))
            .await
            .unwrap_err()
    ));
    assert!(fenced(
        store
            .append_logs(&lost.fence, &[line(2, LogStream::Stdout, b"late\n")])
            .await
            .unwrap_err()
    ));
    assert_eq!(store.get_job(job.id).await.unwrap(), after);
    assert_eq!(store.last_log_seq(job.id).await.unwrap(), 1);

    // The next attempt runs under a new fence; the old one stays out.
    let again = claim(store, "node-b", t(40)).await.unwrap();
    assert_eq!((again.job.id, again.fence.attempt), (job.id, 2));
    assert!(fenced(
        store.heartbeat(&lost.fence, t(60)).await.unwrap_err()
    ));
    let stranger = Fence {
        owner: "node-c".into(),
        ..again.fence.clone()
    };
    assert_eq!(
        field(store.heartbeat(&stranger, t(60)).await.unwrap_err()),
        "fenced"
    );
    store.heartbeat(&again.fence, t(70)).await.unwrap();
    assert_eq!(
        store.get_job(job.id).await.unwrap().lease_expires_at,
        Some(t(70))
    );
    let gone = Fence {
        job: JobId(9999),
        ..again.fence.clone()
    };
    assert_eq!(
        field(store.heartbeat(&gone, t(60)).await.unwrap_err()),
        "not found:job"
    );
}

async fn failures_retry_with_a_raised_attempt_then_fail_for_good(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        EventSpec {
            retries: 2,
            ..spec("retry")
        },
        t(0),
    )
    .await;
    let job = run(store, event.id, t(0)).await;
    assert_eq!(job.attempt, 1);

    let first = claim(store, "w", t(1)).await.unwrap();
    let retried = store
        .finish_job(&first.fence, ended(JobStatus::Failed), t(20), t(2))
        .await
        .unwrap();
    assert_eq!(
        (
            retried.status,
            retried.attempt,
            retried.run_after,
            retried.finished_at
        ),
        (JobStatus::Queued, 2, t(20), None)
    );
    assert_eq!(
        (retried.exit_code, retried.error.as_deref()),
        (Some(1), Some("the script failed"))
    );
    assert!(
        claim(store, "w", t(19)).await.is_none(),
        "not before run_after"
    );

    let second = claim(store, "w", t(20)).await.unwrap();
    assert_eq!(
        (second.fence.attempt, second.job.started_at),
        (2, Some(t(20)))
    );
    let retried = store
        .finish_job(&second.fence, ended(JobStatus::TimedOut), t(60), t(30))
        .await
        .unwrap();
    assert_eq!((retried.status, retried.attempt), (JobStatus::Queued, 3));

    let third = claim(store, "w", t(60)).await.unwrap();
    let done = store
        .finish_job(
            &third.fence,
            JobOutcome {
                metadata: json!({ "signal": "KILL" }),
                ..ended(JobStatus::Failed)
            },
            t(100),
            t(61),
        )
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.attempt, done.finished_at),
        (JobStatus::Failed, 3, Some(t(61)))
    );
    // The payload pinned at queue time stays; what the runner said joins it.
    assert_eq!(
        done.metadata["payloadPath"],
        json!(format!("payloads/{}/v1.tar.gz", event.id))
    );
    assert_eq!(done.metadata["durationMs"], json!(12));
    assert_eq!(done.metadata["signal"], json!("KILL"));
    assert_eq!(store.get_job(job.id).await.unwrap(), done);

    // A success is final at once.
    let job = run(store, event.id, t(200)).await;
    let ok = claim(store, "w", t(200)).await.unwrap();
    let ok = finish(store, &ok, JobStatus::Succeeded, t(201)).await;
    assert_eq!(
        (ok.id, ok.status, ok.exit_code),
        (job.id, JobStatus::Succeeded, Some(0))
    );
}

async fn recovery_retries_or_fails_with_the_reason(b: Backend) {
    let store = &*b.store;
    let once = create_at(
        store,
        with_policy(
            EventSpec {
                retries: 0,
                ..spec("once")
            },
            OverlapPolicy::Allow,
            None,
        ),
        t(0),
    )
    .await;
    let twice = create_at(
        store,
        EventSpec {
            retries: 1,
            ..spec("twice")
        },
        t(0),
    )
    .await;
    let a = run(store, once.id, t(0)).await;
    let b2 = run(store, twice.id, t(0)).await;
    claim(store, "node-a", t(1)).await.unwrap();
    claim(store, "node-b", t(1)).await.unwrap();

    let mut recovered = store.recover_expired_leases(t(100), t(110)).await.unwrap();
    recovered.sort_by_key(|r| r.job.id);
    assert_eq!(recovered.len(), 2);
    let failed = &recovered[0];
    assert_eq!((failed.job.id, failed.retried), (a.id, false));
    assert_eq!(
        (
            failed.job.status,
            failed.job.attempt,
            failed.job.finished_at
        ),
        (JobStatus::Failed, 2, Some(t(100)))
    );
    let reason = failed.job.error.clone().unwrap();
    assert!(
        reason.contains("node-a") && reason.contains("lease expired") && reason.contains("crashed"),
        "{reason}"
    );
    let retried = &recovered[1];
    assert_eq!((retried.job.id, retried.retried), (b2.id, true));
    assert_eq!(
        (
            retried.job.status,
            retried.job.attempt,
            retried.job.run_after
        ),
        (JobStatus::Queued, 2, t(110))
    );
    assert!(
        store
            .recover_expired_leases(t(200), t(210))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn cancel_ends_queued_runs_flags_running_ones_and_refuses_finished_ones(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        with_policy(spec("c"), OverlapPolicy::Allow, None),
        t(0),
    )
    .await;
    let queued = run(store, event.id, t(0)).await;
    let running = run(store, event.id, t(1)).await;
    let held = claim(store, "w", t(2)).await.unwrap();
    assert_eq!(held.job.id, queued.id, "the oldest is claimed first");
    let (held_id, queued) = (queued.id, running);

    let cancelled = store
        .cancel_job(queued.id, t(3), &audit("job.cancel", "job"))
        .await
        .unwrap();
    assert_eq!(
        (
            cancelled.status,
            cancelled.error.as_deref(),
            cancelled.finished_at
        ),
        (JobStatus::Cancelled, Some("cancelled"), Some(t(3)))
    );

    let asked = store
        .cancel_job(held_id, t(4), &audit("job.cancel", "job"))
        .await
        .unwrap();
    assert_eq!(
        (asked.status, asked.cancel_requested),
        (JobStatus::Running, true)
    );
    assert!(
        store
            .heartbeat(&held.fence, t(40))
            .await
            .unwrap()
            .cancel_requested
    );
    // Asked to stop, a failure is not retried.
    let ended_job = finish(store, &held, JobStatus::Cancelled, t(5)).await;
    assert_eq!(ended_job.status, JobStatus::Cancelled);

    for id in [queued.id, held_id] {
        let err = store
            .cancel_job(id, t(6), &audit("job.cancel", "job"))
            .await
            .unwrap_err();
        assert_eq!(field(err), "conflict:status");
    }
    assert_eq!(
        field(
            store
                .cancel_job(JobId(9999), t(6), &audit("job.cancel", "job"))
                .await
                .unwrap_err()
        ),
        "not found:job"
    );
    let audited: Vec<_> = store
        .list_audit(all())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.entry.target_type == "job")
        .map(|r| (r.entry.action, r.entry.target_id))
        .collect();
    assert_eq!(
        audited,
        vec![
            ("job.cancel".to_string(), Some(held_id.0)),
            ("job.cancel".to_string(), Some(queued.id.0))
        ]
    );
}

async fn logs_continue_without_gaps_and_page_by_seq(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        EventSpec {
            retries: 1,
            ..spec("chatty")
        },
        t(0),
    )
    .await;
    let job = run(store, event.id, t(0)).await;
    assert_eq!(store.last_log_seq(job.id).await.unwrap(), 0);
    assert!(store.job_logs(job.id, 0, 10).await.unwrap().is_empty());
    let first = claim(store, "w", t(1)).await.unwrap();

    let batch = vec![
        line(1, LogStream::System, b"attempt 1 started"),
        line(2, LogStream::Stdout, b"hello\n"),
        line(3, LogStream::Stderr, &[0xff, 0xfe, 0x00, b'\n']),
        line(4, LogStream::Stdout, b"no newline"),
    ];
    store.append_logs(&first.fence, &batch).await.unwrap();
    store.append_logs(&first.fence, &[]).await.unwrap();
    assert_eq!(
        store.job_logs(job.id, 0, 2).await.unwrap(),
        batch[..2].to_vec()
    );
    assert_eq!(
        store.job_logs(job.id, 2, 10).await.unwrap(),
        batch[2..].to_vec()
    );
    assert!(store.job_logs(job.id, 4, 10).await.unwrap().is_empty());
    assert_eq!(store.last_log_seq(job.id).await.unwrap(), 4);

    // A repeat or a gap is refused, and nothing of that batch is kept.
    for bad in [
        vec![line(4, LogStream::Stdout, b"again")],
        vec![line(6, LogStream::Stdout, b"gap")],
        vec![
            line(5, LogStream::Stdout, b"ok"),
            line(5, LogStream::Stdout, b"dup"),
        ],
    ] {
        let err = store.append_logs(&first.fence, &bad).await.unwrap_err();
        assert_eq!(field(err), "conflict:seq");
    }
    assert_eq!(store.last_log_seq(job.id).await.unwrap(), 4);

    // The next attempt continues the same log.
    store
        .finish_job(&first.fence, ended(JobStatus::Failed), t(2), t(2))
        .await
        .unwrap();
    let second = claim(store, "w", t(2)).await.unwrap();
    store
        .append_logs(
            &second.fence,
            &[line(5, LogStream::System, b"attempt 2 started")],
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = store
        .job_logs(job.id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);

    assert_eq!(
        field(store.job_logs(JobId(9999), 0, 10).await.unwrap_err()),
        "not found:job"
    );
    assert_eq!(
        field(store.last_log_seq(JobId(9999)).await.unwrap_err()),
        "not found:job"
    );
}

async fn log_lines_keep_the_server_they_came_from(b: Backend) {
    let store = &*b.store;
    let event = create_at(store, spec("fleet"), t(0)).await;
    let job = run(store, event.id, t(0)).await;
    let c = claim(store, "w", t(1)).await.unwrap();

    // Interleaved as a fleet run writes them: the job's own lines unlabelled,
    // each server's output under the name it had then. The label is text,
    // not a reference: no server by these names exists, and none need to.
    let batch = vec![
        line(1, LogStream::System, b"attempt 1 started"),
        labelled(2, LogStream::Stdout, b"deploying\n", "web1"),
        labelled(3, LogStream::Stderr, b"warning\n", "db-\u{e9}t\u{e9}"),
        labelled(4, LogStream::Stdout, b"done\n", "web1"),
        line(5, LogStream::Stdout, b"local\n"),
    ];
    store.append_logs(&c.fence, &batch[..2]).await.unwrap();
    store.append_logs(&c.fence, &batch[2..]).await.unwrap();

    assert_eq!(store.job_logs(job.id, 0, 100).await.unwrap(), batch);
    let labels: Vec<Option<String>> = store
        .job_logs(job.id, 1, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.server)
        .collect();
    assert_eq!(
        labels,
        vec![
            Some("web1".to_string()),
            Some("db-\u{e9}t\u{e9}".to_string()),
            Some("web1".to_string())
        ]
    );
    let last = store.job_logs(job.id, 4, 10).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].server, None);
}

async fn jobs_are_filtered_newest_first_and_paginated(b: Backend) {
    let store = &*b.store;
    let one = create_at(
        store,
        with_policy(spec("one"), OverlapPolicy::Allow, None),
        t(0),
    )
    .await;
    let two = create_at(
        store,
        with_policy(spec("two"), OverlapPolicy::Allow, None),
        t(0),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let event = if i % 2 == 0 { one.id } else { two.id };
        ids.push(run(store, event, t(i * 10)).await.id);
    }
    // The oldest job runs and succeeds.
    let c = claim(store, "w", t(100)).await.unwrap();
    finish(store, &c, JobStatus::Succeeded, t(101)).await;

    let list = |filter: JobFilter, limit: u32, offset: u64| async move {
        let page = store
            .list_jobs(&filter, PageRequest { limit, offset })
            .await
            .unwrap();
        (
            page.items.iter().map(|j| j.id).collect::<Vec<_>>(),
            page.total,
        )
    };
    let newest_first: Vec<_> = ids.iter().rev().copied().collect();
    assert_eq!(
        list(JobFilter::default(), 100, 0).await,
        (newest_first.clone(), 6)
    );
    assert_eq!(
        list(JobFilter::default(), 2, 1).await,
        (newest_first[1..3].to_vec(), 6)
    );
    assert_eq!(
        list(
            JobFilter {
                event: Some(two.id),
                ..JobFilter::default()
            },
            100,
            0
        )
        .await,
        (vec![ids[5], ids[3], ids[1]], 3)
    );
    assert_eq!(
        list(
            JobFilter {
                status: Some(JobStatus::Succeeded),
                ..JobFilter::default()
            },
            100,
            0
        )
        .await,
        (vec![ids[0]], 1)
    );
    assert_eq!(
        list(
            JobFilter {
                since: Some(t(10)),
                until: Some(t(40)),
                ..JobFilter::default()
            },
            100,
            0
        )
        .await,
        (vec![ids[3], ids[2], ids[1]], 3)
    );
    assert_eq!(
        list(
            JobFilter {
                event: Some(one.id),
                status: Some(JobStatus::Queued),
                since: Some(t(20)),
                until: None,
            },
            1,
            0
        )
        .await,
        (vec![ids[4]], 2)
    );
}

async fn jobs_pin_the_active_payload_and_the_manual_input(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        with_policy(spec("pin"), OverlapPolicy::Allow, None),
        t(0),
    )
    .await;
    let first = store
        .enqueue_job(
            NewJob {
                event_id: event.id,
                trigger: Trigger::Manual,
                scheduled_at: t(1),
                input: Some(json!({ "dryRun": true })),
            },
            t(1),
        )
        .await
        .unwrap();
    let v1 = store.get_payload(event.id, 1).await.unwrap();
    assert_eq!(first.payload_version, Some(1));
    assert_eq!(
        first.metadata,
        json!({
            "payloadPath": v1.payload_path,
            "checksumPath": v1.checksum_path,
            "checksum": v1.checksum,
            "input": { "dryRun": true },
        })
    );
    assert_eq!(
        (
            first.trigger,
            first.attempt,
            first.created_at,
            first.updated_at
        ),
        (Trigger::Manual, 1, t(1), t(1))
    );
    assert_eq!(store.get_job(first.id).await.unwrap(), first);

    set_content(store, event.id, "echo two\n").await;
    let second = run(store, event.id, t(2)).await;
    assert_eq!(second.payload_version, Some(2));
    assert_eq!(
        second.metadata["payloadPath"],
        json!(format!("payloads/{}/v2.tar.gz", event.id))
    );
    assert_eq!(
        store.get_job(first.id).await.unwrap().payload_version,
        Some(1)
    );

    let claimed = claim(store, "w", t(3)).await.unwrap();
    assert_eq!(claimed.job.id, first.id);
    assert_eq!(claimed.event, store.get_event(event.id).await.unwrap());
    assert_eq!(
        (
            claimed.job.lease_owner.as_deref(),
            claimed.job.lease_expires_at
        ),
        (Some("w"), Some(t(33)))
    );
    assert_eq!(
        field(
            store
                .enqueue_job(
                    NewJob {
                        event_id: EventId(9999),
                        trigger: Trigger::Manual,
                        scheduled_at: t(4),
                        input: None,
                    },
                    t(4),
                )
                .await
                .unwrap_err()
        ),
        "not found:event"
    );
}

async fn pruning_keeps_unfinished_jobs_and_the_newest_of_each_event(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        with_policy(spec("old"), OverlapPolicy::Allow, None),
        t(0),
    )
    .await;
    let other = create_at(store, spec("other"), t(0)).await;
    let mut finished = Vec::new();
    for i in 0..5 {
        run(store, event.id, t(i)).await;
        let c = claim(store, "w", t(i)).await.unwrap();
        store
            .append_logs(&c.fence, &[line(1, LogStream::Stdout, b"x")])
            .await
            .unwrap();
        finished.push(finish(store, &c, JobStatus::Succeeded, t(i)).await.id);
    }
    let running = run(store, event.id, t(10)).await;
    claim(store, "w", t(10)).await.unwrap();
    let queued = run(store, event.id, t(11)).await;
    let other_job = run(store, other.id, t(12)).await;
    let skipped = run(store, other.id, t(13)).await;
    assert_eq!(skipped.status, JobStatus::Skipped);

    // Nothing is old enough yet.
    let keep_none = |older_than| JobRetention {
        older_than,
        keep_per_event: 0,
    };
    assert_eq!(store.prune_jobs(keep_none(t(0))).await.unwrap(), 0);

    let pruned = store
        .prune_jobs(JobRetention {
            older_than: t(1000),
            keep_per_event: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        pruned, 3,
        "the three oldest finished runs of the first event"
    );
    let mut left: Vec<_> = store
        .list_jobs(&JobFilter::default(), all())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            finished[3],
            finished[4],
            running.id,
            queued.id,
            other_job.id,
            skipped.id
        ]
    );
    for gone in &finished[..3] {
        assert_eq!(
            field(store.job_logs(*gone, 0, 10).await.unwrap_err()),
            "not found:job"
        );
    }
    assert_eq!(store.last_log_seq(finished[4]).await.unwrap(), 1);

    // Keeping none removes every finished job, never an unfinished one.
    assert_eq!(store.prune_jobs(keep_none(t(1000))).await.unwrap(), 3);
    let statuses: BTreeSet<_> = store
        .list_jobs(&JobFilter::default(), all())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.status.as_str())
        .collect();
    assert_eq!(statuses, BTreeSet::from(["queued", "running"]));
}

async fn deleting_an_event_removes_its_jobs_logs_and_schedule(b: Backend) {
    let store = &*b.store;
    let event = create_at(store, every(spec("doomed"), "1m"), t(0)).await;
    let keep = create_at(store, every(spec("kept"), "1m"), t(0)).await;
    let job = run(store, event.id, t(1)).await;
    let c = claim(store, "w", t(1)).await.unwrap();
    store
        .append_logs(&c.fence, &[line(1, LogStream::Stdout, b"bye")])
        .await
        .unwrap();
    let kept_job = run(store, keep.id, t(2)).await;

    store
        .delete_event(event.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    assert_eq!(
        field(store.get_job(job.id).await.unwrap_err()),
        "not found:job"
    );
    assert_eq!(
        field(store.job_logs(job.id, 0, 10).await.unwrap_err()),
        "not found:job"
    );
    assert_eq!(
        field(store.get_schedule_state(event.id).await.unwrap_err()),
        "not found:event"
    );
    assert_eq!(
        field(
            store
                .record_fires(event.id, t(60), &[fire(t(60))], None, t(60))
                .await
                .unwrap_err()
        ),
        "not found:event"
    );
    // The worker that held it learns the job is gone, not that it was fenced.
    assert_eq!(
        field(store.heartbeat(&c.fence, t(5)).await.unwrap_err()),
        "not found:job"
    );
    assert_eq!(store.get_job(kept_job.id).await.unwrap(), kept_job);
    assert!(store.get_schedule_state(keep.id).await.is_ok());
}

async fn events_without_a_schedule_state_get_one_when_the_store_opens(b: Backend) {
    let event = create_at(&*b.store, every(spec("older"), "1h"), t(0)).await;
    let paused = create_at(
        &*b.store,
        EventSpec {
            status: EventStatus::Paused,
            ..every(spec("resting"), "1h")
        },
        t(0),
    )
    .await;
    // As a database written before schedules were kept looks.
    b.execute("DELETE FROM schedule_state").await;
    assert_eq!(
        field(b.store.get_schedule_state(event.id).await.unwrap_err()),
        "not found:event"
    );

    let before = Utc::now() - chrono::Duration::seconds(1);
    let reopened = cronium_store::open(&b.url).await.unwrap();
    let state = reopened.get_schedule_state(event.id).await.unwrap();
    assert!(state.anchor >= before, "started when the store opened");
    assert_eq!(
        state.next_fire_at,
        Some(state.anchor + chrono::Duration::hours(1))
    );
    assert_eq!(state.fire_count, 0);
    let resting = reopened.get_schedule_state(paused.id).await.unwrap();
    assert_eq!(resting.next_fire_at, None);

    // Opening again changes nothing that is already there.
    let again = cronium_store::open(&b.url).await.unwrap();
    assert_eq!(again.get_schedule_state(event.id).await.unwrap(), state);
}

async fn a_corrupt_job_row_is_an_error_naming_the_column(b: Backend) {
    let store = &*b.store;
    let event = create_at(store, spec("broken"), t(0)).await;
    let job = run(store, event.id, t(1)).await;
    b.execute("UPDATE jobs SET metadata = '[1, 2]'").await;
    for err in [
        store.get_job(job.id).await.unwrap_err(),
        store
            .list_jobs(&JobFilter::default(), all())
            .await
            .unwrap_err(),
    ] {
        let StoreError::Backend(message) = err else {
            panic!("expected a backend error, got {err:?}");
        };
        assert!(
            message.contains("jobs")
                && message.contains(&format!("id {}", job.id))
                && message.contains("column metadata"),
            "{message}"
        );
    }
}

// --- variables and what scripts write -----------------------------------------

/// A reversible stand-in for the server's sealer: what it seals is not the
/// clear text, and it opens only its own blobs.
struct TestSealer;

impl VariableSealer for TestSealer {
    fn seal(&self, value: &serde_json::Value) -> Vec<u8> {
        let mut sealed = b"sealed:".to_vec();
        sealed.extend(value.to_string().bytes().rev().map(|b| b ^ 0x55));
        sealed
    }

    fn open(&self, sealed: &[u8]) -> Result<serde_json::Value, String> {
        let body = sealed.strip_prefix(b"sealed:").ok_or("not sealed here")?;
        let clear: Vec<u8> = body.iter().rev().map(|b| b ^ 0x55).collect();
        serde_json::from_slice(&clear).map_err(|e| e.to_string())
    }
}

fn key(text: &str) -> VariableKey {
    VariableKey::new(text).unwrap()
}

fn plain(value: serde_json::Value) -> VariableWrite {
    VariableWrite {
        value,
        secret: None,
        expect: Expect::Any,
    }
}

fn var_audit(action: &str, k: &str) -> AuditEntry {
    AuditEntry {
        detail: json!({ "key": k }),
        ..audit(action, "variable")
    }
}

async fn set(
    store: &dyn Store,
    owner: UserId,
    k: &str,
    write: VariableWrite,
) -> Result<cronium_core::Variable, StoreError> {
    store
        .set_variable(
            owner,
            &key(k),
            write,
            &TestSealer,
            t(0),
            &var_audit("variable.set", k),
        )
        .await
}

async fn variables_are_per_owner_versioned_and_audited_by_key_only(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let other = store
        .create_user(
            new_user("ops", Role::Editor),
            t(0),
            &audit("user.create", "user"),
        )
        .await
        .unwrap()
        .id;

    let first = set(
        store,
        owner,
        "web-1.last",
        plain(json!({"n": 1, "ok": true})),
    )
    .await
    .unwrap();
    assert_eq!(
        (first.owner, first.key.as_str(), first.version, first.secret),
        (owner, "web-1.last", 1, false)
    );
    assert_eq!(first.value, Some(json!({"ok": true, "n": 1})));
    assert_eq!((first.created_at, first.updated_at), (t(0), t(0)));
    assert_eq!(first.updated_by_job, None);
    let second = set(
        store,
        owner,
        "web-1.last",
        plain(json!("text with ünïcode")),
    )
    .await
    .unwrap();
    assert_eq!(second.version, 2);
    set(store, owner, "A_counter", plain(json!(0)))
        .await
        .unwrap();
    set(store, owner, "_z", plain(json!(null))).await.unwrap();
    set(store, other, "web-1.last", plain(json!("theirs")))
        .await
        .unwrap();

    // Sorted by key (byte order, the same on both databases), own only.
    let mine = store.list_variables(owner).await.unwrap();
    let listed: Vec<(&str, Option<serde_json::Value>, u64)> = mine
        .iter()
        .map(|v| (v.key.as_str(), v.value.clone(), v.version))
        .collect();
    assert_eq!(
        listed,
        [
            ("A_counter", Some(json!(0)), 1),
            ("_z", Some(json!(null)), 1),
            ("web-1.last", Some(json!("text with ünïcode")), 2),
        ]
    );
    let got = store
        .get_variable(owner, &key("web-1.last"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.variable, second);
    assert_eq!(got.stored, StoredValue::Plain(json!("text with ünïcode")));
    assert_eq!(got.open(&TestSealer).unwrap(), json!("text with ünïcode"));
    let theirs = store.get_variable(other, &key("web-1.last")).await.unwrap();
    assert_eq!(theirs.unwrap().variable.value, Some(json!("theirs")));
    assert_eq!(store.get_variable(owner, &key("nope")).await.unwrap(), None);

    assert!(
        store
            .delete_variable(owner, &key("_z"), &var_audit("variable.delete", "_z"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_variable(owner, &key("_z"), &var_audit("variable.delete", "_z"))
            .await
            .unwrap()
    );
    assert_eq!(store.list_variables(owner).await.unwrap().len(), 2);
    // A variable made again starts over at version 1.
    let again = set(store, owner, "_z", plain(json!(1))).await.unwrap();
    assert_eq!(again.version, 1);

    let log = store.list_audit(all()).await.unwrap();
    let writes: Vec<(&str, &serde_json::Value)> = log
        .items
        .iter()
        .filter(|r| r.entry.target_type == "variable")
        .map(|r| (r.entry.action.as_str(), &r.entry.detail))
        .collect();
    assert_eq!(writes.len(), 7, "{writes:?}");
    assert_eq!(writes[0], ("variable.set", &json!({ "key": "_z" })));
    assert_eq!(writes[1], ("variable.delete", &json!({ "key": "_z" })));
    assert_eq!(
        log.items[0].entry.target_id,
        Some(again_id(&b, owner, "_z").await)
    );

    // A removed user's variables go with it.
    store
        .remove_user(other, &audit("user.remove", "user"))
        .await
        .unwrap();
    let user = store
        .create_user(
            new_user("ops", Role::Editor),
            t(1),
            &audit("user.create", "user"),
        )
        .await
        .unwrap();
    assert!(store.list_variables(user.id).await.unwrap().is_empty());
}

/// The id of a variable's row, read around the trait.
async fn again_id(b: &Backend, owner: UserId, k: &str) -> i64 {
    let q = "SELECT id FROM variables WHERE owner_id = $1 AND key = $2";
    match &b.raw {
        Raw::Sqlite(s) => {
            sqlx::query_scalar::<_, i64>(q)
                .bind(owner.0)
                .bind(k)
                .fetch_one(s.pool())
                .await
        }
        Raw::Postgres(s) => {
            sqlx::query_scalar::<_, i64>(q)
                .bind(owner.0)
                .bind(k)
                .fetch_one(s.pool())
                .await
        }
    }
    .unwrap()
}

/// The raw columns of a variable: value_json and sealed.
async fn stored_columns(b: &Backend, k: &str) -> (Option<String>, Option<Vec<u8>>) {
    let q = "SELECT value_json, sealed FROM variables WHERE key = $1";
    match &b.raw {
        Raw::Sqlite(s) => {
            sqlx::query_as::<_, (Option<String>, Option<Vec<u8>>)>(q)
                .bind(k)
                .fetch_one(s.pool())
                .await
        }
        Raw::Postgres(s) => {
            sqlx::query_as::<_, (Option<String>, Option<Vec<u8>>)>(q)
                .bind(k)
                .fetch_one(s.pool())
                .await
        }
    }
    .unwrap()
}

async fn secret_variables_are_stored_sealed_and_keep_their_secrecy(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let written = set(
        store,
        owner,
        "api_token",
        VariableWrite {
            secret: Some(true),
            ..plain(json!("hunter2-very-secret"))
        },
    )
    .await
    .unwrap();
    assert_eq!((written.secret, written.value.clone()), (true, None));
    let (value_json, sealed) = stored_columns(&b, "api_token").await;
    assert_eq!(value_json, None);
    let sealed = sealed.unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("hunter2"),
        "stored in clear"
    );
    let got = store
        .get_variable(owner, &key("api_token"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.variable.value, None);
    assert_eq!(got.stored, StoredValue::Sealed(sealed));
    assert_eq!(got.open(&TestSealer).unwrap(), json!("hunter2-very-secret"));
    let listed = store.list_variables(owner).await.unwrap();
    assert_eq!((listed[0].secret, listed[0].value.clone()), (true, None));

    // A write that says nothing of secrecy keeps it: still sealed.
    let kept = set(store, owner, "api_token", plain(json!("rotated")))
        .await
        .unwrap();
    assert!(kept.secret);
    let (value_json, sealed) = stored_columns(&b, "api_token").await;
    assert_eq!(value_json, None);
    assert_eq!(TestSealer.open(&sealed.unwrap()).unwrap(), json!("rotated"));
    // Saying so makes it plain again, and a new variable is plain.
    let plain_again = set(
        store,
        owner,
        "api_token",
        VariableWrite {
            secret: Some(false),
            ..plain(json!("public now"))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (plain_again.secret, plain_again.value, plain_again.version),
        (false, Some(json!("public now")), 3)
    );
    assert_eq!(stored_columns(&b, "api_token").await.1, None);
    assert!(
        !set(store, owner, "fresh", plain(json!(1)))
            .await
            .unwrap()
            .secret
    );

    // The audit log names the key, never the value.
    let log = store.list_audit(all()).await.unwrap();
    let text = format!("{:?}", log.items);
    assert!(
        !text.contains("hunter2") && !text.contains("rotated"),
        "{text}"
    );
}

async fn compare_and_set_holds_or_conflicts_and_limits_are_refused(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let cas = |value, expect| VariableWrite {
        value,
        secret: None,
        expect,
    };
    // Absent: only when there is none.
    assert_eq!(
        set(store, owner, "n", cas(json!(1), Expect::Absent))
            .await
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        field(
            set(store, owner, "n", cas(json!(2), Expect::Absent))
                .await
                .unwrap_err()
        ),
        "conflict:expect"
    );
    // Value: JSON equality, not text equality.
    set(store, owner, "obj", plain(json!({"a": 1, "b": [1, 2]})))
        .await
        .unwrap();
    let same: serde_json::Value = serde_json::from_str(r#"{ "b": [1,2], "a": 1 }"#).unwrap();
    let ok = set(store, owner, "obj", cas(json!("next"), Expect::Value(same)))
        .await
        .unwrap();
    assert_eq!(ok.version, 2);
    assert_eq!(
        field(
            set(
                store,
                owner,
                "obj",
                cas(json!("x"), Expect::Value(json!({"a": 1})))
            )
            .await
            .unwrap_err()
        ),
        "conflict:expect"
    );
    assert_eq!(
        field(
            set(
                store,
                owner,
                "missing",
                cas(json!("x"), Expect::Value(json!(null)))
            )
            .await
            .unwrap_err()
        ),
        "conflict:expect"
    );
    // A refused write changed nothing.
    let obj = store
        .get_variable(owner, &key("obj"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (obj.variable.version, obj.variable.value),
        (2, Some(json!("next")))
    );
    assert_eq!(
        store.get_variable(owner, &key("missing")).await.unwrap(),
        None
    );

    // A secret variable compares its opened value.
    set(
        store,
        owner,
        "s",
        VariableWrite {
            secret: Some(true),
            ..plain(json!(41))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        field(
            set(store, owner, "s", cas(json!(43), Expect::Value(json!(40))))
                .await
                .unwrap_err()
        ),
        "conflict:expect"
    );
    let s = set(store, owner, "s", cas(json!(42), Expect::Value(json!(41))))
        .await
        .unwrap();
    assert_eq!((s.version, s.secret), (2, true));

    // Limits: 64 KiB of compact JSON, counted exactly.
    let room = cronium_core::MAX_VARIABLE_BYTES - 2; // the quotes
    set(store, owner, "big", plain(json!("x".repeat(room))))
        .await
        .unwrap();
    assert_eq!(
        field(
            set(store, owner, "big", plain(json!("x".repeat(room + 1))))
                .await
                .unwrap_err()
        ),
        "invalid:value"
    );
    let big = store
        .get_variable(owner, &key("big"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big.variable.version, 1);
}

async fn concurrent_compare_and_set_increments_lose_nothing(b: Backend) {
    let store = b.store.clone();
    let owner = admin(&*store).await;
    // Every writer creates the counter if there is none: exactly one wins.
    let creators: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                set(
                    &*store,
                    owner,
                    "counter",
                    VariableWrite {
                        value: json!(0),
                        secret: None,
                        expect: Expect::Absent,
                    },
                )
                .await
                .is_ok()
            })
        })
        .collect();
    let mut created = 0;
    for c in creators {
        created += usize::from(c.await.unwrap());
    }
    assert_eq!(created, 1);

    // Then 8 writers add 5 each by read-compare-write.
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..5 {
                    loop {
                        let current = store
                            .get_variable(owner, &key("counter"))
                            .await
                            .unwrap()
                            .unwrap()
                            .variable
                            .value
                            .unwrap();
                        let next = json!(current.as_i64().unwrap() + 1);
                        let write = VariableWrite {
                            value: next,
                            secret: None,
                            expect: Expect::Value(current),
                        };
                        match set(&*store, owner, "counter", write).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let counter = store
        .get_variable(owner, &key("counter"))
        .await
        .unwrap()
        .unwrap()
        .variable;
    assert_eq!((counter.value, counter.version), (Some(json!(40)), 41));
}

async fn an_attempt_writes_output_condition_and_variables_under_its_fence(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        EventSpec {
            retries: 1,
            ..spec("helpers")
        },
        t(0),
    )
    .await;
    let owner = event.owner;
    let job = run(store, event.id, t(0)).await;
    assert_eq!((job.output.clone(), job.condition), (None, false));
    let held = claim(store, "node-a", t(1)).await.unwrap();
    let fence = &held.fence;

    store
        .attempt_set_output(fence, Some(json!({"rows": 3, "name": "ü"})))
        .await
        .unwrap();
    store.attempt_set_condition(fence, true).await.unwrap();
    let now = store.get_job(job.id).await.unwrap();
    assert_eq!(
        (now.output.clone(), now.condition),
        (Some(json!({"rows": 3, "name": "ü"})), true)
    );
    // A later output replaces the earlier one; an over-limit one is refused.
    store
        .attempt_set_output(fence, Some(json!([1])))
        .await
        .unwrap();
    let huge = json!("x".repeat(cronium_core::MAX_OUTPUT_BYTES));
    assert_eq!(
        field(
            store
                .attempt_set_output(fence, Some(huge))
                .await
                .unwrap_err()
        ),
        "invalid:output"
    );
    assert_eq!(
        store.get_job(job.id).await.unwrap().output,
        Some(json!([1]))
    );

    // Variables are the event owner's, written by the job.
    let written = store
        .attempt_set_variable(fence, &key("seen"), plain(json!(1)), &TestSealer, t(2))
        .await
        .unwrap();
    assert_eq!(
        (written.owner, written.updated_by_job, written.version),
        (owner, Some(job.id), 1)
    );
    let by_api = store
        .get_variable(owner, &key("seen"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_api.variable, written);
    store
        .attempt_set_variable(
            fence,
            &key("pw"),
            VariableWrite {
                secret: Some(true),
                ..plain(json!("s3cr3t-value"))
            },
            &TestSealer,
            t(2),
        )
        .await
        .unwrap();
    let read = store
        .attempt_get_variable(fence, &key("pw"))
        .await
        .unwrap()
        .unwrap();
    assert!(read.variable.secret);
    assert_eq!(read.open(&TestSealer).unwrap(), json!("s3cr3t-value"));
    assert_eq!(
        store
            .attempt_get_variable(fence, &key("seen"))
            .await
            .unwrap()
            .unwrap()
            .stored,
        StoredValue::Plain(json!(1))
    );
    assert_eq!(
        store
            .attempt_get_variable(fence, &key("none"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        field(
            store
                .attempt_set_variable(
                    fence,
                    &key("seen"),
                    VariableWrite {
                        expect: Expect::Absent,
                        ..plain(json!(2))
                    },
                    &TestSealer,
                    t(2),
                )
                .await
                .unwrap_err()
        ),
        "conflict:expect"
    );
    assert!(
        store
            .attempt_delete_variable(fence, &key("seen"), t(3))
            .await
            .unwrap()
    );
    assert!(
        !store
            .attempt_delete_variable(fence, &key("seen"), t(3))
            .await
            .unwrap()
    );

    // Audited with the job as the actor, the key and never the value.
    let log = store.list_audit(all()).await.unwrap();
    let by_job: Vec<(&str, &serde_json::Value)> = log
        .items
        .iter()
        .filter(|r| r.entry.actor == Some(cronium_store::Actor::Job(job.id)))
        .map(|r| (r.entry.action.as_str(), &r.entry.detail))
        .collect();
    assert_eq!(
        by_job,
        [
            (
                "variable.delete",
                &json!({"key": "seen", "owner": owner.0, "secret": false})
            ),
            (
                "variable.set",
                &json!({"key": "pw", "owner": owner.0, "secret": true})
            ),
            (
                "variable.set",
                &json!({"key": "seen", "owner": owner.0, "secret": false})
            ),
        ]
    );
    assert!(!format!("{:?}", log.items).contains("s3cr3t"));

    // Once the lease is recovered, the old attempt is refused everything
    // and changes nothing.
    store.recover_expired_leases(t(40), t(50)).await.unwrap();
    let fenced = |e: StoreError| field(e) == "fenced";
    assert!(fenced(
        store
            .attempt_set_output(fence, Some(json!(9)))
            .await
            .unwrap_err()
    ));
    assert!(fenced(
        store.attempt_set_condition(fence, false).await.unwrap_err()
    ));
    assert!(fenced(
        store
            .attempt_get_variable(fence, &key("pw"))
            .await
            .unwrap_err()
    ));
    assert!(fenced(
        store
            .attempt_set_variable(fence, &key("late"), plain(json!(1)), &TestSealer, t(41))
            .await
            .unwrap_err()
    ));
    assert!(fenced(
        store
            .attempt_delete_variable(fence, &key("pw"), t(41))
            .await
            .unwrap_err()
    ));
    assert_eq!(store.get_variable(owner, &key("late")).await.unwrap(), None);
    assert!(
        store
            .get_variable(owner, &key("pw"))
            .await
            .unwrap()
            .is_some()
    );
    let gone = Fence {
        job: JobId(9999),
        ..fence.clone()
    };
    assert_eq!(
        field(store.attempt_set_condition(&gone, true).await.unwrap_err()),
        "not found:job"
    );
    assert_eq!(
        field(
            store
                .attempt_get_variable(&gone, &key("pw"))
                .await
                .unwrap_err()
        ),
        "not found:job"
    );
}

async fn a_retry_starts_with_no_output_and_a_false_condition(b: Backend) {
    let store = &*b.store;
    let event = create_at(
        store,
        EventSpec {
            retries: 1,
            ..spec("twice")
        },
        t(0),
    )
    .await;
    let job = run(store, event.id, t(0)).await;
    let first = claim(store, "node-a", t(1)).await.unwrap();
    store
        .attempt_set_output(&first.fence, Some(json!("first")))
        .await
        .unwrap();
    store
        .attempt_set_condition(&first.fence, true)
        .await
        .unwrap();
    // The failed attempt's result stays on record until the next claim.
    let queued = finish(store, &first, JobStatus::Failed, t(2)).await;
    assert_eq!(
        (queued.status, queued.output.clone(), queued.condition),
        (JobStatus::Queued, Some(json!("first")), true)
    );
    let second = claim(store, "node-a", t(20)).await.unwrap();
    assert_eq!((second.job.id, second.fence.attempt), (job.id, 2));
    assert_eq!(
        (second.job.output.clone(), second.job.condition),
        (None, false)
    );
    store
        .attempt_set_output(&second.fence, Some(json!("second")))
        .await
        .unwrap();
    let done = finish(store, &second, JobStatus::Succeeded, t(21)).await;
    assert_eq!(
        (done.status, done.output, done.condition),
        (JobStatus::Succeeded, Some(json!("second")), false)
    );
}

// --- workflows ------------------------------------------------------------------

fn wf_name(text: &str) -> WorkflowName {
    WorkflowName::new(text).unwrap()
}

fn definition(name: &str, events: &[i64]) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "id": format!("n{i}"), "event": e, "after": [] }))
        .collect();
    json!({ "name": name, "trigger": { "type": "manual" }, "nodes": nodes })
}

async fn workflows_are_versioned_only_when_the_definition_changes(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let a = create(store, owner, spec("a")).await;
    let c = create(store, owner, spec("c")).await;
    let name = wf_name("nightly");
    let first_def = definition("nightly", &[a.id.0]);
    let apply = |def: serde_json::Value, events: Vec<EventId>, at: i64| {
        let name = name.clone();
        async move {
            store
                .apply_workflow(
                    owner,
                    &name,
                    &def,
                    &events,
                    t(at),
                    &AuditEntry {
                        detail: json!({ "name": "nightly" }),
                        ..audit("workflow.apply", "workflow")
                    },
                )
                .await
        }
    };
    let (created, applied) = apply(first_def.clone(), vec![a.id], 0).await.unwrap();
    assert_eq!(applied, Applied::Created);
    assert_eq!(
        (created.owner, created.name.as_str(), created.version),
        (owner, "nightly", 1)
    );
    assert_eq!(created.definition, first_def);
    assert_eq!((created.created_at, created.updated_at), (t(0), t(0)));

    // The same definition again, even with its keys in another order: nothing new.
    let reordered: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&first_def).unwrap()).unwrap();
    let (same, applied) = apply(reordered, vec![a.id], 5).await.unwrap();
    assert_eq!(applied, Applied::Unchanged);
    assert_eq!(same, created);

    let second_def = definition("nightly", &[a.id.0, c.id.0]);
    let (updated, applied) = apply(second_def.clone(), vec![a.id, c.id, a.id], 10)
        .await
        .unwrap();
    assert_eq!(applied, Applied::Updated { from: 1 });
    assert_eq!((updated.id, updated.version), (created.id, 2));
    assert_eq!((updated.created_at, updated.updated_at), (t(0), t(10)));
    assert_eq!(
        store.get_workflow(created.id).await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(
        store.find_workflow_by_name(owner, &name).await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(
        store
            .find_workflow_by_name(owner, &wf_name("other"))
            .await
            .unwrap(),
        None
    );
    let v1 = store
        .workflow_version(created.id, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v1.version, &v1.definition, v1.created_at),
        (1, &first_def, t(0))
    );
    let v2 = store
        .workflow_version(created.id, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v2.version, &v2.definition), (2, &second_def));
    assert_eq!(store.workflow_version(created.id, 3).await.unwrap(), None);

    // Two creations and one update audited, each with the version it made.
    let entries: Vec<(i64, serde_json::Value)> = store
        .list_audit(PageRequest {
            limit: 100,
            offset: 0,
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.entry.target_type == "workflow")
        .map(|r| (r.entry.target_id.unwrap(), r.entry.detail))
        .collect();
    assert_eq!(
        entries,
        vec![
            (created.id.0, json!({ "name": "nightly", "version": 2 })),
            (created.id.0, json!({ "name": "nightly", "version": 1 })),
        ]
    );

    // An event that vanished before the apply is refused, and nothing changes.
    let gone = apply(
        definition("nightly", &[a.id.0 + 1000]),
        vec![EventId(a.id.0 + 1000)],
        20,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(gone, StoreError::NotFound { what: "event" }),
        "{gone:?}"
    );
    assert_eq!(
        store
            .get_workflow(created.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // A second name for the same owner is a second workflow.
    let (weekly, applied) = store
        .apply_workflow(
            owner,
            &wf_name("weekly"),
            &definition("weekly", &[c.id.0]),
            &[c.id],
            t(30),
            &audit("workflow.apply", "workflow"),
        )
        .await
        .unwrap();
    assert_eq!((applied, weekly.version), (Applied::Created, 1));
    assert_ne!(weekly.id, created.id);
    let page = store
        .list_workflows(PageRequest {
            limit: 1,
            offset: 1,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items, vec![weekly.clone()]);

    assert!(
        store
            .delete_workflow(created.id, &audit("workflow.delete", "workflow"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_workflow(created.id, &audit("workflow.delete", "workflow"))
            .await
            .unwrap()
    );
    assert_eq!(store.get_workflow(created.id).await.unwrap(), None);
    assert_eq!(store.workflow_version(created.id, 1).await.unwrap(), None);
    assert_eq!(
        store
            .get_workflow(WorkflowId(weekly.id.0 + 50))
            .await
            .unwrap(),
        None
    );
}

async fn an_event_a_workflow_runs_cannot_be_deleted_until_the_workflow_goes(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let used = create(store, owner, spec("used")).await;
    let later = create(store, owner, spec("later")).await;
    let (workflow, _) = store
        .apply_workflow(
            owner,
            &wf_name("pipeline"),
            &definition("pipeline", &[used.id.0]),
            &[used.id],
            t(0),
            &audit("workflow.apply", "workflow"),
        )
        .await
        .unwrap();
    let refused = store
        .delete_event(used.id, &audit("event.delete", "event"))
        .await
        .unwrap_err();
    let StoreError::Conflict { field, message } = refused else {
        panic!("expected a conflict, got {refused:?}");
    };
    assert_eq!(field, "event");
    assert!(message.contains("\"pipeline\""), "{message}");
    assert!(store.get_event(used.id).await.is_ok());

    // Only the current version's events are held: after a change, the old one goes.
    store
        .apply_workflow(
            owner,
            &wf_name("pipeline"),
            &definition("pipeline", &[later.id.0]),
            &[later.id],
            t(1),
            &audit("workflow.apply", "workflow"),
        )
        .await
        .unwrap();
    store
        .delete_event(used.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    assert!(
        store
            .delete_event(later.id, &audit("event.delete", "event"))
            .await
            .is_err()
    );
    store
        .delete_workflow(workflow.id, &audit("workflow.delete", "workflow"))
        .await
        .unwrap();
    store
        .delete_event(later.id, &audit("event.delete", "event"))
        .await
        .unwrap();
}

async fn a_run_advances_as_its_jobs_end_and_the_reconciler_repairs_what_it_missed(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let first = create(store, owner, spec("first")).await;
    let second = create(store, owner, spec("second")).await;
    let def = json!({ "name": "chain", "trigger": { "type": "manual" }, "nodes": [
        { "id": "a", "event": first.id.0 },
        { "id": "b", "event": second.id.0, "after": ["a"] },
    ]});
    let (workflow, _) = store
        .apply_workflow(
            owner,
            &wf_name("chain"),
            &def,
            &[first.id, second.id],
            t(0),
            &audit("workflow.apply", "workflow"),
        )
        .await
        .unwrap();
    let new = |key: Option<&str>| NewWorkflowRun {
        workflow: workflow.id,
        version: 1,
        nodes: vec![
            (NodeId::new("a").unwrap(), first.id),
            (NodeId::new("b").unwrap(), second.id),
        ],
        trigger: RunTrigger::Webhook,
        input: Some(json!({ "day": 1 })),
        fire_at: None,
        idempotency_key: key.map(String::from),
    };
    let started = store
        .start_workflow_run(new(Some("delivery-1")), t(0), None)
        .await
        .unwrap();
    assert!(started.created);
    let run = started.run;
    assert_eq!(
        (run.status, run.pass, run.version),
        (RunStatus::Running, 1, 1)
    );
    let statuses =
        |run: &cronium_store::WorkflowRun| run.nodes.iter().map(|n| n.status).collect::<Vec<_>>();
    assert_eq!(statuses(&run), [NodeStatus::Running, NodeStatus::Pending]);
    // The root's job was queued with the run, pinned and with the run's input.
    let (a_job, _) = run.nodes[0].job.unwrap();
    let job = store.get_job(a_job).await.unwrap();
    assert_eq!(
        (job.event_id, job.trigger, job.metadata["input"].clone()),
        (first.id, Trigger::Workflow, json!({ "day": 1 }))
    );
    assert_eq!(job.metadata["workflow"]["node"], "a");

    // The same idempotency key: the same run, nothing new.
    let again = store
        .start_workflow_run(new(Some("delivery-1")), t(1), None)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.run.id, run.id);

    // a ends: b is queued in the same commit, with a's output as its input.
    let a = claim(store, "node-a", t(1)).await.unwrap();
    store
        .attempt_set_output(&a.fence, Some(json!("from a")))
        .await
        .unwrap();
    finish(store, &a, JobStatus::Succeeded, t(2)).await;
    let run = store.get_workflow_run(run.id).await.unwrap();
    assert_eq!(statuses(&run), [NodeStatus::Succeeded, NodeStatus::Running]);
    let (b_job, _) = run.nodes[1].job.unwrap();
    assert_eq!(
        store.get_job(b_job).await.unwrap().metadata["input"],
        json!("from a")
    );

    // b's worker dies; recovery fails its job (no retries left) without
    // the run hearing of it, until the reconciler looks.
    let b = claim(store, "node-b", t(3)).await.unwrap();
    assert_eq!(b.job.id, b_job);
    let recovered = store
        .recover_expired_leases(t(3) + chrono::Duration::seconds(31), t(40))
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        store.get_workflow_run(run.id).await.unwrap().status,
        RunStatus::Running
    );
    assert_eq!(store.reconcile_workflow_runs(t(35)).await.unwrap(), 1);
    let run = store.get_workflow_run(run.id).await.unwrap();
    assert_eq!(statuses(&run), [NodeStatus::Succeeded, NodeStatus::Failed]);
    assert_eq!(
        (run.status, run.error.as_deref()),
        (
            RunStatus::Failed,
            Some("node b failed and no edge handles it")
        )
    );
    assert_eq!(run.finished_at, Some(t(35)));
    // Nothing left to repair.
    assert_eq!(store.reconcile_workflow_runs(t(36)).await.unwrap(), 0);
}

async fn a_run_keeps_at_most_16_mib_of_outputs_and_ended_runs_are_pruned(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("wide")).await;
    let ids: Vec<String> = (0..17).map(|i| format!("n{i:02}")).collect();
    let def = json!({ "name": "wide", "trigger": { "type": "manual" }, "overlap": "allow",
        "nodes": ids.iter().map(|id| json!({ "id": id, "event": event.id.0 })).collect::<Vec<_>>() });
    let (workflow, _) = store
        .apply_workflow(
            owner,
            &wf_name("wide"),
            &def,
            &[event.id],
            t(0),
            &audit("workflow.apply", "workflow"),
        )
        .await
        .unwrap();
    let new = || NewWorkflowRun {
        workflow: workflow.id,
        version: 1,
        nodes: ids
            .iter()
            .map(|id| (NodeId::new(id).unwrap(), event.id))
            .collect(),
        trigger: RunTrigger::Manual,
        input: None,
        fire_at: None,
        idempotency_key: None,
    };
    let run = store
        .start_workflow_run(new(), t(0), None)
        .await
        .unwrap()
        .run;
    // Each node sets an output just under 1 MiB: the 17th takes the run
    // past 16 MiB and fails, saying so; the 16 before it keep theirs.
    let big = "x".repeat(1_048_000);
    for n in 0..17 {
        let claim = claim(store, "node-a", t(1 + n)).await.unwrap();
        store
            .attempt_set_output(&claim.fence, Some(json!(big)))
            .await
            .unwrap();
        finish(store, &claim, JobStatus::Succeeded, t(1 + n)).await;
    }
    let run = store.get_workflow_run(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let failed: Vec<_> = run
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", run.nodes);
    assert_eq!(
        failed[0].reason.as_deref(),
        Some("the outputs of this run's nodes take more than 16 MiB")
    );
    assert_eq!(
        run.nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Succeeded)
            .count(),
        16
    );

    // Pruning: an ended run past the age goes (unless among the newest
    // kept), an active one never does.
    let active = store
        .start_workflow_run(new(), t(100), None)
        .await
        .unwrap()
        .run;
    assert_eq!(
        store.prune_workflow_runs(t(1000), 1).await.unwrap(),
        0,
        "the newest is kept"
    );
    assert_eq!(
        store.prune_workflow_runs(t(10), 0).await.unwrap(),
        0,
        "it ended at t(17), after t(10)"
    );
    assert_eq!(store.prune_workflow_runs(t(1000), 0).await.unwrap(), 1);
    assert!(matches!(
        store.get_workflow_run(run.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.get_workflow_run(active.id).await.unwrap().status,
        RunStatus::Running
    );
}

async fn payload_bytes_are_kept_by_checksum_until_no_version_names_them(b: Backend) {
    let store = &*b.store;
    let owner = admin(store).await;
    let event = create(store, owner, spec("kept")).await;
    let first = store.get_payload(event.id, 1).await.unwrap();
    // The Recorder's bytes are the script itself.
    assert_eq!(
        store.payload_blob(&first.checksum).await.unwrap(),
        Some(b"echo hello\n".to_vec())
    );
    let (_, second) = set_content(store, event.id, "echo two\n").await;
    let second = second.unwrap();
    assert_eq!(
        store.payload_blob(&second.checksum).await.unwrap(),
        Some(b"echo two\n".to_vec())
    );
    assert!(store.payloads_without_blob().await.unwrap().is_empty());
    // Pruning version 1 drops its bytes; version 2's stay.
    prune(store, event.id, 1).await.unwrap();
    assert_eq!(store.payload_blob(&first.checksum).await.unwrap(), None);
    assert!(
        store
            .payload_blob(&second.checksum)
            .await
            .unwrap()
            .is_some()
    );
    // Bytes for a row recorded before the store kept them: stored once.
    assert!(
        !store
            .put_payload_blob(&second.checksum, b"echo two\n", t(0))
            .await
            .unwrap()
    );
    // Deleting the event drops the rest.
    store
        .delete_event(event.id, &audit("event.delete", "event"))
        .await
        .unwrap();
    assert_eq!(store.payload_blob(&second.checksum).await.unwrap(), None);
    assert!(store.put_payload_blob("ab", b"x", t(0)).await.unwrap());
    assert_eq!(store.payload_blob("ab").await.unwrap(), Some(b"x".to_vec()));
}
