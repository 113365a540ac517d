//! The API token: from the config, a token file, or generated once into `state_dir/token` (mode 0600).
use crate::config::Config;
use anyhow::{Context, Result};

pub fn load_or_create(cfg: &Config) -> Result<String> {
    if let Some(t) = &cfg.auth.token {
        return Ok(t.trim().to_string());
    }
    let path = cfg.auth.token_file.clone().unwrap_or_else(|| cfg.state_dir.join("token"));
    if path.is_file() {
        let t = std::fs::read_to_string(&path).with_context(|| format!("reading the token from {}", path.display()))?;
        let t = t.trim().to_string();
        anyhow::ensure!(
            t.len() >= 16,
            "{}: the token is shorter than 16 characters; delete the file to have a new one generated",
            path.display()
        );
        return Ok(t);
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    write_private(&path, &token)?;
    // The token itself never goes to the log: only where to read it.
    tracing::warn!(path = %path.display(), "generated a new API token; read it with: sudo cat {}", path.display());
    Ok(token)
}

fn write_private(path: &std::path::Path, token: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
