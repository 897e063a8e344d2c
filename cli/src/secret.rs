//! Random secrets for locally generated credentials.

use rand::Rng as _;
use rand::distr::Alphanumeric;

/// `prefix` followed by 43 random alphanumeric characters (~256 bits) from the OS CSPRNG.
pub fn random_token(prefix: &str) -> String {
    let body: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(43)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}

/// Writes `contents` to `path` readable by the owner only (0600), replacing any old file.
pub fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}
