//! `cronium payload …`: offline tools to build, verify, inspect, and sign payloads.
//!
//! Everything here works on local files only. Each command validates all of its
//! input before it writes anything, so a bad flag never leaves a half-written
//! payload behind, and `build` re-reads what it built with the same reader the
//! runner uses, so it never writes a payload the runner would refuse.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use clap::{Args, Subcommand};
use cronium_payload::manifest::check_env_value;
use cronium_payload::signature::{self, read_small};
use cronium_payload::{
    BuiltPayload, EnvKey, Interpreter, Limits, Listing, PayloadSpec, Sha256Digest, SigningKey,
    VerifyingKey, checksum_path, read_manifest, signature_path, write_atomically,
};

/// Largest `--env-file` read: the same bound as a whole manifest.
const MAX_ENV_FILE_BYTES: u64 = cronium_payload::manifest::MAX_MANIFEST_BYTES as u64;

#[derive(Debug, Subcommand)]
pub enum PayloadCommand {
    /// Build a payload (tar.gz + .sha256, and .sig when signing) from a script.
    Build(BuildArgs),
    /// Check a payload's checksum, signature and archive; prints "OK <sha256>".
    Verify(VerifyArgs),
    /// Print a payload's manifest and file list (checks the archive, not the checksum).
    Inspect(InspectArgs),
    /// Create an ed25519 key pair for signing payloads (KEYFILE and KEYFILE.pub).
    Keygen(KeygenArgs),
    /// Sign a payload with a secret key, writing PAYLOAD.sig.
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Script language: bash, python or node, in any case. Inferred from the
    /// --script extension when omitted (.sh/.bash, .py, .js/.mjs/.cjs).
    #[arg(long, value_name = "NAME", value_parser = parse_interpreter)]
    pub interpreter: Option<Interpreter>,

    /// The script to package.
    #[arg(long, value_name = "FILE")]
    pub script: PathBuf,

    /// An environment variable for the script (repeatable; overrides --env-file).
    /// Values are stored in plain text in the payload: never pass secrets here.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_arg)]
    pub env: Vec<EnvVar>,

    /// A file of KEY=VALUE lines (repeatable, read in order). Blank lines and
    /// lines starting with `#` are skipped; values are taken literally.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,

    /// The event this payload belongs to (metadata.eventId).
    #[arg(long, value_name = "ID", default_value = "local", value_parser = parse_event_id)]
    pub event_id: String,

    /// The event version (metadata.eventVersion), a positive integer.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64)
    )]
    pub event_version: u64,

    /// Creation time (metadata.createdAt and every entry's mtime), RFC 3339.
    /// Defaults to now, truncated to whole seconds. Fix it to get
    /// byte-identical builds.
    #[arg(long, value_name = "RFC3339", value_parser = parse_created_at)]
    pub created_at: Option<DateTime<Utc>>,

    /// Where to write the payload; OUT.sha256 (and OUT.sig) go beside it.
    #[arg(short = 'o', long = "output", value_name = "OUT.tar.gz")]
    pub output: PathBuf,

    /// Sign the payload with this secret key (from `cronium payload keygen`).
    #[arg(long, value_name = "KEYFILE")]
    pub sign_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The payload archive.
    #[arg(value_name = "PAYLOAD")]
    pub payload: PathBuf,

    /// Checksum file in `sha256sum` format [default: PAYLOAD.sha256].
    #[arg(long, value_name = "FILE", conflicts_with = "sha256")]
    pub checksum: Option<PathBuf>,

    /// Expected SHA-256 digest, 64 hexadecimal digits.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub sha256: Option<Sha256Digest>,

    /// A public key (KEYFILE.pub) that may have signed the payload (repeatable).
    /// When given, PAYLOAD.sig must exist and verify against one of them.
    #[arg(long = "trusted-key", value_name = "PUBFILE")]
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The payload archive.
    #[arg(value_name = "PAYLOAD")]
    pub payload: PathBuf,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Secret key file to create (mode 0600); the public key goes to KEYFILE.pub.
    #[arg(short = 'o', long = "output", value_name = "KEYFILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The payload archive.
    #[arg(value_name = "PAYLOAD")]
    pub payload: PathBuf,

    /// Secret key file (from `cronium payload keygen`).
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
}

/// One `--env KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: EnvKey,
    pub value: String,
}

pub fn run(cmd: PayloadCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        PayloadCommand::Build(args) => build(args, out),
        PayloadCommand::Verify(args) => verify(args, out),
        PayloadCommand::Inspect(args) => inspect(args, out),
        PayloadCommand::Keygen(args) => keygen(args, out),
        PayloadCommand::Sign(args) => sign(args, out),
    }
}

// ---------------------------------------------------------------- parsers

pub fn parse_interpreter(s: &str) -> Result<Interpreter, String> {
    Interpreter::parse(s)
        .ok_or_else(|| format!("unknown interpreter {s:?} (expected bash, python or node)"))
}

/// Parses `KEY=VALUE`; the value is everything after the first `=`, verbatim.
pub fn parse_env_arg(s: &str) -> Result<EnvVar, String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("missing `=` in {s:?} (expected KEY=VALUE)"))?;
    let key = EnvKey::new(key)?;
    check_env_value(value).map_err(|e| format!("variable {key}: {e}"))?;
    Ok(EnvVar {
        key,
        value: value.to_owned(),
    })
}

/// Parses an env file: `KEY=VALUE` lines, blank lines and `#` comments skipped.
/// Leading whitespace before a key is ignored; the value (after the first `=`)
/// is kept literally, except for the line's `\r` in CRLF files.
/// On failure, returns the 1-based line number and the reason.
pub fn parse_env_file(text: &str) -> Result<Vec<EnvVar>, (usize, String)> {
    let mut vars = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
        if line.trim_end().is_empty() || line.starts_with('#') {
            continue;
        }
        vars.push(parse_env_arg(line).map_err(|e| (index + 1, e))?);
    }
    Ok(vars)
}

fn parse_event_id(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the event id must not be empty".into());
    }
    if s.chars().any(char::is_control) {
        return Err("the event id must not contain control characters".into());
    }
    Ok(s.to_owned())
}

fn parse_created_at(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-01-15T10:00:00Z ({e})"))
}

fn parse_sha256(s: &str) -> Result<Sha256Digest, String> {
    // The library's error speaks of a checksum *file*; here it is a flag value.
    Sha256Digest::from_hex(s).map_err(|_| "expected 64 hexadecimal digits".to_string())
}

/// The interpreter a script's file extension implies, if any (case-insensitive).
pub fn infer_interpreter(script: &Path) -> Option<Interpreter> {
    let ext = script.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "sh" | "bash" => Some(Interpreter::Bash),
        "py" => Some(Interpreter::Python),
        "js" | "mjs" | "cjs" => Some(Interpreter::Node),
        _ => None,
    }
}

// ---------------------------------------------------------------- build

fn build(args: BuildArgs, out: &mut dyn Write) -> Result<()> {
    let limits = Limits::default();
    let interpreter = match args.interpreter {
        Some(i) => i,
        None => infer_interpreter(&args.script).ok_or_else(|| {
            anyhow!(
                "cannot infer the interpreter from --script {}: expected a .sh, .bash, .py, .js, \
                 .mjs or .cjs extension; pass --interpreter bash|python|node",
                args.script.display()
            )
        })?,
    };
    let script = read_capped(&args.script, limits.max_unpacked_bytes)
        .with_context(|| format!("cannot read --script {}", args.script.display()))?;

    let mut environment = BTreeMap::new();
    for path in &args.env_files {
        let bytes = read_capped(path, MAX_ENV_FILE_BYTES)
            .with_context(|| format!("cannot read --env-file {}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("--env-file {}: not UTF-8 text", path.display()))?;
        let vars = parse_env_file(&text).map_err(|(line, reason)| {
            anyhow!("--env-file {} line {line}: {reason}", path.display())
        })?;
        environment.extend(vars.into_iter().map(|v| (v.key, v.value)));
    }
    environment.extend(args.env.into_iter().map(|v| (v.key, v.value)));

    let signing_key = args
        .sign_key
        .as_deref()
        .map(|path| load_signing_key(path, "--sign-key"))
        .transpose()?;

    let out_path = &args.output;
    let sum_path = checksum_path(out_path);
    let sig_path = signature_path(out_path);
    let mut inputs = vec![("--script", args.script.as_path())];
    inputs.extend(args.env_files.iter().map(|p| ("--env-file", p.as_path())));
    inputs.extend(args.sign_key.iter().map(|p| ("--sign-key", p.as_path())));
    for output in [out_path.as_path(), &sum_path, &sig_path] {
        for (flag, input) in &inputs {
            if same_file(input, output) {
                bail!(
                    "-o {} would overwrite {flag} {}",
                    out_path.display(),
                    input.display()
                );
            }
        }
    }

    let spec = PayloadSpec {
        interpreter,
        script,
        environment,
        event_id: args.event_id,
        event_version: args.event_version,
        created_at: args
            .created_at
            .unwrap_or_else(|| Utc::now().trunc_subsecs(0)),
    };
    let built = spec
        .build()
        .context("the payload built from these inputs would be refused by the runner")?;

    // A signature for the old content must never sit beside the new payload.
    let had_stale_signature = remove_if_exists(&sig_path)?;
    write_payload(&built, out_path)?;
    let signature = match &signing_key {
        Some(key) => {
            write_atomically(&sig_path, key.sign(&built.digest).as_bytes())
                .with_context(|| format!("cannot write {}", sig_path.display()))?;
            Some(sig_path)
        }
        None => {
            if had_stale_signature {
                eprintln!(
                    "cronium: note: removed {}, which signed the previous content",
                    sig_path.display()
                );
            }
            None
        }
    };

    writeln!(out, "payload:   {}", out_path.display())?;
    writeln!(out, "sha256:    {}", built.digest)?;
    writeln!(out, "size:      {} bytes", built.bytes.len())?;
    writeln!(out, "checksum:  {}", sum_path.display())?;
    if let Some(sig) = signature {
        writeln!(out, "signature: {}", sig.display())?;
    }
    Ok(())
}

fn write_payload(built: &BuiltPayload, path: &Path) -> Result<()> {
    built
        .write(path)
        .with_context(|| format!("cannot write -o {}", path.display()))
}

// ---------------------------------------------------------------- verify

fn verify(args: VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let payload = &args.payload;
    let failed = || format!("{} failed verification", payload.display());

    // Read once, then check digest, signature and archive on the same bytes.
    let bytes = read_payload(payload)?;
    let actual = Sha256Digest::of(&bytes);

    let expected = match (args.sha256, &args.checksum) {
        (Some(digest), _) => digest,
        (None, Some(path)) => Sha256Digest::read_checksum_file(path)
            .with_context(|| format!("bad --checksum {}", path.display()))?,
        (None, None) => {
            let path = checksum_path(payload);
            if !path.exists() {
                bail!(
                    "no checksum file {} for {}: pass --checksum FILE or --sha256 HEX",
                    path.display(),
                    payload.display()
                );
            }
            Sha256Digest::read_checksum_file(&path)
                .with_context(|| format!("bad checksum file {}", path.display()))?
        }
    };
    let trusted = args
        .trusted_keys
        .iter()
        .map(|path| {
            VerifyingKey::read_file(path)
                .with_context(|| format!("cannot load --trusted-key {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;

    expected.verify(&actual).with_context(failed)?;

    let sig_path = signature_path(payload);
    if !trusted.is_empty() {
        let text = match read_small(&sig_path) {
            Ok(text) => text,
            Err(signature::SignatureError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                return Err(anyhow!(
                    "no signature file {}, but --trusted-key was given",
                    sig_path.display()
                ))
                .with_context(failed);
            }
            Err(e) => return Err(e).with_context(failed),
        };
        signature::verify(&actual, &text, &trusted)
            .with_context(|| format!("signature {}", sig_path.display()))
            .with_context(failed)?;
    } else if sig_path.exists() {
        eprintln!(
            "cronium: note: {} not checked (no --trusted-key given)",
            sig_path.display()
        );
    }

    read_manifest(&bytes[..], &Limits::default())
        .context("invalid payload")
        .with_context(failed)?;
    writeln!(out, "OK {actual}")?;
    Ok(())
}

// ---------------------------------------------------------------- inspect

fn inspect(args: InspectArgs, out: &mut dyn Write) -> Result<()> {
    let bytes = read_payload(&args.payload)?;
    let digest = Sha256Digest::of(&bytes);
    let listing = read_manifest(&bytes[..], &Limits::default())
        .with_context(|| format!("{} is not a valid payload", args.payload.display()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&inspect_json(&listing, &digest))?;
        writeln!(out, "{text}")?;
    } else {
        write_inspect_text(&listing, &digest, out)?;
    }
    Ok(())
}

/// The `inspect --json` object; keys are camelCase like the HTTP API's.
pub fn inspect_json(listing: &Listing, digest: &Sha256Digest) -> serde_json::Value {
    let m = &listing.manifest;
    let environment: serde_json::Map<String, serde_json::Value> = m
        .environment
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone().into()))
        .collect();
    let files: Vec<serde_json::Value> = listing
        .files
        .iter()
        .map(|(name, size)| serde_json::json!({ "name": name, "size": size }))
        .collect();
    serde_json::json!({
        "version": cronium_payload::MANIFEST_VERSION,
        "interpreter": m.interpreter.as_str(),
        "entrypoint": m.entrypoint(),
        "environment": environment,
        "metadata": {
            "eventId": m.metadata.event_id,
            "eventVersion": m.metadata.event_version,
            "createdAt": m.metadata.created_at.map(format_time),
        },
        "files": files,
        "sha256": digest.to_hex(),
    })
}

fn write_inspect_text(listing: &Listing, digest: &Sha256Digest, out: &mut dyn Write) -> Result<()> {
    let m = &listing.manifest;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    writeln!(out, "interpreter:  {}", m.interpreter)?;
    writeln!(out, "entrypoint:   {}", m.entrypoint())?;
    if m.environment.is_empty() {
        writeln!(out, "environment:  (none)")?;
    } else {
        writeln!(out, "environment:")?;
        for (key, value) in &m.environment {
            writeln!(out, "  {key}={}", printable(value))?;
        }
    }
    writeln!(out, "metadata:")?;
    let event_id = m
        .metadata
        .event_id
        .as_deref()
        .map(|s| printable(s).into_owned());
    writeln!(out, "  eventId:      {}", or_dash(event_id))?;
    let version = m.metadata.event_version.map(|v| v.to_string());
    writeln!(out, "  eventVersion: {}", or_dash(version))?;
    let created = m.metadata.created_at.map(format_time);
    writeln!(out, "  createdAt:    {}", or_dash(created))?;
    writeln!(out, "files:")?;
    let width = listing
        .files
        .iter()
        .map(|(_, size)| size.to_string().len())
        .max()
        .unwrap_or(1);
    for (name, size) in &listing.files {
        writeln!(out, "  {size:>width$}  {}", printable(name))?;
    }
    writeln!(out, "sha256:       {digest}")?;
    Ok(())
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Text from an archive is untrusted: show control characters escaped
/// (quoted, as Rust string syntax) so they cannot rewrite the terminal.
fn printable(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(format!("{s:?}"))
    } else {
        Cow::Borrowed(s)
    }
}

// ---------------------------------------------------------------- keys

fn keygen(args: KeygenArgs, out: &mut dyn Write) -> Result<()> {
    let secret_path = &args.output;
    let mut pub_path = secret_path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    for path in [secret_path, &pub_path] {
        if fs::symlink_metadata(path).is_ok() {
            bail!(
                "{} already exists; refusing to overwrite it",
                path.display()
            );
        }
    }

    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
    let key = SigningKey::from_seed(seed);
    seed.fill(0);
    let public = key.verifying_key().to_text();

    create_new(secret_path, 0o600, key.to_text().as_bytes())?;
    if let Err(e) = create_new(&pub_path, 0o644, public.as_bytes()) {
        // Do not leave half a key pair behind.
        let _ = fs::remove_file(secret_path);
        return Err(e);
    }
    writeln!(
        out,
        "secret key: {} (keep it private)",
        secret_path.display()
    )?;
    writeln!(out, "public key: {}", pub_path.display())?;
    write!(out, "{public}")?;
    Ok(())
}

fn sign(args: SignArgs, out: &mut dyn Write) -> Result<()> {
    let key = load_signing_key(&args.key, "--key")?;
    let payload = &args.payload;
    let bytes = read_payload(payload)?;
    let digest = Sha256Digest::of(&bytes);
    // Signing vouches for the payload: never sign one that is broken or
    // disagrees with its own checksum file.
    read_manifest(&bytes[..], &Limits::default())
        .with_context(|| format!("{} is not a valid payload; not signing", payload.display()))?;
    let sum_path = checksum_path(payload);
    if sum_path.exists() {
        Sha256Digest::read_checksum_file(&sum_path)
            .and_then(|expected| expected.verify(&digest))
            .with_context(|| {
                format!(
                    "{} does not match {}; not signing",
                    payload.display(),
                    sum_path.display()
                )
            })?;
    }
    let sig_path = signature_path(payload);
    write_atomically(&sig_path, key.sign(&digest).as_bytes())
        .with_context(|| format!("cannot write {}", sig_path.display()))?;
    writeln!(out, "signed:     {digest}")?;
    writeln!(out, "signature:  {}", sig_path.display())?;
    write!(out, "public key: {}", key.verifying_key().to_text())?;
    Ok(())
}

fn load_signing_key(path: &Path, flag: &str) -> Result<SigningKey> {
    let key = SigningKey::read_file(path)
        .with_context(|| format!("cannot load {flag} {}", path.display()))?;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "cronium: warning: secret key {} is readable by other users (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(key)
}

// ---------------------------------------------------------------- files

/// Reads a payload archive whole. Valid payloads are small (the reader caps
/// what they unpack to), so anything much larger is refused unread.
fn read_payload(path: &Path) -> Result<Vec<u8>> {
    // Compressed size cannot sensibly exceed twice the unpacked cap.
    let cap = Limits::default().max_unpacked_bytes.saturating_mul(2);
    read_capped(path, cap).with_context(|| format!("cannot read payload {}", path.display()))
}

/// Reads a regular file, refusing one larger than `cap` bytes (and devices
/// such as /dev/zero that never end).
fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::other("is a directory"));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(bytes)
}

/// Creates a new file with `mode` (never replacing one), writes and syncs it.
fn create_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<()> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        // The umask may have narrowed `mode`; a public key should stay readable.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    result.with_context(|| format!("cannot create {}", path.display()))
}

fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_arg_table() {
        // (input, Ok((key, value)) or Err(fragment of the message))
        type Want = Result<(&'static str, &'static str), &'static str>;
        let table: [(&str, Want); 8] = [
            ("A=b", Ok(("A", "b"))),
            ("A=", Ok(("A", ""))),
            ("URL=a=b=c", Ok(("URL", "a=b=c"))),
            ("_X1= spaced value ", Ok(("_X1", " spaced value "))),
            ("NOEQUALS", Err("missing `=`")),
            ("1BAD=x", Err("invalid variable name")),
            ("HAS-DASH=x", Err("invalid variable name")),
            ("=x", Err("invalid variable name")),
        ];
        for (input, want) in table {
            match (parse_env_arg(input), want) {
                (Ok(v), Ok((k, val))) => {
                    assert_eq!((v.key.as_str(), v.value.as_str()), (k, val), "{input}")
                }
                (Err(e), Err(frag)) => assert!(e.contains(frag), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn env_file_skips_comments_and_reports_line_numbers() {
        let vars = parse_env_file("# comment\n\n  A=1\r\nB=two words # not a comment\n   \n")
            .unwrap()
            .into_iter()
            .map(|v| (v.key.to_string(), v.value))
            .collect::<Vec<_>>();
        assert_eq!(
            vars,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words # not a comment".to_string())
            ]
        );
        let (line, reason) = parse_env_file("A=1\n# ok\nB\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(reason.contains("missing `=`"), "{reason}");
        let (line, reason) = parse_env_file("OK=1\nV=a\0b\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(reason.contains("NUL"), "{reason}");
    }

    #[test]
    fn interpreter_inference_table() {
        let table = [
            ("a.sh", Some(Interpreter::Bash)),
            ("dir/a.BASH", Some(Interpreter::Bash)),
            ("a.py", Some(Interpreter::Python)),
            ("a.js", Some(Interpreter::Node)),
            ("a.mjs", Some(Interpreter::Node)),
            ("a.cjs", Some(Interpreter::Node)),
            ("a.rb", None),
            ("Makefile", None),
            (".sh", None),
        ];
        for (path, want) in table {
            assert_eq!(infer_interpreter(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn created_at_parsing() {
        assert_eq!(
            parse_created_at("2025-01-15T12:00:00+02:00").unwrap(),
            "2025-01-15T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_created_at("2025-01-15").is_err());
        assert!(parse_created_at("yesterday").is_err());
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("plain value"), "plain value");
        assert_eq!(printable("a\x1b[2Jb"), r#""a\u{1b}[2Jb""#);
        assert_eq!(printable("two\nlines"), r#""two\nlines""#);
    }
}
