//! SQL text and bind sequences that are the same for both backends (both
//! take `$1` placeholders), written once; backend-specific SQL stays in
//! `sqlite.rs` and `postgres.rs`.

macro_rules! payload_columns {
    () => {
        "id, event_id, event_version, payload_path, checksum_path, payload_size, checksum, \
         is_active, created_at"
    };
}

macro_rules! token_columns {
    () => {
        "id, user_id, name, role, created_at, last_used_at, revoked_at"
    };
}

macro_rules! user_columns {
    () => {
        "id, name, role, created_at"
    };
}

/// Binds the event columns in the order of `EVENT_COLUMNS_INSERT`, from `$2`.
macro_rules! bind_event {
    ($query:expr, $v:expr) => {
        $query
            .bind($v.name.clone())
            .bind($v.name_folded.clone())
            .bind($v.description.clone())
            .bind($v.kind)
            .bind($v.interpreter)
            .bind($v.content.clone())
            .bind($v.env.clone())
            .bind($v.secret_env_names.clone())
            .bind($v.secret_env.clone())
            .bind($v.schedule.clone())
            .bind($v.status)
            .bind($v.run_location)
            .bind($v.timeout_secs)
            .bind($v.retries)
    };
}
