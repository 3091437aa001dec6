//! Secrets the config names (trunk passwords, the pair's shared secret): read at load from an environment variable
//! (`<what>_env`) or a file (`<what>_file`), so that a missing one fails the load rather than a call, and never
//! written in the config itself. Errors name the variable or file, never the value.

use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// Where a secret could not be read from: the span in the file, the key, the message.
pub(super) type SecretError = (Range<usize>, String, String);

/// Reads the secret `what` (`password`, `secret`) of the table at `key` (spanning `whole`) from exactly one of `env`
/// (`<what>_env`) and `file` (`<what>_file`, relative to `base_dir`).
pub(super) fn read(
    what: &str,
    env: Option<&Spanned<String>>,
    file: Option<&Spanned<String>>,
    key: &str,
    whole: Range<usize>,
    base_dir: &Path,
) -> Result<String, SecretError> {
    match (env, file) {
        (Some(var), None) => {
            let key = format!("{key}.{what}_env");
            match std::env::var(var.get_ref()) {
                Ok(p) if !p.is_empty() => Ok(p),
                Ok(_) => Err((var.span(), key, format!("environment variable {} is empty", var.get_ref()))),
                Err(std::env::VarError::NotPresent) => {
                    Err((var.span(), key, format!("environment variable {} is not set", var.get_ref())))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err((var.span(), key, format!("environment variable {} is not valid UTF-8", var.get_ref())))
                }
            }
        }
        (None, Some(file)) => {
            let key = format!("{key}.{what}_file");
            let path = base_dir.join(file.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(p) => {
                    // One trailing newline is the editor's or `echo`'s, not the secret's.
                    let p = p.strip_suffix('\n').map_or(&p[..], |p| p.strip_suffix('\r').unwrap_or(p));
                    if p.is_empty() {
                        Err((file.span(), key, format!("{} is empty", path.display())))
                    } else {
                        Ok(p.to_owned())
                    }
                }
                // io::Error's text names the failure (not found, permission denied), never the content.
                Err(e) => Err((file.span(), key, format!("cannot read {}: {e}", path.display()))),
            }
        }
        (Some(_), Some(_)) => Err((whole, key.to_owned(), format!("give either {what}_env or {what}_file, not both"))),
        (None, None) => Err((
            whole,
            key.to_owned(),
            format!("needs {what}_env (an environment variable) or {what}_file (a file holding the {what})"),
        )),
    }
}
