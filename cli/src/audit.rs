//! `tollgate audit`: verify the audit log straight from Postgres with the auditor's public
//! keys (never taken from the database), and print the public key of a signing key.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;
use tollgate_control_plane::audit::sink::{self, ExportedCheckpoint};
use tollgate_control_plane::audit::verify::{self, Inconsistency, Summary};
use tollgate_control_plane::audit::{AuditSigningKey, parse_public_key};

/// `tollgate audit …`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and every signed checkpoint; exit 0 when intact, 1 at the first
    /// inconsistency, 2 when the check could not run.
    Verify(VerifyArgs),
    /// Print the PEM public key of an audit signing key (to hand to auditors).
    PublicKey(PublicKeyArgs),
}

/// Options of `tollgate audit verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Postgres connection URL (only read-only queries are run).
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// A public key checkpoints may be signed with: a file holding PEM (`openssl pkey
    /// -pubout`) or the raw 32 bytes in base64, or that text itself. Repeat for rotated keys.
    #[arg(
        long = "public-key",
        env = "TOLLGATE_AUDIT_PUBLIC_KEY",
        required = true,
        value_delimiter = ','
    )]
    pub public_keys: Vec<String>,
    /// A file of exported checkpoints (JSON lines, `--audit-checkpoint-file` of a control
    /// plane). Repeat for several replicas' files.
    #[arg(long = "checkpoints")]
    pub checkpoint_files: Vec<PathBuf>,
}

/// Options of `tollgate audit public-key`.
#[derive(Debug, Clone, Args)]
pub struct PublicKeyArgs {
    /// The Ed25519 private key (PKCS#8 PEM) the control plane signs checkpoints with.
    #[arg(long, env = "TOLLGATE_AUDIT_SIGNING_KEY_FILE")]
    pub signing_key_file: PathBuf,
}

/// Exit status: the log is intact.
pub const EXIT_INTACT: i32 = 0;
/// Exit status: an inconsistency was found.
pub const EXIT_INCONSISTENT: i32 = 1;
/// Exit status: the check could not run (database, key or file unreadable).
pub const EXIT_ERROR: i32 = 2;

/// Runs a subcommand, printing its result; returns the process exit status.
pub async fn run(args: AuditArgs) -> i32 {
    match args.command {
        AuditCommand::Verify(args) => match verify(&args).await {
            Ok(Ok(summary)) => {
                println!("{summary}");
                if summary.newest_checkpoint.is_none() {
                    eprintln!(
                        "warning: there are no signed checkpoints; is --audit-signing-key-file set on the control plane?"
                    );
                }
                EXIT_INTACT
            }
            Ok(Err(found)) => {
                println!("audit log INCONSISTENT: {found}");
                EXIT_INCONSISTENT
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                EXIT_ERROR
            }
        },
        AuditCommand::PublicKey(args) => match public_key(&args).await {
            Ok((pem, key_id)) => {
                print!("{pem}");
                eprintln!("key id {key_id}");
                EXIT_INTACT
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                EXIT_ERROR
            }
        },
    }
}

/// Verifies the audit log of `args.database_url`. The outer error: the check could not run.
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<Result<Summary, Inconsistency>> {
    let keys = args
        .public_keys
        .iter()
        .map(|k| read_public_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut exported: Vec<ExportedCheckpoint> = Vec::new();
    for path in &args.checkpoint_files {
        exported.extend(sink::read_file(path).await?);
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    let verdict = verify::verify_database(&pool, &exported, &keys)
        .await
        .context("cannot read the audit log");
    pool.close().await;
    verdict
}

/// A `--public-key` value: a file holding the key, or the key text itself.
fn read_public_key(value: &str) -> anyhow::Result<VerifyingKey> {
    let path = std::path::Path::new(value);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the public key file {value}"))?;
        return parse_public_key(&text).with_context(|| format!("public key file {value}"));
    }
    parse_public_key(value).with_context(|| {
        format!("--public-key {value}: no such file, and not a PEM or base64 public key")
    })
}

/// The PEM public key and key id of a signing key file.
pub async fn public_key(args: &PublicKeyArgs) -> anyhow::Result<(String, String)> {
    let key = AuditSigningKey::load(&args.signing_key_file).await?;
    Ok((key.public_key_pem(), key.key_id().to_owned()))
}
