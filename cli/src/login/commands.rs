//! The three subcommands.

use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::LoginError;
use super::credentials::{Credentials, credentials_path};
use super::device::{current_token, discover, poll_for_token, revoke, start_device_authorization};

/// `tollgate login`: sign this machine in to a gateway with the device flow.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The gateway's base URL (the one Claude Code uses as ANTHROPIC_BASE_URL). Defaults to the
    /// gateway of the current credentials.
    #[arg(long, env = "TOLLGATE_GATEWAY")]
    pub gateway: Option<String>,
    /// Print the sign-in URL only; don't try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
}

/// `tollgate token`: print a valid access token (and nothing else) on stdout.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {}

/// `tollgate logout`: revoke the tokens at the gateway and delete the credentials.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {}

fn http() -> Result<reqwest::Client, LoginError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|source| LoginError::Unreachable {
            url: String::new(),
            source,
        })
}

fn now_unix_s() -> i64 {
    chrono::Utc::now().timestamp()
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let path = credentials_path()?;
    let gateway = match args.gateway {
        Some(g) => g,
        None => match Credentials::load(&path) {
            Ok(c) => c.gateway,
            Err(LoginError::NotSignedIn) => {
                anyhow::bail!("which gateway? run `tollgate login --gateway https://…`")
            }
            Err(e) => return Err(e.into()),
        },
    };
    let http = http()?;
    let meta = discover(&http, &gateway).await?;
    let auth = start_device_authorization(&http, &meta).await?;
    let url = auth
        .verification_uri_complete
        .clone()
        .unwrap_or_else(|| auth.verification_uri.clone());
    eprintln!(
        "To sign in to {gateway}, open this page and confirm the code {}:",
        auth.user_code
    );
    eprintln!();
    eprintln!("    {url}");
    eprintln!();
    if let Some(notice) = &auth.login_notice {
        eprintln!("{notice}");
    }
    if !args.no_browser {
        open_browser(&url);
    }
    eprintln!("Waiting for approval…");
    let set = poll_for_token(&http, &meta, &auth).await?;
    let creds = Credentials::new(&meta, set, now_unix_s());
    creds.save(&path)?;
    match &creds.email {
        Some(email) => eprintln!("Signed in as {email}. Credentials: {}", path.display()),
        None => eprintln!("Signed in. Credentials: {}", path.display()),
    }
    Ok(())
}

pub async fn token(_args: TokenArgs) -> anyhow::Result<()> {
    let path = credentials_path()?;
    let token = current_token(&http()?, &path, now_unix_s()).await?;
    println!("{}", token.expose_secret());
    Ok(())
}

pub async fn logout(_args: LogoutArgs) -> anyhow::Result<()> {
    let path = credentials_path()?;
    let creds = match Credentials::load(&path) {
        Ok(c) => c,
        Err(LoginError::NotSignedIn) => {
            eprintln!("Not signed in.");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(endpoint) = &creds.revocation_endpoint {
        let http = http()?;
        if let Err(e) = revoke(&http, endpoint, &creds.access_token, "access_token").await {
            eprintln!("warning: revoking the access token: {e}");
        }
        if let Some(refresh) = &creds.refresh_token
            && let Err(e) = revoke(&http, endpoint, refresh, "refresh_token").await
        {
            eprintln!("warning: revoking the refresh token: {e}");
        }
    }
    Credentials::delete(&path)?;
    eprintln!("Signed out of {}.", creds.gateway);
    Ok(())
}

/// Best effort: a desktop session opens the page; elsewhere the printed URL is enough.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
