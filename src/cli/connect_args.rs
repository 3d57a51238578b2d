//! The flags that say how a command reaches a secured cluster: the CA to trust for TLS and
//! the credentials to sign in with.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::client::{ConnectOptions, Credentials};

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The cluster's CA certificate (PEM): connect with TLS (`arka dev --tls` writes
    /// DATA_DIR/tls/ca.pem).
    #[arg(long, env = "ARKA_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Sign in as this user (with --password-file or ARKA_PASSWORD).
    #[arg(long, env = "ARKA_USER")]
    pub user: Option<String>,
    /// File whose first line is the user's password.
    #[arg(long, env = "ARKA_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// A bearer token instead of a user and password.
    #[arg(long, env = "ARKA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        let mut options = ConnectOptions::default();
        if let Some(ca) = &self.tls_ca {
            options = options
                .with_tls_ca_file(ca)
                .with_context(|| format!("read the CA certificate {}", ca.display()))?;
        }
        let credentials = match (&self.user, &self.token) {
            (Some(_), Some(_)) => anyhow::bail!("give --user or --token, not both"),
            (Some(user), None) => Credentials::Password {
                user: user.clone(),
                password: self.password()?,
            },
            (None, Some(token)) => Credentials::Token(token.clone()),
            (None, None) => Credentials::None,
        };
        Ok(options.with_credentials(credentials))
    }

    fn password(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the password file {}", path.display()))?;
            return Ok(text.lines().next().unwrap_or_default().to_string());
        }
        std::env::var("ARKA_PASSWORD")
            .context("--user needs --password-file (or ARKA_PASSWORD in the environment)")
    }
}
